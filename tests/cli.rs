//! The admin commands of the real binary against a running hookd: entities, keys,
//! subscriptions (and their day-to-day actions), events and deliveries, as tables and
//! as JSON; which config file they find without `--config`; a closed stdout; the mode of
//! a backup (on PostgreSQL: that `hookd backup` points to the database's own tools).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Hookd, Options, Receiver, write_state};
use serde_json::Value;

/// The binary with `args`, run off the async threads.
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Cli {
    config: PathBuf,
    url: String,
}

impl Cli {
    /// A hookd, and a config file for the CLI naming its state (the port comes from
    /// `--url`).
    async fn start() -> (Hookd, Self) {
        let hookd = Hookd::start(Options::default()).await;
        let config = hookd.dir.path().join("hookd.toml");
        let text = write_state(
            hookd.dir.path(),
            &hookd.ca,
            &Options::default(),
            "127.0.0.1:8443",
        );
        std::fs::write(&config, text).unwrap();
        let url = hookd.url.clone();
        (hookd, Self { config, url })
    }

    /// `hookd <args> --url …` with no `--config` and no `HOOKD_CONFIG`.
    fn bare(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookd"));
        command
            .args(args)
            .args(["--url", &self.url])
            .env_remove("HOOKD_CONFIG");
        command
    }

    /// Runs `hookd <args> --config … --url …`; (status, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut command = self.bare(args);
        command.arg("--config").arg(&self.config);
        let output = run(command).await;
        (
            output.status.success(),
            text(&output.stdout),
            text(&output.stderr),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "hookd {args:?} failed: {err}");
        out
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        serde_json::from_str(&self.ok(&with_json).await).unwrap()
    }
}

