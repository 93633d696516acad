//! The send-time pace of rate-limited subscriptions. The queues space the picks of a
//! subscription's deliveries at its `rateLimit`, but between the pick and the request
//! an attempt may read its delivery and its event from the store (always, on the
//! PostgreSQL backend, for an event another node accepted). A read held up for a while
//! releases the attempts picked meanwhile together, up to `per_endpoint_concurrency` of
//! them, and the endpoint would get them faster than its rate. So each attempt also
//! takes its subscription's next send slot, `1 / rateLimit` after the one before (or
//! now, when that has passed), and waits for it before sending.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Above this many subscriptions with a slot, those whose next slot has passed (which
/// would get "now" anyway) are dropped: the table stays as small as the set of
/// rate-limited subscriptions sending right now.
const PRUNE_ABOVE: usize = 1024;

#[derive(Default)]
pub struct Pace {
    next: Mutex<HashMap<u128, Instant>>,
}

impl Pace {
    fn lock(&self) -> MutexGuard<'_, HashMap<u128, Instant>> {
        // Only times: a poisoned table still paces well enough.
        self.next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When an attempt to `subscription`, limited to `per_second` sends a second, may
    /// send, asked at `now`; the slot is taken.
    pub fn reserve(&self, subscription: u128, per_second: u32, now: Instant) -> Instant {
        let interval = Duration::from_secs(1) / per_second.max(1);
        let mut next = self.lock();
        if next.len() > PRUNE_ABOVE {
            next.retain(|_, at| *at > now);
        }
        let slot = next.get(&subscription).map_or(now, |&at| at.max(now));
        next.insert(subscription, slot + interval);
        slot
    }

    /// Waits for the next send slot of `subscription`.
    pub async fn wait(&self, subscription: u128, per_second: u32) {
        let slot = self.reserve(subscription, per_second, Instant::now());
        tokio::time::sleep_until(slot.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_released_together_are_sent_one_interval_apart() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Four attempts picked at 250 ms intervals but held up and released at once.
        let slots: Vec<_> = (0..4).map(|_| pace.reserve(1, 4, t0)).collect();
        assert_eq!(slots, vec![t0, t0 + ms(250), t0 + ms(500), t0 + ms(750)]);
        // Another subscription has its own pace.
        assert_eq!(pace.reserve(2, 4, t0), t0);
    }

    #[test]
    fn a_slot_in_the_past_is_now() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(pace.reserve(1, 10, t0), t0);
        // Quiet for a second: no credit is saved up, the next one goes at once.
        let later = t0 + ms(1000);
        assert_eq!(pace.reserve(1, 10, later), later);
        assert_eq!(pace.reserve(1, 10, later), later + ms(100));
    }

    #[test]
    fn past_slots_are_pruned_above_the_bound() {
        let pace = Pace::default();
        let t0 = Instant::now();
        for id in 0..=PRUNE_ABOVE as u128 {
            pace.reserve(id, 1000, t0);
        }
        pace.reserve(u128::MAX, 1000, t0 + Duration::from_secs(1));
        assert_eq!(pace.lock().len(), 1);
    }
}
