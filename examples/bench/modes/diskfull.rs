//! `diskfull`: hookd with its database on a 64 MiB tmpfs and `storage.min_free = 8MiB`,
//! one subscriber, 8 closed-loop producers of 1 KiB events, and a filler file beside
//! the store that leaves about 32 MiB. Phases: accepting (2 s); a second filler takes
//! every free byte at once, so hookd's writes fail with ENOSPC (3 s); that filler is
//! deleted: ingest must answer 202 again without a restart, and goes on until the file
//! has grown to `min_free` and new events are refused (507), then 2 s more; the first
//! filler is deleted: 202 again (2 s). Reports the answers by status per phase, /readyz
//! at the end of each and how soon after each freeing the first 202 came, then checks
//! at the receiver that every event answered 202 arrived and none more than twice.
//! Needs root (for the mount); prints a skip line otherwise. Unmounts at the end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::{connect, subscribe, try_call};
use crate::load::{event, wait_until};
use crate::measure::{Clock, mib, ms};
use crate::procfs;
use crate::receiver::{Receiver, Track};
use crate::setup::{Config, Setup};

const DISK: &str = "64m";
const PRODUCERS: usize = 8;
const PAD: usize = 1024;
/// A client that was refused waits this long before the next post, as a client that
/// honours back-pressure would, so refusals do not turn into a busy loop.
const BACK_OFF: Duration = Duration::from_millis(10);

