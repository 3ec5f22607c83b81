//! PostgreSQL seals a write's audit records and numbers its events where the log head is
//! (`gaia_append`, migration 12), in the message that also commits. The hashes it writes must
//! be the ones Gaia computes for any text a caller sends; a write that fails, is dropped or is
//! cancelled must leave no session inside a transaction, holding `log_head`; and a write that
//! returns is durable.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gaia_core::audit::NewAudit;
use gaia_core::claims::{ClaimRow, Request};
use gaia_core::event::NewEvent;
use gaia_core::names::ClaimKey;
use gaia_core::store::{Change, StoreOptions};
use gaia_core::{Gaia, StoreError};
use gaia_testkit::{TestDb, whole_log};
use serde_json::json;
use sqlx::Connection;

/// Texts that JSON escapes (quotes, backslashes, control characters), that SQL literals and
/// PostgreSQL's array text form give meaning to, and Unicode beyond the Basic Multilingual
/// Plane or with meaning of its own.
const TEXTS: &[&str] = &[
    "plain",
    "it's \"quoted\" \\ back\\slash\\",
    "control \u{1} tab \t newline \n del \u{7f} escape \u{1b}",
    "ünïcödé 🚀 𝄞 \u{202e}rtl \u{2028}\u{2029}",
    "x'); DROP TABLE audit; --",
    "E'\\x41' $$ $gaia$ $1",
    "{a,b}",
    "NULL",
    "a, b",
    "",
];

#[tokio::test]
async fn texts_are_sealed_as_gaia_seals_them() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.open(&StoreOptions::default()).await;
    let mut sent = Vec::new();
    for (i, t) in TEXTS.iter().enumerate() {
        // Several audit records in one append: each chains to the one before it, inside the
        // function.
        let change = Change {
            events: vec![
                NewEvent::new("test.append", *t, *t, json!({ "text": t, "i": i })),
                NewEvent::new("test.append", "second", *t, json!(t)),
            ],
            audit: (0..3)
                .map(|n| NewAudit::new(*t, "test.append", *t, *t, json!({ "text": t, "n": n })))
                .collect(),
        };
        let events = store.append(change.clone()).await.unwrap();
        assert_eq!(events.len(), 2);
        sent.push((change, events));
    }
    let log = whole_log(store.as_ref()).await;
    for (change, returned) in &sent {
        for (new, got) in change.events.iter().zip(returned) {
            let stored = &log[usize::try_from(got.seq - 1).unwrap()];
            assert_eq!(stored, got, "returned as stored");
            assert_eq!(
                (&stored.kind, &stored.actor, &stored.subject, &stored.data),
                (&new.kind, &new.actor, &new.subject, &new.data)
            );
        }
    }
    // Gaia recomputes every stored record's hash, and each record's link to the one before.
    let audit = Gaia::new(store.clone()).verify_audit().await.unwrap();
    assert!(audit.first_break.is_none(), "{:?}", audit.first_break);
    assert_eq!(audit.checked, 3 * TEXTS.len() as u64);
    // And the texts themselves are stored as sent.
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let stored: Vec<(String, String, String)> =
        sqlx::query_as("SELECT actor, outcome, details FROM audit ORDER BY id")
            .fetch_all(&mut admin)
            .await
            .unwrap();
    let want: Vec<(String, String, String)> = sent
        .iter()
        .flat_map(|(c, _)| c.audit.iter())
        .map(|a| (a.actor.clone(), a.outcome.clone(), a.details.to_string()))
        .collect();
    assert_eq!(stored, want);
}

