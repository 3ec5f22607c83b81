//! The event log and the audit chain on PostgreSQL.

use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::audit::NewAudit;
use gaia_core::event::{Event, NewEvent};
use gaia_core::time::{from_micros, to_micros};
use gaia_core::usecase::log::{Appended, number};
use sqlx::PgConnection;

use crate::PgStore;
use crate::error::Db;
use gaia_store_sql::rows;

/// Reserves seqs for `$1` events and `$2` audit records, locking the `log_head` row until
/// commit; returns the head as it was. Writers may put their own writes before it as CTEs
/// (see [`crate::batch`]), saving a round trip while the lock is not yet held.
pub(crate) const RESERVE: &str = "UPDATE log_head SET event_seq = event_seq + $1, \
    audit_seq = audit_seq + $2 WHERE id = 1 RETURNING event_seq - $1, audit_seq - $2, audit_hash";

/// Appends events and audit records inside the caller's transaction. Reserving the seqs locks
/// the `log_head` row until commit: callers do this as their last step, so the lock is held
/// only for the inserts and the commit.
pub(crate) async fn append_log(
    conn: &mut PgConnection,
    events: &[NewEvent],
    audit: &[NewAudit],
    now: DateTime<Utc>,
) -> Db<Vec<Event>> {
    let head = sqlx::query(RESERVE)
        .bind(count(events))
        .bind(count(audit))
        .fetch_optional(&mut *conn)
        .await?;
    write_log(conn, head, events, audit, now, false).await
}

/// How many rows, as bound for `RESERVE`.
pub(crate) fn count<T>(rows: &[T]) -> i64 {
    i64::try_from(rows.len()).unwrap_or(i64::MAX)
}

/// Numbers the events and audit records after `head` (the row `RESERVE` returned) and writes
/// them; with `notify`, the same statement announces the newest seq to other nodes (NOTIFY is
/// delivered at commit).
pub(crate) async fn write_log(
    conn: &mut PgConnection,
    head: Option<sqlx::postgres::PgRow>,
    events: &[NewEvent],
    audit: &[NewAudit],
    now: DateTime<Utc>,
    notify: bool,
) -> Db<Vec<Event>> {
    let head = rows::log_head(head)?;
    // The timestamp as stored (microseconds), so what is returned equals what is read back.
    let ts = to_micros(now);
    let done = number(head, events, audit, from_micros(ts));
    insert_log(conn, ts, &done, notify).await?;
    Ok(done.events)
}

/// Writes numbered events and sealed audit records, and the new chain hash, in one statement.
async fn insert_log(conn: &mut PgConnection, ts: i64, done: &Appended, notify: bool) -> Db<()> {
    let (committed, sealed) = (&done.events, &done.audit);
    // One statement for every row: the log_head lock is held from the UPDATE above until
    // commit, so each round trip saved here shortens the queue of every other writer.
    let announce = match done.events.last() {
        Some(last) if notify => Some(last.seq.to_string()),
        _ => None,
    };
    let sql = format!(
        "{INSERT_LOG} {}",
        if announce.is_some() {
            "FROM (SELECT pg_notify($16, $17)) AS n WHERE id = 1"
        } else {
            "WHERE id = 1"
        }
    );
    let query = sqlx::query(&sql)
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
        .bind(&done.head.audit_hash);
    let query = match announce {
        Some(seq) => query.bind(crate::notify::CHANNEL).bind(seq),
        None => query,
    };
    query.execute(&mut *conn).await?;
    Ok(())
}

/// Writes the events and audit records of `insert_log`; its caller ends the statement with
/// the condition on `log_head` (and the NOTIFY it may carry).
const INSERT_LOG: &str = "WITH e AS (
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
         UPDATE log_head SET audit_hash = $15";

gaia_store_sql::log_reads_sql!(store = PgStore, {
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
});
