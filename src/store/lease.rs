//! How nodes divide the delivery work among themselves, as pure functions a backend with
//! several nodes calls on each heartbeat: subscriptions hash into a fixed number of
//! partitions, each partition is leased by at most one node, and every node aims at a
//! fair share. Only a partition's owner dispatches its subscriptions' deliveries, so
//! `per_endpoint_concurrency` and `rateLimit` hold cluster-wide without a shared limiter.
//!
//! The shares are computed from the live nodes sorted by name, so every node computes
//! the same targets from the same table: with `n` nodes and `p` partitions, the first
//! `p % n` nodes take `p / n + 1`, the others `p / n`. A node claims free or expired
//! partitions up to its target and gives back what is over it (the lowest-numbered last,
//! so a partition does not move back and forth); a node never takes a partition another
//! live node holds, it waits for it to be given back. Fencing is the backend's: a claim
//! raises the partition's epoch, and every outcome write checks it.

/// A partition as the heartbeat reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub partition: u16,
    /// The node holding it, if any.
    pub owner: Option<String>,
    /// Its lease ran out (the owner stopped renewing it).
    pub expired: bool,
}

/// What one node does on a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Free or expired partitions to claim (raising their epoch).
    pub claim: Vec<u16>,
    /// Partitions of its own to give back, after it has stopped dispatching them.
    pub release: Vec<u16>,
}

/// The number of partitions the node at `rank` (its place among the live nodes sorted
/// by name) should own.
pub fn fair_share(partitions: usize, nodes: usize, rank: usize) -> usize {
    if nodes == 0 {
        return 0;
    }
    partitions / nodes + usize::from(rank < partitions % nodes)
}

/// Whether a node may take over the expired partitions of other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// Yes: their owners stopped renewing while this node could.
    Allowed,
    /// Not yet: this node has just regained the database after losing it for longer
    /// than a lease. The others' leases may have run out in the same outage, while
    /// they still hold outcomes to write; taking their partitions now would send
    /// those deliveries again. They get one lease to come back first.
    Deferred,
}

/// The plan of node `me` given every partition's lease and the live nodes' names (`me`
/// included; any order).
pub fn plan(me: &str, leases: &[Lease], live: &[String], takeover: Takeover) -> Plan {
    let mut names: Vec<&str> = live.iter().map(String::as_str).collect();
    if !names.contains(&me) {
        names.push(me);
    }
    names.sort_unstable();
    names.dedup();
    let rank = names.iter().position(|&n| n == me).unwrap_or(0);
    let target = fair_share(leases.len(), names.len(), rank);

    let mut mine: Vec<u16> = leases
        .iter()
        .filter(|l| l.owner.as_deref() == Some(me) && !l.expired)
        .map(|l| l.partition)
        .collect();
    mine.sort_unstable();
    let mut plan = Plan::default();
    if mine.len() > target {
        // Give back the highest-numbered ones; keep the rest where they are.
        plan.release = mine.split_off(target);
        return plan;
    }
    let held_by_live = |l: &Lease| {
        !l.expired
            && l.owner
                .as_deref()
                .is_some_and(|owner| names.binary_search(&owner).is_ok())
    };
    let claimable = |l: &Lease| match takeover {
        Takeover::Allowed => true,
        Takeover::Deferred => l.owner.as_deref().is_none_or(|owner| owner == me),
    };
    let mut free: Vec<u16> = leases
        .iter()
        .filter(|l| !held_by_live(l) && claimable(l))
        .map(|l| l.partition)
        .collect();
    free.sort_unstable();
    // Each node starts at its own place in the free list, so nodes that plan at the
    // same moment mostly claim different partitions.
    let start = rank * free.len() / names.len();
    free.rotate_left(start);
    free.truncate(target - mine.len());
    plan.claim = free;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases(owners: &[Option<&str>]) -> Vec<Lease> {
        owners
            .iter()
            .enumerate()
            .map(|(i, owner)| Lease {
                partition: i as u16,
                owner: owner.map(str::to_owned),
                expired: false,
            })
            .collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for nodes in 1..=7 {
            let shares: Vec<usize> = (0..nodes).map(|r| fair_share(256, nodes, r)).collect();
            assert_eq!(shares.iter().sum::<usize>(), 256);
            let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(max - min <= 1, "{shares:?}");
        }
        assert_eq!(fair_share(256, 0, 0), 0);
    }

    #[test]
    fn a_lone_node_claims_everything() {
        let plan = plan("a", &leases(&[None; 8]), &names(&["a"]), Takeover::Allowed);
        assert_eq!(plan.claim, (0..8).collect::<Vec<u16>>());
        assert!(plan.release.is_empty());
    }

    #[test]
    fn a_node_that_joins_waits_for_what_others_give_back() {
        let table = leases(&[Some("a"); 8]);
        let live = names(&["a", "b"]);
        // b takes nothing a live node holds.
        assert_eq!(plan("b", &table, &live, Takeover::Allowed), Plan::default());
        // a gives back the highest half.
        assert_eq!(
            plan("a", &table, &live, Takeover::Allowed).release,
            vec![4, 5, 6, 7]
        );
        // Once given back, b claims them.
        let mut table = table;
        for lease in &mut table[4..] {
            lease.owner = None;
        }
        let mut claimed = plan("b", &table, &live, Takeover::Allowed).claim;
        claimed.sort_unstable();
        assert_eq!(claimed, vec![4, 5, 6, 7]);
        assert_eq!(plan("a", &table, &live, Takeover::Allowed), Plan::default());
    }

    #[test]
    fn a_dead_nodes_partitions_are_taken_over() {
        // c died: its leases expired, and it is no longer live.
        let mut table = leases(&[
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ]);
        for lease in &mut table[4..] {
            lease.expired = true;
        }
        let live = names(&["a", "b"]);
        let a = plan("a", &table, &live, Takeover::Allowed);
        let b = plan("b", &table, &live, Takeover::Allowed);
        // Each fills its share of three, starting at its own place in the free list.
        assert_eq!(a.claim, vec![4]);
        assert_eq!(b.claim, vec![5]);
        // Had they picked the same one, the backend's claim (a conditional update
        // raising the epoch) would let one win, and the next heartbeat settles it.
    }

    #[test]
    fn an_expired_lease_of_my_own_is_claimed_again() {
        let mut table = leases(&[Some("a"), Some("a")]);
        table[1].expired = true;
        let plan = plan("a", &table, &names(&["a"]), Takeover::Allowed);
        assert_eq!(plan.claim, vec![1]);
    }

    #[test]
    fn a_node_back_from_an_outage_takes_only_its_own_and_free_partitions_at_first() {
        // The database was away for longer than the lease: every lease ran out, and
        // a is the first back. b still holds outcomes to write for its partitions.
        let mut table = leases(&[Some("a"), Some("a"), Some("b"), Some("b"), None]);
        for lease in &mut table[..4] {
            lease.expired = true;
        }
        let live = names(&["a"]);
        let mut deferred = plan("a", &table, &live, Takeover::Deferred).claim;
        deferred.sort_unstable();
        assert_eq!(deferred, vec![0, 1, 4]);
        // A lease later, b has not come back: its partitions are a's to take.
        let mut allowed = plan("a", &table, &live, Takeover::Allowed).claim;
        allowed.sort_unstable();
        assert_eq!(allowed, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_node_missing_from_the_live_list_still_plans_for_itself() {
        let plan = plan("a", &leases(&[None, None]), &[], Takeover::Allowed);
        assert_eq!(plan.claim, vec![0, 1]);
    }
}
