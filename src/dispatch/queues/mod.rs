//! The dispatcher's in-memory view of the due queue: for each ACTIVE subscription, a
//! bounded window of its soonest entries, plus a heap of the subscriptions whose head is
//! due soonest. A subscription at its concurrency limit is not in that heap at all, so a
//! slow or saturated endpoint is never rescanned and never delays the others.
//!
//! The store's due queue is keyed by subscription, and a window is one range of it: read
//! when the subscription is first seen or resumed, topped up from where the last read
//! stopped (its horizon) when it runs low, and fed directly by the writer after each
//! commit for entries at or before the horizon. So memory holds at most `WINDOW_BUDGET`
//! entries whatever the backlog, start-up reads nothing until the dispatcher runs, and a
//! paused subscription costs nothing here. Everything mirrors the store and is rebuilt
//! from it; the in-flight set keeps one delivery from being attempted twice at once.
//! The bodies of queued and running deliveries are in `bodies.rs`, one per event.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::bodies::{AttemptInput, Bodies, Slot};
use crate::store::{DueEntry, DueSink, Fresh, WindowRead};

/// Entries held in memory across every window (about 40 bytes each).
const WINDOW_BUDGET: usize = 1 << 16;
/// A window never holds more than this, however few subscriptions share the budget...
const MAX_WINDOW: usize = 1024;
/// ...nor is it made smaller than this, however many do.
const MIN_WINDOW: usize = 16;

/// How much of a subscription's due queue its window covers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Horizon {
    /// Nothing read yet.
    #[default]
    Unread,
    /// Every entry at or before this key is in the window, in flight or gone.
    Upto((u64, u128)),
    /// The window is the subscription's whole queue.
    All,
}

#[derive(Default)]
struct SubQueue {
    window: BTreeSet<(u64, u128)>,
    horizon: Horizon,
    /// A read of the due queue for it is asked for or outstanding: entries the writer
    /// tells of meanwhile are all kept, and the read's answer decides the horizon.
    loading: bool,
    /// The window dropped an entry while `loading`, so the read's answer cannot say the
    /// window is complete.
    dropped: bool,
    /// Which read an answer belongs to: `forget` starts a new one.
    epoch: u64,
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
    /// Subscriptions whose window needs a read, in the order asked.
    to_read: VecDeque<u128>,
    epochs: u64,
}

pub struct Queues {
    state: Mutex<State>,
    bodies: Bodies,
    wake: Notify,
    /// Told when a window needs a read.
    read_wake: Notify,
    per_endpoint: usize,
}

/// What the dispatcher should do next.
pub enum Next {
    Run(DueEntry),
    /// Nothing is due before this time (Unix ms), or nothing at all.
    Wait(Option<u64>),
}

/// A read of one subscription's due queue the dispatcher should make, answered with
/// `Queues::fill`; the epoch tells an answer to a superseded read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub window: WindowRead,
    epoch: u64,
}

