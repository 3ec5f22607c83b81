//! The [`WriteTx`] primitives on PostgreSQL: a transaction whose `*_lock` reads take row locks
//! (`FOR UPDATE`), the database server's clock (or the injected one), the log append sent with
//! the `COMMIT` in one message, and after commit one NOTIFY so other nodes learn of the new
//! events.
//!
//! Each writer runs a transaction of its own, concurrently with the others: they serialise
//! only at the row locks they take, the last of which is `log_head`'s. `gaia_append`
//! (migration 12) takes that lock, numbers the events, seals the audit records into the chain
//! and moves the head, and the `COMMIT` sent after it in the same message releases it. So the
//! lock is held for that function and the commit's flush, never across a round trip to this
//! process, and writers of every process and node queue for it in the order they reach it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::audit::{NewAudit, hashed_fields};
use gaia_core::event::{Event, NewEvent};
use gaia_core::store::{Transact, WriteTx};
use gaia_core::time::to_micros;
use gaia_core::usecase::log::LogHead;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres};

use crate::PgStore;
use crate::error::{Db, DbError};
use crate::log::number_at;
use crate::simple::{self, Literals, Sink};

/// One write transaction.
pub(crate) struct PgTx {
    tx: Open,
    store: PgStore,
}

#[async_trait]
impl Transact for PgStore {
    async fn begin_write(&self) -> Result<Box<dyn WriteTx>, StoreError> {
        Ok(Box::new(PgTx {
            tx: crate::error::boundary(Open::begin(self.pool())).await?,
            store: self.clone(),
        }))
    }
}

gaia_store_sql::write_tx!(PgTx {
    async fn now(&mut self) -> Result<DateTime<Utc>, StoreError> {
        Ok(self.store.now_in(&mut self.tx).await?)
    }

    /// `gaia_append` and `COMMIT` in one message; then the newest seq is announced.
    async fn append_and_commit(
        self: Box<Self>,
        events: &[NewEvent],
        audit: &[NewAudit],
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        let Self { tx, store } = *self;
        let committed = crate::error::boundary(append_and_commit(tx, events, audit, now)).await?;
        if let Some(last) = committed.last() {
            store.announce(last.seq);
        }
        Ok(committed)
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        crate::error::boundary(self.tx.finish("COMMIT")).await?;
        Ok(())
    }
});

/// Appends `events` and `audit` and commits (see the module's doc); returns the events as
/// committed.
async fn append_and_commit(
    tx: Open,
    events: &[NewEvent],
    audit: &[NewAudit],
    now: DateTime<Utc>,
) -> Db<Vec<Event>> {
    if events.is_empty() && audit.is_empty() {
        tx.finish("COMMIT").await?;
        return Ok(Vec::new());
    }
    let call = append_args(Literals::default(), to_micros(now), events, audit).finish()?;
    let rows = tx.finish(&format!("{APPEND}{call}; COMMIT")).await?;
    Ok(number_at(head_found(&rows)?, events, audit, now).events)
}

/// What `gaia_append` returns, followed by its arguments: the head as the append found it.
pub(crate) const APPEND: &str = "SELECT head_seq, head_audit, head_hash FROM gaia_append";

/// The head `gaia_append` found, among the rows a message answered (its row is the only one
/// with three columns). The events and the chain after it are the ones Gaia numbers and seals
/// from it (`number_at`), as the function did.
pub(crate) fn head_found(rows: &[PgRow]) -> Db<LogHead> {
    let row = rows
        .iter()
        .find(|row| sqlx::Row::len(*row) == 3)
        .ok_or_else(|| {
            DbError::from(sqlx::Error::Protocol("gaia_append returned no row".into()))
        })?;
    Ok(LogHead {
        event_seq: sqlx::Row::try_get(row, 0)?,
        audit_id: sqlx::Row::try_get(row, 1)?,
        audit_hash: sqlx::Row::try_get(row, 2)?,
    })
}

