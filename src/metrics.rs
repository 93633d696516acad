//! Prometheus metrics: one `Metrics` value, created by `run` and handed explicitly to the
//! parts that count (API, dispatcher, store writer via `StoreObserver`, delivery auth).
//! Counters and histograms are updated where things happen; the gauges that describe
//! current state (queue depth, oldest due delivery, subscriptions by status) are read
//! from their owners when `/metrics` is scraped, so they cost nothing between scrapes.
//! Encoded as OpenMetrics text by `prometheus-client`, which appends `_total` to every
//! counter name; the README lists the final names.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::dispatch::queues::Queues;
use crate::store::records::SubscriptionStatus;
use crate::store::{CommitReport, StorageState, StoreObserver, SubscriptionsView, now_ms};

/// `outcome` of an attempt or a delivery, `status` of a subscription.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

/// How one attempt ended, as counted in `hookd_attempts_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Any 2xx.
    Success,
    /// The endpoint answered with another status.
    HttpError,
    /// No answer: DNS, refused address, connection, TLS or read error.
    NetworkError,
    /// No answer within `delivery.timeout`.
    Timeout,
}

impl AttemptOutcome {
    pub fn of(status: Option<u16>, timed_out: bool) -> Self {
        match status {
            Some(200..=299) => Self::Success,
            Some(_) => Self::HttpError,
            None if timed_out => Self::Timeout,
            None => Self::NetworkError,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::HttpError => "http_error",
            Self::NetworkError => "network_error",
            Self::Timeout => "timeout",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub events_ingested: Counter,
    /// Deliveries that reached a final state, by `outcome` (succeeded, failed, cancelled).
    pub deliveries: Family<OutcomeLabel, Counter>,
    pub attempts: Family<OutcomeLabel, Counter>,
    pub attempt_duration: Histogram,
    /// Access tokens requested from OAuth 2.0 token endpoints (clone the handle and
    /// `inc()` it once per token request, successful or not).
    pub oauth_token_fetches: Counter,
    pub purged_events: Counter,
    store_commit_duration: Histogram,
    store_commit_batch: Histogram,
    waiting: Gauge,
    in_flight: Gauge,
    oldest_due_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    subscriptions: Family<StatusLabel, Gauge>,
    /// 1 for the store's current state (ok, low_disk, faulted), 0 for the others.
    storage: Family<StateLabel, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hookd");
        let events_ingested = Counter::default();
        registry.register(
            "events_ingested",
            "Events accepted and committed (202), not counting idempotent repeats",
            events_ingested.clone(),
        );
        let deliveries = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "deliveries",
            "Deliveries that reached a final state, by outcome (succeeded, failed, cancelled)",
            deliveries.clone(),
        );
        let attempts = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "attempts",
            "Delivery attempts by outcome (success, http_error, network_error, timeout)",
            attempts.clone(),
        );
        // 5 ms .. ~82 s: a loopback receiver to a request that runs into the timeout.
        let attempt_duration = Histogram::new(exponential_buckets(0.005, 2.0, 15));
        registry.register_with_unit(
            "attempt_duration",
            "Time from sending a delivery attempt to its outcome",
            Unit::Seconds,
            attempt_duration.clone(),
        );
        let oauth_token_fetches = Counter::default();
        registry.register(
            "oauth_token_fetches",
            "Access token requests to OAuth 2.0 token endpoints",
            oauth_token_fetches.clone(),
        );
        let purged_events = Counter::default();
        registry.register(
            "purged_events",
            "Events removed with their deliveries and attempts by storage.retention",
            purged_events.clone(),
        );
        // 100 µs .. ~3.3 s: an fsync on fast NVMe to a stalled disk.
        let store_commit_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register_with_unit(
            "store_commit_duration",
            "Time of one group commit of the store writer (apply, commit, fsync)",
            Unit::Seconds,
            store_commit_duration.clone(),
        );
        // 1 .. 1024 commands, the writer's batch cap.
        let store_commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "store_commit_batch_size",
            "Commands (requests, attempt reports, ...) applied in one group commit",
            store_commit_batch.clone(),
        );
        let waiting = Gauge::default();
        registry.register(
            "deliveries_waiting",
            "Unfinished deliveries in the due queue, not yet attempted or waiting for a retry",
            waiting.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "deliveries_in_flight",
            "Delivery attempts running now",
            in_flight.clone(),
        );
        let oldest_due_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "oldest_due_delivery_age",
            "How long the longest-waiting due delivery has been due (0 when none is)",
            Unit::Seconds,
            oldest_due_age.clone(),
        );
        let subscriptions = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "subscriptions",
            "Subscriptions by status (active, deactivated, disabled)",
            subscriptions.clone(),
        );
        let storage = Family::<StateLabel, Gauge>::default();
        registry.register(
            "storage_state",
            "1 for the store's current state: ok, low_disk (below storage.min_free: new events refused) or faulted (a write failed: nothing is accepted until the database is reopened)",
            storage.clone(),
        );
        storage.get_or_create(&StateLabel { state: "ok" }).set(1);
        Self {
            registry,
            storage,
            events_ingested,
            deliveries,
            attempts,
            attempt_duration,
            oauth_token_fetches,
            purged_events,
            store_commit_duration,
            store_commit_batch,
            waiting,
            in_flight,
            oldest_due_age,
            subscriptions,
        }
    }

    pub fn attempt(&self, outcome: AttemptOutcome, took: Duration) {
        self.attempts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
        self.attempt_duration.observe(took.as_secs_f64());
    }

    /// Counts the due queue (a query on PostgreSQL), then renders.
    pub async fn scrape(&self, sources: Option<&Sources>) -> Result<String, std::fmt::Error> {
        let due = match sources {
            Some(sources) => sources.subscriptions.due_count().await,
            None => None,
        };
        self.render(sources, due)
    }

    /// Reads the state gauges from their owners and encodes everything; `due` is the
    /// due queue's length when the store could count it.
    pub fn render(
        &self,
        sources: Option<&Sources>,
        due: Option<u64>,
    ) -> Result<String, std::fmt::Error> {
        if let Some(sources) = sources {
            let now = now_ms();
            let queue = sources.queues.stats(now);
            // The due queue holds the deliveries in flight too, until their outcome.
            let waiting = due.map_or(queue.waiting, |n| {
                (n as usize).saturating_sub(queue.in_flight)
            });
            self.waiting.set(waiting as i64);
            self.in_flight.set(queue.in_flight as i64);
            let age_ms = queue.oldest_due_ms.map_or(0, |due| now.saturating_sub(due));
            self.oldest_due_age.set(age_ms as f64 / 1000.0);
            let (mut active, mut deactivated, mut disabled) = (0, 0, 0);
            for (_, subscription) in sources.subscriptions.current().iter() {
                match subscription.status {
                    SubscriptionStatus::Active => active += 1,
                    SubscriptionStatus::Deactivated => deactivated += 1,
                    SubscriptionStatus::Disabled => disabled += 1,
                }
            }
            for (status, count) in [
                ("active", active),
                ("deactivated", deactivated),
                ("disabled", disabled),
            ] {
                self.subscriptions
                    .get_or_create(&StatusLabel { status })
                    .set(count);
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl StoreObserver for Metrics {
    fn storage_state(&self, state: StorageState) {
        for other in [
            StorageState::Ok,
            StorageState::LowDisk,
            StorageState::Faulted,
        ] {
            self.storage
                .get_or_create(&StateLabel {
                    state: other.as_str(),
                })
                .set(i64::from(other == state));
        }
    }

    fn committed(&self, report: &CommitReport) {
        self.store_commit_duration
            .observe(report.took.as_secs_f64());
        self.store_commit_batch.observe(report.commands as f64);
        self.events_ingested.inc_by(report.events_ingested);
        self.purged_events.inc_by(report.events_purged);
        for (outcome, count) in [
            ("succeeded", report.succeeded),
            ("failed", report.failed),
            ("cancelled", report.cancelled),
        ] {
            if count > 0 {
                self.deliveries
                    .get_or_create(&OutcomeLabel { outcome })
                    .inc_by(count);
            }
        }
    }
}

/// Where the state gauges are read from; set once the store is open. Holds no `Store`:
/// the monitoring listener outlives the writer at shutdown.
pub struct Sources {
    pub queues: Arc<Queues>,
    pub subscriptions: SubscriptionsView,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_units_and_total_suffix() {
        let metrics = Metrics::new();
        metrics.attempt(
            AttemptOutcome::of(Some(503), false),
            Duration::from_millis(20),
        );
        metrics.attempt(AttemptOutcome::of(None, true), Duration::from_secs(15));
        metrics.oauth_token_fetches.inc();
        metrics.committed(&CommitReport {
            commands: 3,
            took: Duration::from_millis(2),
            events_ingested: 2,
            succeeded: 1,
            ..CommitReport::default()
        });
        let text = metrics.render(None, None).unwrap();
        for line in [
            "hookd_events_ingested_total 2",
            "hookd_attempts_total{outcome=\"http_error\"} 1",
            "hookd_attempts_total{outcome=\"timeout\"} 1",
            "hookd_deliveries_total{outcome=\"succeeded\"} 1",
            "hookd_oauth_token_fetches_total 1",
            "hookd_attempt_duration_seconds_count 2",
            "hookd_store_commit_duration_seconds_count 1",
            "hookd_store_commit_batch_size_sum 3.0",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn attempt_outcomes_follow_status_and_timeout() {
        assert_eq!(
            AttemptOutcome::of(Some(204), false),
            AttemptOutcome::Success
        );
        assert_eq!(
            AttemptOutcome::of(Some(410), false),
            AttemptOutcome::HttpError
        );
        assert_eq!(
            AttemptOutcome::of(None, false),
            AttemptOutcome::NetworkError
        );
        assert_eq!(AttemptOutcome::of(None, true), AttemptOutcome::Timeout);
    }
}
