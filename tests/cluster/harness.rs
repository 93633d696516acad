//! Several real `hookd serve` processes on loopback sharing one throwaway PostgreSQL
//! database: each node has its own folder, config file and fixed HTTPS port on
//! 127.0.0.1 (fixed so that a restarted node answers where the producers already send),
//! and sends its webhooks from its own loopback address (`delivery.source_address`
//! 127.0.0.2, .3, ...), so a receiver tells from the peer address which node delivered.
//! Every node has the same master key and admin token (`write_state`), as a real
//! cluster must.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, spawn};
use crate::common::postgres::{PASSWORD, TempPostgres};
use crate::common::{Api, Options, TestCa, WAIT, write_state};

/// A short lease so that a dead node's work moves within a few seconds.
pub const LEASE: Duration = Duration::from_secs(3);
/// Attempts one node runs at once to one subscription.
pub const PER_ENDPOINT: usize = 4;
/// How long a test waits for the cluster to settle (partitions shared out).
pub const SETTLE: Duration = Duration::from_secs(20);
/// Between two looks at a state that nothing notifies (the partitions table, a
/// node's answer to a revoked key).
pub const POLL: Duration = Duration::from_millis(50);
/// The number of partitions in the schema.
const PARTITIONS: usize = 256;

pub struct Cluster {
    pub pg: TempPostgres,
    pub database: String,
    pub ca: Arc<TestCa>,
    pub nodes: Vec<Node>,
}

pub struct Node {
    pub name: String,
    pub dir: tempfile::TempDir,
    /// The address this node's webhooks come from.
    pub source: IpAddr,
    /// A client for this node; valid across restarts (the port stays).
    pub api: Arc<Api>,
    daemon: Option<Daemon>,
}

