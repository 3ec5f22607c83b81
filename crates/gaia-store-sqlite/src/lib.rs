//! Gaia's storage traits on SQLite: one file, WAL mode, one writer at a time.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, so the write lock is taken before
//! anything is read: a read-modify-write can never be overtaken by another connection, and a
//! writer that cannot get the lock within the busy timeout fails with `LockTimeout`.

mod backlog;
mod checkpoints;
mod claims;
mod commands;
mod dump;
mod error;
mod github;
mod log;
mod migrate;
mod outbox;
mod reads;
mod retention;
mod tokens;
mod tx;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::store::{Backend, SqliteSync, StoreOptions};
use gaia_core::time::Clock;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use gaia_store_sql::migrate::SCHEMA_VERSION;

use error::Db;

/// A Gaia store in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    /// Reads run here (see [`reads`]); writes take turns in `writers`.
    pool: reads::Reads,
    clock: Option<Arc<dyn Clock>>,
    path: PathBuf,
    /// This process's writers, taking turns for SQLite's write lock and committing together
    /// (see [`gaia_store_sql::group`]). SQLite's own wait for a busy lock sleeps in steps of up
    /// to 100 ms, so writers of one process racing each other for it would turn millisecond
    /// writes into waits of a hundred; in turn, only writers of other processes meet that wait.
    writers: Writers,
    used: Use,
    /// A serving store's WAL checkpoints, for as long as any handle of the store lives.
    _checkpoints: Option<Arc<checkpoints::Checkpoints>>,
}

// `BEGIN IMMEDIATE` takes the write lock before anything is read.
gaia_store_sql::group_dialect!(Dialect, sqlx::Sqlite, error::Sqlite, "BEGIN IMMEDIATE");

/// The group of this process's writers.
pub(crate) type Writers = gaia_store_sql::group::Group<Dialect>;

/// One writer's transaction, holding SQLite's write lock for the group.
pub(crate) type Writing = gaia_store_sql::group::Member<Dialect>;

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// The file a `sqlite://` or `sqlite:` URL names (`sqlite://.gaia/gaia.db` is relative,
/// `sqlite:///var/lib/gaia.db` absolute). Query parameters are not accepted: settings come from
/// Gaia's configuration.
pub fn path_from_url(url: &str) -> Result<PathBuf, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::BadUrl(format!("'{url}' is not a sqlite:// URL")))?;
    if rest.is_empty() {
        return Err(StoreError::BadUrl("sqlite URL names no file".into()));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(StoreError::BadUrl(
            "sqlite URL must not carry parameters; set them in gaia.toml".into(),
        ));
    }
    Ok(PathBuf::from(rest))
}

/// The WAL's size past which a one-shot process checkpoints before its command: about eight
/// claims' writes (see [`SqliteStore::open_one_shot`]).
const ONE_SHOT_WAL_LIMIT: u64 = 256 * 1024;

/// Who the store is opened for, which decides how many connections it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// A long-lived process (the server): up to `max_connections`.
    Serving,
    /// A process that runs one command and exits: one connection, see [`SqliteStore::open_one_shot`].
    OneShot,
}

impl SqliteStore {
    /// Opens (creating when missing) the database `url` names and applies pending migrations.
    pub async fn open(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let path = path_from_url(url)?;
        Self::open_path(&path, opts).await
    }

    pub async fn open_path(path: &Path, opts: &StoreOptions) -> Result<Self, StoreError> {
        Self::open_for(path, opts, Use::Serving).await
    }

    /// Like [`open`](Self::open), for a process that runs one command and exits: the store
    /// keeps a single connection.
    ///
    /// Such a process does one thing at a time, so a second connection only costs: opening
    /// one is a thread, a file open, the PRAGMAs and a parse of the schema, and the pool
    /// opens it whenever the first is still on its way back (returning a connection is
    /// asynchronous), which it is right after every statement. `max_connections` does not
    /// apply; the settings that make a commit durable (WAL, `synchronous`, the busy timeout)
    /// are the same as [`open`](Self::open)'s. A use case never reads through the store while it
    /// holds a write transaction (it gets the transaction, not the store), so one
    /// connection cannot wait for itself.
    ///
    /// The connection is never closed, not even when the store is dropped: closing the last
    /// connection would checkpoint the database (the WAL synced, copied into the database
    /// file, the file synced, the WAL deleted, and the next writer then syncs a new WAL's
    /// header and the directory), which adds nothing to what a commit under `synchronous`
    /// already guarantees. The process exits with it open. The WAL is checkpointed instead
    /// when a one-shot process that has the database to itself opens it past 256 KiB.
    pub async fn open_one_shot(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let path = path_from_url(url)?;
        Self::open_for(&path, opts, Use::OneShot).await
    }

