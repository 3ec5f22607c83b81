//! The event log and the audit chain on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::audit::{AuditRecord, ChainHead, NewAudit};
use gaia_core::event::{Event, EventFilter, NewEvent};
use gaia_core::store::{AuditStore, EventStore};
use gaia_core::time::{from_micros, to_micros};
use gaia_core::usecase::log::{LogHead, number};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::SqliteStore;
use crate::error::{Db, boundary};
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
    mut batch: QueryBuilder<'_, Sqlite>,
    events: &[NewEvent],
    audit: &[NewAudit],
    now: DateTime<Utc>,
) -> Db<Vec<Event>> {
    let head = sqlx::query("SELECT event_seq, audit_seq, audit_hash FROM log_head WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::Corrupt("log_head row is missing".into()))?;
    let (event_seq, audit_id, audit_hash) =
        rows::decode::<(i64, i64, String), _>("log_head", &head)?;
    let head = LogHead {
        event_seq,
        audit_id,
        audit_hash,
    };
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

#[async_trait]
impl EventStore for SqliteStore {
    async fn events_after(
        &self,
        since: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        boundary(async {
            // Whole-segment prefix match: `claim` matches `claim` and `claim.*`, never `claims`.
            let found = sqlx::query(
                "SELECT seq, ts_us, type, actor, subject, data FROM events
                 WHERE seq > ?1
                   AND (?2 IS NULL OR type = ?2 OR substr(type, 1, length(?2) + 1) = ?2 || '.')
                   AND (?3 IS NULL OR subject = ?3)
                 ORDER BY seq LIMIT ?4",
            )
            .bind(since)
            .bind(filter.type_prefix.as_deref())
            .bind(filter.subject.as_deref())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows::all(&found, rows::event)?)
        })
        .await
    }

    async fn events_before(
        &self,
        before: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        boundary(async {
            let found = sqlx::query(
                "SELECT * FROM (
                    SELECT seq, ts_us, type, actor, subject, data FROM events
                    WHERE seq < ?1
                      AND (?2 IS NULL OR type = ?2 OR substr(type, 1, length(?2) + 1) = ?2 || '.')
                      AND (?3 IS NULL OR subject = ?3)
                    ORDER BY seq DESC LIMIT ?4
                 ) newest ORDER BY seq",
            )
            .bind(before)
            .bind(filter.type_prefix.as_deref())
            .bind(filter.subject.as_deref())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows::all(&found, rows::event)?)
        })
        .await
    }

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

    async fn last_seq(&self) -> Result<i64, StoreError> {
        boundary(async {
            Ok(
                sqlx::query_scalar("SELECT event_seq FROM log_head WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?,
            )
        })
        .await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn audit_head(&self) -> Result<ChainHead, StoreError> {
        boundary(async {
            let row = sqlx::query(
                "SELECT audit_anchor_id, audit_anchor_hash, audit_seq, audit_hash FROM log_head WHERE id = 1",
            )
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::Corrupt("log_head row is missing".into()))?;
            Ok(rows::chain_head(&row)?)
        })
        .await
    }

    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        boundary(async {
            let found = sqlx::query("SELECT * FROM audit WHERE id > ? ORDER BY id LIMIT ?")
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
            Ok(rows::all(&found, rows::audit)?)
        })
        .await
    }

    async fn audit_tail(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        boundary(async {
            let found = sqlx::query(
                "SELECT * FROM (SELECT * FROM audit ORDER BY id DESC LIMIT ?) ORDER BY id",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows::all(&found, rows::audit)?)
        })
        .await
    }
}
