//! Limits that must hold across the nodes: a subscription's `rateLimit` while events for
//! it arrive through every node, and a revoked API key refused by the other nodes
//! within a second.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::SERIAL;
use crate::common::Receiver;
use crate::harness::{Cluster, POLL, partition_of};
use crate::load::Receipts;

/// Deliveries per second the rate-limited subscription allows.
const RATE: usize = 20;
/// Events posted to it: three seconds' worth at the rate.
const EVENTS: usize = 60;
/// Who post them, in turn through each node.
const PRODUCERS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_while_three_nodes_take_the_events() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let receiver = Receiver::start(&cluster.ca).await;
    let body = json!({"eventTypes": ["limited"], "endpointUrl": receiver.url, "rateLimit": RATE});
    let mut receipts = Receipts::collect(receiver);
    let (status, created) = cluster.nodes[0]
        .api
        .call("POST", "/v1/subscriptions", Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_string();
    cluster.wait_known(std::slice::from_ref(&id)).await;

    // One delivery first, so that the owner has its connection to the receiver: a
    // TLS handshake in the middle of the run would hold one request back by tens of
    // milliseconds and bunch it with the next (arrivals, not starts, are measured).
    let warm_up = cluster.nodes[1]
        .api
        .post_event("limited", json!({"warm": true}))
        .await;
    let warm_up = HashSet::from([warm_up["id"].as_str().unwrap().to_string()]);
    let missing = receipts
        .wait_for_all(&warm_up, Duration::from_secs(10))
        .await;
    assert!(
        missing.is_empty(),
        "the first event is delivered\n{}",
        cluster.logs()
    );

    // Faster than the rate allows, a third through each node: two producers a node,
    // each posting one event after another (not sixty requests at once, whose TLS
    // handshakes would hold up the owner's own sends for hundreds of milliseconds
    // and bunch their arrivals).
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let api = cluster.nodes[p % 3].api.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (p..EVENTS).step_by(PRODUCERS) {
                    let accepted = api.post_event("limited", json!({"i": i})).await;
                    ids.push(accepted["id"].as_str().unwrap().to_string());
                }
                ids
            })
        })
        .collect();
    let mut accepted = HashSet::new();
    for producer in producers {
        accepted.extend(producer.await.unwrap());
    }
    let missing = receipts
        .wait_for_all(&accepted, Duration::from_secs(30))
        .await;
    assert!(
        missing.is_empty(),
        "never delivered: {missing:?}\n{}",
        cluster.logs()
    );

    // One node delivers it: the owner of its partition.
    let owner = cluster.owners()[&partition_of(&id)].clone().unwrap();
    let all = receipts.all();
    let from: HashSet<_> = all.iter().map(|r| r.from).collect();
    let owner_source = cluster
        .nodes
        .iter()
        .find(|n| n.name == owner)
        .unwrap()
        .source;
    assert_eq!(
        from,
        HashSet::from([owner_source]),
        "only {owner} delivers it"
    );

    // Deliveries start one every 1/RATE s with no burst (dispatch/queues): a closed
    // window of one second holds RATE of them, one more when both its ends fall on a
    // start. What the receiver sees is the start plus the time to reach it, which on a
    // warm loopback connection varies by a few ms (up to ~20 ms on a loaded machine); a
    // spread of up to one interval (50 ms) brings at most one more start into a window:
    // RATE + 2 is the most a window may see. A limiter run by each of three nodes would
    // show about 3 x RATE, one that forgot its pace (a reset queue) a burst of
    // `per_endpoint_concurrency` at once.
    let mut times: Vec<Instant> = all.iter().map(|r| r.at).collect();
    times.sort();
    let busiest = (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t - times[i] <= Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    let span = *times.last().unwrap() - times[0];
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    let mean = (times.len() - 1) as f64 / span.as_secs_f64();
    println!(
        "rateLimit {RATE}/s, {EVENTS} events through 3 nodes, delivered by {owner}: busiest \
         second {busiest}, mean {mean:.2}/s over {span:?}; ms between arrivals: {gaps:?}"
    );
    assert!(
        busiest <= RATE + 2,
        "{busiest} deliveries within one second"
    );
    // Over the whole run the jitter of two arrivals is spread over ~3 s: 5 % is ~150 ms.
    assert!(
        mean <= RATE as f64 * 1.05,
        "{mean:.2} deliveries/s on average"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_node_is_refused_by_the_others_within_a_second() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let first = &cluster.nodes[0].api;
    first.create_entity("acme", None).await;
    let (status, created) = first
        .call(
            "POST",
            "/v1/admin/api-keys",
            Some(json!({"entityId": "acme", "name": "k", "scopes": ["subscriptions:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key_id = created["data"]["id"].as_str().unwrap().to_string();
    let key = created["data"]["key"].as_str().unwrap().to_string();

    // A new key reaches every node within a second as well.
    let made = Instant::now();
    for node in &cluster.nodes[1..] {
        let took = wait_for_status(&node.api, &key, 200, made).await;
        println!("key accepted by {} {took:?} after it was made", node.name);
    }

    let (status, body) = first
        .call("DELETE", &format!("/v1/admin/api-keys/{key_id}"), None)
        .await;
    assert!(status == 204 || status == 200, "revoke: {status} {body}");
    let revoked = Instant::now();
    let (status, _) = first.call_as(&key, "GET", "/v1/subscriptions", None).await;
    assert_eq!(status, 401, "the node that revoked it refuses it at once");
    for node in &cluster.nodes[1..] {
        let took = wait_for_status(&node.api, &key, 401, revoked).await;
        println!(
            "revoked key refused by {} {took:?} after the revocation",
            node.name
        );
    }
}

/// Asks `api` with `key` until it answers `status`, at most one second after `since`;
/// how long after `since` it did.
async fn wait_for_status(
    api: &crate::common::Api,
    key: &str,
    status: u16,
    since: Instant,
) -> Duration {
    let deadline = since + Duration::from_secs(1);
    loop {
        let (got, body) = api.call_as(key, "GET", "/v1/subscriptions", None).await;
        if got == status {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{} still answers {got} ({body}) a second later",
            api.url
        );
        tokio::time::sleep(POLL).await;
    }
}
