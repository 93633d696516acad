//! The delivery state machine as pure functions over plain values: what an attempt's
//! outcome, a manual retry, a paused subscription's expiry, a resume and a deletion do
//! to a delivery, and when failing endpoints are disabled. The redb writer (`ops/`)
//! applies their answers to its tables; any other backend calls the same functions, so
//! the rules cannot drift apart between backends. What follows an attempt in time
//! (the retry schedule, `Retry-After`, `max_age`) is decided by `dispatch::schedule`
//! before the outcome reaches the store, as a `NextStep`.

use super::records::DeliveryState;
use super::requests::NextStep;

/// The last error of a delivery ended by `expires`.
pub const EXPIRED: &str =
    "expired: not delivered within delivery.max_age while the subscription was not ACTIVE";

/// What recording an attempt's outcome does to its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    /// The delivery was cancelled while the attempt ran: the attempt is recorded, the
    /// delivery stays CANCELLED and nothing else follows.
    Keep,
    /// SUCCEEDED: the endpoint is healthy again (its failure clock stops).
    Succeeded,
    /// CANCELLED: the subscription was deleted while the attempt was in flight.
    Cancelled,
    /// RETRYING, due again at `at`; the failure counts towards `disable_after`.
    Retry { at: u64 },
    /// FAILED, and no further attempt.
    Failed {
        /// The endpoint answered 410 Gone: disable its subscription.
        gone: bool,
        /// The failure counts towards `disable_after` (it does not for the one attempt
        /// of a manual retry of an ended delivery, nor once the subscription is gone).
        counts: bool,
        /// Announce it with a `hookd.delivery.failed` event (once per ending: not
        /// again when a manual retry of an ended delivery fails).
        announce: bool,
    },
}

/// The transition for an attempt of a delivery in `state` whose outcome is `next`.
/// `retry_once` marks the one attempt of a manual retry of an ended delivery;
/// `subscription_exists` is false once its subscription was deleted.
pub fn after_attempt(
    state: DeliveryState,
    retry_once: bool,
    subscription_exists: bool,
    next: NextStep,
    gone: bool,
) -> AfterAttempt {
    if state == DeliveryState::Cancelled {
        return AfterAttempt::Keep;
    }
    match next {
        NextStep::Succeeded => AfterAttempt::Succeeded,
        NextStep::RetryAt(_) if !subscription_exists && !retry_once => AfterAttempt::Cancelled,
        NextStep::RetryAt(at) if !retry_once => AfterAttempt::Retry { at },
        NextStep::RetryAt(_) | NextStep::Failed => AfterAttempt::Failed {
            gone,
            counts: !gone && subscription_exists && !retry_once,
            announce: !retry_once,
        },
    }
}

impl AfterAttempt {
    /// The delivery's state afterwards (`Keep`: the state it had).
    pub fn state(self, before: DeliveryState) -> DeliveryState {
        match self {
            AfterAttempt::Keep => before,
            AfterAttempt::Succeeded => DeliveryState::Succeeded,
            AfterAttempt::Cancelled => DeliveryState::Cancelled,
            AfterAttempt::Retry { .. } => DeliveryState::Retrying,
            AfterAttempt::Failed { .. } => DeliveryState::Failed,
        }
    }
}

/// An endpoint's continuous-failure clock after a failed attempt at `attempted_ms` to
/// an ACTIVE subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureClock {
    /// Its first failure since its latest success, creation or re-activation.
    pub first: u64,
    /// `first` is this attempt: it must be recorded.
    pub started: bool,
    /// It has failed continuously for longer than `disable_after`: disable it.
    pub disable: bool,
}

/// `recorded` is the first failure stored for the subscription, `last_ok_ms` its
/// latest success (0 if none), `active_since_ms` when it was made or last re-activated.
/// A failure before the latest success or re-activation does not count, so an endpoint
/// that was merely quiet is never disabled by one failure.
pub fn failure_clock(
    recorded: Option<u64>,
    last_ok_ms: u64,
    active_since_ms: u64,
    attempted_ms: u64,
    disable_after_ms: u64,
) -> FailureClock {
    let reset = last_ok_ms.max(active_since_ms);
    let (first, started) = match recorded.filter(|&first| first >= reset) {
        Some(first) => (first, false),
        None => (attempted_ms, true),
    };
    FailureClock {
        first,
        started,
        disable: attempted_ms > first.saturating_add(disable_after_ms),
    }
}

/// Why a manual retry is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryRefused {
    Cancelled,
    SubscriptionInactive,
}

/// Whether a delivery in `state` may be retried by hand now; if so, whether the attempt
/// is the one attempt of an ended delivery (`retry_once`: it keeps its final state,
/// beside its last outcome, until that attempt's outcome is recorded).
pub fn manual_retry(state: DeliveryState, subscription_active: bool) -> Result<bool, RetryRefused> {
    if state == DeliveryState::Cancelled {
        return Err(RetryRefused::Cancelled);
    }
    if !subscription_active {
        return Err(RetryRefused::SubscriptionInactive);
    }
    Ok(state.is_final())
}

/// Whether a not-ACTIVE subscription's delivery, made at `created_ms`, ends FAILED now
/// (with `EXPIRED`): it is unfinished and older than `max_age_ms`.
pub fn expires(state: DeliveryState, created_ms: u64, now_ms: u64, max_age_ms: u64) -> bool {
    !state.is_final() && now_ms.saturating_sub(created_ms) >= max_age_ms
}

