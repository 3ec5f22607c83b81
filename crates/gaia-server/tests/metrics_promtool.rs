//! `/metrics` passes `promtool check metrics` (Prometheus's own exposition-format check and
//! naming lint). Skipped when promtool is not installed, unless `GAIA_REQUIRE_PROMTOOL=1`.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Server, options};
use gaia_core::outbox::{Channel, NewMessage};
use gaia_testkit::{TestDb, backend_tests};
use reqwest::Method;

backend_tests!(metrics_pass_promtool);

fn promtool_present() -> bool {
    Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

async fn metrics_pass_promtool(db: &TestDb) {
    if !promtool_present() {
        assert!(
            std::env::var("GAIA_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
            "promtool not found and GAIA_REQUIRE_PROMTOOL=1"
        );
        println!("skipped: promtool not found");
        return;
    }
    let server = Server::start(db, options(db)).await;
    // Something in the outbox so more than the zero-valued metrics show.
    server
        .gaia()
        .enqueue_messages(&[NewMessage {
            channel: Channel::Console,
            target: "console".into(),
            kind: "alert".into(),
            payload: serde_json::json!({ "text": "promtool" }),
            dedupe_key: None,
        }])
        .await
        .unwrap();
    let res = server.anon(Method::GET, "/metrics").send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let text = res.text().await.unwrap();
    assert!(text.contains("# TYPE "), "{text}");

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await;
}
