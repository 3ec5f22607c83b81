//! The event log and the audit chain on PostgreSQL: the statements the claim writer appends
//! with (`batch.rs`; every other write appends through `gaia_append`, see `tx.rs`), and the
//! reads.

use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::audit::{AuditRecord, NewAudit};
use gaia_core::event::{Event, NewEvent};
use gaia_core::time::{from_micros, to_micros};
use gaia_core::usecase::log::{Appended, LogHead, number};

use crate::PgStore;
use crate::simple::Sink;

/// The common table expressions that move the log head only if it is as predicted: `cur`
/// locks the head's row and reads it as the last writer committed it (a condition in the
/// `UPDATE` itself would be judged on the statement's snapshot, from before the previous
/// writer committed); `h` sets it to `$16`, `$17`, `$15` if it is still `$18..$20`, and has a
/// row only then. For a predicted claim batch (`batch.rs`).
pub(crate) const PREDICTED_HEAD: &str = "cur AS MATERIALIZED (
            SELECT event_seq, audit_seq, audit_hash FROM log_head WHERE id = 1 FOR NO KEY UPDATE
         ), h AS (
            UPDATE log_head SET event_seq = $16, audit_seq = $17, audit_hash = $15
            FROM cur
            WHERE log_head.id = 1 AND cur.event_seq = $18 AND cur.audit_seq = $19
                AND cur.audit_hash = $20
            RETURNING log_head.id
         )";

/// Numbers the events and audit records after `head`, stamped with `now` as stored
/// (microseconds), so that what is returned equals what is read back.
pub(crate) fn number_at(
    head: LogHead,
    events: &[NewEvent],
    audit: &[NewAudit],
    now: DateTime<Utc>,
) -> Appended {
    number(head, events, audit, from_micros(to_micros(now)))
}

/// The types of `$1..$15` of [`log_rows`] (see [`bind_log`]), for `PREPARE`.
macro_rules! log_types {
    () => {
        "BIGINT, BIGINT[], TEXT[], TEXT[], TEXT[], TEXT[], BIGINT[], TEXT[], TEXT[], TEXT[], \
         TEXT[], TEXT[], TEXT[], TEXT[], TEXT"
    };
}
pub(crate) use log_types;

/// Binds `$1..$15` of [`log_rows`]: the timestamp, the events' and audit records' columns,
/// and the new chain hash (to a sqlx query, or as literals: see [`crate::simple`]).
pub(crate) fn bind_log<'q, S: Sink<'q>>(query: S, ts: i64, done: &'q Appended) -> S {
    let events = |f: fn(&'q Event) -> &'q str| done.events.iter().map(f).collect::<Vec<_>>();
    let audit = |f: fn(&'q AuditRecord) -> &'q str| done.audit.iter().map(f).collect::<Vec<_>>();
    query
        .arg(ts)
        .arg(done.events.iter().map(|e| e.seq).collect::<Vec<_>>())
        .arg(events(|e| e.kind.as_str()))
        .arg(events(|e| e.actor.as_str()))
        .arg(events(|e| e.subject.as_str()))
        .arg(
            done.events
                .iter()
                .map(|e| e.data.to_string())
                .collect::<Vec<_>>(),
        )
        .arg(done.audit.iter().map(|r| r.id).collect::<Vec<_>>())
        .arg(audit(|r| r.actor.as_str()))
        .arg(audit(|r| r.action.as_str()))
        .arg(audit(|r| r.subject.as_str()))
        .arg(audit(|r| r.outcome.as_str()))
        .arg(audit(|r| r.details.as_str()))
        .arg(audit(|r| r.prev_hash.as_str()))
        .arg(audit(|r| r.hash.as_str()))
        .arg(done.head.audit_hash.as_str())
}

/// The CTEs that write the events and audit records (`$1..$14`; `$15`, the new chain hash, is
/// for the caller's `log_head` update), with `cond` appended to each insert's `SELECT` (as
/// `WHERE ...`), so that a statement can write the log only when a condition on `log_head`
/// holds.
pub(crate) fn log_rows(cond: &str) -> String {
    format!(
        "e AS (
            INSERT INTO events (seq, ts_us, type, actor, subject, data)
            SELECT seq, $1, type, actor, subject, data
            FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])
                AS u(seq, type, actor, subject, data) {cond}
         ), a AS (
            INSERT INTO audit (id, ts_us, actor, action, subject, outcome, details, prev_hash, hash)
            SELECT id, $1, actor, action, subject, outcome, details, prev_hash, hash
            FROM UNNEST($7::BIGINT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[],
                        $12::TEXT[], $13::TEXT[], $14::TEXT[])
                AS u(id, actor, action, subject, outcome, details, prev_hash, hash) {cond}
         )"
    )
}

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
