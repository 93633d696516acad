//! `GET /v1/stats`: attempts, success rate and latency over the last hour, day or week,
//! per period and for the subscriptions failing most, from the counters the writer
//! keeps (`store::stats`), limited to the subscriptions the caller sees.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::auth::Caller;
use super::paging::query_pairs;
use super::{ApiError, ApiResponse, AppState, data};
use crate::ids::SubscriptionId;
use crate::payload::timestamp;
use crate::store::now_ms;
use crate::store::stats::{AttemptCounters, Scale, StatsQuery};

/// Most subscriptions listed as failing.
const FAILING_LISTED: usize = 20;

/// The windows a caller may ask for: name, length in periods, and the period.
const WINDOWS: [(&str, u64, Scale); 3] = [
    ("hour", 60, Scale::Minute),
    ("day", 24, Scale::Hour),
    ("week", 168, Scale::Hour),
];

pub(super) async fn get(
    state: &AppState,
    caller: &Caller,
    query: Option<&str>,
) -> Result<ApiResponse, ApiError> {
    let mut window = WINDOWS[0];
    for (key, value) in query_pairs(query) {
        if key == "window" {
            window = *WINDOWS
                .iter()
                .find(|(name, _, _)| *name == value)
                .ok_or_else(|| ApiError::invalid("window", "must be hour, day or week"))?;
        }
    }
    let (name, periods, scale) = window;
    let now = now_ms();
    // The current period and the ones before it.
    let from_ms = (scale.period(now) as u64 + 1).saturating_sub(periods) * scale.millis();
    let query = StatsQuery {
        scale,
        from_ms,
        until_ms: now + 1,
    };
    let viewer = caller.clone();
    let stats = state
        .store
        .attempt_stats(query, move |subscription| {
            viewer.sees_subscription(subscription)
        })
        .await?;

    let mut total = AttemptCounters::default();
    for (_, counters) in &stats.subscriptions {
        total.add(counters);
    }
    let series: Vec<Value> = stats
        .periods
        .iter()
        .map(|(start_ms, counters)| {
            let mut point = counts(counters);
            point["start"] = json!(timestamp(*start_ms));
            point
        })
        .collect();
    let mut failing: Vec<&(u128, AttemptCounters)> = stats
        .subscriptions
        .iter()
        .filter(|(_, c)| c.failed() > 0)
        .collect();
    failing.sort_by_key(|(id, c)| (std::cmp::Reverse(c.failed()), *id));
    let failing: Vec<Value> = failing
        .into_iter()
        .take(FAILING_LISTED)
        .map(|(id, counters)| {
            let mut row = counts(counters);
            row["subscriptionId"] = json!(SubscriptionId(*id).to_string());
            row
        })
        .collect();
    let resolution = match scale {
        Scale::Minute => "minute",
        Scale::Hour => "hour",
    };
    Ok(data(
        StatusCode::OK,
        json!({
            "window": name,
            "resolution": resolution,
            "from": timestamp(from_ms),
            "until": timestamp(now),
            "totals": counts(&total),
            "series": series,
            "failing": failing,
            "truncated": stats.truncated,
        }),
    ))
}

/// Attempts, successes, failures, success rate and latency percentiles.
fn counts(counters: &AttemptCounters) -> Value {
    let rate = (counters.attempts > 0)
        .then(|| f64::from(counters.succeeded) / f64::from(counters.attempts));
    json!({
        "attempts": counters.attempts,
        "succeeded": counters.succeeded,
        "failed": counters.failed(),
        "successRate": rate,
        "latencyP50Ms": counters.latency_ms(0.5),
        "latencyP95Ms": counters.latency_ms(0.95),
    })
}