/// Writes that end without committing, each a different way, while another session holds
/// `log_head`; then the lock is released and writing goes on.
#[tokio::test]
async fn writes_that_do_not_commit_leave_no_transaction_open() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let opts = StoreOptions {
        lock_timeout: Duration::from_millis(300),
        ..StoreOptions::default()
    };
    let store = db.open(&opts).await;
    // A row with a token, which reads back as a claim (one never acquired reads as none).
    let row = |name: &str| {
        let mut row = ClaimRow::vacant(ClaimKey::new(name, "append").unwrap());
        row.token = 7;
        row
    };
    let event = |name: &str| vec![NewEvent::new("test.append", name, "s", json!({}))];

    // Another session holds the log head.
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT * FROM log_head WHERE id = 1 FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();

    // Its append waits past the lock timeout: refused, and rolled back whole.
    let mut tx = store.begin_write().await.unwrap();
    let now = tx.now().await.unwrap();
    tx.claim_write(&row("timed-out")).await.unwrap();
    let refused = tx.append_and_commit(&event("timed-out"), &[], now).await;
    assert!(
        matches!(refused, Err(StoreError::LockTimeout)),
        "{refused:?}"
    );

    // Dropped after a write, as on an error returned with `?`.
    let mut tx = store.begin_write().await.unwrap();
    tx.claim_write(&row("dropped")).await.unwrap();
    drop(tx);

    // Cancelled while its append waits at the lock.
    let mut tx = store.begin_write().await.unwrap();
    let now = tx.now().await.unwrap();
    tx.claim_write(&row("cancelled")).await.unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        tx.append_and_commit(&event("cancelled"), &[], now),
    )
    .await;
    assert!(cancelled.is_err(), "it waited at the lock");

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();

    // Nothing is left inside a transaction once the rollbacks run.
    let mut open = -1;
    for _ in 0..50 {
        open = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()
             AND state LIKE 'idle in transaction%'",
        )
        .fetch_one(&mut holder)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, 0, "sessions left inside a transaction");

    // Every connection of the pool still writes, and none of the three wrote anything.
    for i in 0..2 * opts.max_connections {
        let name = format!("after-{i}");
        let mut tx = store.begin_write().await.unwrap();
        let now = tx.now().await.unwrap();
        tx.claim_write(&row(&name)).await.unwrap();
        tx.append_and_commit(&event(&name), &[], now).await.unwrap();
    }
    let log = whole_log(store.as_ref()).await;
    let mut actors: Vec<&str> = log.iter().map(|e| e.actor.as_str()).collect();
    // The cancelled one's message was on its way with its `COMMIT`: it committed once the
    // lock was free, or not at all, its row with its event either way.
    let committed = actors.first() == Some(&"cancelled");
    if committed {
        actors.remove(0);
    }
    let want: Vec<String> = (0..2 * opts.max_connections)
        .map(|i| format!("after-{i}"))
        .collect();
    assert_eq!(actors, want);
    for (name, kept) in [
        ("timed-out", false),
        ("dropped", false),
        ("cancelled", committed),
    ] {
        let read = store
            .claim_get(&ClaimKey::new(name, "append").unwrap())
            .await
            .unwrap();
        assert_eq!(read.is_some(), kept, "{name}: its row and its event");
    }
}

/// A write is answered only once durable: when it returns, its commit record lies within the
/// WAL the server has flushed. Checked for plain writes and for claim batches (both the batch
/// numbered under the lock and the predicted ones after it), whose commits are sent in one
/// message with the statements before them; a commit made asynchronous (to release
/// `log_head` before the flush) fails it.
#[tokio::test]
async fn writes_are_durable_when_answered() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.open(&StoreOptions::default()).await;
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    // Reads the WAL's records (contrib, shipped with the server).
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .execute(&mut admin)
        .await
        .expect("pg_walinspect, from PostgreSQL's contrib modules, reads the WAL");
    let lsn = |sql: &'static str| sqlx::query_scalar::<_, String>(sql);
    for i in 0..12 {
        let start = lsn("SELECT pg_current_wal_insert_lsn()::TEXT")
            .fetch_one(&mut admin)
            .await
            .unwrap();
        let seq = if i % 2 == 0 {
            let change = Change {
                events: vec![NewEvent::new("test.durable", "t", "s", json!({ "i": i }))],
                audit: vec![NewAudit::new("t", "test.durable", "s", "ok", json!({}))],
            };
            store.append(change).await.unwrap()[0].seq
        } else {
            let key = ClaimKey::new("durable", &format!("k{i}")).unwrap();
            let req =
                Request::acquire(key, "agent", None, None, Some(Duration::from_secs(60))).unwrap();
            let (_, events) = store.claim(&req).await.unwrap();
            events.last().unwrap().seq
        };
        // Read at once: the WAL writer flushes asynchronous commits on its own only every
        // `wal_writer_delay` (200 ms by default).
        let flushed = lsn("SELECT pg_current_wal_flush_lsn()::TEXT")
            .fetch_one(&mut admin)
            .await
            .unwrap();
        let xid: String = sqlx::query_scalar("SELECT xmin::TEXT FROM events WHERE seq = $1")
            .bind(seq)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        // A flush short of where the write began leaves nothing to search.
        let commits: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN $2::pg_lsn <= $1::pg_lsn THEN 0 ELSE (
                SELECT count(*) FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn)
                WHERE resource_manager = 'Transaction' AND record_type LIKE 'COMMIT%'
                  AND xid::TEXT = $3) END",
        )
        .bind(&start)
        .bind(&flushed)
        .bind(&xid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(
            commits, 1,
            "write {i} (seq {seq}) answered before its commit was flushed"
        );
    }
}
