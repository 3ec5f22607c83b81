//! The PostgreSQL claim writer sends `BEGIN` and `COMMIT` with its statements, their
//! arguments written as literals on statements it prepares on each connection. What a user
//! types (quotes, backslashes, dollar quotes, SQL) must come back byte for byte and run as
//! nothing but data; a batch numbered from a log head another node moved must roll back
//! whole and commit again, with nothing lost or doubled.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gaia_core::Gaia;
use gaia_core::claims::{Outcome, Request};
use gaia_core::event::EventFilter;
use gaia_core::names::ClaimKey;
use gaia_core::store::StoreOptions;
use gaia_testkit::{TestDb, whole_log};
use serde_json::json;
use sqlx::Connection;

/// Names as people might type them: what `check_name` lets through that means something to
/// SQL, to a literal's escaping or to an array's text form.
const NAMES: &[&str] = &[
    "it's",
    "back\\slash\\",
    "x'); DROP TABLE events; --",
    "E'\\x41'",
    "$$ $gaia$ $1",
    "ünïcödé 🚀 \u{202e}",
    "\\'",
    "''",
    // What PostgreSQL's array text form gives meaning to.
    "\"quoted\" \\\"",
    "{a,b}",
    "NULL",
    "a, b",
];

#[tokio::test]
async fn what_users_type_comes_back_unchanged() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    for (i, name) in NAMES.iter().enumerate() {
        let key = ClaimKey::new(name, name).unwrap();
        let req = Request::acquire(
            key.clone(),
            name,
            Some(name),
            Some(name),
            Some(Duration::from_secs(60)),
        )
        .unwrap();
        let got = gaia.apply_claim(&req).await.unwrap();
        assert_eq!(got.outcome, Outcome::Acquired, "{name:?}");
        let read = gaia.get_claim(&key).await.unwrap();
        let holder = read.holder.unwrap();
        assert_eq!(
            (
                read.key.story.as_str(),
                read.key.todolist.as_str(),
                holder.agent.as_str(),
                holder.operator.as_str(),
                holder.fingerprint.as_str(),
            ),
            (*name, *name, *name, *name, *name)
        );
        // The same names in the event the claim appended, and in its audit record.
        let events = gaia
            .store()
            .events_after(0, &EventFilter::default(), 10_000)
            .await
            .unwrap();
        assert_eq!(events.len(), i + 1);
        let last = events.last().unwrap();
        assert_eq!(last.data["agent"], json!(name), "{:?}", last.data);
    }
    let audit = gaia.verify_audit().await.unwrap();
    assert!(audit.first_break.is_none(), "{:?}", audit.first_break);
    assert_eq!(audit.checked, NAMES.len() as u64);
}

#[tokio::test]
async fn a_batch_whose_head_moved_rolls_back_and_commits_again() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let node = Gaia::new(db.open(&StoreOptions::default()).await);
    let other = Gaia::new(db.open(&StoreOptions::default()).await);
    let key = ClaimKey::new("moved", "default").unwrap();
    let acquire = |agent: &str| {
        Request::acquire(
            key.clone(),
            agent,
            Some("op"),
            Some("fp"),
            Some(Duration::from_secs(60)),
        )
        .unwrap()
    };
    let release = |agent: &str| Request::release(key.clone(), agent, None).unwrap();
    let mut claims = 0;
    for round in 0..10 {
        // Two claims in a row: the second is numbered from the head the first left.
        let agent = format!("agent-{round}");
        for req in [acquire(&agent), release(&agent)] {
            let got = node.apply_claim(&req).await.unwrap();
            assert!(matches!(got.outcome, Outcome::Acquired | Outcome::Released));
            claims += 1;
        }
        // Another node moves the head under the next prediction.
        other
            .emit_event("test.other", "t", "moved", json!({ "round": round }))
            .await
            .unwrap();
        let got = node.apply_claim(&acquire("late")).await.unwrap();
        assert_eq!(got.outcome, Outcome::Acquired);
        node.apply_claim(&release("late")).await.unwrap();
        claims += 2;
    }
    let events = whole_log(node.store().as_ref()).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind.starts_with("claim."))
            .count(),
        claims,
        "one event per claim, none lost or doubled"
    );
    assert_eq!(events.iter().filter(|e| e.kind == "test.other").count(), 10);
    let audit = node.verify_audit().await.unwrap();
    assert!(audit.first_break.is_none(), "{:?}", audit.first_break);
    // The batches that missed were rolled back: no session is left inside a transaction.
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()
         AND state LIKE 'idle in transaction%'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(open, 0);
}
