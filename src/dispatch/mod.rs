//! The dispatcher: takes due deliveries from the in-memory queues (`queues.rs`: a
//! bounded window of each ACTIVE subscription's due queue, fed by the store writer after
//! each commit and read from the store as it runs low), runs each
//! attempt under the global concurrency limit, and reports the outcome to the store,
//! which schedules the retry the policy (`schedule.rs`) chose. It holds nothing the
//! store does not: a crash mid-attempt leaves the due entry, and the attempt runs again.
//! An event's body is in memory once however many of its deliveries run (`bodies.rs`).
//! A rate-limited subscription's sends are paced again just before they go out
//! (`pace.rs`), whatever the reads between pick and send took.

mod bodies;
mod failures;
mod pace;
pub mod queues;
pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::delivery::{self, Client, Outgoing};
use crate::ids::{DeliveryId, EventId, SubscriptionId};
use crate::metrics::{AttemptOutcome, Metrics};
use crate::secret::Sealer;
use crate::store::records::{AttemptRecord, SubscriptionStatus};
use crate::store::{
    AttemptReport, DueEntry, DueSink, NextStep, StorageState, Store, StoreError, now_ms,
};
use bodies::{AttemptInput, Slot};
use queues::{Next, Queues, Read};
use schedule::{Observed, Policy};

/// After a store error the delivery is tried again this much later.
const STORE_ERROR_BACKOFF: Duration = Duration::from_secs(5);
/// An outcome the store could not write (it is faulted) is written again no sooner than
/// this, and only once the store takes writes again.
const RECORD_RETRY: Duration = Duration::from_millis(250);
/// Subscriptions whose windows one read transaction fills.
const READS_PER_TRANSACTION: usize = 64;

pub struct Dispatcher {
    queues: Arc<Queues>,
    store: Store,
    client: Client,
    tokens: Arc<crate::delivery::oauth2::Tokens>,
    sealer: Arc<Sealer>,
    policy: Policy,
    timeout: Duration,
    concurrency: Arc<Semaphore>,
    rng: SystemRandom,
    metrics: Arc<Metrics>,
    failures: failures::FailureLog,
    /// Rate-limited subscriptions' send slots (the queues pace the picks).
    pace: pace::Pace,
}

pub struct Settings {
    pub policy: Policy,
    pub timeout: Duration,
    pub concurrency: usize,
    pub metrics: Arc<Metrics>,
}

impl Dispatcher {
    pub fn new(
        queues: Arc<Queues>,
        store: Store,
        client: Client,
        tokens: Arc<crate::delivery::oauth2::Tokens>,
        sealer: Arc<Sealer>,
        settings: Settings,
    ) -> Arc<Self> {
        Arc::new(Self {
            queues,
            store,
            client,
            tokens,
            sealer,
            policy: settings.policy,
            timeout: settings.timeout,
            concurrency: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            rng: SystemRandom::new(),
            failures: failures::FailureLog::default(),
            pace: pace::Pace::default(),
            metrics: settings.metrics,
        })
    }

    /// Asks for the windows of every ACTIVE subscription this node dispatches; read
    /// once `run` starts, so start-up reads nothing of the backlog.
    pub fn recover(&self) {
        let subscriptions = self.store.subscriptions();
        let active = subscriptions
            .iter()
            .filter(|(id, s)| s.status == SubscriptionStatus::Active && self.store.dispatches(**id))
            .map(|(&id, _)| id);
        self.queues.read_all(active);
    }

