//! `gaia store copy` and `gaia events import`: a SQLite deployment with every kind of record,
//! copied into an empty store on each backend, holds the same rows (same seqs, same ids), its
//! audit chain verifies, claims keep their fencing tokens (the next acquisition's is higher),
//! and a stream reader resumes with its old `Last-Event-ID`. A store that is not empty is
//! refused. An events export imported into an empty store exports the same bytes again.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::BufRead;

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::dump::{Row, RowSink};
use gaia_core::store::StoreOptions;
use gaia_testkit::{TestDb, backend_tests};
use serde_json::Value;
use support::Server;

backend_tests!(
    a_sqlite_deployment_copies_whole,
    events_export_import_round_trips
);

/// Events emitted besides the other records: over two pages of the copy.
const LOG_ROWS: usize = 2_100;

/// Telegram configured (at an address that never answers), so that approvals queue messages.
const TELEGRAM: &[(&str, &str)] = &[
    ("TELEGRAM_BOT_TOKEN", "1:test"),
    ("CHAT_ID", "5"),
    ("TELEGRAM_API_URL", "http://127.0.0.1:9"),
];

/// Runs `gaia --db URL ARGS` with Telegram configured; returns (code, stdout, stderr).
fn run(db: &str, args: &[&str]) -> (i32, String, String) {
    support::run_on(db, TELEGRAM, args)
}

fn ok(db: &str, args: &[&str]) -> String {
    support::ok_on(db, TELEGRAM, args)
}

fn json(db: &str, args: &[&str]) -> Value {
    serde_json::from_str(&ok(db, args)).unwrap()
}

/// Every table's rows, as the copy reads them.
#[derive(Default)]
struct Collect(BTreeMap<&'static str, Vec<Row>>);

#[async_trait]
impl RowSink for Collect {
    async fn rows(&mut self, table: &'static str, rows: Vec<Row>) -> Result<(), StoreError> {
        self.0.entry(table).or_default().extend(rows);
        Ok(())
    }
}

async fn rows_of(url: &str) -> BTreeMap<&'static str, Vec<Row>> {
    let store = gaia_testkit::open_url(url, &StoreOptions::default()).await;
    let mut all = Collect::default();
    store.dump().unwrap().dump(&mut all).await.unwrap();
    store.close().await;
    all.0
}

/// A SQLite deployment with a row in every table: tokens, claims taken several times, a
/// story with dependent tasks, an approval request with its queued message, events, and the
/// records the sender, the sync and the collector write (inserted directly).
async fn deployment() -> TestDb {
    let src = TestDb::sqlite();
    let db = src.url.as_str();
    ok(db, &["token", "create", "--role", "agent", "--name", "a1"]);
    for _ in 0..3 {
        ok(db, &["claim", "acquire", "s1", "--agent", "a1"]);
        ok(db, &["claim", "release", "s1", "--agent", "a1"]);
    }
    ok(db, &["claim", "acquire", "s1", "--agent", "a1"]);
    ok(db, &["story", "create", "s1", "--title", "Story one"]);
    ok(db, &["todo", "add", "s1", "--title", "first"]);
    ok(
        db,
        &["todo", "add", "s1", "--title", "second", "--after", "2"],
    );
    ok(
        db,
        &[
            "cmd", "request", "--agent", "a1", "--reason", "why", "--", "ls", "-l",
        ],
    );
    // More events and audit records than one page of the copy holds.
    let store = src.open(&StoreOptions::default()).await;
    let service = gaia_core::Gaia::new(store.clone());
    for i in 0..LOG_ROWS {
        service
            .emit_event("chat.message", "a1", "s1", serde_json::json!({ "i": i }))
            .await
            .unwrap();
    }
    store.close().await;
    src.execute(
        "INSERT INTO settings (name, value) VALUES ('test.setting', 'v');
         INSERT INTO outbox_sends (chat, at_us) VALUES ('5', 1000), ('5', 2000);
         UPDATE outbox_pacing SET last_sent_us = 2000 WHERE chat = '*';
         INSERT INTO outbox_pacing (chat, last_sent_us) VALUES ('5', 2000);
         INSERT INTO followups (path, hash, story, agent, task, title, body, status,
                                created_at_us, updated_at_us)
             VALUES ('doc/s1.a1.t.extra.md', 'h', 's1', 'a1', 't', 'More', 'body', 'open', 1, 1);
         INSERT INTO github_sync (repo, item_kind, item, sync_key, issue, pushed_hash,
                                  intent_at_us, attempt_at_us, last_seen, updated_at_us)
             VALUES ('o/r', 'story', 's1', 'k-1', 7, 'ph', 1, 1, 7, 1);
         INSERT INTO telegram_updates (update_id, done, until_us) VALUES (41, 1, 5000);",
    )
    .await;
    src
}

