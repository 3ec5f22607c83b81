//! Shared support for the tests against the fake Bot API: Telegram alerts, a `gaia serve`
//! node running the outbox worker, the check of the fake's arrival times against Telegram's
//! rules, and the approval requests and waits of the Telegram approval tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use gaia_core::Gaia;
use gaia_core::commands::{CommandSpec, NewCommand, Status};
use gaia_core::outbox::{Channel, NewMessage};
use gaia_core::store::StoreOptions;
use gaia_server::AppState;
use gaia_server::senders::Senders;
use gaia_telegram::BotClient;
use gaia_testkit::TestDb;
use gaia_testkit::fake_telegram::{Call, FakeTelegram, Fault};
use serde_json::json;

use super::options;

/// Timer and scheduling slack allowed when comparing arrival times.
pub const SLACK: Duration = Duration::from_millis(30);

pub fn alert(chat: i64, text: &str) -> NewMessage {
    NewMessage {
        channel: Channel::Telegram,
        target: chat.to_string(),
        kind: "alert".into(),
        payload: json!({ "text": text }),
        dedupe_key: None,
    }
}

pub fn chat_of(c: &Call) -> i64 {
    let v = &c.body["chat_id"];
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap()
}

pub fn text_of(c: &Call) -> String {
    c.body["text"].as_str().unwrap_or_default().to_owned()
}

/// A store, the outbox worker (and nothing else) delivering to the fake.
/// One `gaia serve` node: its own store handle and `Senders` (its own memory), running the
/// outbox worker against the fake.
pub struct Node {
    pub state: AppState,
    workers: tokio::task::JoinHandle<()>,
}

impl Node {
    pub async fn start(db: &TestDb, fake: &FakeTelegram, lease: Duration) -> Self {
        let store = db.open(&StoreOptions::default()).await;
        // Slow answers stay well inside the HTTP timeout: a client timeout on a call that the
        // fake then handles would be a duplicate Gaia cannot avoid (nothing tells it the
        // message arrived), and not what these tests are about.
        let bot = BotClient::new(fake.base_url(), fake.token())
            .unwrap()
            .with_request_timeout(Duration::from_secs(10));
        let mut senders = Senders::new(Some(bot), None);
        senders.retry.base_delay = Duration::from_millis(50);
        senders.lease = lease;
        let state = AppState::new(Gaia::new(store), options(db), None)
            .await
            .unwrap()
            .with_senders(senders);
        let workers = gaia_server::workers::spawn(&state);
        let workers = tokio::spawn(workers.join());
        Self { state, workers }
    }

    /// Stops the workers and waits for them: the process is gone.
    pub async fn stop(self) {
        self.state.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.workers)
            .await
            .unwrap()
            .unwrap();
        self.state.gaia.store().close().await;
    }
}

/// The retry_after of a call answered with a 429.
pub fn retry_after_of(c: &Call) -> Option<Duration> {
    match c.fault {
        Some(Fault::RetryAfter(s)) => Some(Duration::from_secs(s)),
        _ => None,
    }
}

/// Checks the fake's arrivals against Telegram's rules: after a 429 nothing reaches that chat
/// before its retry_after has passed; at least 1 s between two calls to one chat; at most 20
/// calls to a group in any minute; at most 30 calls in any second overall.
pub fn assert_within_telegram_rules(calls: &[Call]) {
    let mut chats: std::collections::BTreeMap<i64, Vec<&Call>> = Default::default();
    for c in calls {
        chats.entry(chat_of(c)).or_default().push(c);
    }
    let second = Duration::from_secs(1);
    let minute = Duration::from_secs(60);
    for (chat, list) in &chats {
        for (i, c) in list.iter().enumerate() {
            if let Some(wait) = retry_after_of(c) {
                for later in &list[i + 1..] {
                    let after = later.at.duration_since(c.at);
                    assert!(
                        after + SLACK >= wait,
                        "chat {chat}: '{}' arrived {after:?} after a 429 asking for {wait:?}",
                        text_of(later)
                    );
                }
            }
        }
        for w in list.windows(2) {
            let gap = w[1].at.duration_since(w[0].at);
            assert!(
                gap + SLACK >= second,
                "chat {chat}: two calls {gap:?} apart ('{}', '{}')",
                text_of(w[0]),
                text_of(w[1])
            );
        }
        if *chat < 0 {
            for (i, c) in list.iter().enumerate() {
                let in_minute = list[i..]
                    .iter()
                    .take_while(|u| u.at.duration_since(c.at) + SLACK < minute)
                    .count();
                assert!(
                    in_minute <= 20,
                    "group {chat}: {in_minute} calls in a minute"
                );
            }
        }
    }
    let times: Vec<Instant> = calls.iter().map(|c| c.at).collect();
    for w in times.windows(31) {
        let span = w[30].duration_since(w[0]);
        assert!(span + SLACK >= second, "31 calls within {span:?}");
    }
}
pub fn senders_lease() -> Duration {
    gaia_server::senders::DEFAULT_LEASE
}

/// Polls `f` until it holds (at most 15 s).
pub async fn eventually<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

pub async fn status(gaia: &Gaia, id: &str) -> Status {
    gaia.get_command(id).await.unwrap().status
}

/// Waits (at most 15 s) for request `id` to reach `want`.
pub async fn wait_status(gaia: &Gaia, id: &str, want: Status) {
    for _ in 0..300 {
        if status(gaia, id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{id} never became {want:?} (is {:?})",
        status(gaia, id).await
    );
}

/// An approval request for `terraform apply`, asked by `agent-3`.
pub fn request(reason: &str) -> NewCommand {
    NewCommand::new(
        CommandSpec::Argv(vec!["terraform".into(), "apply".into()]),
        Some("/infra".into()),
        None,
        None,
        Some(reason.into()),
        "agent-3",
        false,
        None,
    )
    .unwrap()
}
