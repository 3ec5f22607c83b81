//! One-shot commands on SQLite leave their connection open at exit, so closing it never
//! checkpoints the database; a process that opens the file alone checkpoints a WAL that has
//! grown past its limit before it writes, and its commit starts the WAL over. These tests run
//! the real binary and watch the WAL file: alone it stays bounded and every write is kept;
//! while another process has the database open, one-shot commands leave the WAL to it.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Stdio;

use gaia_core::store::{ClaimStore, Store, StoreOptions};
use gaia_store_sqlite::SqliteStore;

/// The WAL size past which a lone one-shot process checkpoints (`ONE_SHOT_WAL_LIMIT`).
const LIMIT: u64 = 256 * 1024;
/// More than one command writes: a bound on how far past the limit the WAL can get.
const ONE_COMMAND: u64 = 128 * 1024;

/// `gaia --db sqlite://DB ARGS…`, run in the database's directory, its output collected.
fn gaia_on(db: &Path, args: &[&str]) -> std::process::Output {
    support::gaia()
        .current_dir(db.parent().unwrap())
        .arg("--db")
        .arg(format!("sqlite://{}", db.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn acquire(db: &Path, story: &str) {
    let out = gaia_on(
        db,
        &["claim", "acquire", story, "--agent", "a1", "--ttl", "15m"],
    );
    assert!(
        out.status.success(),
        "claim acquire {story}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wal_size(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

fn verify(db: &Path, claims: usize) {
    let out = gaia_on(db, &["claim", "list", "--json"]);
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(claims), "{listed}");
    let out = gaia_on(db, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn alone_the_wal_stays_bounded_and_every_write_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gaia.db");
    let (mut largest, mut restarts, mut last) = (0, 0, 0);
    for i in 0..40 {
        acquire(&db, &format!("s{i}"));
        let size = wal_size(&db);
        largest = largest.max(size);
        restarts += usize::from(size < last);
        last = size;
    }
    // Without the checkpoint before writing, 40 commands leave a WAL of about 1.4 MB.
    assert!(
        largest <= LIMIT + ONE_COMMAND,
        "the WAL reached {largest} bytes"
    );
    assert!(restarts >= 2, "the WAL started over {restarts} times");
    verify(&db, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_another_process_has_it_open_the_wal_is_left_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gaia.db");
    acquire(&db, "first");
    // This test's process stands for a server: it has the database open throughout.
    let server = SqliteStore::open_path(&db, &StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(server.claim_list().await.unwrap().len(), 1);
    let db2 = db.clone();
    let sizes = tokio::task::spawn_blocking(move || {
        (0..40)
            .map(|i| {
                acquire(&db2, &format!("s{i}"));
                wal_size(&db2)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    // No one-shot process checkpointed: the WAL only grew (SQLite's own automatic
    // checkpoint, at 1,000 pages, is not reached by 40 commands).
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    assert!(sizes[sizes.len() - 1] > LIMIT + ONE_COMMAND, "{sizes:?}");
    server.close().await;
    verify(&db, 41);
}
