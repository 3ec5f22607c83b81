//! What every benchmark shares from the command line: the store settings Gaia's own
//! configuration would give (`GAIA_MAX_CONNECTIONS`, `GAIA_LOCK_TIMEOUT`,
//! `GAIA_CONNECT_TIMEOUT`, `GAIA_SQLITE_SYNCHRONOUS`, or the flags of the same meaning), opening
//! a store by URL as `gaia` does, and where the `gaia` binary is for the process benchmarks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gaia_core::StoreError;
use gaia_core::store::{SqliteSync, Store, StoreOptions};
use gaia_core::time::parse_duration;
use gaia_store_postgres::PgStore;
use gaia_store_sqlite::SqliteStore;

use crate::exit::BenchError;

/// Environment variable naming the `gaia` binary the process benchmarks start.
pub const GAIA_BIN_ENV: &str = "GAIA_BENCH_GAIA";

#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// Connections in each pool (Gaia's store and the baselines'), as `database.max_connections`.
    #[arg(
        long,
        global = true,
        env = "GAIA_MAX_CONNECTIONS",
        default_value_t = 8,
        value_name = "N"
    )]
    max_connections: u32,
    /// How long a write waits for a lock, as `database.lock_timeout`.
    #[arg(
        long,
        global = true,
        env = "GAIA_LOCK_TIMEOUT",
        default_value = "5s",
        value_name = "DURATION"
    )]
    lock_timeout: String,
    /// How long opening a database may take, as `database.connect_timeout`.
    #[arg(
        long,
        global = true,
        env = "GAIA_CONNECT_TIMEOUT",
        default_value = "5s",
        value_name = "DURATION"
    )]
    connect_timeout: String,
    /// SQLite's `synchronous` setting (off, normal, full, extra), as `database.sqlite_synchronous`.
    #[arg(
        long,
        global = true,
        env = "GAIA_SQLITE_SYNCHRONOUS",
        default_value = "normal",
        value_name = "MODE"
    )]
    sqlite_synchronous: String,
    /// The `gaia` binary that `process` and `sse` start [default: `gaia` next to this program].
    #[arg(long, global = true, env = GAIA_BIN_ENV, value_name = "PATH")]
    gaia: Option<PathBuf>,
}

/// The settings, checked.
#[derive(Debug)]
pub struct Settings {
    store: StoreOptions,
    gaia: Option<PathBuf>,
}

impl Settings {
    pub fn from_args(args: SettingsArgs) -> Result<Self, BenchError> {
        if !(1..=1000).contains(&args.max_connections) {
            return Err(BenchError::bad_input(
                "--max-connections takes a number from 1 to 1000",
            ));
        }
        let store = StoreOptions {
            clock: None,
            lock_timeout: parse_duration(&args.lock_timeout)?,
            connect_timeout: parse_duration(&args.connect_timeout)?,
            max_connections: args.max_connections,
            sqlite_synchronous: args.sqlite_synchronous.parse::<SqliteSync>()?,
        };
        Ok(Self {
            store,
            gaia: args.gaia,
        })
    }

    /// The store options `gaia` would open its store with, given the same settings.
    pub fn store_options(&self) -> StoreOptions {
        self.store.clone()
    }

    /// The `gaia` binary: the one named by `--gaia` or `GAIA_BENCH_GAIA`, else `gaia` in the
    /// directory of this program (both are built into the same target directory).
    pub fn gaia_binary(&self) -> Result<PathBuf, BenchError> {
        let (path, named) = match &self.gaia {
            Some(p) => (p.clone(), true),
            None => {
                let exe = std::env::current_exe()?;
                let dir = exe.parent().ok_or_else(|| {
                    BenchError::bad_input("cannot tell which directory gaia-bench runs from")
                })?;
                (
                    dir.join(format!("gaia{}", std::env::consts::EXE_SUFFIX)),
                    false,
                )
            }
        };
        if path.is_file() {
            return Ok(path);
        }
        let hint = if named {
            format!(
                "--gaia or {GAIA_BIN_ENV} names {}, which is not a file",
                path.display()
            )
        } else {
            format!(
                "no gaia binary next to gaia-bench ({}): build both with `cargo build --release \
                 -p gaia-cli -p gaia-bench`, or name one with --gaia PATH or {GAIA_BIN_ENV}",
                path.display()
            )
        };
        Err(BenchError::bad_input(hint))
    }
}

/// Opens `url` with `opts` as `gaia` does: `sqlite:` URLs on SQLite, `postgres://` and
/// `postgresql://` on PostgreSQL.
pub async fn open_store(url: &str, opts: &StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url, opts).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url, opts).await?))
    } else {
        Err(StoreError::BadUrl(
            "use sqlite://PATH or postgres://USER@HOST/DATABASE".into(),
        ))
    }
}

/// The schema version this build writes for the backend `url` names.
pub fn schema_version(url: &str) -> i64 {
    if url.starts_with("sqlite:") {
        gaia_store_sqlite::SCHEMA_VERSION
    } else {
        gaia_store_postgres::SCHEMA_VERSION
    }
}

/// Parses a duration where "0" means none.
pub fn optional_duration(text: &str) -> Result<Option<Duration>, BenchError> {
    if text.trim() == "0" {
        return Ok(None);
    }
    Ok(Some(parse_duration(text)?))
}
