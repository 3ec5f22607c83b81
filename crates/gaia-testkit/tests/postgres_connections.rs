//! A PostgreSQL store whose connections the server drops (a restart, an idle timeout on the
//! way, an administrator's `pg_terminate_backend`) gets new ones: once the pool has looked at
//! them again, reads, appends and claims all work, and the log stays whole.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gaia_core::Gaia;
use gaia_core::claims::{Outcome, Request};
use gaia_core::names::ClaimKey;
use gaia_core::store::StoreOptions;
use gaia_testkit::{TestDb, whole_log};
use serde_json::json;
use sqlx::Connection;

/// Ends every session on the test's database but the caller's; returns how many it ended.
async fn drop_connections(url: &str) -> i64 {
    let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
    let ended: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
    ended
}

#[tokio::test]
async fn connections_the_server_drops_are_replaced() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let key = ClaimKey::new("conn", "default").unwrap();
    let acquire = || {
        Request::acquire(
            key.clone(),
            "agent-1",
            Some("op"),
            Some("fp"),
            Some(Duration::from_secs(60)),
        )
        .unwrap()
    };
    // Use the pool (reads, appends) and the claim writer's kept connections.
    for round in 0..3 {
        gaia.emit_event("test.before", "t", "conn", json!({ "round": round }))
            .await
            .unwrap();
        let got = gaia.apply_claim(&acquire()).await.unwrap();
        assert!(matches!(
            got.outcome,
            Outcome::Acquired | Outcome::AlreadyHeld
        ));
        let release = Request::release(key.clone(), "agent-1", None).unwrap();
        gaia.apply_claim(&release).await.unwrap();
    }
    assert!(
        drop_connections(&db.url).await > 0,
        "the store had connections"
    );
    // Connections handed back within the last 500 ms are lent without a check; past that the
    // pool checks each and replaces the dead ones.
    tokio::time::sleep(Duration::from_millis(700)).await;
    for round in 0..3 {
        gaia.emit_event("test.after", "t", "conn", json!({ "round": round }))
            .await
            .unwrap();
        let got = gaia.apply_claim(&acquire()).await.unwrap();
        assert!(
            matches!(got.outcome, Outcome::Acquired | Outcome::AlreadyHeld),
            "{:?}",
            got.outcome
        );
        let release = Request::release(key.clone(), "agent-1", None).unwrap();
        gaia.apply_claim(&release).await.unwrap();
    }
    let events = whole_log(gaia.store().as_ref()).await;
    assert_eq!(
        events.iter().filter(|e| e.kind == "test.after").count(),
        3,
        "every append after the drop committed"
    );
    let audit = gaia.verify_audit().await.unwrap();
    assert!(audit.first_break.is_none(), "{:?}", audit.first_break);
    assert!(audit.checked >= 12);
}
