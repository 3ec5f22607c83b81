//! Notifications survive a sender that is killed: 300 messages are queued for Telegram, the
//! fake Bot API fails about 30% of `sendMessage` calls (5xx, 429 with `retry_after` 1, slow
//! answers), and a real `gaia telegram listen` child delivers them while it is killed with
//! SIGKILL three times at random moments and started again. In the end every message is sent
//! or dead (none pending, none lost), and the fake saw at most one duplicate delivery per kill
//! and lane (the messages in flight when the process died, one per lane at most, each resent
//! once its lease expired).
//!
//! Runs on SQLite and, when `GAIA_TEST_POSTGRES_URL` is set, PostgreSQL. Retries and the lease
//! are shortened through `GAIA_OUTBOX_RETRY_BASE_DELAY` and `GAIA_OUTBOX_LEASE`.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gaia_core::Gaia;
use gaia_core::outbox::{Channel, NewMessage, Status};
use gaia_core::store::StoreOptions;
use gaia_testkit::fake_telegram::{FakeTelegram, Fault};
use gaia_testkit::{TestDb, backend_tests};
use serde_json::json;

backend_tests!(killed_sender_loses_nothing);

const MESSAGES: usize = 300;
/// Chats the messages are spread over (at most 1 message/s goes to one chat).
const CHATS: i64 = 100;
const KILLS: usize = 3;
/// How long the whole delivery may take. The message in flight when a sender is killed (and
/// its chat) waits for the lease that was renewed for its send: the HTTP timeout (30 s) plus a
/// margin, whatever the shorter configured lease, so that a slow answer never lets another
/// sender send it again.
const BOUND: Duration = Duration::from_secs(90);

/// A `gaia telegram listen` child, killed when dropped.
type Listener = support::Killed;

impl Listener {
    fn start(db: &TestDb, fake: &FakeTelegram, dir: &std::path::Path, n: usize) -> Self {
        let mut c = support::gaia();
        let out = std::fs::File::create(dir.join(format!("listen-{n}.out"))).unwrap();
        let err = std::fs::File::create(dir.join(format!("listen-{n}.err"))).unwrap();
        c.current_dir(dir)
            .env("TELEGRAM_BOT_TOKEN", fake.token())
            .env("TELEGRAM_API_URL", fake.base_url())
            .env("TELEGRAM_NOTIFY_CHAT", "-100999")
            .env("TELEGRAM_APPROVER_IDS", "1001")
            .env("GAIA_OUTBOX_RETRY_BASE_DELAY", "100ms")
            .env("GAIA_OUTBOX_LEASE", "3s")
            .env("GAIA_LOG", "warn")
            .arg("--db")
            .arg(&db.url)
            .args(["telegram", "listen"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        Self(c.spawn().unwrap())
    }
}

/// Whether a message text is one this test enqueued.
fn is_ours(text: &serde_json::Value) -> bool {
    text.as_str()
        .is_some_and(|t| t.starts_with("notification "))
}

async fn killed_sender_loses_nothing(db: &TestDb) {
    let fake = FakeTelegram::start().await;
    fake.fail_randomly(
        "sendMessage",
        0.3,
        vec![
            Fault::ServerError(500),
            Fault::ServerError(502),
            Fault::RetryAfter(1),
            Fault::Timeout(Duration::from_millis(500)),
        ],
    );
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let messages: Vec<NewMessage> = (0..MESSAGES)
        .map(|i| NewMessage {
            channel: Channel::Telegram,
            target: (10_000 + i as i64 % CHATS).to_string(),
            kind: "alert".into(),
            payload: json!({ "text": format!("notification {i:03}") }),
            dedupe_key: None,
        })
        .collect();
    for chunk in messages.chunks(50) {
        gaia.enqueue_messages(chunk).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();

    // Killed three times, each after a random moment of delivery.
    for n in 0..KILLS {
        let child = Listener::start(db, &fake, dir.path(), n);
        let wait = Duration::from_millis(rand::random_range(800..3000));
        tokio::time::sleep(wait).await;
        child.kill();
        eprintln!(
            "kill {} after {wait:?}: {} sendMessage calls, {} delivered",
            n + 1,
            fake.calls_to("sendMessage").len(),
            fake.sent_messages().len()
        );
    }
    let _last = Listener::start(db, &fake, dir.path(), KILLS);

    let counts = loop {
        // The test's own messages: the listener may add alerts of its own (the retries the
        // faults cause cross the alert thresholds), which go to the notify chat.
        let all: Vec<_> = gaia
            .list_messages(None, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| is_ours(&m.payload["text"]))
            .collect();
        assert_eq!(all.len(), MESSAGES, "no message lost from the queue");
        let pending = all.iter().filter(|m| m.status == Status::Pending).count();
        if pending == 0 {
            break all;
        }
        assert!(
            started.elapsed() < BOUND,
            "{pending} still pending after {:?}; stderr of the last child: {}",
            started.elapsed(),
            std::fs::read_to_string(dir.path().join(format!("listen-{KILLS}.err")))
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = started.elapsed();

    let mut delivered: HashMap<String, usize> = HashMap::new();
    for m in fake.sent_messages() {
        if m.text.starts_with("notification ") {
            *delivered.entry(m.text).or_default() += 1;
        }
    }
    let sent: Vec<_> = counts.iter().filter(|m| m.status == Status::Sent).collect();
    let dead = counts.len() - sent.len();
    for m in &sent {
        let text = m.payload["text"].as_str().unwrap();
        assert!(
            delivered.contains_key(text),
            "message {} is recorded as sent but never reached Telegram",
            m.id
        );
    }
    let duplicates: usize = delivered.values().map(|n| n - 1).sum();
    let calls = fake.calls_to("sendMessage").len();
    eprintln!(
        "{MESSAGES} messages: {} sent, {dead} dead, {calls} sendMessage calls, {duplicates} duplicate deliveries after {KILLS} kills, done in {elapsed:?}",
        sent.len()
    );
    // Chats are sent to in lanes, so a kill can catch one send in flight per lane.
    assert!(
        duplicates <= KILLS * gaia_runtime::senders::DEFAULT_LANES,
        "{duplicates} duplicate deliveries after {KILLS} kills in {} lanes: {:?}",
        gaia_runtime::senders::DEFAULT_LANES,
        delivered
            .iter()
            .filter(|(_, n)| **n > 1)
            .collect::<Vec<_>>()
    );
    assert!(calls > MESSAGES, "faults were injected: {calls} calls");
}
