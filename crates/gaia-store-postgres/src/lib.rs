//! Gaia's storage traits on PostgreSQL, for several Gaia nodes serving one team.
//!
//! Writers serialise only where they must: a claim locks its own row, and every commit that
//! appends to the log takes the single `log_head` row lock as its last step, which keeps event
//! seqs gap-free and visible in order. Expiry is judged by the database server's clock, so
//! nodes with skewed clocks still agree.

mod backlog;
mod batch;
mod claims;
mod commands;
mod dump;
mod error;
mod github;
mod log;
mod migrate;
mod notify;
mod outbox;
mod retention;
mod simple;
mod tokens;
mod tx;

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::store::{Backend, StoreOptions};
use gaia_core::time::{Clock, from_micros};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

pub use gaia_store_sql::migrate::SCHEMA_VERSION;

use error::{Db, DbError, boundary};

/// A pooled connection handed back this recently is handed out again without a round trip to
/// check it (it was checked when handed back).
const UNCHECKED_IDLE: std::time::Duration = std::time::Duration::from_millis(500);

/// The SQL expression for the server's time in microseconds.
pub(crate) const NOW_US: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT";

/// A Gaia store in a PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    notifications: std::sync::Arc<notify::Notifications>,
    batcher: std::sync::Arc<std::sync::OnceLock<batch::ClaimBatcher>>,
    clock: Option<Arc<dyn Clock>>,
    display_url: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.display_url)
            .finish()
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://` or `postgresql://`) and applies pending migrations.
    /// Gives up with [`StoreError::Unavailable`] after `opts.connect_timeout`.
    pub async fn open(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let display_url = redact_url(url);
        let lock_ms = opts.lock_timeout.as_millis().to_string();
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadUrl(format!("{display_url}: {e}")))?
            .application_name("gaia")
            // A session default, so that no write transaction pays a round trip to set it.
            .options([("lock_timeout", lock_ms.as_str())]);
        let timed_out = || {
            StoreError::Unavailable(format!(
                "{display_url} did not answer within {}s",
                opts.connect_timeout.as_secs_f32()
            ))
        };
        // One direct connection first: a refused or misconfigured server is reported at once
        // with the driver's reason, instead of the pool retrying until its timeout.
        let probe =
            tokio::time::timeout(opts.connect_timeout, PgConnection::connect_with(&connect))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| match StoreError::from(DbError::from(e)) {
                    StoreError::Backend(m) | StoreError::Unavailable(m) => {
                        StoreError::Unavailable(format!("{display_url}: {m}"))
                    }
                    StoreError::NotADatabase(m) => {
                        StoreError::NotADatabase(format!("{display_url}: {m}"))
                    }
                    StoreError::LockTimeout => timed_out(),
                    other => other,
                })?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(opts.connect_timeout + opts.lock_timeout)
            // sqlx checks every connection with a round trip when it is handed back, and by
            // default again before handing it out. A connection handed back a moment ago
            // passed the first check; only one idle for longer is checked again (a server
            // restart or an idle timeout on the way drops connections while they wait).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < UNCHECKED_IDLE {
                        return Ok(true);
                    }
                    // A failed ping means a dead connection: the pool drops it and opens
                    // another, as with its own check.
                    Ok(conn.ping().await.is_ok())
                })
            })
            .connect_lazy_with(connect);
        migrate::run(&pool).await?;
        Ok(Self {
            pool,
            notifications: notify::Notifications::new(),
            batcher: std::sync::Arc::default(),
            clock: opts.clock.clone(),
            display_url,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The claim writer, started on first use.
    pub(crate) fn batcher(&self) -> &batch::ClaimBatcher {
        self.batcher.get_or_init(|| {
            batch::ClaimBatcher::start(batch::Writer {
                pool: self.pool.clone(),
                clock: self.clock.clone(),
                notifications: self.notifications.clone(),
                predicted: std::sync::Arc::default(),
                kept: std::sync::Arc::new(batch::kept_for_pool(
                    self.pool.options().get_max_connections(),
                )),
            })
        })
    }

    /// Records that events up to `seq` committed, so that other nodes are told (batched,
    /// after commit).
    pub(crate) fn announce(&self, seq: i64) {
        self.notifications.committed(&self.pool, seq);
    }

    /// The newest seq known committed anywhere, updated by LISTEN.
    pub(crate) async fn listen(&self) -> tokio::sync::watch::Receiver<i64> {
        self.notifications.subscribe(&self.pool)
    }

    /// The time by which this transaction judges expiry: the server's clock, read after the
    /// caller's locks are held, or the injected clock.
    pub(crate) async fn now_in(&self, conn: &mut PgConnection) -> Db<DateTime<Utc>> {
        if let Some(c) = &self.clock {
            return Ok(c.now());
        }
        let us: i64 = sqlx::query_scalar(&format!("SELECT {NOW_US}"))
            .fetch_one(&mut *conn)
            .await?;
        Ok(from_micros(us))
    }
}

gaia_store_sql::store_sql!(store = PgStore, {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        boundary(async {
            let mut conn = self.pool.acquire().await?;
            self.now_in(&mut conn).await
        })
        .await
    }

    async fn close(&self) {
        self.notifications.flush().await;
        // Closing the pool waits for every connection lent out, the claim writer's too.
        if let Some(batcher) = self.batcher.get() {
            batcher.writer.kept.release();
        }
        self.pool.close().await;
    }
});
