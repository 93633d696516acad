//! Retry maths as pure functions: given what an attempt returned, when (if ever) the
//! next one runs. No clock and no randomness inside: callers pass `now` and a uniform
//! random number, so every rule is unit-tested exactly.

use std::time::Duration;

use crate::store::NextStep;

/// Jitter applied to each scheduled delay: ±20 %.
const JITTER: f64 = 0.2;
/// After a timeout or a 429 the endpoint is struggling: wait at least this long.
const MIN_WAIT_AFTER_OVERLOAD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Policy {
    pub schedule: Vec<Duration>,
    pub max_age: Duration,
}

/// The facts of one finished attempt that the policy looks at.
#[derive(Debug, Clone, Default)]
pub struct Observed<'a> {
    pub status: Option<u16>,
    pub timed_out: bool,
    pub retry_after: Option<&'a str>,
}

/// Base delay before retry `n` (n = 1 is the first retry): `schedule[min(n-1, last)]`.
pub fn base_delay(schedule: &[Duration], retry: u32) -> Duration {
    let index = (retry.max(1) - 1) as usize;
    schedule
        .get(index.min(schedule.len().saturating_sub(1)))
        .copied()
        .unwrap_or(Duration::from_secs(5))
}

/// `delay` scaled by a factor in [0.8, 1.2), `unit` being uniform in [0, 1).
pub fn jittered(delay: Duration, unit: f64) -> Duration {
    let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
    delay.mul_f64(factor)
}

/// A `Retry-After` header, delay-seconds or an HTTP date, as a delay from `now_ms`
/// (a date in the past is no delay).
pub fn retry_after(value: &str, now_ms: u64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(Duration::from_millis(at_ms.saturating_sub(now_ms)))
}

pub fn is_success(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..300).contains(&s))
}

/// What follows an attempt. `attempts` counts every attempt made so far, this one
/// included; `created_ms` is the event's acceptance time.
pub fn next_step(
    policy: &Policy,
    observed: &Observed<'_>,
    attempts: u32,
    created_ms: u64,
    now_ms: u64,
    unit: f64,
) -> NextStep {
    if is_success(observed.status) {
        return NextStep::Succeeded;
    }
    if observed.status == Some(410) {
        return NextStep::Failed;
    }
    let base = base_delay(&policy.schedule, attempts);
    let mut delay = jittered(base, unit);
    if matches!(observed.status, Some(429 | 503)) {
        if let Some(asked) = observed.retry_after.and_then(|v| retry_after(v, now_ms)) {
            delay = asked.clamp(base, base * 2);
        }
    }
    if observed.timed_out || observed.status == Some(429) {
        delay = delay.max(MIN_WAIT_AFTER_OVERLOAD);
    }
    let at = now_ms.saturating_add(delay.as_millis() as u64);
    let deadline = created_ms.saturating_add(policy.max_age.as_millis() as u64);
    if at > deadline {
        NextStep::Failed
    } else {
        NextStep::RetryAt(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            schedule: vec![
                Duration::from_secs(5),
                Duration::from_secs(300),
                Duration::from_secs(1800),
            ],
            max_age: Duration::from_secs(72 * 3600),
        }
    }

    fn failed(status: u16) -> Observed<'static> {
        Observed {
            status: Some(status),
            ..Observed::default()
        }
    }

    #[test]
    fn base_delay_walks_the_schedule_and_repeats_its_last_entry() {
        let s = policy().schedule;
        assert_eq!(base_delay(&s, 1), Duration::from_secs(5));
        assert_eq!(base_delay(&s, 2), Duration::from_secs(300));
        assert_eq!(base_delay(&s, 3), Duration::from_secs(1800));
        assert_eq!(base_delay(&s, 50), Duration::from_secs(1800));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let d = Duration::from_secs(100);
        assert_eq!(jittered(d, 0.0), Duration::from_secs(80));
        assert_eq!(jittered(d, 0.5), Duration::from_secs(100));
        assert!(jittered(d, 0.999_999) < Duration::from_secs(120));
    }

    #[test]
    fn success_and_gone_end_the_delivery() {
        assert_eq!(
            next_step(&policy(), &failed(204), 1, 0, 0, 0.5),
            NextStep::Succeeded
        );
        assert_eq!(
            next_step(&policy(), &failed(410), 1, 0, 0, 0.5),
            NextStep::Failed
        );
    }

    #[test]
    fn failures_retry_on_the_schedule_and_redirects_are_failures() {
        assert_eq!(
            next_step(&policy(), &failed(500), 1, 0, 1000, 0.5),
            NextStep::RetryAt(6000)
        );
        assert_eq!(
            next_step(&policy(), &failed(302), 2, 0, 1000, 0.5),
            NextStep::RetryAt(301_000)
        );
    }

    #[test]
    fn retry_after_is_clamped_and_overload_waits_a_minute() {
        let mut o = failed(503);
        o.retry_after = Some("1000");
        // Asked 1000 s on the 2nd retry (base 300 s): clamped to 600 s.
        assert_eq!(
            next_step(&policy(), &o, 2, 0, 0, 0.5),
            NextStep::RetryAt(600_000)
        );
        o.retry_after = Some("1");
        assert_eq!(
            next_step(&policy(), &o, 2, 0, 0, 0.5),
            NextStep::RetryAt(300_000)
        );
        assert_eq!(
            next_step(&policy(), &failed(429), 1, 0, 0, 0.5),
            NextStep::RetryAt(60_000)
        );
        let timeout = Observed {
            timed_out: true,
            ..Observed::default()
        };
        assert_eq!(
            next_step(&policy(), &timeout, 1, 0, 0, 0.5),
            NextStep::RetryAt(60_000)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777 s.
        let now_ms = 784_111_777_000 - 90_000;
        assert_eq!(retry_after("120", now_ms), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now_ms),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now_ms),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("Sun Nov  6 08:49:37 1994", now_ms),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now_ms + 200_000),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now_ms), None);
        assert_eq!(retry_after("-5", now_ms), None);

        let mut o = failed(429);
        o.retry_after = Some("Sun, 06 Nov 1994 08:49:37 GMT");
        // Asked 90 s after a 429 on the first retry (base 5 s): clamped to 10 s, then
        // raised to the 60 s minimum after a 429.
        assert_eq!(
            next_step(&policy(), &o, 1, now_ms, now_ms, 0.5),
            NextStep::RetryAt(now_ms + 60_000)
        );
    }

    #[test]
    fn no_retry_is_scheduled_past_max_age() {
        let p = policy();
        let created = 0;
        let near_end = p.max_age.as_millis() as u64 - 1000;
        assert_eq!(
            next_step(&p, &failed(500), 1, created, near_end, 0.5),
            NextStep::Failed
        );
        assert!(matches!(
            next_step(&p, &failed(500), 1, created, near_end - 10_000, 0.5),
            NextStep::RetryAt(_)
        ));
    }
}