    async fn open_for(path: &Path, opts: &StoreOptions, used: Use) -> Result<Self, StoreError> {
        if path.is_dir() {
            return Err(StoreError::NotADatabase(format!(
                "{} is a directory, not a database file",
                path.display()
            )));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Some(blocker) = parent.ancestors().find(|a| a.is_file()) {
                return Err(StoreError::NotADatabase(format!(
                    "cannot create {}: {} is a file, not a directory",
                    path.display(),
                    blocker.display()
                )));
            }
            std::fs::create_dir_all(parent).map_err(|e| {
                // Permissions or a read-only place: a mistake in the path, not an outage.
                StoreError::NotADatabase(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let sync = match opts.sqlite_synchronous {
            SqliteSync::Off => SqliteSynchronous::Off,
            SqliteSync::Normal => SqliteSynchronous::Normal,
            SqliteSync::Full => SqliteSynchronous::Full,
            SqliteSync::Extra => SqliteSynchronous::Extra,
        };
        let connect = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| StoreError::BadUrl(e.to_string()))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sync)
            .busy_timeout(opts.lock_timeout)
            .foreign_keys(true);
        let max_connections = match used {
            Use::Serving => opts.max_connections.max(1),
            Use::OneShot => 1,
        };
        let connect = match used {
            // Commits never checkpoint: the store's task does, off the commit path (see
            // `checkpoints`).
            Use::Serving => connect
                .pragma("wal_autocheckpoint", "0")
                .pragma("journal_size_limit", checkpoints::WAL_LIMIT.to_string()),
            // When its commit starts the WAL over, the file is cut to what the commit wrote,
            // so that the WAL's size tells how much there is to read (see
            // `checkpoint_when_large`).
            Use::OneShot => connect.pragma("journal_size_limit", "0"),
        };
        let pool_options = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            // The connection is in this process, and sqlx checks each one (a round trip to
            // its thread) when it is handed back: a check before each use too would double
            // the hand-offs of a short read.
            .test_before_acquire(false)
            // Waiting for a pooled connection is waiting for the store: bound it like a lock.
            .acquire_timeout(opts.lock_timeout + opts.connect_timeout);
        // Before this process holds any lock on the file (see `others_attached`).
        let alone = used == Use::OneShot && !others_attached(path);
        let pool = connect_waiting(pool_options, connect, opts.lock_timeout)
            .await
            .map_err(|e| open_error(path, e))?;
        if used == Use::OneShot {
            // The connection is never closed: closing the last connection to a database
            // checkpoints it (the WAL synced, copied into the database file, the file synced,
            // the WAL deleted, and the next writer then syncs a new WAL's header and the
            // directory), which is most of a short command's time and adds nothing to what a
            // commit under `synchronous` already guarantees. The process exits with it open;
            // the WAL is checkpointed by a later one-shot process that finds it large
            // (`checkpoint_when_large`), or by a server's connections.
            std::mem::forget(pool.clone());
        }
        let mut store = Self {
            // Writers take turns (SQLite has one writer at a time) and commit together.
            writers: Writers::new(Dialect(pool.clone()), opts.lock_timeout),
            pool: reads::Reads::new(pool, max_connections),
            clock: opts.clock.clone(),
            path: path.to_owned(),
            used,
            _checkpoints: None,
        };
        migrate::run(store.pool.pool())
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Backend(msg) | StoreError::Unavailable(msg) => {
                    open_error_text(path, &msg)
                }
                other => other,
            })?;
        if alone {
            store.checkpoint_when_large().await;
        }
        if used == Use::Serving {
            store._checkpoints = Some(checkpoints::Checkpoints::start(
                store.pool.pool().clone(),
                path,
            ));
        }
        Ok(store)
    }