/// Whether a RETRYING delivery of a subscription made ACTIVE again at `since_ms` is
/// made due now: it waits for a retry scheduled later, and was last changed before the
/// resume (a retry scheduled after it keeps its time).
pub fn resumes(next_attempt_ms: Option<u64>, updated_ms: u64, since_ms: u64, now_ms: u64) -> bool {
    next_attempt_ms.is_some_and(|at| at > now_ms) && updated_ms <= since_ms
}

/// Whether a deleted subscription's delivery in `state` ends CANCELLED (an ended one
/// keeps its state and only leaves the due queue).
pub fn cancels(state: DeliveryState) -> bool {
    !state.is_final()
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryState::*;

    #[test]
    fn an_attempt_of_a_cancelled_delivery_changes_nothing() {
        for next in [NextStep::Succeeded, NextStep::RetryAt(5), NextStep::Failed] {
            let after = after_attempt(Cancelled, false, true, next, false);
            assert_eq!(after, AfterAttempt::Keep);
            assert_eq!(after.state(Cancelled), Cancelled);
        }
    }

    #[test]
    fn success_ends_and_a_failure_retries_or_fails() {
        let ok = after_attempt(Retrying, false, true, NextStep::Succeeded, false);
        assert_eq!(ok.state(Retrying), Succeeded);
        assert_eq!(
            after_attempt(Pending, false, true, NextStep::RetryAt(9), false),
            AfterAttempt::Retry { at: 9 }
        );
        assert_eq!(
            after_attempt(Retrying, false, true, NextStep::Failed, false),
            AfterAttempt::Failed {
                gone: false,
                counts: true,
                announce: true
            }
        );
    }

    #[test]
    fn a_retry_after_the_subscription_was_deleted_is_cancelled() {
        let after = after_attempt(Pending, false, false, NextStep::RetryAt(9), false);
        assert_eq!(after, AfterAttempt::Cancelled);
        // A final failure of a deleted subscription's delivery does not count.
        assert_eq!(
            after_attempt(Pending, false, false, NextStep::Failed, false),
            AfterAttempt::Failed {
                gone: false,
                counts: false,
                announce: true
            }
        );
    }

    #[test]
    fn gone_fails_and_disables_without_counting() {
        assert_eq!(
            after_attempt(Retrying, false, true, NextStep::Failed, true),
            AfterAttempt::Failed {
                gone: true,
                counts: false,
                announce: true
            }
        );
    }

    #[test]
    fn a_manual_retry_of_an_ended_delivery_fails_quietly_and_never_retries() {
        // Its one attempt fails: FAILED again, not announced twice, not counted.
        let after = after_attempt(Failed, true, true, NextStep::RetryAt(9), false);
        assert_eq!(
            after,
            AfterAttempt::Failed {
                gone: false,
                counts: false,
                announce: false
            }
        );
        let ok = after_attempt(Failed, true, true, NextStep::Succeeded, false);
        assert_eq!(ok, AfterAttempt::Succeeded);
    }

    #[test]
    fn the_failure_clock_starts_at_the_first_failure_since_the_last_reset() {
        // Nothing recorded: this failure starts the clock.
        let clock = failure_clock(None, 0, 100, 1_000, 500);
        assert_eq!(
            (clock.first, clock.started, clock.disable),
            (1_000, true, false)
        );
        // Recorded before the latest success: stale, starts again.
        let clock = failure_clock(Some(200), 300, 100, 5_000, 500);
        assert_eq!(
            (clock.first, clock.started, clock.disable),
            (5_000, true, false)
        );
        // Recorded before a re-activation: stale too.
        let clock = failure_clock(Some(200), 0, 400, 5_000, 500);
        assert!(clock.started && !clock.disable);
        // Failing since 1,000: disabled once past 1,000 + 500, not at it.
        assert!(!failure_clock(Some(1_000), 0, 100, 1_500, 500).disable);
        let clock = failure_clock(Some(1_000), 0, 100, 1_501, 500);
        assert_eq!(
            (clock.first, clock.started, clock.disable),
            (1_000, false, true)
        );
    }

    #[test]
    fn manual_retry_refuses_cancelled_and_inactive_and_marks_ended_ones() {
        assert_eq!(manual_retry(Cancelled, true), Err(RetryRefused::Cancelled));
        assert_eq!(
            manual_retry(Failed, false),
            Err(RetryRefused::SubscriptionInactive)
        );
        assert_eq!(manual_retry(Failed, true), Ok(true));
        assert_eq!(manual_retry(Succeeded, true), Ok(true));
        assert_eq!(manual_retry(Retrying, true), Ok(false));
    }

    #[test]
    fn expiry_ends_only_unfinished_deliveries_older_than_max_age() {
        assert!(expires(Retrying, 1_000, 2_000, 1_000));
        assert!(!expires(Retrying, 1_001, 2_000, 1_000));
        assert!(!expires(Succeeded, 0, 2_000, 1_000));
        assert!(!expires(Pending, 0, 500, 1_000), "no underflow");
    }

    #[test]
    fn a_resume_brings_forward_only_retries_scheduled_before_it() {
        assert!(resumes(Some(9_000), 1_000, 2_000, 3_000));
        // Changed after the resume: its time stands.
        assert!(!resumes(Some(9_000), 2_500, 2_000, 3_000));
        // Already due.
        assert!(!resumes(Some(3_000), 1_000, 2_000, 3_000));
        assert!(!resumes(None, 1_000, 2_000, 3_000));
    }

    #[test]
    fn deletion_cancels_only_unfinished_deliveries() {
        assert!(cancels(Pending) && cancels(Retrying));
        assert!(!cancels(Succeeded) && !cancels(Failed) && !cancels(Cancelled));
    }
}
