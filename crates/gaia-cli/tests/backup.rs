//! `gaia backup` and `gaia restore` on each backend: a backup taken while writers append
//! restores into an empty store that passes `gaia audit verify` and holds a gap-free prefix of
//! the source's events; a restore into a store that is not empty is refused and changes
//! nothing; an existing backup file is never overwritten.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use gaia_core::Gaia;
use gaia_core::store::StoreOptions;
use gaia_testkit::{TestDb, backend_tests};
use support::{finish, gaia};

backend_tests!(a_backup_taken_during_writes_restores_and_verifies);

/// Most events the background writer appends (a bound, in case the backup is slow).
const MAX_WRITES: u64 = 5_000;

fn run(db: &str, args: &[&str]) -> (i32, String, String) {
    support::run_on(db, &[], args)
}

fn ok(db: &str, args: &[&str]) -> String {
    support::ok_on(db, &[], args)
}

/// A second, empty database on the same backend as `db`.
async fn sibling(db: &TestDb) -> TestDb {
    if db.is_postgres() {
        TestDb::postgres().await.unwrap()
    } else {
        TestDb::sqlite()
    }
}

async fn a_backup_taken_during_writes_restores_and_verifies(db: &TestDb) {
    let store = db.open(&StoreOptions::default()).await;
    let service = Gaia::new(store.clone());
    ok(
        &db.url,
        &["token", "create", "--role", "agent", "--name", "a1"],
    );
    ok(&db.url, &["claim", "acquire", "s1", "--agent", "a1"]);

    // A writer appending events (each with its audit record) until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, service) = (stop.clone(), written.clone(), service.clone());
        tokio::spawn(async move {
            for i in 0..MAX_WRITES {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                service
                    .emit_event("test.write", "writer", "w/1", serde_json::json!({ "i": i }))
                    .await
                    .unwrap();
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while written.load(Ordering::Relaxed) < 50 {
        tokio::task::yield_now().await;
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gaia.backup");
    let file_arg = file.to_str().unwrap().to_owned();
    let url = db.url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&url, &["backup", &file_arg]))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("backup written"), "{out}");
    assert!(!dir.path().join("gaia.backup.partial").exists());

    // Never overwritten.
    let (code, _, err) = run(&db.url, &["backup", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");

    let target = sibling(db).await;
    let restored = ok(&target.url, &["restore", file.to_str().unwrap()]);
    assert!(restored.starts_with("restored"), "{restored}");
    let verify = ok(&target.url, &["audit", "verify"]);
    assert!(verify.starts_with("audit chain intact"), "{verify}");

    // The restored events are the source's first events, without a gap.
    let source_events = ok(&db.url, &["events", "export"]);
    let restored_events = ok(&target.url, &["events", "export"]);
    assert!(restored_events.lines().count() > 50, "{restored_events}");
    assert!(source_events.starts_with(&restored_events));
    // The claim came along with its token.
    let claim = ok(&target.url, &["claim", "inspect", "s1", "--json"]);
    assert!(claim.contains("\"token\":1"), "{claim}");

    // A store that is not empty is refused, and keeps what it had.
    let (code, _, err) = run(&target.url, &["restore", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(ok(&target.url, &["events", "export"]), restored_events);
    store.close().await;
}

#[test]
fn a_missing_pg_dump_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = gaia();
    c.current_dir(dir.path())
        .env("PATH", dir.path())
        .args([
            "--db",
            "postgres://postgres@127.0.0.1:1/none",
            "backup",
            "out.dump",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (code, _, err) = finish(c.spawn().unwrap(), &"backup without pg_dump");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("pg_dump not found"), "{err}");
    assert!(!dir.path().join("out.dump").exists());
}
