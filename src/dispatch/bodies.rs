//! Event bodies for delivery attempts, each in memory once per event whatever the
//! fan-out. Bodies enter from ingest with the deliveries just created (`keep_fresh`,
//! within `FRESH_BUDGET`) or from one store read per event into a shared slot (`slot`,
//! filled by `Dispatcher::body`); every attempt of the event in progress uses that one
//! copy, whether its delivery came fresh or from the store. A body leaves memory when
//! the last fresh delivery and the last attempt holding it let go: the map of slots
//! only refers to bodies in use, it does not keep them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::store::Fresh;

/// Bytes of event bodies held for first attempts, each body counted once however many
/// deliveries it has. Past this, first attempts read their event from the store like
/// retries do: memory stays bounded under a backlog.
const FRESH_BUDGET: usize = 4 << 20;
/// Dead slots are swept once the map has grown this much past its last sweep, so a
/// sweep costs O(1) per new slot and the map stays within twice the bodies in use.
const MIN_SWEEP: usize = 64;

/// One event's body, filled once: by ingest, or by the first attempt that reads it while
/// the others wait for that read. `None` is an event that no longer exists (purged).
pub type Slot = OnceCell<Option<Bytes>>;

/// What an attempt needs besides its subscription: from ingest for a first attempt,
/// from the delivery record (and a slot the body is read into) otherwise.
pub struct AttemptInput {
    pub event: u128,
    pub created_ms: u64,
    pub body: Arc<Slot>,
}

#[derive(Default)]
pub struct Bodies {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// By event id; a slot lives while an attempt or `held` holds it.
    slots: HashMap<u128, Weak<Slot>>,
    sweep_at: usize,
    /// Deliveries not yet attempted whose input came with them from ingest.
    fresh: HashMap<u128, Pending>,
    /// The bodies of their events, by event id, with how many of them need each.
    held: HashMap<u128, Held>,
    /// The size of the bodies in `held`.
    fresh_bytes: usize,
}

/// A first attempt's input kept from ingest (its body is in `held`).
struct Pending {
    event: u128,
    created_ms: u64,
}

struct Held {
    body: Arc<Slot>,
    size: usize,
    deliveries: usize,
}

impl Bodies {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Everything here is a cache of the store: a poisoned lock's state is usable.
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The slot of `event`'s body: the one in use if any, else a new empty one.
    pub fn slot(&self, event: u128) -> Arc<Slot> {
        self.lock().slot(event)
    }

    /// Holds the input of first attempts, within `FRESH_BUDGET`: all the deliveries of
    /// an event whose body fits, none of one whose body does not.
    pub fn keep_fresh(&self, fresh: Vec<Fresh>) {
        let mut state = self.lock();
        for item in fresh {
            let size = item.body.len();
            if !state.held.contains_key(&item.event) {
                if state.fresh_bytes + size > FRESH_BUDGET {
                    continue;
                }
                let body = state.share(item.event, item.body);
                state.fresh_bytes += size;
                let held = Held {
                    body,
                    size,
                    deliveries: 0,
                };
                state.held.insert(item.event, held);
            }
            let first = Pending {
                event: item.event,
                created_ms: item.created_ms,
            };
            // A delivery belongs to one event, so a repeat changes no count.
            if state.fresh.insert(item.delivery, first).is_none() {
                if let Some(held) = state.held.get_mut(&item.event) {
                    held.deliveries += 1;
                }
            }
        }
    }

    /// The input handed over at ingest, if it is still held.
    pub fn take_fresh(&self, delivery: u128) -> Option<AttemptInput> {
        let mut state = self.lock();
        let Pending { event, created_ms } = state.fresh.remove(&delivery)?;
        let body = state.release(event)?;
        Some(AttemptInput {
            event,
            created_ms,
            body,
        })
    }

    /// Lets go of what is held for these deliveries (no longer queued).
    pub fn drop_fresh(&self, deliveries: impl IntoIterator<Item = u128>) {
        let mut state = self.lock();
        for delivery in deliveries {
            if let Some(first) = state.fresh.remove(&delivery) {
                state.release(first.event);
            }
        }
    }
}