impl Queues {
    pub fn new(per_endpoint: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            bodies: Bodies::default(),
            wake: Notify::new(),
            read_wake: Notify::new(),
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

    /// Returns when a window may need a read (see `reads`).
    pub async fn reads_wanted(&self) {
        self.read_wake.notified().await;
    }

    /// Tells the reader when a read was asked for; call before letting go of the lock.
    fn tell_reader(&self, state: &State) {
        if !state.to_read.is_empty() {
            self.read_wake.notify_one();
        }
    }

    /// Reads that could not be made (the store failed): asked for again.
    pub fn unfilled(&self, reads: Vec<Read>) {
        let mut state = self.lock();
        for read in reads {
            let current = state
                .subs
                .get(&read.window.subscription)
                .is_some_and(|q| q.loading && q.epoch == read.epoch);
            if current {
                state.to_read.push_back(read.window.subscription);
            }
        }
        self.tell_reader(&state);
    }

    /// Asks for these subscriptions' windows to be read (at start, for every ACTIVE one).
    pub fn read_all(&self, subscriptions: impl IntoIterator<Item = u128>) {
        let mut state = self.lock();
        for id in subscriptions {
            ask_read(&mut state, id);
        }
        self.tell_reader(&state);
        drop(state);
        self.wake.notify_one();
    }

    /// Entries the writer made due, or the dispatcher put back.
    pub fn push(&self, entries: impl IntoIterator<Item = DueEntry>) {
        let mut state = self.lock();
        let mut dropped = Vec::new();
        for entry in entries {
            let key = (entry.due_ms, entry.delivery);
            let budget = cap(state.subs.len());
            let queue = state.subs.entry(entry.subscription).or_default();
            let keep = match queue.horizon {
                _ if queue.loading => true,
                Horizon::All => true,
                Horizon::Upto(horizon) => key <= horizon,
                Horizon::Unread => false,
            };
            if keep {
                queue.window.insert(key);
                trim(queue, budget, &mut dropped);
            } else if queue.window.is_empty() {
                // Beyond what was read: in the store, read when the window runs dry.
                ask_read(&mut state, entry.subscription);
            }
            relist(&mut state, entry.subscription, self.per_endpoint);
        }
        self.tell_reader(&state);
        drop(state);
        self.bodies.drop_fresh(dropped);
        self.wake.notify_one();
    }

    /// The reads the dispatcher should make now, at most `max`.
    pub fn reads(&self, max: usize) -> Vec<Read> {
        let mut state = self.lock();
        let limit = cap(state.subs.len());
        let mut out = Vec::new();
        while out.len() < max {
            let Some(id) = state.to_read.pop_front() else {
                break;
            };
            let Some(queue) = state.subs.get(&id) else {
                continue;
            };
            let after = match queue.horizon {
                Horizon::Unread => None,
                Horizon::Upto(key) => Some(key),
                Horizon::All => continue,
            };
            out.push(Read {
                window: WindowRead {
                    subscription: id,
                    after,
                    limit,
                },
                epoch: queue.epoch,
            });
        }
        out
    }

    /// The answer to a read (`entries` in key order; empty for a subscription that is
    /// not ACTIVE, whose window then stays unread).
    pub fn fill(&self, read: Read, entries: &[DueEntry], active: bool) {
        let mut state = self.lock();
        let budget = cap(state.subs.len());
        let mut dropped = Vec::new();
        let Some(queue) = state.subs.get_mut(&read.window.subscription) else {
            return;
        };
        if queue.epoch != read.epoch || !queue.loading {
            return;
        }
        queue.loading = false;
        if !active {
            queue.window.clear();
            queue.horizon = Horizon::Unread;
            queue.dropped = false;
            forget_if_idle(&mut state, read.window.subscription);
            return;
        }
        queue
            .window
            .extend(entries.iter().map(|e| (e.due_ms, e.delivery)));
        let last = entries.last().map(|e| (e.due_ms, e.delivery));
        queue.horizon = if entries.len() < read.window.limit && !queue.dropped {
            Horizon::All
        } else {
            match (last, queue.horizon) {
                (Some(key), _) => Horizon::Upto(key),
                (None, Horizon::Unread) => Horizon::Upto((0, 0)),
                (None, horizon) => horizon,
            }
        };
        queue.dropped = false;
        if let Horizon::Upto(horizon) = queue.horizon {
            // Told of while reading but beyond what the read covered: read again later.
            while queue.window.last().is_some_and(|&key| key > horizon) {
                queue.window.pop_last();
            }
        }
        trim(queue, budget, &mut dropped);
        let low = queue.window.len() <= budget / 2 && queue.horizon != Horizon::All;
        if low {
            ask_read(&mut state, read.window.subscription);
        }
        relist(&mut state, read.window.subscription, self.per_endpoint);
        self.tell_reader(&state);
        drop(state);
        self.bodies.drop_fresh(dropped);
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
            let budget = cap(state.subs.len());
            let State {
                subs,
                in_flight,
                deferred,
                ..
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
            let Some((due_ms, delivery)) = queue.window.pop_first() else {
                continue;
            };
            if let Some(per_second) = rate(sub).filter(|r| *r > 0) {
                let start = queue.not_before_us.max(now_ms * 1000);
                queue.not_before_us = start + 1_000_000 / u64::from(per_second);
            }
            let entry = DueEntry {
                due_ms,
                delivery,
                subscription: sub,
            };
            let run = in_flight.insert(delivery);
            if run {
                queue.running += 1;
            } else {
                // Being attempted right now: run this entry once that attempt ends.
                deferred.insert(delivery, entry);
            }
            let low = queue.window.len() <= budget / 2
                && !queue.loading
                && matches!(queue.horizon, Horizon::Upto(_));
            if low {
                ask_read(&mut state, sub);
                self.tell_reader(&state);
            }
            relist(&mut state, sub, per_endpoint);
            if run {
                return Next::Run(entry);
            }
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

    /// The exchange of an attempt started by `next` is over: its endpoint may take
    /// another. The delivery stays in flight until `finished`.
    pub fn sent(&self, entry: &DueEntry) {
        let mut state = self.lock();
        if let Some(queue) = state.subs.get_mut(&entry.subscription) {
            queue.running = queue.running.saturating_sub(1);
        }
        relist(&mut state, entry.subscription, self.per_endpoint);
        drop(state);
        self.wake.notify_one();
    }

    /// The outcome of an attempt started by `next` is written (or abandoned).
    pub fn finished(&self, entry: &DueEntry) {
        let mut state = self.lock();
        state.in_flight.remove(&entry.delivery);
        if let Some(deferred) = state.deferred.remove(&entry.delivery) {
            state
                .subs
                .entry(deferred.subscription)
                .or_default()
                .window
                .insert((deferred.due_ms, deferred.delivery));
        }
        forget_if_idle(&mut state, entry.subscription);
        relist(&mut state, entry.subscription, self.per_endpoint);
        drop(state);
        self.wake.notify_one();
    }

    /// Deliveries waiting in memory, for tests.
    pub fn waiting(&self) -> usize {
        self.lock().subs.values().map(|q| q.window.len()).sum()
    }

    /// For `/metrics`: deliveries in flight and how long the longest-waiting one has been
    /// due, in one pass over the subscriptions (each window's head is its oldest entry).
    pub fn stats(&self, now_ms: u64) -> QueueStats {
        let state = self.lock();
        let mut stats = QueueStats {
            in_flight: state.in_flight.len(),
            ..QueueStats::default()
        };
        for queue in state.subs.values() {
            stats.waiting += queue.window.len();
            if let Some(&(due, _)) = queue.window.first() {
                if due <= now_ms && stats.oldest_due_ms.is_none_or(|oldest| due < oldest) {
                    stats.oldest_due_ms = Some(due);
                }
            }
        }
        stats
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Entries held in memory (at most `WINDOW_BUDGET`; the store has the backlog).
    pub waiting: usize,
    pub in_flight: usize,
    /// The due time of the delivery that has been due longest, if any is due.
    pub oldest_due_ms: Option<u64>,
}

/// The window size when `subscriptions` share the budget.
fn cap(subscriptions: usize) -> usize {
    (WINDOW_BUDGET / subscriptions.max(1)).clamp(MIN_WINDOW, MAX_WINDOW)
}

/// Keeps a window within `cap` by dropping its latest entries (they stay in the store,
/// beyond the lowered horizon); their fresh payloads go into `dropped`.
fn trim(queue: &mut SubQueue, cap: usize, dropped: &mut Vec<u128>) {
    while queue.window.len() > cap {
        let Some((_, delivery)) = queue.window.pop_last() else {
            break;
        };
        dropped.push(delivery);
        if queue.loading {
            queue.dropped = true;
        }
        if let Some(&last) = queue.window.last() {
            queue.horizon = match queue.horizon {
                Horizon::Upto(horizon) if horizon < last => Horizon::Upto(horizon),
                Horizon::Unread => Horizon::Unread,
                _ => Horizon::Upto(last),
            };
        }
    }
}

/// Queues a read of a subscription's window unless one is already asked for.
fn ask_read(state: &mut State, id: u128) {
    state.epochs += 1;
    let epoch = state.epochs;
    let queue = state.subs.entry(id).or_default();
    if queue.loading || queue.horizon == Horizon::All {
        return;
    }
    queue.loading = true;
    queue.epoch = epoch;
    state.to_read.push_back(id);
}

/// Drops the entry of a subscription found not ACTIVE (or deleted) once nothing of it
/// runs. An ACTIVE one keeps its (small) entry while idle, so the next entry the writer
/// tells of goes straight into its window with no read.
fn forget_if_idle(state: &mut State, id: u128) {
    let idle = state.subs.get(&id).is_some_and(|q| {
        q.running == 0 && q.window.is_empty() && !q.loading && q.horizon == Horizon::Unread
    });
    if idle {
        state.subs.remove(&id);
    }
}

/// Puts a subscription into `ready` under its head's due time when it may run more.
fn relist(state: &mut State, sub: u128, per_endpoint: usize) {
    let Some(queue) = state.subs.get_mut(&sub) else {
        return;
    };
    if queue.running >= per_endpoint {
        return;
    }
    let Some(&(head, _)) = queue.window.first() else {
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
        for &id in ids {
            let Some(queue) = state.subs.get_mut(&id) else {
                ask_read(&mut state, id);
                continue;
            };
            dropped.extend(
                std::mem::take(&mut queue.window)
                    .into_iter()
                    .map(|(_, d)| d),
            );
            queue.horizon = Horizon::Unread;
            queue.listed = None;
            queue.loading = false;
            queue.dropped = false;
            // Read again; the read finds nothing to do for one that is not ACTIVE.
            ask_read(&mut state, id);
        }
        self.tell_reader(&state);
        drop(state);
        self.bodies.drop_fresh(dropped);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests;
