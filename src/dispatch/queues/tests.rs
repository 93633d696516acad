//! The queues' rules, each on its own: time order, isolation of a saturated or
//! rate-limited subscription, windows read from the store and bounded, pause and resume.

use super::*;

fn entry(due_ms: u64, delivery: u128, subscription: u128) -> DueEntry {
    DueEntry {
        due_ms,
        delivery,
        subscription,
    }
}

/// Queues whose subscriptions have been read and found empty: what the writer tells
/// of goes straight into their windows.
fn queues(per_endpoint: usize, subscriptions: &[u128]) -> Queues {
    let q = Queues::new(per_endpoint);
    q.read_all(subscriptions.iter().copied());
    for read in q.reads(usize::MAX) {
        q.fill(read, &[], true);
    }
    q
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
    let q = queues(4, &[1, 2]);
    q.push([entry(30, 3, 1), entry(10, 1, 1), entry(20, 2, 2)]);
    assert_eq!(run(&q, 100).map(|e| e.delivery), Some(1));
    assert_eq!(run(&q, 100).map(|e| e.delivery), Some(2));
    assert_eq!(run(&q, 100).map(|e| e.delivery), Some(3));
    q.push([entry(500, 4, 2)]);
    assert!(matches!(q.next(100, |_| None), Next::Wait(Some(500))));
}

#[test]
fn a_saturated_subscription_does_not_block_another() {
    let q = queues(1, &[1, 2]);
    q.push([entry(1, 10, 1), entry(2, 11, 1), entry(3, 20, 2)]);
    let first = run(&q, 100).unwrap();
    assert_eq!(first.delivery, 10);
    // Subscription 1 is at its limit: 11 waits, 20 runs.
    assert_eq!(run(&q, 100).map(|e| e.delivery), Some(20));
    assert!(run(&q, 100).is_none());
    q.sent(&first);
    q.finished(&first);
    assert_eq!(run(&q, 100).map(|e| e.delivery), Some(11));
}

#[test]
fn a_rate_limit_spreads_deliveries_evenly() {
    let q = queues(16, &[1]);
    q.push((0..4).map(|d| entry(0, d, 1)));
    // 4 per second: one every 250 ms, whatever is due.
    let first = run_limited(&q, 1000, Some(4)).unwrap();
    assert!(run_limited(&q, 1000, Some(4)).is_none());
    assert!(matches!(q.next(1000, |_| Some(4)), Next::Wait(Some(1250))));
    q.sent(&first);
    q.finished(&first);
    assert!(run_limited(&q, 1249, Some(4)).is_none());
    assert!(run_limited(&q, 1250, Some(4)).is_some());
    assert!(run_limited(&q, 1499, Some(4)).is_none());
    assert!(run_limited(&q, 1500, Some(4)).is_some());
}

#[test]
fn forgetting_a_subscription_lets_go_of_its_fresh_payloads() {
    let q = queues(4, &[1, 2]);
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
    let q = queues(1, &[1, 2, 3]);
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
    let q = queues(4, &[1]);
    q.push([entry(1, 7, 1)]);
    let first = run(&q, 100).unwrap();
    // Its retry comes due before the attempt has finished.
    q.push([entry(2, 7, 1)]);
    assert!(run(&q, 100).is_none());
    q.sent(&first);
    q.finished(&first);
    assert_eq!(run(&q, 100).map(|e| (e.due_ms, e.delivery)), Some((2, 7)));
}

#[test]
fn a_window_is_read_from_the_store_and_topped_up_as_it_runs_low() {
    let q = Queues::new(1024);
    q.read_all([1]);
    let first = q.reads(8);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].window.after, None);
    let limit = first[0].window.limit;
    assert_eq!(limit, MAX_WINDOW);
    // A full answer: more may be in the store, beyond the last key read.
    let backlog: Vec<DueEntry> = (0..limit as u128).map(|d| entry(5, d, 1)).collect();
    q.fill(first[0], &backlog, true);
    assert!(q.reads(8).is_empty(), "a full window needs no read");
    // Told of an entry beyond what was read: left in the store.
    q.push([entry(9, 5000, 1)]);
    assert_eq!(q.waiting(), limit);
    // Running half the window asks for the next part, after the last key read.
    for _ in 0..limit / 2 {
        let e = run(&q, 100).unwrap();
        q.sent(&e);
        q.finished(&e);
    }
    let more = q.reads(8);
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].window.after, Some((5, limit as u128 - 1)));
    // A short answer: the window now holds the whole queue, and entries told of
    // from then on go straight into it.
    q.fill(more[0], &[entry(9, 5000, 1)], true);
    q.push([entry(10, 5001, 1)]);
    assert_eq!(q.waiting(), limit / 2 + 2);
    assert!(q.reads(8).is_empty());
}

#[test]
fn entries_told_of_while_a_read_is_out_are_kept() {
    let q = Queues::new(4);
    q.read_all([1]);
    let read = q.reads(8)[0];
    // Committed after the read's snapshot: the read does not see it.
    q.push([entry(7, 70, 1)]);
    q.fill(read, &[entry(5, 50, 1)], true);
    assert_eq!(run(&q, 100).map(|e| e.delivery), Some(50));
    assert_eq!(run(&q, 100).map(|e| e.delivery), Some(70));
}

#[test]
fn memory_stays_within_the_budget_whatever_the_backlog() {
    let q = queues(1, &[1]);
    q.push((0..10_000).map(|d| entry(d as u64, d, 1)));
    assert_eq!(q.waiting(), MAX_WINDOW);
    // The earliest entries are the ones kept; the rest wait in the store.
    assert_eq!(run(&q, 1_000_000).map(|e| e.delivery), Some(0));
    let many: Vec<u128> = (100..100 + 2 * (WINDOW_BUDGET / MIN_WINDOW) as u128).collect();
    let q = queues(1, &many);
    for &sub in &many {
        q.push((0..100).map(|d| entry(d as u64, d + sub * 1000, sub)));
    }
    assert!(q.waiting() <= many.len() * MIN_WINDOW, "{}", q.waiting());
}

#[test]
fn a_paused_subscription_is_dropped_and_read_again_when_resumed() {
    let q = queues(4, &[1]);
    q.push([entry(1, 10, 1), entry(2, 11, 1)]);
    // Paused: its window goes; the read finds it not ACTIVE.
    q.forget(&[1]);
    assert_eq!(q.waiting(), 0);
    let read = q.reads(8)[0];
    q.fill(read, &[], false);
    assert!(run(&q, 100).is_none());
    assert!(q.reads(8).is_empty());
    // Resumed: read from the start of its queue.
    q.forget(&[1]);
    let read = q.reads(8)[0];
    assert_eq!(read.window.after, None);
    q.fill(read, &[entry(1, 10, 1), entry(2, 11, 1)], true);
    assert_eq!(run(&q, 100).map(|e| e.delivery), Some(10));
}

#[test]
fn an_answer_to_a_superseded_read_is_ignored() {
    let q = Queues::new(4);
    q.read_all([1]);
    let stale = q.reads(8)[0];
    q.forget(&[1]);
    let current = q.reads(8)[0];
    q.fill(stale, &[entry(1, 10, 1)], true);
    assert_eq!(q.waiting(), 0);
    q.fill(current, &[entry(2, 11, 1)], true);
    assert_eq!(run(&q, 100).map(|e| e.delivery), Some(11));
}