    /// Reads the windows the queues ask for, many subscriptions per read transaction,
    /// until `shutdown`.
    async fn read_windows(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let reads = self.queues.reads(READS_PER_TRANSACTION);
            if reads.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.queues.reads_wanted() => {}
                }
                continue;
            }
            let subscriptions = self.store.subscriptions();
            let (active, inactive): (Vec<Read>, Vec<Read>) = reads.into_iter().partition(|r| {
                subscriptions
                    .get(r.window.subscription)
                    .is_some_and(|s| s.status == SubscriptionStatus::Active)
                    && self.store.dispatches(r.window.subscription)
            });
            for read in inactive {
                self.queues.fill(read, &[], false);
            }
            let asked = active.iter().map(|r| r.window).collect();
            match self.store.due_windows(asked).await {
                Ok(windows) => {
                    for (read, entries) in active.into_iter().zip(windows) {
                        self.queues.fill(read, &entries, true);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the due queue; trying again shortly");
                    self.queues.unfilled(active);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(STORE_ERROR_BACKOFF) => {}
                    }
                }
            }
        }
    }

    /// Runs until `shutdown`; attempts are spawned on `tracker` and abandoned (left due,
    /// to run again after restart) when `abandon` fires.
    pub async fn run(
        self: Arc<Self>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        abandon: CancellationToken,
    ) {
        tokio::spawn(self.clone().read_windows(shutdown.clone()));
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => return,
                permit = self.concurrency.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            // No attempt starts whose outcome could not be recorded: it would only be
            // sent again once the store is back.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.writable() => {}
            }
            let entry = loop {
                let subscriptions = self.store.subscriptions();
                let rate = |id| subscriptions.get(id).and_then(|s| s.rate_limit);
                let wait = match self.queues.next(now_ms(), rate) {
                    Next::Run(entry) => break entry,
                    Next::Wait(until) => {
                        until.map(|at| Duration::from_millis(at.saturating_sub(now_ms())))
                    }
                };
                let sleep = async {
                    match wait {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.queues.woken() => {}
                    _ = sleep => {}
                }
            };
            let this = self.clone();
            let abandon = abandon.clone();
            tracker.spawn(async move {
                let report = tokio::select! {
                    _ = abandon.cancelled() => None,
                    report = this.attempt(entry) => report,
                };
                // The endpoint's slot and the global permit are free once the exchange
                // is over; the delivery stays in flight (never picked again) until its
                // outcome is written, which the writer groups with others.
                this.queues.sent(&entry);
                drop(permit);
                if let Some(report) = report {
                    tokio::select! {
                        _ = abandon.cancelled() => {}
                        _ = this.record(entry, report) => {}
                    }
                }
                this.queues.finished(&entry);
            });
        }
    }

    /// A delivery's attempts so far and its input, or None when there is nothing to
    /// attempt now. A first attempt usually carries its input from ingest; anything
    /// else reads the delivery, and skips an entry superseded since it was queued.
    async fn input(&self, entry: DueEntry, now: u64) -> Option<(u32, AttemptInput)> {
        if let Some(fresh) = self.queues.take_fresh(entry.delivery) {
            return Some((0, fresh));
        }
        let delivery = match self.store.delivery(entry.delivery).await {
            Ok(found) => found?,
            Err(error) => {
                tracing::error!(delivery = %DeliveryId(entry.delivery), %error, "cannot read a due delivery");
                self.retry_later(entry);
                return None;
            }
        };
        let at = delivery
            .next_attempt_ms
            .filter(|_| !delivery.state.is_final() || delivery.retry_once)?;
        if at > now {
            return None;
        }
        let input = AttemptInput {
            event: delivery.event,
            created_ms: delivery.created_ms,
            body: self.queues.body(delivery.event),
        };
        Some((delivery.attempts, input))
    }

    /// The event's body from its slot, which the store fills once for every attempt
    /// waiting on it. None when the event no longer exists.
    async fn body(&self, slot: &Slot, event: u128) -> Result<Option<Bytes>, StoreError> {
        let body = slot
            .get_or_try_init(|| self.store.event_body(event))
            .await?;
        Ok(body.clone())
    }

    /// Makes one attempt; its outcome for the store, or None when there was nothing to
    /// attempt.
    async fn attempt(&self, entry: DueEntry) -> Option<AttemptReport> {
        let delivery_id = DeliveryId(entry.delivery);
        let now = now_ms();
        let (attempts, input) = self.input(entry, now).await?;
        // `input.body` is held until this attempt ends, so attempts of the same event
        // that start meanwhile share this copy rather than read their own.
        let (event, created_ms) = (input.event, input.created_ms);
        let body = match self.body(&input.body, event).await {
            Ok(Some(body)) => body,
            Ok(None) => return None,
            Err(error) => {
                tracing::error!(delivery = %delivery_id, %error, "cannot read a due delivery's event");
                self.retry_later(entry);
                return None;
            }
        };
        let subscriptions = self.store.subscriptions();
        let subscription = subscriptions.get(entry.subscription)?;
        if subscription.status != SubscriptionStatus::Active
            || !self.store.dispatches(entry.subscription)
        {
            // Paused after this entry was queued (it waits in the store), or its work
            // moved to another node.
            return None;
        }
        let subscription_id = SubscriptionId(entry.subscription);
        let event_id = EventId(event).to_string();
        let outcome = match Outgoing::for_subscription(
            &self.sealer,
            &subscription_id.to_string(),
            subscription,
            event_id,
            body,
            now,
        ) {
            Ok(outgoing) => {
                if let Some(per_second) = subscription.rate_limit.filter(|r| *r > 0) {
                    self.pace.wait(entry.subscription, per_second).await;
                }
                let started = std::time::Instant::now();
                let result =
                    delivery::attempt(&self.client, &self.tokens, &outgoing, self.timeout).await;
                let outcome = AttemptOutcome::of(result.status, result.timed_out);
                self.metrics.attempt(outcome, started.elapsed());
                result
            }
            Err(error) => {
                tracing::error!(subscription = %subscription_id, %error, "cannot open the subscription's secrets");
                delivery::AttemptResult {
                    record: AttemptRecord {
                        attempted_ms: now,
                        url: subscription.endpoint_url.clone(),
                        status: None,
                        error: Some(format!(
                            "hookd could not open this subscription's secrets: {error}"
                        )),
                        duration_ms: 0,
                        response_body: Vec::new(),
                        response_headers: Vec::new(),
                    },
                    request_headers: Vec::new(),
                    status: None,
                    timed_out: false,
                    retry_after: None,
                }
            }
        };
        let observed = Observed {
            status: outcome.status,
            timed_out: outcome.timed_out,
            retry_after: outcome.retry_after.as_deref(),
        };
        let next = schedule::next_step(
            &self.policy,
            &observed,
            attempts + 1,
            created_ms,
            now_ms(),
            self.unit_random(),
        );
        match next {
            NextStep::Succeeded => {
                tracing::debug!(delivery = %delivery_id, status = outcome.status, "delivered");
                self.failures.succeeded(entry.subscription);
            }
            _ => {
                tracing::debug!(
                    delivery = %delivery_id,
                    subscription = %subscription_id,
                    status = outcome.status,
                    error = outcome.record.error.as_deref(),
                    ?next,
                    "delivery attempt failed"
                );
                let error = outcome.record.error.as_deref();
                let exists = |id| subscriptions.get(id).is_some();
                self.failures
                    .failed(entry.subscription, outcome.status, error, exists);
            }
        }
        Some(AttemptReport {
            delivery: entry.delivery,
            attempt: outcome.record,
            request_headers: outcome.request_headers,
            next,
            gone: outcome.status == Some(410),
        })
    }

    /// Records an attempt's outcome. While the store cannot write (a failed write, a
    /// full disk) the outcome is kept and written once it can, so the endpoint is not
    /// sent the event again; only a shutdown meanwhile (the attempt is abandoned, its
    /// due entry stays) or another error leaves it to run again.
    async fn record(&self, entry: DueEntry, report: AttemptReport) {
        let delivery_id = DeliveryId(entry.delivery);
        loop {
            match self.store.record_attempt(report.clone()).await {
                Ok(()) => return,
                Err(error) if error.is_io() => {
                    tracing::debug!(delivery = %delivery_id, "outcome kept until the store writes again");
                    tokio::time::sleep(RECORD_RETRY).await;
                    self.writable().await;
                }
                Err(error) => {
                    tracing::error!(delivery = %delivery_id, %error, "cannot record an attempt; it will run again");
                    self.retry_later(entry);
                    return;
                }
            }
        }
    }

    /// Returns once the store is not faulted (at once when it is not).
    async fn writable(&self) {
        let mut state = self.store.health().watch();
        while *state.borrow_and_update() == StorageState::Faulted {
            if state.changed().await.is_err() {
                return;
            }
        }
    }

    /// After a store error: the store still holds the entry, so the subscription's
    /// window is read again from the store a little later (an entry put back in memory
    /// under another time could fall beyond the window's horizon and be dropped).
    fn retry_later(&self, entry: DueEntry) {
        let queues = self.queues.clone();
        tokio::spawn(async move {
            tokio::time::sleep(STORE_ERROR_BACKOFF).await;
            queues.forget(&[entry.subscription]);
        });
    }

    fn unit_random(&self) -> f64 {
        let mut bytes = [0u8; 8];
        if self.rng.fill(&mut bytes).is_err() {
            return 0.5;
        }
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    }
}