impl Cluster {
    /// `count` nodes started one after another, each ready (`/readyz` 200), and the
    /// partitions shared out among them; None when PostgreSQL is not installed (the
    /// harness panics instead under `HOOKD_REQUIRE_POSTGRES=1`).
    pub async fn start(count: usize) -> Option<Cluster> {
        let pg = TempPostgres::start()?;
        let database = pg.create_database();
        let password = pg.dir().join("hookd.password");
        std::fs::write(&password, PASSWORD).unwrap();
        let ca = Arc::new(TestCa::new());
        let mut nodes = Vec::new();
        for i in 0..count {
            let name = format!("node-{}", i + 1);
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8));
            let options = Options {
                storage: format!(
                    "backend = \"postgres\"\npath = \"data/hookd.redb\"\nmin_free = \"0\"\n\
                     [storage.postgres]\nurl = \"{}\"\npassword_file = \"{}\"\n\
                     node_name = \"{name}\"\nlease = \"{}s\"\npool_size = 8\n",
                    pg.hookd_url(&database),
                    password.display(),
                    LEASE.as_secs(),
                ),
                delivery: format!(
                    "source_address = \"{source}\"\nper_endpoint_concurrency = {PER_ENDPOINT}"
                ),
                ..Options::default()
            };
            let text = write_state(dir.path(), &ca, &options, &format!("127.0.0.1:{port}"));
            std::fs::write(dir.path().join("hookd.toml"), text).unwrap();
            let api = Arc::new(Api::new(port, &ca));
            nodes.push(Node {
                name,
                dir,
                source,
                api,
                daemon: None,
            });
        }
        let mut cluster = Cluster {
            pg,
            database,
            ca,
            nodes,
        };
        for i in 0..count {
            cluster.start_node(i).await;
        }
        cluster.wait_balanced().await;
        Some(cluster)
    }

    /// Starts node `i` (stopped or never started) and waits until it is ready.
    pub async fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.daemon.is_none(), "{} is running already", node.name);
        // `spawn` returns at the "hookd is serving" line, which comes after readiness.
        let daemon = spawn(node.dir.path(), &self.ca);
        assert_eq!(
            daemon.api.url, node.api.url,
            "{} listens on its port",
            node.name
        );
        node.daemon = Some(daemon);
        let (status, body) = node.api.call("GET", "/readyz", None).await;
        assert_eq!(status, 200, "{} is ready: {body}", node.name);
    }

    /// SIGKILL: the node dies at once, with whatever it had in flight. When it died.
    pub fn kill(&mut self, i: usize) -> Instant {
        let mut daemon = self.nodes[i].daemon.take().expect("the node runs");
        daemon.child.kill().unwrap();
        let killed = Instant::now();
        daemon.child.wait().unwrap();
        killed
    }

    /// SIGTERM, then waits until the process has exited (cleanly, as it must).
    pub async fn stop_node(&mut self, i: usize) {
        let mut daemon = self.nodes[i].daemon.take().expect("the node runs");
        let pid = daemon.child.id();
        signal(pid, "TERM");
        let waiting = tokio::task::spawn_blocking(move || {
            let status = daemon.child.wait().unwrap();
            (status, daemon.log.text())
        });
        // The grace period (2 s) plus giving the partitions back, well within this.
        match tokio::time::timeout(WAIT, waiting).await {
            Ok(joined) => {
                let (status, log) = joined.unwrap();
                assert!(
                    status.success(),
                    "node-{} exits cleanly: {status}\n{log}",
                    i + 1
                );
            }
            Err(_) => {
                signal(pid, "KILL");
                panic!("node-{} did not exit within {WAIT:?} of SIGTERM", i + 1);
            }
        }
    }

    /// The node's log so far (for a failure report).
    pub fn log(&self, i: usize) -> String {
        self.nodes[i]
            .daemon
            .as_ref()
            .map_or_else(String::new, |d| d.log.text())
    }

    /// Every running node's log, for a failure report.
    pub fn logs(&self) -> String {
        (0..self.nodes.len())
            .map(|i| format!("--- {} ---\n{}", self.nodes[i].name, self.log(i)))
            .collect()
    }

    /// Runs `sql` on the test database as the superuser; psql's unaligned output.
    pub fn sql(&self, sql: &str) -> String {
        self.pg.psql(&self.database, sql)
    }

    /// Each partition's owner now (None: free).
    pub fn owners(&self) -> BTreeMap<u8, Option<String>> {
        self.sql("SELECT partition, coalesce(owner, '') FROM partitions")
            .lines()
            .map(|line| {
                let (partition, owner) = line.split_once('|').unwrap();
                let owner = (!owner.is_empty()).then(|| owner.to_string());
                (partition.parse().unwrap(), owner)
            })
            .collect()
    }

    /// Waits until every running node owns its fair share of the partitions (the
    /// first `256 % n` by name one more), and no partition is free or held by a node
    /// that is not running.
    pub async fn wait_balanced(&self) {
        let running: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| n.daemon.is_some())
            .map(|n| n.name.as_str())
            .collect();
        let n = running.len();
        let expected: BTreeMap<Option<String>, usize> = running
            .iter()
            .enumerate()
            .map(|(rank, name)| {
                let share = PARTITIONS / n + usize::from(rank < PARTITIONS % n);
                (Some(name.to_string()), share)
            })
            .collect();
        let deadline = Instant::now() + SETTLE;
        loop {
            let mut counts = BTreeMap::new();
            for owner in self.owners().into_values() {
                *counts.entry(owner).or_insert(0) += 1;
            }
            if counts == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the partitions were not shared out within {SETTLE:?}: {counts:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until no delivery in the database is pending or retrying, and asserts that
    /// every one ended SUCCEEDED: the outcomes are written, not only sent.
    pub async fn wait_settled(&self) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let open = self.sql("SELECT count(*) FROM deliveries WHERE state < 2");
            if open == "0" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{open} deliveries still open in the database after {SETTLE:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
        let states = self.sql("SELECT state, count(*) FROM deliveries GROUP BY state");
        assert!(
            !states.is_empty() && states.lines().all(|l| l.starts_with("2|")),
            "every delivery SUCCEEDED (state|count): {states}"
        );
    }

    /// Waits until `/readyz` on node `i` answers `status` (200 or 503).
    pub async fn wait_readyz(&self, i: usize, status: u16, within: Duration) {
        let node = &self.nodes[i];
        let deadline = Instant::now() + within;
        loop {
            let (got, body) = readyz(node).await;
            if got == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}'s /readyz did not answer {status} within {within:?} (last: {got} {body})\n{}",
                node.name,
                self.log(i)
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every node knows each of `subscriptions` (its own snapshot answers
    /// for it): a node fans an event out only to the subscriptions it knows.
    pub async fn wait_known(&self, subscriptions: &[String]) {
        for node in self.nodes.iter().filter(|n| n.daemon.is_some()) {
            for id in subscriptions {
                let deadline = Instant::now() + WAIT;
                loop {
                    let (status, body) = node
                        .api
                        .call("GET", &format!("/v1/subscriptions/{id}"), None)
                        .await;
                    if status == 200 {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{} does not know {id}: {status} {body}",
                        node.name
                    );
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    /// Every node's client, in order.
    pub fn apis(&self) -> Vec<Arc<Api>> {
        self.nodes.iter().map(|n| n.api.clone()).collect()
    }
}

/// `/readyz` on the monitoring side of the API listener: (status, body); 0 when the
/// node does not answer.
async fn readyz(node: &Node) -> (u16, String) {
    let request = http::Request::get(format!("{}/readyz", node.api.url))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    match node.api.client.send(request, WAIT, 1 << 16).await {
        Ok(response) => (
            response.status,
            String::from_utf8_lossy(&response.body).into_owned(),
        ),
        Err(error) => (0, error.to_string()),
    }
}

/// The partition of a subscription (`sub_<32 hex>`): its id's last byte, as the schema
/// computes it.
pub fn partition_of(subscription: &str) -> u8 {
    let hex = subscription.rsplit('_').next().unwrap();
    u8::from_str_radix(&hex[hex.len() - 2..], 16).unwrap()
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
