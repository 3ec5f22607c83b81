//! A serving store's WAL is checkpointed by the store's own task, not by the commits that
//! grow it: its connections never checkpoint on commit, and the WAL still starts over once it
//! has grown past its limit.

use std::time::Duration;

use gaia_core::store::{Store, StoreOptions};
use gaia_store_sqlite::SqliteStore;

/// 4 MiB: the limit past which the store checkpoints (SQLite's default of 1,000 pages).
const WAL_LIMIT: u64 = 4 * 1024 * 1024;

fn wal_size(db: &std::path::Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

#[tokio::test]
async fn the_store_checkpoints_the_wal_off_the_commit_path() {
    let dir = std::env::temp_dir().join(format!(
        "gaia-checkpoints-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let db = dir.join("gaia.db");
    let store = SqliteStore::open_path(&db, &StoreOptions::default())
        .await
        .expect("open");
    let pool = store.pool().clone();
    let mut conn = pool.acquire().await.expect("connection");
    let auto: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(&mut *conn)
        .await
        .expect("pragma");
    assert_eq!(auto, 0, "commits do not checkpoint");
    let limit: i64 = sqlx::query_scalar("PRAGMA journal_size_limit")
        .fetch_one(&mut *conn)
        .await
        .expect("pragma");
    assert_eq!(u64::try_from(limit).ok(), Some(WAL_LIMIT));
    sqlx::query("CREATE TABLE filler (b BLOB)")
        .execute(&mut *conn)
        .await
        .expect("table");
    // Past the limit in one transaction, faster than the task looks (every 100 ms).
    let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("begin");
    for _ in 0..48 {
        sqlx::query("INSERT INTO filler (b) VALUES (randomblob(131072))")
            .execute(&mut *tx)
            .await
            .expect("insert");
    }
    tx.commit().await.expect("commit");
    assert!(
        wal_size(&db) > WAL_LIMIT,
        "the commit left the WAL at {} bytes",
        wal_size(&db)
    );
    // The task checkpoints; the next write starts the WAL over and the file is cut back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        sqlx::query("INSERT INTO filler (b) VALUES (x'00')")
            .execute(&mut *conn)
            .await
            .expect("insert");
        if wal_size(&db) <= WAL_LIMIT {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the WAL was not checkpointed within 10 s ({} bytes)",
            wal_size(&db)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM filler WHERE length(b) > 1")
        .fetch_one(&mut *conn)
        .await
        .expect("count");
    assert_eq!(rows, 48, "every row is still there");
    drop(conn);
    tokio::time::timeout(Duration::from_secs(10), store.close())
        .await
        .expect("the store closes with its checkpoint task running");
    let _ = std::fs::remove_dir_all(dir);
}
