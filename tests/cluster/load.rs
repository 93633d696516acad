//! Traffic for the cluster tests: producers that post events to every node in turn and
//! keep each answer, and the receipts of one receiver, each with the node that sent it.
//! Both publish a count on a watch channel, so a test waits on "so many accepted" or
//! "all of these received" instead of sleeping.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::{Api, Receiver};

/// Requests one producer makes at most: a load always ends by itself.
const MAX_PER_PRODUCER: usize = 5_000;
/// How long one ingest request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One answer to a producer's POST /v1/events.
#[derive(Debug, Clone)]
pub struct Answer {
    pub node: usize,
    pub sent: Instant,
    /// From sending the request to its answer (or the failure).
    pub took: Duration,
    /// None: no HTTP answer (connection refused or broken, timeout).
    pub status: Option<u16>,
    pub content_type: String,
    pub body: String,
}

#[derive(Default)]
struct Tally {
    /// Every event answered 202: its id.
    accepted: HashSet<String>,
    answers: Vec<Answer>,
}

/// Producers posting events of the given types to every node in turn, each at most one
/// request per `every`, until stopped (or `MAX_PER_PRODUCER` each).
pub struct Load {
    tally: Arc<Mutex<Tally>>,
    accepted: watch::Receiver<usize>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(
        apis: Vec<Arc<Api>>,
        types: Vec<String>,
        producers: usize,
        every: Duration,
    ) -> Load {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (count, accepted) = watch::channel(0);
        let count = Arc::new(count);
        let stop = CancellationToken::new();
        let types = Arc::new(types);
        let tasks = (0..producers)
            .map(|p| {
                let (apis, types, tally, count, stop) = (
                    apis.clone(),
                    types.clone(),
                    tally.clone(),
                    count.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    for i in 0..MAX_PER_PRODUCER {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tick.tick() => {}
                        }
                        let node = (p + i) % apis.len();
                        let event_type = &types[(p + i * producers) % types.len()];
                        let answer = post(&apis[node], node, event_type, p, i).await;
                        let mut tally = tally.lock().unwrap();
                        if answer.status == Some(202) {
                            let value: serde_json::Value =
                                serde_json::from_str(&answer.body).unwrap();
                            let id = value["data"]["id"].as_str().unwrap().to_string();
                            tally.accepted.insert(id);
                            count.send_replace(tally.accepted.len());
                        }
                        tally.answers.push(answer);
                    }
                })
            })
            .collect();
        Load {
            tally,
            accepted,
            stop,
            tasks,
        }
    }

    /// Waits until at least `n` events were accepted, or panics after `within`.
    pub async fn wait_accepted(&mut self, n: usize, within: Duration) {
        let waited = tokio::time::timeout(within, self.accepted.wait_for(|&c| c >= n))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(
            waited,
            "{n} events accepted within {within:?} (got {}); answers: {:?}",
            *self.accepted.borrow(),
            self.status_counts()
        );
    }

    /// The number accepted so far.
    pub fn accepted_count(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Stops the producers and waits for their requests in flight to be answered.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            task.await.unwrap();
        }
    }

    /// The ids of the events answered 202.
    pub fn accepted(&self) -> HashSet<String> {
        self.tally.lock().unwrap().accepted.clone()
    }

    pub fn answers(&self) -> Vec<Answer> {
        self.tally.lock().unwrap().answers.clone()
    }

    /// The median and the 99th percentile of the time to a 202.
    pub fn latency(&self) -> (Duration, Duration) {
        let mut took: Vec<Duration> = self
            .tally
            .lock()
            .unwrap()
            .answers
            .iter()
            .filter(|a| a.status == Some(202))
            .map(|a| a.took)
            .collect();
        took.sort();
        if took.is_empty() {
            return (Duration::ZERO, Duration::ZERO);
        }
        (took[took.len() / 2], took[took.len() * 99 / 100])
    }

    /// How many answers had each status (0: no answer).
    pub fn status_counts(&self) -> HashMap<u16, usize> {
        let mut counts = HashMap::new();
        for answer in &self.tally.lock().unwrap().answers {
            *counts.entry(answer.status.unwrap_or(0)).or_insert(0) += 1;
        }
        counts
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn post(api: &Api, node: usize, event_type: &str, p: usize, i: usize) -> Answer {
    let body = serde_json::json!({"eventType": event_type, "data": {"p": p, "i": i}}).to_string();
    let request = http::Request::post(format!("{}/v1/events", api.url))
        .header("authorization", format!("Bearer {}", api.token))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let sent = Instant::now();
    match api.client.send(request, REQUEST_TIMEOUT, 1 << 16).await {
        Ok(response) => Answer {
            node,
            sent,
            took: sent.elapsed(),
            status: Some(response.status),
            content_type: response
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body: String::from_utf8_lossy(&response.body).into_owned(),
        },
        Err(error) => Answer {
            node,
            sent,
            took: sent.elapsed(),
            status: None,
            content_type: String::new(),
            body: error.to_string(),
        },
    }
}

/// One webhook the receiver got.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// `webhook-id`: the event's id.
    pub id: String,
    pub event_type: String,
    pub at: Instant,
    /// The address it came from: the node's `source_address`.
    pub from: IpAddr,
}

