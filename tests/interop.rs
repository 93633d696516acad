//! Interoperability: a delivery, including one signed with two secrets, verifies with
//! the reference Standard Webhooks library for Python (`pip install standardwebhooks`).
//! `.ci/run` installs it and sets HOOKD_REQUIRE_INTEROP=1 so CI cannot skip this; a
//! developer without the package sees the test skip with the command to run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use std::process::Command;

use common::{Hookd, Options, Receiver, verify};
use serde_json::json;

const VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, headers_path, body_path = sys.argv[1:4]
headers = json.load(open(headers_path))
body = open(body_path, "rb").read()
payload = Webhook(secret).verify(body, headers)
print(payload["eventId"])
"#;

fn python_has_library() -> bool {
    Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn the_reference_python_library_verifies_a_delivery() {
    if !python_has_library() {
        assert!(
            std::env::var("HOOKD_REQUIRE_INTEROP").is_err(),
            "HOOKD_REQUIRE_INTEROP is set but python3 cannot import standardwebhooks"
        );
        eprintln!("skipped: run `pip install standardwebhooks` to check interoperability");
        return;
    }
    let hookd = Hookd::start(Options::default()).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let (_, secret) = hookd.subscribe(&receiver.url, &["*"]).await;
    let accepted = hookd
        .post_event(
            "invoice.paid",
            json!({"amount": 1999, "currency": "EUR", "note": "ünïcode ✓"}),
        )
        .await;
    let got = receiver.next().await;
    assert!(verify(&got, &secret));

    let dir = tempfile::tempdir().unwrap();
    let headers = json!({
        "webhook-id": got.header("webhook-id"),
        "webhook-timestamp": got.header("webhook-timestamp"),
        "webhook-signature": got.header("webhook-signature"),
    });
    std::fs::write(dir.path().join("h.json"), headers.to_string()).unwrap();
    std::fs::write(dir.path().join("b.json"), &got.body).unwrap();
    std::fs::write(dir.path().join("verify.py"), VERIFY).unwrap();
    let run = |secret: &str| {
        Command::new("python3")
            .arg(dir.path().join("verify.py"))
            .arg(secret)
            .arg(dir.path().join("h.json"))
            .arg(dir.path().join("b.json"))
            .output()
            .unwrap()
    };
    let output = run(&secret);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        accepted["id"].as_str().unwrap()
    );

    // A wrong secret must fail, so the check above is not vacuous.
    let wrong = run("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert!(!wrong.status.success());
}