impl State {
    fn slot(&mut self, event: u128) -> Arc<Slot> {
        if let Some(slot) = self.slots.get(&event).and_then(Weak::upgrade) {
            return slot;
        }
        let slot = Arc::new(Slot::new());
        self.slots.insert(event, Arc::downgrade(&slot));
        if self.slots.len() >= self.sweep_at {
            self.slots.retain(|_, slot| slot.strong_count() > 0);
            self.sweep_at = (self.slots.len() * 2).max(MIN_SWEEP);
        }
        slot
    }

    /// The slot of a body handed over at ingest. When the event's body is already in
    /// use, that copy is kept and `body` dropped.
    fn share(&mut self, event: u128, body: Bytes) -> Arc<Slot> {
        let slot = self.slot(event);
        // An attempt may be reading it from the store right now: then `set` fails and
        // that read fills the slot.
        let _ = slot.set(Some(body));
        slot
    }

    /// One delivery of `event` no longer needs its body kept: the body leaves `held`
    /// with the last one (attempts still running keep their own hold on it).
    fn release(&mut self, event: u128) -> Option<Arc<Slot>> {
        let held = self.held.get_mut(&event)?;
        let body = held.body.clone();
        held.deliveries -= 1;
        if held.deliveries == 0 {
            self.fresh_bytes -= held.size;
            self.held.remove(&event);
        }
        Some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(delivery: u128, event: u128, size: usize) -> Fresh {
        Fresh {
            delivery,
            event,
            created_ms: 0,
            body: Bytes::from(vec![0u8; size]),
        }
    }

    #[test]
    fn fresh_payloads_are_bounded_and_released() {
        let bodies = Bodies::default();
        let size = FRESH_BUDGET / 2 + 1;
        bodies.keep_fresh(vec![fresh(10, 1, size), fresh(11, 2, size)]);
        assert!(bodies.take_fresh(10).is_some());
        assert!(
            bodies.take_fresh(11).is_none(),
            "the second event's body was over the budget"
        );
        bodies.keep_fresh(vec![fresh(12, 3, size)]);
        bodies.drop_fresh([12]);
        assert_eq!(bodies.lock().fresh_bytes, 0);
        assert!(bodies.take_fresh(12).is_none());
    }

    #[test]
    fn the_deliveries_of_one_event_share_its_body_and_count_it_once() {
        let bodies = Bodies::default();
        let size = 1000;
        bodies.keep_fresh((10..110).map(|d| fresh(d, 7, size)).collect());
        assert_eq!(bodies.lock().fresh_bytes, size);
        let first = bodies.take_fresh(10).unwrap();
        let last = bodies.take_fresh(109).unwrap();
        assert!(Arc::ptr_eq(&first.body, &last.body));
        assert!(
            Arc::ptr_eq(&first.body, &bodies.slot(7)),
            "an attempt reading the event from the store finds the body held"
        );
        bodies.drop_fresh(11..109);
        assert_eq!(bodies.lock().fresh_bytes, 0, "released with the last one");
        assert!(
            Arc::ptr_eq(&first.body, &bodies.slot(7)),
            "still held by attempts"
        );
        drop((first, last));
        assert!(
            bodies.slot(7).get().is_none(),
            "a released body is read again"
        );
    }

    #[test]
    fn a_body_read_by_an_attempt_is_the_one_ingest_shares() {
        let bodies = Bodies::default();
        let reading = bodies.slot(5);
        reading.set(Some(Bytes::from_static(b"read"))).unwrap();
        bodies.keep_fresh(vec![Fresh {
            delivery: 1,
            event: 5,
            created_ms: 0,
            body: Bytes::from_static(b"fresh"),
        }]);
        let first = bodies.take_fresh(1).unwrap();
        assert!(Arc::ptr_eq(&first.body, &reading));
    }

    #[test]
    fn slots_no_longer_in_use_are_swept() {
        let bodies = Bodies::default();
        let kept = bodies.slot(0);
        for event in 1..=(4 * MIN_SWEEP as u128) {
            drop(bodies.slot(event));
        }
        assert!(bodies.lock().slots.len() <= MIN_SWEEP);
        assert!(Arc::ptr_eq(&kept, &bodies.slot(0)));
    }
}
