//! Checkpoints of a serving store's WAL, off the commit path.
//!
//! By default SQLite checkpoints inside the commit that takes the WAL past 1,000 pages: that
//! commit, and every writer queued behind it, waits while the WAL is synced, copied into the
//! database file and the file synced. With one requester at a time that put an approval
//! round's p99 at 5.3 ms against a median of 1.1 ms (`gaia-bench approvals`). A serving
//! store's connections therefore never checkpoint on commit (`wal_autocheckpoint = 0`); a task
//! of the store checks the WAL's size every [`CHECK_EVERY`] and, past [`WAL_LIMIT`], runs a
//! `PASSIVE` checkpoint on a connection of its own, which copies what no reader still needs
//! while writers go on appending. The next writer after a complete checkpoint starts the WAL
//! over, and `journal_size_limit` then cuts the file back to [`WAL_LIMIT`], so that the file's
//! size keeps telling how much the WAL holds.
//!
//! Several processes serving one file each run the task; SQLite lets one checkpoint at a time
//! and the others find it busy, which changes nothing. The task ends when the store closes or
//! is dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::watch;

/// The WAL's size past which it is checkpointed: SQLite's own default of 1,000 pages of 4 KiB.
pub(crate) const WAL_LIMIT: u64 = 4 * 1024 * 1024;

/// How often the WAL's size is looked at (one `stat`).
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Held by every handle of the store: when the last one is dropped, the task ends.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    _stop: watch::Sender<()>,
}

impl Checkpoints {
    /// Starts checkpointing the WAL of the database at `db` through `pool`.
    pub(crate) fn start(pool: SqlitePool, db: &std::path::Path) -> Arc<Self> {
        let (stop, mut stopped) = watch::channel(());
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    // Every handle of the store is gone.
                    changed = stopped.changed() => if changed.is_err() { break },
                    _ = tick.tick() => {}
                }
                if pool.is_closed() {
                    break;
                }
                if wal_size(&wal) > WAL_LIMIT {
                    // Busy (another process checkpointing) or failing: the next look tries
                    // again, and a failing store fails its own statements too.
                    let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                        .execute(&pool)
                        .await;
                }
            }
        });
        Arc::new(Self { _stop: stop })
    }
}

fn wal_size(wal: &std::path::Path) -> u64 {
    std::fs::metadata(wal).map_or(0, |m| m.len())
}