/// The arguments of `gaia_append`: the time, the events' columns, the audit records' columns
/// and each record's hashed fields ([`hashed_fields`]).
pub(crate) fn append_args<'q, S: Sink<'q>>(
    sink: S,
    ts: i64,
    events: &'q [NewEvent],
    audit: &'q [NewAudit],
) -> S {
    let events_col = |f: fn(&'q NewEvent) -> &'q str| events.iter().map(f).collect::<Vec<_>>();
    let audit_col = |f: fn(&'q NewAudit) -> &'q str| audit.iter().map(f).collect::<Vec<_>>();
    let details: Vec<String> = audit.iter().map(|a| a.details.to_string()).collect();
    let fields: Vec<String> = audit
        .iter()
        .zip(&details)
        .map(|(a, d)| hashed_fields(&a.actor, &a.action, &a.subject, &a.outcome, d))
        .collect();
    sink.arg(ts)
        .arg(events_col(|e| e.kind.as_str()))
        .arg(events_col(|e| e.actor.as_str()))
        .arg(events_col(|e| e.subject.as_str()))
        .arg(
            events
                .iter()
                .map(|e| e.data.to_string())
                .collect::<Vec<_>>(),
        )
        .arg(audit_col(|a| a.actor.as_str()))
        .arg(audit_col(|a| a.action.as_str()))
        .arg(audit_col(|a| a.subject.as_str()))
        .arg(audit_col(|a| a.outcome.as_str()))
        .arg(details)
        .arg(fields)
}

/// A transaction on a pooled connection, begun and ended by the statements sent here (not
/// sqlx's, which sends `COMMIT` as a message of its own). Every way out but a finished
/// `COMMIT` or `ROLLBACK` rolls it back: at once when it fails, else (dropped: a use case that
/// returned early, or a cancelled caller) on a task of its own; a connection whose rollback
/// fails is closed rather than lent out still in the transaction.
pub(crate) struct Open {
    conn: Option<PoolConnection<Postgres>>,
}

impl Open {
    async fn begin(pool: &sqlx::PgPool) -> Db<Self> {
        let mut tx = Self {
            conn: Some(pool.acquire().await?),
        };
        // Counted as open before `BEGIN` is sent: a caller cancelled meanwhile leaves a
        // transaction that the drop ends.
        simple::run(&mut tx, "BEGIN").await?;
        Ok(tx)
    }

    /// Sends `sql`, which ends the transaction (its last statement is `COMMIT`), and returns
    /// the rows it returns. When it fails, the transaction is rolled back before this returns.
    async fn finish(mut self, sql: &str) -> Db<Vec<PgRow>> {
        // The connection stays in `self` until the answer is in: a caller cancelled
        // meanwhile drops `self`, which rolls back whatever the message left open.
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Vec::new());
        };
        let sent = simple::run(conn, sql).await;
        if sent.is_err() {
            rollback(conn).await;
        }
        // Ended either way: the connection goes back to the pool (or is closed).
        self.conn = None;
        Ok(sent?)
    }

    pub(crate) async fn rollback(mut self) -> Result<(), StoreError> {
        if let Some(mut conn) = self.conn.take() {
            rollback(&mut conn).await;
        }
        Ok(())
    }

    /// Nothing to wait for: this transaction reads only what others committed.
    pub(crate) fn settled(&self) -> gaia_core::tx::Settled {
        Box::pin(std::future::ready(()))
    }
}

/// Rolls back the transaction on `conn`, closing the connection when that fails. A
/// `ROLLBACK` outside a transaction (one whose `COMMIT` failed) is answered with a warning.
async fn rollback(conn: &mut PoolConnection<Postgres>) {
    if simple::run(conn, "ROLLBACK").await.is_err() {
        conn.close_on_drop();
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(async move { rollback(&mut conn).await })),
            Err(_) => conn.close_on_drop(),
        }
    }
}

impl std::ops::Deref for Open {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        // Invariant: `conn` is Some until the transaction is finished, which consumes it.
        self.conn
            .as_ref()
            .expect("a write transaction in use was finished")
    }
}

impl std::ops::DerefMut for Open {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .expect("a write transaction in use was finished")
    }
}
