//! The Telegram poller comes back within seconds: two `gaia telegram listen` processes (and,
//! in a second test, two `gaia serve` processes) share one store and the fake Bot API; only
//! the holder of the poller lease polls. 200 button
//! presses (Approve on 200 requests) are pushed while the holder is killed with SIGKILL part
//! way through: the other process polls within 10 s of the kill, and every press is applied
//! exactly once (one `command.approved` event and one audit record per request).
//!
//! Runs on SQLite and, when `GAIA_TEST_POSTGRES_URL` is set, PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gaia_core::Gaia;
use gaia_core::commands::{CommandSpec, NewCommand};
use gaia_core::event::EventFilter;
use gaia_core::store::StoreOptions;
use gaia_testkit::fake_telegram::FakeTelegram;
use gaia_testkit::{TestDb, backend_tests};

backend_tests!(
    a_killed_poller_is_replaced_and_presses_apply_once,
    a_killed_serve_poller_is_replaced_and_presses_apply_once
);

const PRESSES: usize = 200;
const APPROVER: i64 = 1001;
const CHAT: i64 = -100_999;
/// How long the whole run may take.
const BOUND: Duration = Duration::from_secs(120);
/// The bound on a failover.
const FAILOVER: Duration = Duration::from_secs(10);

/// Which command runs the poller.
#[derive(Clone, Copy, Debug)]
enum Poller {
    /// `gaia telegram listen`.
    Listen,
    /// `gaia serve` on a port of its own, polling as well as serving HTTP.
    Serve,
}

impl Poller {
    fn args(self) -> &'static [&'static str] {
        match self {
            Self::Listen => &["telegram", "listen"],
            Self::Serve => &["serve", "--bind", "127.0.0.1:0"],
        }
    }
}

/// A poller child, killed when dropped.
type Listener = support::Killed;

impl Listener {
    fn start(
        db: &TestDb,
        fake: &FakeTelegram,
        dir: &std::path::Path,
        n: usize,
        poller: Poller,
    ) -> Self {
        let mut c = support::gaia();
        let out = std::fs::File::create(dir.join(format!("listen-{n}.out"))).unwrap();
        let err = std::fs::File::create(dir.join(format!("listen-{n}.err"))).unwrap();
        if let Poller::Serve = poller {
            c.env(
                "MONITOR_ADMIN_TOKEN",
                format!("test-admin-{:032x}", rand::random::<u128>()),
            );
        }
        c.current_dir(dir)
            .env("TELEGRAM_BOT_TOKEN", fake.token())
            .env("TELEGRAM_API_URL", fake.base_url())
            .env("TELEGRAM_NOTIFY_CHAT", CHAT.to_string())
            .env("TELEGRAM_APPROVER_IDS", APPROVER.to_string())
            .env("GAIA_LOG", "warn")
            .arg("--db")
            .arg(&db.url)
            .args(poller.args())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        Self(c.spawn().unwrap())
    }
}

/// How many times each subject has `kind` among the events and among the audit records.
async fn counts(gaia: &Gaia, kind: &str) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let mut events: HashMap<String, usize> = HashMap::new();
    let mut after = 0;
    loop {
        let page = gaia
            .list_events_after(
                after,
                &EventFilter {
                    type_prefix: Some(kind.into()),
                    subject: None,
                },
                500,
            )
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            if e.kind == kind {
                *events.entry(e.subject.clone()).or_default() += 1;
            }
        }
    }
    let mut audit: HashMap<String, usize> = HashMap::new();
    for r in gaia.list_audit_tail(10_000).await.unwrap() {
        if r.action == kind {
            *audit.entry(r.subject.clone()).or_default() += 1;
        }
    }
    (events, audit)
}

async fn a_killed_poller_is_replaced_and_presses_apply_once(db: &TestDb) {
    killed_poller_is_replaced(db, Poller::Listen).await;
}

async fn a_killed_serve_poller_is_replaced_and_presses_apply_once(db: &TestDb) {
    killed_poller_is_replaced(db, Poller::Serve).await;
}

/// Two `poller` processes; the lease holder is SIGKILLed a quarter of the way through the
/// presses.
async fn killed_poller_is_replaced(db: &TestDb, poller: Poller) {
    let fake = FakeTelegram::start().await;
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let mut ids = Vec::new();
    for i in 0..PRESSES {
        let cmd = NewCommand::new(
            CommandSpec::Argv(vec!["make".into(), format!("deploy-{i}")]),
            None,
            None,
            None,
            None,
            "agent-1",
            false,
            None,
        )
        .unwrap();
        ids.push(gaia.request_command(&cmd).await.unwrap().id);
    }
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();

    // The first process takes the lease and polls; only then the second starts.
    let first = Listener::start(db, &fake, dir.path(), 0, poller);
    fake.wait_for_calls("getUpdates", 1, Duration::from_secs(30))
        .await;
    let _second = Listener::start(db, &fake, dir.path(), 1, poller);

    // Presses arrive steadily; the poller is killed once a quarter of them were applied.
    let presses: Vec<String> = ids.iter().map(|id| format!("a:{id}")).collect();
    let mut pushed = 0;
    let mut killed: Option<Instant> = None;
    let mut first = Some(first);
    loop {
        for data in presses.iter().skip(pushed).take(5) {
            fake.push_callback(CHAT, 1, APPROVER, data);
            pushed += 1;
        }
        let (approved, _) = counts(&gaia, "command.approved").await;
        if killed.is_none() && approved.len() >= PRESSES / 4 {
            first.take().unwrap().kill();
            killed = Some(Instant::now());
            eprintln!(
                "killed the poller after {} presses applied, {pushed} pushed",
                approved.len()
            );
        }
        if approved.len() >= PRESSES && pushed >= PRESSES {
            break;
        }
        assert!(
            started.elapsed() < BOUND,
            "{} of {PRESSES} presses applied after {:?}; stderr of the second: {}",
            approved.len(),
            started.elapsed(),
            std::fs::read_to_string(dir.path().join("listen-1.err")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = killed.unwrap();

    // The second process polled within the bound: every getUpdates after the kill is its own.
    let after_kill: Vec<Instant> = fake
        .calls_to("getUpdates")
        .iter()
        .map(|c| c.at)
        .filter(|at| *at > killed)
        .collect();
    let failover = after_kill[0].duration_since(killed);
    eprintln!("the second process polled {failover:?} after the kill");
    assert!(
        failover <= FAILOVER,
        "the second process polled {failover:?} after the kill"
    );

    // Every press applied exactly once: one event and one audit record per request.
    let (events, audit) = counts(&gaia, "command.approved").await;
    assert_eq!(events.len(), PRESSES);
    assert!(
        events.values().all(|n| *n == 1),
        "a press applied twice: {events:?}"
    );
    assert_eq!(audit.len(), PRESSES);
    assert!(audit.values().all(|n| *n == 1), "{audit:?}");
    for id in &ids {
        let r = gaia.get_command(id).await.unwrap();
        assert_eq!(r.status, gaia_core::commands::Status::Approved, "{id}");
    }
    assert_eq!(gaia.verify_audit().await.unwrap().first_break, None);
}