/// Everything one receiver gets, collected on a task.
pub struct Receipts {
    seen: Arc<Mutex<Vec<Receipt>>>,
    count: watch::Receiver<usize>,
    /// Keeps the receiver (and its listener) up as long as the receipts are read.
    _receiver: Receiver,
}

impl Receipts {
    pub fn collect(mut receiver: Receiver) -> Receipts {
        let (_, closed) = tokio::sync::mpsc::unbounded_channel();
        let mut requests = std::mem::replace(&mut receiver.requests, closed);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, count) = watch::channel(0);
        let kept = seen.clone();
        tokio::spawn(async move {
            while let Some(got) = requests.recv().await {
                let receipt = Receipt {
                    id: got.header("webhook-id").to_string(),
                    event_type: got.json()["eventType"].as_str().unwrap_or("").to_string(),
                    at: got.at,
                    from: got.peer.ip(),
                };
                let mut seen = kept.lock().unwrap();
                seen.push(receipt);
                tx.send_replace(seen.len());
            }
        });
        Receipts {
            seen,
            count,
            _receiver: receiver,
        }
    }

    pub fn all(&self) -> Vec<Receipt> {
        self.seen.lock().unwrap().clone()
    }

    /// The receipts from the `from`th on.
    fn since(&self, from: usize) -> Vec<Receipt> {
        self.seen.lock().unwrap()[from..].to_vec()
    }

    /// Waits until every id in `ids` has been received; the ids still missing after
    /// `within`.
    pub async fn wait_for_all(&mut self, ids: &HashSet<String>, within: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + within;
        let mut missing = ids.clone();
        let mut read = 0;
        loop {
            let new = self.since(read);
            read += new.len();
            for receipt in new {
                missing.remove(&receipt.id);
            }
            if missing.is_empty() {
                return Vec::new();
            }
            match tokio::time::timeout_at(deadline, self.count.changed()).await {
                Ok(Ok(())) => {}
                _ => return missing.into_iter().collect(),
            }
        }
    }

    /// Waits for the first receipt that `matches`; None after `within`.
    pub async fn wait_for_first(
        &mut self,
        within: Duration,
        matches: impl Fn(&Receipt) -> bool,
    ) -> Option<Receipt> {
        let deadline = tokio::time::Instant::now() + within;
        let mut read = 0;
        loop {
            let new = self.since(read);
            read += new.len();
            if let Some(found) = new.into_iter().find(|r| matches(r)) {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, self.count.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// For each id received more than once, where each copy came from, as
    /// "127.0.0.2 > 127.0.0.3" (a node repeating itself, or two nodes).
    pub fn duplicate_sources(&self) -> Vec<String> {
        let mut by_id: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for receipt in self.all() {
            by_id.entry(receipt.id).or_default().push(receipt.from);
        }
        by_id
            .into_values()
            .filter(|from| from.len() > 1)
            .map(|from| {
                let from: Vec<String> = from.iter().map(IpAddr::to_string).collect();
                from.join(" > ")
            })
            .collect()
    }

    /// Ids received more than once, with how many times.
    pub fn duplicates(&self) -> HashMap<String, usize> {
        let mut times: HashMap<String, usize> = HashMap::new();
        for receipt in self.all() {
            *times.entry(receipt.id).or_insert(0) += 1;
        }
        times.retain(|_, n| *n > 1);
        times
    }
}