/// An event's id in either API shape (`id`, or `eventId` before the rename).
fn event_id(event: &Value) -> String {
    event["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_admin_commands_drive_a_running_server() {
    let (hookd, cli) = Cli::start().await;
    let mut receiver = Receiver::start(&hookd.ca).await;

    let table = cli
        .ok(&["entity", "create", "--name", "Acme Corp", "--id", "acme"])
        .await;
    assert!(
        table.starts_with("id") && table.contains("acme") && table.contains("Acme Corp"),
        "{table}"
    );
    assert!(cli.ok(&["entity", "list"]).await.contains("acme"));

    let created = cli
        .json(&[
            "key",
            "create",
            "--entity",
            "acme",
            "--name",
            "ci",
            "--scope",
            "events:write",
        ])
        .await;
    let key_id = created["data"]["id"].as_str().unwrap().to_string();
    assert!(created["data"]["key"].as_str().unwrap().starts_with("hk_"));
    let listed = cli.ok(&["key", "list"]).await;
    assert!(
        listed.contains(&key_id) && !listed.contains("hk_"),
        "{listed}"
    );
    assert!(
        cli.ok(&["key", "revoke", &key_id])
            .await
            .contains("revoked")
    );

    let sub = cli
        .json(&[
            "subscription",
            "create",
            "--endpoint",
            &receiver.url,
            "--event-type",
            "*",
        ])
        .await;
    let sub_id = sub["data"]["id"].as_str().unwrap().to_string();
    let secret = sub["data"]["signingSecret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let listed = cli.ok(&["subscription", "list"]).await;
    assert!(
        listed.contains(&sub_id) && listed.contains("ACTIVE"),
        "{listed}"
    );

    let sent = cli
        .json(&[
            "event",
            "send",
            "--type",
            "job.done",
            "--data",
            r#"{"n": 7}"#,
        ])
        .await;
    assert_eq!(sent["data"]["deliveryCount"], 1, "{sent}");
    let event = event_id(&sent["data"]);
    let table = cli.ok(&["event", "send", "--type", "job.other"]).await;
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("id ") && header.contains("deliveryCount"),
        "{table}"
    );
    // The two events arrive in either order.
    let (first, second) = (receiver.next().await, receiver.next().await);
    let (got, other) = if first.json()["data"]["n"] == 7 {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(got.json()["data"]["n"], 7);
    assert_eq!(got.header("webhook-id"), event);

    // event show: the event, then its deliveries (from /v1/events/{id}/deliveries).
    let shown = cli.json(&["event", "show", &event]).await;
    assert_eq!(event_id(&shown["data"]), event);
    let deliveries = shown["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{shown}");
    assert_eq!(deliveries[0]["subscriptionId"], sub_id.as_str());
    let delivery = deliveries[0]["id"].as_str().unwrap().to_string();
    hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;
    let table = cli.ok(&["event", "show", &event]).await;
    let (event_part, deliveries_part) = table.split_once("\n\n").unwrap();
    assert!(
        event_part.contains(&event) && event_part.contains("job.done"),
        "{table}"
    );
    assert!(
        deliveries_part.contains(&delivery) && deliveries_part.contains("SUCCEEDED"),
        "{table}"
    );

    let shown = cli.ok(&["delivery", "show", &delivery]).await;
    assert!(
        shown.contains("SUCCEEDED") && shown.contains("200"),
        "{shown}"
    );
    cli.ok(&["delivery", "retry", &delivery]).await;
    assert_eq!(
        receiver.next().await.header("webhook-id"),
        got.header("webhook-id")
    );

    // delivery list: a subscription's deliveries, by state and page by page.
    let all = cli
        .json(&["delivery", "list", "--subscription", &sub_id])
        .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2, "{all}");
    for (state, listed) in [("succeeded", true), ("FAILED", false)] {
        let args = [
            "delivery",
            "list",
            "--subscription",
            &sub_id,
            "--state",
            state,
        ];
        let table = cli.ok(&args).await;
        assert_eq!(table.contains(&delivery), listed, "{state}: {table}");
    }
    let args = [
        "delivery",
        "list",
        "--subscription",
        &sub_id,
        "--limit",
        "1",
    ];
    let (ok, first, err) = cli.run(&args).await;
    assert!(ok, "{err}");
    let cursor = err
        .lines()
        .find_map(|l| l.strip_prefix("more: add --cursor "))
        .unwrap_or_else(|| panic!("no next page on stderr: {err}"));
    let mut next_args = args.to_vec();
    next_args.extend(["--cursor", cursor]);
    let second = cli.ok(&next_args).await;
    let row = |table: &str| table.lines().nth(1).unwrap().to_string();
    assert_eq!(first.lines().count(), 2, "{first}");
    assert_ne!(row(&first), row(&second));
    assert!(
        [row(&first), row(&second)]
            .iter()
            .any(|r| r.contains(&delivery)),
        "{first}{second}"
    );

    // The signing secret: shown, then rotated.
    let shown = cli.ok(&["subscription", "secret", &sub_id]).await;
    assert!(shown.contains(&secret), "{shown}");
    let rotated = cli.json(&["subscription", "rotate", &sub_id]).await;
    let new_secret = rotated["data"]["signingSecret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    let shown = cli.json(&["subscription", "secret", &sub_id]).await;
    assert_eq!(shown["data"]["signingSecret"], new_secret);

    // Replay sends the event again; only failed ones: nothing to send.
    let replayed = cli
        .ok(&[
            "subscription",
            "replay",
            &sub_id,
            "--since",
            "2000-01-01T00:00:00Z",
        ])
        .await;
    assert!(replayed.starts_with("queued"), "{replayed}");
    let again = receiver.next().await;
    // Both events are replayed, in no set order.
    assert!(
        [got.header("webhook-id"), other.header("webhook-id")]
            .contains(&again.header("webhook-id")),
        "{}",
        again.header("webhook-id")
    );
    let none = cli
        .json(&[
            "subscription",
            "replay",
            &sub_id,
            "--since",
            "2000-01-01T00:00:00Z",
            "--until",
            "2100-01-01T00:00:00Z",
            "--only-failed",
        ])
        .await;
    assert_eq!(none["data"]["queued"], 0, "{none}");

    // Deactivate, activate, test, delete.
    let deactivated = cli.json(&["subscription", "deactivate", &sub_id]).await;
    assert_eq!(deactivated["data"]["status"], "DEACTIVATED");
    assert!(
        cli.ok(&["subscription", "show", &sub_id])
            .await
            .contains("DEACTIVATED")
    );
    let (ok, _, err) = cli.run(&["subscription", "test", &sub_id]).await;
    assert!(!ok && err.contains("409"), "a test needs ACTIVE: {err}");
    let activated = cli.ok(&["subscription", "activate", &sub_id]).await;
    assert!(activated.contains("ACTIVE"), "{activated}");
    let tested = cli.json(&["subscription", "test", &sub_id]).await;
    assert!(tested["data"]["id"].as_str().unwrap().starts_with("dlv_"));
    loop {
        // Drain what replay may still send; the ping is the test's.
        if receiver.next().await.json()["eventType"] == "hookd.ping" {
            break;
        }
    }
    let deleted = cli.ok(&["subscription", "delete", &sub_id]).await;
    assert_eq!(deleted.trim(), format!("deleted {sub_id}"));
    let (ok, _, err) = cli.run(&["subscription", "show", &sub_id]).await;
    assert!(!ok && err.contains("404"), "{err}");

    let (ok, _, err) = cli
        .run(&["event", "send", "--type", "a", "--data", "not json"])
        .await;
    assert!(!ok && err.contains("--data"), "{err}");
}

#[tokio::test]
async fn without_config_the_cli_reads_hookd_config_then_the_dev_config() {
    let (hookd, cli) = Cli::start().await;
    let status = |output: &Output| {
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
    };

    // HOOKD_CONFIG names the file.
    let mut command = cli.bare(&["entity", "list"]);
    command.env("HOOKD_CONFIG", &cli.config);
    assert!(status(&run(command).await).starts_with("id"));

    // Else ./hookd-dev/hookd.toml, when it exists, from where the command runs.
    let checkout = tempfile::tempdir().unwrap();
    let dev = checkout.path().join("hookd-dev");
    std::fs::create_dir(&dev).unwrap();
    let text = write_state(&dev, &hookd.ca, &Options::default(), "127.0.0.1:8443");
    std::fs::write(dev.join("hookd.toml"), text).unwrap();
    // The same admin token and CA as the running server's (write_state's).
    let mut command = cli.bare(&["entity", "list"]);
    command.current_dir(checkout.path());
    assert!(status(&run(command).await).starts_with("id"));

    // Else /etc/hookd/hookd.toml, named in the error when it is not there.
    let elsewhere = tempfile::tempdir().unwrap();
    let mut command = cli.bare(&["entity", "list"]);
    command.current_dir(elsewhere.path());
    let output = run(command).await;
    if !Path::new("/etc/hookd/hookd.toml").exists() {
        assert_eq!(output.status.code(), Some(78));
        assert!(
            self::text(&output.stderr).contains("/etc/hookd/hookd.toml"),
            "{}",
            self::text(&output.stderr)
        );
    }
}

#[tokio::test]
async fn a_closed_stdout_ends_the_command_quietly() {
    let (hookd, cli) = Cli::start().await;
    // More than a pipe holds (64 KiB), so the writer meets the closed pipe whatever
    // `head` has read by then.
    let path = "x".repeat(1500);
    for _ in 0..60 {
        hookd
            .subscribe(&format!("https://localhost:1/{path}"), &["*"])
            .await;
    }
    let config = cli.config.to_str().unwrap();
    let cases: [&[&str]; 4] = [
        &[
            "subscription",
            "list",
            "--config",
            config,
            "--url",
            &cli.url,
        ],
        &[
            "subscription",
            "list",
            "--json",
            "--config",
            config,
            "--url",
            &cli.url,
        ],
        &["--help"],
        &["man"],
    ];
    for args in cases {
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(r#"set -o pipefail; "$0" "$@" | head -n 1"#)
            .arg(env!("CARGO_BIN_EXE_hookd"))
            .args(args);
        let output = run(command).await;
        let err = text(&output.stderr);
        assert!(
            output.status.success() && err.is_empty(),
            "hookd {args:?} | head -n 1: {:?} {err}",
            output.status
        );
        assert_eq!(text(&output.stdout).lines().count(), 1);
    }
}

#[tokio::test]
async fn a_backup_is_readable_by_its_owner_only() {
    let (_hookd, cli) = Cli::start().await;
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("hookd.redb");
    let out_arg = out.to_str().unwrap();
    if common::backend::backend() == common::backend::Backend::Postgres {
        // There is no file to copy: the command says where backups come from.
        let (ok, _, err) = cli.run(&["backup", "--out", out_arg]).await;
        assert!(!ok && err.contains("pg_dump"), "{err}");
        assert!(!out.exists());
        // The offline commands refuse too, instead of working on a file no node reads.
        for args in [vec!["restore", "--from", out_arg], vec!["compact"]] {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hookd"));
            command.args(&args).arg("--config").arg(&cli.config);
            let output = run(command).await;
            let err = text(&output.stderr);
            assert!(
                !output.status.success() && err.contains("PostgreSQL"),
                "{args:?}: {err}"
            );
        }
        return;
    }
    let said = cli.ok(&["backup", "--out", out_arg]).await;
    assert!(said.starts_with("wrote"), "{said}");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[tokio::test]
async fn listen_stops_quietly_when_its_stdout_is_closed() {
    use std::io::BufRead;
    use std::process::Stdio;

    let ca = common::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .args(["listen", "--port", "0"])
        .args(["--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
        .arg("--cert")
        .arg(&cert_path)
        .arg("--key")
        .arg(&key_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reaper = Reaper(child.id().to_string());
    // What `hookd listen | head -n 1` does: read the first line, then close the pipe.
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    let addr = banner
        .strip_prefix("listening on https://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("{banner}"))
        .to_string();
    let exited = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());

    let request = http::Request::post(format!("https://{addr}/webhook"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let answered = common::test_client(&ca)
        .send(request, common::WAIT, 4096)
        .await;
    assert_eq!(answered.unwrap().status, 401, "answered before it stops");
    let output = tokio::time::timeout(common::WAIT, exited)
        .await
        .expect("hookd listen stops once its stdout is closed")
        .unwrap();
    std::mem::forget(reaper);
    let err = text(&output.stderr);
    assert!(
        output.status.success() && err.is_empty(),
        "{:?} {err}",
        output.status
    );
}

/// Kills a child process when a test fails while it still runs: the runtime would
/// otherwise wait for ever on the blocking task that waits for it.
struct Reaper(String);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.0).status();
    }
}
