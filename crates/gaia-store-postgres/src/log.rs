//! The event log and the audit chain on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::audit::{AuditRecord, ChainHead, NewAudit};
use gaia_core::event::{Event, EventFilter, NewEvent};
use gaia_core::store::{AuditStore, EventStore};
use gaia_core::time::{from_micros, to_micros};
use gaia_core::usecase::log::{Appended, LogHead, number};
use sqlx::PgConnection;

use crate::PgStore;
use crate::error::{Db, boundary};
use gaia_store_sql::rows;

/// Appends events and audit records inside the caller's transaction. Reserving the seqs locks
/// the `log_head` row until commit: callers do this as their last step, so the lock is held
/// only for the inserts and the commit.
pub(crate) async fn append_log(
    conn: &mut PgConnection,
    events: &[NewEvent],
    audit: &[NewAudit],
    now: DateTime<Utc>,
) -> Db<Vec<Event>> {
    let n_events = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let n_audit = i64::try_from(audit.len()).unwrap_or(i64::MAX);
    let head = sqlx::query(
        "UPDATE log_head SET event_seq = event_seq + $1, audit_seq = audit_seq + $2 WHERE id = 1
         RETURNING event_seq - $1, audit_seq - $2, audit_hash",
    )
    .bind(n_events)
    .bind(n_audit)
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
    insert_log(conn, ts, &done).await?;
    Ok(done.events)
}

/// Writes numbered events and sealed audit records, and the new chain hash, in one statement.
async fn insert_log(conn: &mut PgConnection, ts: i64, done: &Appended) -> Db<()> {
    let (committed, sealed) = (&done.events, &done.audit);
    // One statement for every row: the log_head lock is held from the UPDATE above until
    // commit, so each round trip saved here shortens the queue of every other writer.
    sqlx::query(
        "WITH e AS (
            INSERT INTO events (seq, ts_us, type, actor, subject, data)
            SELECT seq, $1, type, actor, subject, data
            FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])
                AS u(seq, type, actor, subject, data)
         ), a AS (
            INSERT INTO audit (id, ts_us, actor, action, subject, outcome, details, prev_hash, hash)
            SELECT id, $1, actor, action, subject, outcome, details, prev_hash, hash
            FROM UNNEST($7::BIGINT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[],
                        $12::TEXT[], $13::TEXT[], $14::TEXT[])
                AS u(id, actor, action, subject, outcome, details, prev_hash, hash)
         )
         UPDATE log_head SET audit_hash = $15 WHERE id = 1",
    )
    .bind(ts)
    .bind(committed.iter().map(|e| e.seq).collect::<Vec<_>>())
    .bind(
        committed
            .iter()
            .map(|e| e.kind.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        committed
            .iter()
            .map(|e| e.actor.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        committed
            .iter()
            .map(|e| e.subject.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        committed
            .iter()
            .map(|e| e.data.to_string())
            .collect::<Vec<_>>(),
    )
    .bind(sealed.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(sealed.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>())
    .bind(sealed.iter().map(|r| r.action.as_str()).collect::<Vec<_>>())
    .bind(
        sealed
            .iter()
            .map(|r| r.subject.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        sealed
            .iter()
            .map(|r| r.outcome.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        sealed
            .iter()
            .map(|r| r.details.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        sealed
            .iter()
            .map(|r| r.prev_hash.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(sealed.iter().map(|r| r.hash.as_str()).collect::<Vec<_>>())
    .bind(&done.head.audit_hash)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl EventStore for PgStore {
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
                 WHERE seq > $1
                   AND ($2::TEXT IS NULL OR type = $2 OR substr(type, 1, length($2) + 1) = $2 || '.')
                   AND ($3::TEXT IS NULL OR subject = $3)
                 ORDER BY seq LIMIT $4",
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
                    WHERE seq < $1
                      AND ($2::TEXT IS NULL OR type = $2 OR substr(type, 1, length($2) + 1) = $2 || '.')
                      AND ($3::TEXT IS NULL OR subject = $3)
                    ORDER BY seq DESC LIMIT $4
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
        let mut seen = self.listen().await;
        let notified = tokio::time::timeout(timeout, seen.wait_for(|s| *s > after))
            .await
            .ok()
            .and_then(|r| r.ok().map(|seq| *seq));
        match notified {
            Some(seq) => Ok(seq),
            // No notification in time (or the listener is down): ask the head row, so a lost
            // notification delays a reader by one timeout at most.
            _ => self.last_seq().await,
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
impl AuditStore for PgStore {
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
            let found = sqlx::query("SELECT * FROM audit WHERE id > $1 ORDER BY id LIMIT $2")
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
                "SELECT * FROM (SELECT * FROM audit ORDER BY id DESC LIMIT $1) t ORDER BY id",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows::all(&found, rows::audit)?)
        })
        .await
    }
}