/// A tmpfs mounted on a temporary folder; unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self { path, _dir: dir })
    }

    fn free(&self) -> u64 {
        let stat = rustix::fs::statvfs(&self.path).unwrap();
        stat.f_bavail * stat.f_frsize
    }

    /// Writes `name` until `leave` bytes are free, or the disk is full.
    fn fill(&self, name: &str, leave: u64) -> PathBuf {
        let path = self.path.join(name);
        let want = self.free().saturating_sub(leave);
        let chunk = vec![0u8; 64 * 1024];
        let mut file = std::fs::File::create(&path).unwrap();
        let mut written = 0;
        while written < want {
            let n = chunk.len().min((want - written) as usize);
            if std::io::Write::write_all(&mut file, &chunk[..n]).is_err() {
                break;
            }
            written += n as u64;
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// One answer a producer got: when it sent, how long the answer took, and the status
/// (0: the connection broke).
struct Answer {
    sent_ns: u64,
    took_ns: u64,
    status: u16,
}

#[derive(Default)]
struct Producers {
    stop: AtomicBool,
    seq: AtomicU64,
    last_refused_ns: AtomicU64,
    last_accepted_ns: AtomicU64,
    answers: Mutex<Vec<Answer>>,
    accepted: Mutex<Vec<String>>,
}

pub async fn run() {
    if !procfs::is_root() {
        println!("diskfull: skipped: mounting a tmpfs needs root");
        return;
    }
    let Some(disk) = SmallDisk::mount(DISK) else {
        println!("diskfull: skipped: mount -t tmpfs failed");
        return;
    };
    let clock = Clock::new();
    let setup = Arc::new(Setup::with_store(
        &Config {
            storage: "min_free = \"8MiB\"".to_string(),
            ..Config::default()
        },
        Some(disk.path.join("hookd.redb")),
    ));
    let first_filler = disk.fill("filler-1", 32 << 20);
    println!(
        "diskfull: {DISK} tmpfs, min_free 8MiB, {} MiB free after the filler",
        disk.free() >> 20
    );
    let hookd = setup.spawn();
    setup.wait_ready(Instant::now()).await;
    let track = Track {
        ids: true,
        ..Track::default()
    };
    let receiver = Receiver::start(&setup, clock, track).await;
    let mut admin = connect(&setup).await;
    subscribe(&mut admin, receiver.port(), 1).await;

    let producers = Arc::new(Producers::default());
    let mut tasks = Vec::new();
    for _ in 0..PRODUCERS {
        let mut sender = connect(&setup).await;
        let shared = producers.clone();
        let setup = setup.clone();
        tasks.push(tokio::spawn(async move {
            while !shared.stop.load(Ordering::Relaxed) {
                let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
                let sent_ns = clock.now_ns();
                let body = event("bench.created", seq, sent_ns, PAD);
                let status = match try_call(&mut sender, "POST", "/v1/events", body).await {
                    Ok((202, text)) => {
                        let answer: serde_json::Value = serde_json::from_slice(&text).unwrap();
                        let id = answer["data"]["id"].as_str().unwrap().to_string();
                        shared.accepted.lock().unwrap().push(id);
                        shared
                            .last_accepted_ns
                            .fetch_max(sent_ns, Ordering::Relaxed);
                        202
                    }
                    Ok((status, _)) => status,
                    Err(_) => 0,
                };
                let took_ns = clock.now_ns() - sent_ns;
                shared.answers.lock().unwrap().push(Answer {
                    sent_ns,
                    took_ns,
                    status,
                });
                if status != 202 {
                    shared.last_refused_ns.fetch_max(sent_ns, Ordering::Relaxed);
                    tokio::time::sleep(BACK_OFF).await;
                }
                if status == 0 {
                    sender = connect(&setup).await;
                }
            }
        }));
    }

    // Each phase ends where the next begins; /readyz is read at its end.
    let mut phases: Vec<(&str, u64, Option<u16>)> = Vec::new();
    let accepted_since = |since: u64| {
        let producers = producers.clone();
        move || u64::from(producers.last_accepted_ns.load(Ordering::Relaxed) > since)
    };
    let refused_since = |since: u64| {
        let producers = producers.clone();
        move || u64::from(producers.last_refused_ns.load(Ordering::Relaxed) > since)
    };

    phases.push(("accepting", clock.now_ns(), None));
    tokio::time::sleep(Duration::from_secs(2)).await;
    phases.last_mut().unwrap().2 = setup.get_status("/readyz").await;

    // Full at once, faster than hookd's look at free space: its writes fail (503).
    let full = clock.now_ns();
    phases.push(("disk full, writes fail", full, None));
    let filler = disk.fill("filler-2", 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    phases.last_mut().unwrap().2 = setup.get_status("/readyz").await;

    let freed = clock.now_ns();
    phases.push(("freed, growing to min_free", freed, None));
    std::fs::remove_file(&filler).unwrap();
    let back_after_full = wait_until(1, Duration::from_secs(60), accepted_since(freed)).await;
    let back = clock.now_ns();
    let low = wait_until(1, Duration::from_secs(120), refused_since(back)).await;
    phases.last_mut().unwrap().2 = setup.get_status("/readyz").await;

    phases.push(("below min_free", clock.now_ns(), None));
    tokio::time::sleep(Duration::from_secs(2)).await;
    phases.last_mut().unwrap().2 = setup.get_status("/readyz").await;

    let freed_again = clock.now_ns();
    phases.push(("freed again", freed_again, None));
    std::fs::remove_file(&first_filler).unwrap();
    let back_after_low = wait_until(1, Duration::from_secs(60), accepted_since(freed_again)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    phases.last_mut().unwrap().2 = setup.get_status("/readyz").await;
    producers.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let ended = clock.now_ns();

    let answers = std::mem::take(&mut *producers.answers.lock().unwrap());
    for (i, &(name, from, readyz)) in phases.iter().enumerate() {
        let to = phases.get(i + 1).map_or(ended, |next| next.1);
        let mut by_status = BTreeMap::new();
        let mut slowest = 0;
        for a in answers
            .iter()
            .filter(|a| a.sent_ns >= from && a.sent_ns < to)
        {
            *by_status.entry(a.status).or_insert(0u64) += 1;
            slowest = slowest.max(a.took_ns);
        }
        println!(
            "diskfull: {name} ({:.1} s): answers by status {by_status:?}, slowest {}; /readyz at its end {}",
            (to - from) as f64 / 1e9,
            ms(slowest),
            readyz.map_or_else(|| "no answer".to_string(), |s| s.to_string()),
        );
    }
    let first_202 = |since: u64, recovered: bool| {
        let ns = answers
            .iter()
            .filter(|a| a.sent_ns > since && a.status == 202)
            .map(|a| a.sent_ns - since)
            .min();
        match (recovered, ns) {
            (true, Some(ns)) => format!("{:.0} ms", ns as f64 / 1e6),
            _ => "NEVER (in 60 s)".to_string(),
        }
    };
    println!(
        "diskfull: first 202 after freeing, no restart: {} after the full disk, {} after min_free{}",
        first_202(freed, back_after_full),
        first_202(freed_again, back_after_low),
        if low {
            ""
        } else {
            " (min_free was never reached in 120 s)"
        },
    );

    let accepted = std::mem::take(&mut *producers.accepted.lock().unwrap());
    wait_until(accepted.len() as u64, Duration::from_secs(30), || {
        receiver.log.ids().len() as u64
    })
    .await;
    report_arrivals(&accepted, &receiver.log.ids(), receiver.log.count());
    println!(
        "diskfull: hookd peak RSS {}, RSS {}; file {} MiB (apparent size; redb's file is sparse)",
        mib(hookd.peak_rss_kib()),
        mib(hookd.rss_kib()),
        setup.store_bytes() >> 20
    );
    hookd.kill();
    let mount = disk.path.clone();
    drop(disk);
    println!("diskfull: unmounted {}", unmounted(&mount));
}

/// Every accepted id must have arrived, none more than twice.
fn report_arrivals(
    accepted: &[String],
    seen: &std::collections::HashMap<String, u32>,
    requests: u64,
) {
    let missing = accepted.iter().filter(|id| !seen.contains_key(*id)).count();
    let most = seen.values().copied().max().unwrap_or(0);
    let repeated = seen.values().filter(|&&n| n > 1).count();
    println!(
        "diskfull: {} events accepted (202), {} distinct ids received in {requests} requests; missing {missing}{}; most copies of one event {most} ({}); {repeated} events came more than once",
        accepted.len(),
        seen.len(),
        if missing == 0 {
            " (all delivered)"
        } else {
            " (LOST)"
        },
        if most <= 2 {
            "ok, at most 2"
        } else {
            "MORE THAN 2"
        },
    );
}

fn unmounted(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let shown = path.display().to_string();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(shown.as_str()))
    {
        format!("{shown}: STILL MOUNTED")
    } else {
        shown
    }
}
