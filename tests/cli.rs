//! The admin commands of the real binary against a running hookd: entities, keys,
//! subscriptions, events and deliveries, as tables and as JSON.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Hookd, Options, Receiver, write_state};
use serde_json::Value;

struct Cli {
    config: PathBuf,
    url: String,
}

impl Cli {
    /// Runs `hookd <args> --config … --url …` off the async threads; (status, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookd"));
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .args(["--url", &self.url]);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
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

#[tokio::test]
async fn the_admin_commands_drive_a_running_server() {
    let hookd = Hookd::start(Options::default()).await;
    let config = hookd.dir.path().join("hookd.toml");
    std::fs::write(
        &config,
        write_state(
            hookd.dir.path(),
            &hookd.ca,
            &Options::default(),
            "127.0.0.1:8443",
        ),
    )
    .unwrap();
    let cli = Cli {
        config,
        url: hookd.url.clone(),
    };
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
    assert!(
        sub["data"]["signingSecret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
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
    assert_eq!(sent["data"]["deliveryCount"], 1);
    let got = receiver.next().await;
    assert_eq!(got.json()["data"]["n"], 7);
    let delivery = hookd.first_delivery(&sent["data"]).await;
    hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;
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

    let deactivated = cli.json(&["subscription", "deactivate", &sub_id]).await;
    assert_eq!(deactivated["data"]["status"], "DEACTIVATED");
    assert!(
        cli.ok(&["subscription", "show", &sub_id])
            .await
            .contains("DEACTIVATED")
    );

    let (ok, _, err) = cli
        .run(&[
            "subscription",
            "show",
            "sub_00000000000000000000000000000000",
        ])
        .await;
    assert!(!ok);
    assert!(err.contains("404"), "{err}");
    let (ok, _, err) = cli
        .run(&["event", "send", "--type", "a", "--data", "not json"])
        .await;
    assert!(!ok && err.contains("--data"), "{err}");
}
