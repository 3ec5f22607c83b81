//! The event log and the audit chain on SQLite.

use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::audit::NewAudit;
use gaia_core::event::{Event, NewEvent};
use gaia_core::time::{from_micros, to_micros};
use gaia_core::usecase::log::{LogHead, number};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::SqliteStore;
use crate::error::Db;
use gaia_store_sql::rows;

/// Appends events and audit records inside the caller's write transaction. The caller holds
/// SQLite's write lock (`BEGIN IMMEDIATE`), so reading the head and writing it back is atomic.
pub(crate) async fn append_log(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
    audit: &[NewAudit],
    now: DateTime<Utc>,
) -> Db<Vec<Event>> {
    append_log_with(conn, QueryBuilder::new(""), events, audit, now).await
}

/// Rows per multi-row INSERT: far below SQLite's limit on bound variables per statement.
const ROWS_PER_INSERT: usize = 500;

/// [`append_log`] after the statements already in `batch` (each ending with `;`), all sent as
/// one multi-statement query. Each statement costs a round trip to the connection's worker
/// thread, which is most of a small transaction's time; the batch makes it one.
pub(crate) async fn append_log_with(
    conn: &mut SqliteConnection,
    batch: QueryBuilder<'_, Sqlite>,
    events: &[NewEvent],
    audit: &[NewAudit],
    now: DateTime<Utc>,
) -> Db<Vec<Event>> {
    let head = sqlx::query("SELECT event_seq, audit_seq, audit_hash FROM log_head WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?;
    let head = rows::log_head(head)?;
    append_log_at(conn, batch, head, events, audit, now).await
}

/// [`append_log_with`] numbered from `head`, which the caller read under the write lock it
/// still holds (in the same statement as something else it needed).
pub(crate) async fn append_log_at(
    conn: &mut SqliteConnection,
    mut batch: QueryBuilder<'_, Sqlite>,
    head: LogHead,
    events: &[NewEvent],
    audit: &[NewAudit],
    now: DateTime<Utc>,
) -> Db<Vec<Event>> {
    // The timestamp as stored (microseconds), so what is returned equals what is read back.
    let ts = to_micros(now);
    let done = number(head, events, audit, from_micros(ts));
    let committed = done.events;
    for chunk in committed.chunks(ROWS_PER_INSERT) {
        batch.push("INSERT INTO events (seq, ts_us, type, actor, subject, data) ");
        batch.push_values(chunk, |mut row, e| {
            row.push_bind(e.seq)
                .push_bind(ts)
                .push_bind(e.kind.clone())
                .push_bind(e.actor.clone())
                .push_bind(e.subject.clone())
                .push_bind(e.data.to_string());
        });
        batch.push("; ");
    }
    let sealed = done.audit;
    for chunk in sealed.chunks(ROWS_PER_INSERT) {
        batch.push(
            "INSERT INTO audit (id, ts_us, actor, action, subject, outcome, details, prev_hash, hash) ",
        );
        batch.push_values(chunk, |mut row, r| {
            row.push_bind(r.id)
                .push_bind(ts)
                .push_bind(r.actor.clone())
                .push_bind(r.action.clone())
                .push_bind(r.subject.clone())
                .push_bind(r.outcome.clone())
                .push_bind(r.details.clone())
                .push_bind(r.prev_hash.clone())
                .push_bind(r.hash.clone());
        });
        batch.push("; ");
    }
    batch.push("UPDATE log_head SET event_seq = ");
    batch.push_bind(done.head.event_seq);
    batch.push(", audit_seq = ");
    batch.push_bind(done.head.audit_id);
    batch.push(", audit_hash = ");
    batch.push_bind(done.head.audit_hash);
    batch.push(" WHERE id = 1");
    batch.build().execute(&mut *conn).await?;
    Ok(committed)
}

gaia_store_sql::log_reads_sql!(store = SqliteStore, {
    async fn wait_for_commit(
        &self,
        after: i64,
        timeout: std::time::Duration,
    ) -> Result<i64, StoreError> {
        // SQLite has no change notification across processes; reading the head row is cheap.
        const STEP: std::time::Duration = std::time::Duration::from_millis(100);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seq = self.last_seq().await?;
            if seq > after || tokio::time::Instant::now() >= deadline {
                return Ok(seq);
            }
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + STEP)).await;
        }
    }
});