    /// Copies the WAL into the database file when it has grown past [`ONE_SHOT_WAL_LIMIT`], so
    /// that this process's commit starts the WAL over; for a one-shot process that has the
    /// database to itself. One-shot processes never checkpoint on closing, and SQLite's
    /// automatic checkpoint cannot serve them: a process that opens the file alone rebuilds
    /// the WAL's index by reading the whole WAL, which forgets that its frames were copied, so
    /// the WAL would never start over and every later commit would copy it all again. While
    /// another process (a server) has the database open, its own checkpoints keep the WAL.
    async fn checkpoint_when_large(&self) {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let large = std::fs::metadata(&wal).is_ok_and(|m| m.len() > ONE_SHOT_WAL_LIMIT);
        if large {
            // A failure here changes nothing: the command goes on, and its own statements
            // report a store that cannot be used.
            let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&self.pool)
                .await;
        }
    }

    pub fn pool(&self) -> &SqlitePool {
        self.pool.pool()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn now_value(&self) -> DateTime<Utc> {
        // SQLite is a local file: every process using it shares this machine's clock.
        self.clock.as_ref().map_or_else(Utc::now, |c| c.now())
    }
}

/// Whether another process has the database at `path` open. In WAL mode every SQLite
/// connection holds a shared lock on one byte of the `-shm` file while it is open (offset
/// 128, `UNIX_SHM_DMS` in SQLite's unix VFS), which another process sees with `F_GETLK`.
/// Asked only before this process opens the file: POSIX drops all of a process's locks on a
/// file when it closes any descriptor of it, so the file opened here to ask must not be
/// closed while SQLite holds locks on it. When it cannot tell, it answers yes.
#[cfg(unix)]
fn others_attached(path: &Path) -> bool {
    use nix::fcntl::{FcntlArg, fcntl};
    use nix::libc;
    const SHM_DMS: libc::off_t = 128;
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    let file = match std::fs::File::open(&shm) {
        Ok(f) => f,
        // No index file: no process has the database open in WAL mode.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(_) => return true,
    };
    let mut lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: SHM_DMS,
        l_len: 1,
        l_pid: 0,
    };
    match fcntl(&file, FcntlArg::F_GETLK(&mut lock)) {
        Ok(_) => lock.l_type != libc::F_UNLCK as libc::c_short,
        Err(_) => true,
    }
}

/// Without POSIX locks to ask, every one-shot process checkpoints a large WAL itself.
#[cfg(not(unix))]
fn others_attached(_path: &Path) -> bool {
    false
}

/// Opens the pool, waiting up to `patience` while another process holds the file's lock.
/// Processes that open a new database together race to switch it to WAL, and SQLite answers
/// that switch with "database is locked" at once instead of calling the busy handler, so the
/// busy timeout alone does not cover it.
async fn connect_waiting(
    pool: SqlitePoolOptions,
    connect: SqliteConnectOptions,
    patience: std::time::Duration,
) -> Result<SqlitePool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        match pool.clone().connect_with(connect.clone()).await {
            Err(e) if is_busy(&e) && tokio::time::Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Whether SQLite refused because another connection holds a lock (`SQLITE_BUSY`/`LOCKED`).
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        _ => false,
    }
}

fn open_error(path: &Path, e: sqlx::Error) -> StoreError {
    open_error_text(path, &e.to_string())
}

fn open_error_text(path: &Path, msg: &str) -> StoreError {
    if msg.contains("file is not a database") || msg.contains("malformed") {
        StoreError::NotADatabase(format!("{} is not a SQLite database", path.display()))
    } else {
        StoreError::Unavailable(format!("cannot open {}: {msg}", path.display()))
    }
}

gaia_store_sql::store_sql!(store = SqliteStore, {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        Ok(self.now_value())
    }

    async fn close(&self) {
        // A one-shot command's process exits next, with its connection open (see `open_for`).
        if self.used == Use::OneShot {
            return;
        }
        self.pool.release();
        self.pool.pool().close().await;
    }
});

/// Begins a write transaction holding SQLite's write lock, without waiting for a turn: for
/// migrations, which run before the store (and its queue of writers) exists.
async fn begin_write(pool: &SqlitePool) -> Db<sqlx::Transaction<'static, sqlx::Sqlite>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

impl SqliteStore {
    /// Waits for this process's turn to write (bounded like SQLite's own wait, by the lock
    /// timeout), then holds SQLite's write lock in a transaction of the group.
    pub(crate) async fn begin_writing(&self) -> Result<Writing, StoreError> {
        self.writers.begin().await
    }
}
