//! The dispatcher's in-memory due queues: one queue per subscription plus a heap of the
//! subscriptions whose head is due soonest. A subscription at its concurrency limit is
//! not in that heap at all, so a slow or saturated endpoint is never rescanned and never
//! delays the others. Everything here mirrors the store's `due` table and can be rebuilt
//! from it; the in-flight set keeps one delivery from being attempted twice at once.
//! The bodies of queued and running deliveries are in `bodies.rs`, one per event.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::bodies::{AttemptInput, Bodies, Slot};
use crate::store::{DueEntry, DueSink, Fresh};

#[derive(Default)]
struct SubQueue {
    pending: BinaryHeap<Reverse<(u64, u128)>>,
    running: usize,
    /// The time under which this subscription sits in `ready`, if it does.
    listed: Option<u64>,
    /// With a `rateLimit`, the earliest time (Unix µs) its next delivery may start:
    /// deliveries are spread evenly at the rate, with no burst.
    not_before_us: u64,
}

#[derive(Default)]
struct State {
    subs: HashMap<u128, SubQueue>,
    /// (head due time, subscription); entries whose time no longer matches the
    /// subscription's `listed` are stale and skipped.
    ready: BinaryHeap<Reverse<(u64, u128)>>,
    in_flight: HashSet<u128>,
    /// Entries that came due while their delivery was still in flight (a retry due
    /// before its attempt finished, a manual retry): queued again when it ends.
    deferred: HashMap<u128, DueEntry>,
}

pub struct Queues {
    state: Mutex<State>,
    bodies: Bodies,
    wake: Notify,
    per_endpoint: usize,
}

/// What the dispatcher should do next.
pub enum Next {
    Run(DueEntry),
    /// Nothing is due before this time (Unix ms), or nothing at all.
    Wait(Option<u64>),
}