/// Reads the stream after `last_id` from the server at `url` and returns the first event's
/// seq (blocking: call it off the runtime).
fn first_streamed_after(url: &str, token: &str, last_id: i64) -> i64 {
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let res = client
        .get(format!("{url}/api/v1/events/stream"))
        .bearer_auth(token)
        .header("Last-Event-ID", last_id.to_string())
        .send()
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    for line in std::io::BufReader::new(res).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("id:") {
            return id.trim().parse().unwrap();
        }
    }
    panic!("the stream ended without an event");
}

async fn a_sqlite_deployment_copies_whole(target: &TestDb) {
    let src = deployment().await;
    let before = rows_of(&src.url).await;
    for (table, rows) in &before {
        assert!(!rows.is_empty(), "the deployment has no {table} rows");
    }
    let source_token = json(&src.url, &["claim", "inspect", "s1", "--json"])["token"]
        .as_i64()
        .unwrap();
    assert_eq!(source_token, 4);
    let last_seq: i64 = ok(&src.url, &["events", "emit", "test.last"])
        .trim()
        .parse()
        .unwrap();

    let copied = ok(
        &src.url,
        &["store", "copy", "--from", &src.url, "--to", &target.url],
    );
    assert!(copied.starts_with("copied "), "{copied}");

    // Same rows, table by table (the source's head moved with the emit above: read again).
    assert_eq!(rows_of(&target.url).await, rows_of(&src.url).await);
    let verify = ok(&target.url, &["audit", "verify"]);
    assert!(verify.starts_with("audit chain intact"), "{verify}");

    // The fencing token continues: release, then the next acquisition's token is higher.
    ok(&target.url, &["claim", "release", "s1", "--agent", "a1"]);
    let next = json(
        &target.url,
        &["claim", "acquire", "s1", "--agent", "a2", "--json"],
    );
    assert_eq!(next["outcome"], "acquired");
    assert!(next["token"].as_i64().unwrap() > source_token, "{next}");

    // Generated ids continue after the copied ones (the source has tasks 1 to 3).
    let task = json(
        &target.url,
        &["todo", "add", "s1", "--title", "third", "--json"],
    );
    assert_eq!(task["id"], 4, "{task}");

    // A stream reader that had read up to the source's newest event but one resumes there.
    let server = Server::start(target, &[]);
    let (url, token) = (server.url.clone(), server.token.clone());
    let first =
        tokio::task::spawn_blocking(move || first_streamed_after(&url, &token, last_seq - 1))
            .await
            .unwrap();
    assert_eq!(first, last_seq);
    drop(server);

    // The target is no longer empty: a second copy is refused and changes nothing.
    let rows = rows_of(&target.url).await;
    let (code, _, err) = run(
        &src.url,
        &["store", "copy", "--from", &src.url, "--to", &target.url],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(rows_of(&target.url).await, rows);
}

async fn events_export_import_round_trips(target: &TestDb) {
    let src = deployment().await;
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.ndjson");
    let second = dir.path().join("second.ndjson");
    ok(
        &src.url,
        &["events", "export", "-o", first.to_str().unwrap()],
    );

    // A bad line refuses the whole file: nothing is imported.
    let broken = dir.path().join("broken.ndjson");
    let text = std::fs::read_to_string(&first).unwrap();
    std::fs::write(&broken, format!("{text}{{not json\n")).unwrap();
    let n = text.lines().count();
    let (code, _, err) = run(&target.url, &["events", "import", broken.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("line {}", n + 1)), "{err}");
    assert_eq!(ok(&target.url, &["events", "tail", "--since", "0"]), "");

    let out = ok(&target.url, &["events", "import", first.to_str().unwrap()]);
    assert_eq!(out.trim(), format!("imported {n} events"));
    ok(
        &target.url,
        &["events", "export", "-o", second.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
    let verify = ok(&target.url, &["audit", "verify"]);
    assert!(verify.starts_with("audit chain intact"), "{verify}");

    // New events continue after the imported seqs.
    let next: i64 = ok(&target.url, &["events", "emit", "test.next"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(next, i64::try_from(n).unwrap() + 1);

    // Not empty any more: refused.
    let (code, _, err) = run(&target.url, &["events", "import", first.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not empty"), "{err}");
}