impl Queues {
    pub fn new(per_endpoint: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            bodies: Bodies::default(),
            wake: Notify::new(),
            per_endpoint: per_endpoint.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves consistent-enough state: every field is
        // a cache of the store, rebuilt at the next start.
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    pub fn push(&self, entries: impl IntoIterator<Item = DueEntry>) {
        let mut state = self.lock();
        for entry in entries {
            state
                .subs
                .entry(entry.subscription)
                .or_default()
                .pending
                .push(Reverse((entry.due_ms, entry.delivery)));
            relist(&mut state, entry.subscription, self.per_endpoint);
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Takes the next delivery that may run now, marking it running. `rate` gives a
    /// subscription's `rateLimit` (deliveries per second), if it has one.
    pub fn next(&self, now_ms: u64, rate: impl Fn(u128) -> Option<u32>) -> Next {
        let mut state = self.lock();
        loop {
            let Some(&Reverse((due, sub))) = state.ready.peek() else {
                return Next::Wait(None);
            };
            if due > now_ms {
                return Next::Wait(Some(due));
            }
            state.ready.pop();
            let per_endpoint = self.per_endpoint;
            let State {
                subs, in_flight, ..
            } = &mut *state;
            let Some(queue) = subs.get_mut(&sub) else {
                continue;
            };
            if queue.listed != Some(due) {
                continue;
            }
            queue.listed = None;
            if queue.running >= per_endpoint {
                continue;
            }
            if queue.not_before_us > now_ms * 1000 {
                // Rate-limited: back in `ready` when it may send again.
                relist(&mut state, sub, per_endpoint);
                continue;
            }
            let Some(Reverse((due_ms, delivery))) = queue.pending.pop() else {
                continue;
            };
            if let Some(per_second) = rate(sub).filter(|r| *r > 0) {
                let start = queue.not_before_us.max(now_ms * 1000);
                queue.not_before_us = start + 1_000_000 / u64::from(per_second);
            }
            if !in_flight.insert(delivery) {
                // Being attempted right now: run this entry once that attempt ends.
                let entry = DueEntry {
                    due_ms,
                    delivery,
                    subscription: sub,
                };
                state.deferred.insert(delivery, entry);
                relist(&mut state, sub, per_endpoint);
                continue;
            }
            queue.running += 1;
            relist(&mut state, sub, per_endpoint);
            return Next::Run(DueEntry {
                due_ms,
                delivery,
                subscription: sub,
            });
        }
    }

    /// The input handed over at ingest, if it is still held.
    pub fn take_fresh(&self, delivery: u128) -> Option<AttemptInput> {
        self.bodies.take_fresh(delivery)
    }

    /// The slot of an event's body, shared with every delivery of the event that holds
    /// it now; empty when none does (the attempt then reads the body into it).
    pub fn body(&self, event: u128) -> Arc<Slot> {
        self.bodies.slot(event)
    }

    /// An attempt started by `next` has ended.
    pub fn finished(&self, entry: &DueEntry) {
        let mut state = self.lock();
        state.in_flight.remove(&entry.delivery);
        if let Some(deferred) = state.deferred.remove(&entry.delivery) {
            state
                .subs
                .entry(deferred.subscription)
                .or_default()
                .pending
                .push(Reverse((deferred.due_ms, deferred.delivery)));
        }
        if let Some(queue) = state.subs.get_mut(&entry.subscription) {
            queue.running = queue.running.saturating_sub(1);
            if queue.running == 0 && queue.pending.is_empty() {
                state.subs.remove(&entry.subscription);
            } else {
                relist(&mut state, entry.subscription, self.per_endpoint);
            }
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Deliveries waiting in memory, for metrics and tests.
    pub fn waiting(&self) -> usize {
        self.lock().subs.values().map(|q| q.pending.len()).sum()
    }

    /// Depth and age of the queues for `/metrics`: one pass over the subscriptions (not
    /// the deliveries), since each queue's head is its oldest entry.
    pub fn stats(&self, now_ms: u64) -> QueueStats {
        let state = self.lock();
        let mut stats = QueueStats {
            in_flight: state.in_flight.len(),
            ..QueueStats::default()
        };
        for queue in state.subs.values() {
            stats.waiting += queue.pending.len();
            if let Some(&Reverse((due, _))) = queue.pending.peek() {
                if due <= now_ms && stats.oldest_due_ms.is_none_or(|oldest| due < oldest) {
                    stats.oldest_due_ms = Some(due);
                }
            }
        }
        stats
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub waiting: usize,
    pub in_flight: usize,
    /// The due time of the delivery that has been due longest, if any is due.
    pub oldest_due_ms: Option<u64>,
}

/// Puts a subscription into `ready` under its head's due time when it may run more.
fn relist(state: &mut State, sub: u128, per_endpoint: usize) {
    let Some(queue) = state.subs.get_mut(&sub) else {
        return;
    };
    if queue.running >= per_endpoint {
        return;
    }
    let Some(&Reverse((head, _))) = queue.pending.peek() else {
        return;
    };
    let eligible = head.max(queue.not_before_us.div_ceil(1000));
    if queue.listed.is_none_or(|listed| eligible < listed) {
        queue.listed = Some(eligible);
        state.ready.push(Reverse((eligible, sub)));
    }
}

impl DueSink for Queues {
    fn schedule(&self, entries: Vec<DueEntry>, fresh: Vec<Fresh>) {
        if !fresh.is_empty() {
            self.bodies.keep_fresh(fresh);
        }
        self.push(entries);
    }

    fn forget(&self, ids: &[u128]) {
        let mut state = self.lock();
        let mut dropped = Vec::new();
        for id in ids {
            let Some(queue) = state.subs.get_mut(id) else {
                continue;
            };
            dropped.extend(queue.pending.drain().map(|Reverse((_, d))| d));
            queue.listed = None;
        }
        drop(state);
        self.bodies.drop_fresh(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(due_ms: u64, delivery: u128, subscription: u128) -> DueEntry {
        DueEntry {
            due_ms,
            delivery,
            subscription,
        }
    }

    fn run(q: &Queues, now: u64) -> Option<DueEntry> {
        run_limited(q, now, None)
    }

    fn run_limited(q: &Queues, now: u64, rate: Option<u32>) -> Option<DueEntry> {
        match q.next(now, |_| rate) {
            Next::Run(e) => Some(e),
            Next::Wait(_) => None,
        }
    }

    #[test]
    fn hands_out_due_entries_in_time_order_and_reports_the_next_wake() {
        let q = Queues::new(4);
        q.push([entry(30, 3, 1), entry(10, 1, 1), entry(20, 2, 2)]);
        assert_eq!(run(&q, 100).map(|e| e.delivery), Some(1));
        assert_eq!(run(&q, 100).map(|e| e.delivery), Some(2));
        assert_eq!(run(&q, 100).map(|e| e.delivery), Some(3));
        q.push([entry(500, 4, 2)]);
        assert!(matches!(q.next(100, |_| None), Next::Wait(Some(500))));
    }

    #[test]
    fn a_saturated_subscription_does_not_block_another() {
        let q = Queues::new(1);
        q.push([entry(1, 10, 1), entry(2, 11, 1), entry(3, 20, 2)]);
        let first = run(&q, 100).unwrap();
        assert_eq!(first.delivery, 10);
        // Subscription 1 is at its limit: 11 waits, 20 runs.
        assert_eq!(run(&q, 100).map(|e| e.delivery), Some(20));
        assert!(run(&q, 100).is_none());
        q.finished(&first);
        assert_eq!(run(&q, 100).map(|e| e.delivery), Some(11));
    }

    #[test]
    fn a_rate_limit_spreads_deliveries_evenly() {
        let q = Queues::new(16);
        q.push((0..4).map(|d| entry(0, d, 1)));
        // 4 per second: one every 250 ms, whatever is due.
        let first = run_limited(&q, 1000, Some(4)).unwrap();
        assert!(run_limited(&q, 1000, Some(4)).is_none());
        assert!(matches!(q.next(1000, |_| Some(4)), Next::Wait(Some(1250))));
        q.finished(&first);
        assert!(run_limited(&q, 1249, Some(4)).is_none());
        assert!(run_limited(&q, 1250, Some(4)).is_some());
        assert!(run_limited(&q, 1499, Some(4)).is_none());
        assert!(run_limited(&q, 1500, Some(4)).is_some());
    }

    #[test]
    fn forgetting_a_subscription_lets_go_of_its_fresh_payloads() {
        let q = Queues::new(4);
        let fresh = |delivery| Fresh {
            delivery,
            event: delivery,
            created_ms: 0,
            body: bytes::Bytes::from_static(b"{}"),
        };
        q.schedule(
            vec![entry(1, 10, 1), entry(1, 11, 2)],
            vec![fresh(10), fresh(11)],
        );
        q.forget(&[2]);
        assert!(q.take_fresh(11).is_none());
        assert!(q.take_fresh(10).is_some());
    }

    #[test]
    fn stats_count_waiting_and_running_and_find_the_oldest_due() {
        let q = Queues::new(1);
        q.push([
            entry(50, 1, 1),
            entry(70, 2, 1),
            entry(40, 3, 2),
            entry(500, 4, 3),
        ]);
        let running = run(&q, 100).unwrap();
        assert_eq!(running.delivery, 3);
        let stats = q.stats(100);
        assert_eq!((stats.waiting, stats.in_flight), (3, 1));
        assert_eq!(stats.oldest_due_ms, Some(50));
        assert_eq!(q.stats(10).oldest_due_ms, None);
    }

    #[test]
    fn a_delivery_is_never_handed_out_twice_at_once_but_its_next_entry_is_kept() {
        let q = Queues::new(4);
        q.push([entry(1, 7, 1)]);
        let first = run(&q, 100).unwrap();
        // Its retry comes due before the attempt has finished.
        q.push([entry(2, 7, 1)]);
        assert!(run(&q, 100).is_none());
        q.finished(&first);
        assert_eq!(run(&q, 100).map(|e| (e.due_ms, e.delivery)), Some((2, 7)));
    }
}
