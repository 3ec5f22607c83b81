//! Stored rows as the database returns them, one struct per table shape, and their
//! conversion to Gaia's types. Nothing here panics: a missing column or a value of the wrong
//! type, and a stored value that does not parse, become [`StoreError::Corrupt`] naming the
//! table and the column.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::audit::{AuditRecord, ChainHead};
use gaia_core::claims::{ClaimRow, Holder};
use gaia_core::commands::{CommandRecord, Execution};
use gaia_core::event::Event;
use gaia_core::names::ClaimKey;
use gaia_core::outbox::{Leased, Message};
use gaia_core::store::OutboxCounts;
use gaia_core::time::from_micros;
use gaia_core::tokens::TokenInfo;
use gaia_core::tx::PacingRow;
use sqlx::FromRow;
use sqlx::sqlite::SqliteRow as DbRow;

use crate::error::Db;

/// The stored value of `table.column` cannot be read.
fn corrupt(table: &str, column: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{table}.{column}: {detail}"))
}

/// Reads `row` of `table` as the columns `C`.
pub(crate) fn decode<'r, C: FromRow<'r, DbRow>>(
    table: &str,
    row: &'r DbRow,
) -> Result<C, StoreError> {
    C::from_row(row).map_err(|e| match e {
        sqlx::Error::ColumnDecode { index, source } => {
            corrupt(table, index.trim_matches('"'), source)
        }
        sqlx::Error::ColumnNotFound(column) => corrupt(table, &column, "missing"),
        other => StoreError::Corrupt(format!("{table}: {other}")),
    })
}

/// Reads every row of `found` with `read`, failing on the first that cannot be read.
pub(crate) fn all<T>(found: &[DbRow], read: fn(&DbRow) -> Result<T, StoreError>) -> Db<Vec<T>> {
    Ok(found.iter().map(read).collect::<Result<_, _>>()?)
}

/// Reads the row `found`, if there is one, with `read`.
pub(crate) fn maybe<T>(
    found: Option<DbRow>,
    read: fn(&DbRow) -> Result<T, StoreError>,
) -> Db<Option<T>> {
    Ok(found.as_ref().map(read).transpose()?)
}

/// A count that cannot be negative.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A stored time, 0 meaning none.
fn stored_time(us: i64) -> Option<DateTime<Utc>> {
    (us > 0).then(|| from_micros(us))
}

#[derive(FromRow)]
struct ClaimColumns {
    story: String,
    todolist: String,
    agent: Option<String>,
    operator: Option<String>,
    fingerprint: Option<String>,
    token: i64,
    acquired_at_us: Option<i64>,
    expires_at_us: Option<i64>,
    ttl_ms: i64,
    principal: Option<String>,
}

impl From<ClaimColumns> for ClaimRow {
    fn from(c: ClaimColumns) -> Self {
        let holder = c.agent.map(|agent| Holder {
            agent,
            operator: c.operator.unwrap_or_default(),
            fingerprint: c.fingerprint.unwrap_or_default(),
            principal: c.principal,
        });
        ClaimRow {
            key: ClaimKey {
                story: c.story,
                todolist: c.todolist,
            },
            holder,
            token: c.token,
            acquired_at: c.acquired_at_us.map(from_micros),
            expires_at: c.expires_at_us.map(from_micros),
            ttl: Duration::from_millis(u64::try_from(c.ttl_ms).unwrap_or(0)),
        }
    }
}

/// A row of `claims` (its claim columns).
pub(crate) fn claim(row: &DbRow) -> Result<ClaimRow, StoreError> {
    Ok(decode::<ClaimColumns>("claims", row)?.into())
}

#[derive(FromRow)]
struct CommandColumns {
    id: String,
    spec: String,
    cwd: Option<String>,
    story: Option<String>,
    todolist: Option<String>,
    reason: Option<String>,
    requester: String,
    is_test: bool,
    test_allowed: bool,
    created_at_us: i64,
    expires_at_us: i64,
    status: String,
    decided_by: Option<String>,
    decided_via: Option<String>,
    decided_at_us: Option<i64>,
    decision_reason: Option<String>,
    binding: String,
    execution: Option<String>,
}

impl TryFrom<CommandColumns> for CommandRecord {
    type Error = StoreError;

    fn try_from(c: CommandColumns) -> Result<Self, StoreError> {
        Ok(CommandRecord {
            spec: serde_json::from_str(&c.spec).map_err(|e| corrupt("commands", "spec", e))?,
            cwd: c.cwd,
            story: c.story,
            todolist: c.todolist,
            reason: c.reason,
            requester: c.requester,
            is_test: c.is_test,
            test_allowed: c.test_allowed,
            created_at: from_micros(c.created_at_us),
            expires_at: from_micros(c.expires_at_us),
            status: c
                .status
                .parse()
                .map_err(|e| corrupt("commands", "status", e))?,
            decided_by: c.decided_by,
            decided_via: c.decided_via,
            decided_at: c.decided_at_us.map(from_micros),
            decision_reason: c.decision_reason,
            binding: c.binding,
            // An unreadable execution is read as missing (and reported in the log).
            execution: Execution::from_stored(&c.id, c.execution.as_deref()),
            id: c.id,
        })
    }
}

/// A row of `commands`.
pub(crate) fn command(row: &DbRow) -> Result<CommandRecord, StoreError> {
    decode::<CommandColumns>("commands", row)?.try_into()
}

#[derive(FromRow)]
struct OutboxColumns {
    id: i64,
    channel: String,
    target: String,
    kind: String,
    payload: String,
    dedupe_key: Option<String>,
    status: String,
    attempts: i64,
    requeues: i64,
    created_at_us: i64,
    next_attempt_at_us: i64,
    last_error: Option<String>,
    sent_at_us: Option<i64>,
    dead_at_us: Option<i64>,
    result: Option<String>,
}

impl TryFrom<OutboxColumns> for Message {
    type Error = StoreError;

    fn try_from(c: OutboxColumns) -> Result<Self, StoreError> {
        Ok(Message {
            id: c.id,
            channel: c
                .channel
                .parse()
                .map_err(|e| corrupt("outbox", "channel", e))?,
            target: c.target,
            kind: c.kind,
            payload: serde_json::from_str(&c.payload)
                .map_err(|e| corrupt("outbox", "payload", e))?,
            dedupe_key: c.dedupe_key,
            status: c
                .status
                .parse()
                .map_err(|e| corrupt("outbox", "status", e))?,
            attempts: u32::try_from(c.attempts).unwrap_or(u32::MAX),
            requeues: u32::try_from(c.requeues).unwrap_or(u32::MAX),
            created_at: from_micros(c.created_at_us),
            next_attempt_at: from_micros(c.next_attempt_at_us),
            last_error: c.last_error,
            sent_at: c.sent_at_us.map(from_micros),
            dead_at: c.dead_at_us.map(from_micros),
            result: c
                .result
                .map(|r| serde_json::from_str(&r))
                .transpose()
                .map_err(|e| corrupt("outbox", "result", e))?,
        })
    }
}

/// A row of `outbox`.
pub(crate) fn message(row: &DbRow) -> Result<Message, StoreError> {
    decode::<OutboxColumns>("outbox", row)?.try_into()
}

#[derive(FromRow)]
struct LeaseColumns {
    lease_token: i64,
}

/// A row of `outbox` with its lease token.
pub(crate) fn leased(row: &DbRow) -> Result<Leased, StoreError> {
    Ok(Leased {
        message: message(row)?,
        token: decode::<LeaseColumns>("outbox", row)?.lease_token,
    })
}

#[derive(FromRow)]
struct PacingColumns {
    held_until_us: i64,
    last_sent_us: i64,
    sending_id: Option<i64>,
    sending_token: Option<i64>,
    sending_until_us: i64,
}

/// A row of `outbox_pacing`.
pub(crate) fn pacing(row: &DbRow) -> Result<PacingRow, StoreError> {
    let c = decode::<PacingColumns>("outbox_pacing", row)?;
    Ok(PacingRow {
        held_until: stored_time(c.held_until_us),
        last_sent: stored_time(c.last_sent_us),
        sending_id: c.sending_id,
        sending_token: c.sending_token,
        sending_until: stored_time(c.sending_until_us),
    })
}

#[derive(FromRow)]
struct TokenColumns {
    name: String,
    role: String,
    created_at_us: i64,
    created_by: String,
    revoked_at_us: Option<i64>,
}

impl TryFrom<TokenColumns> for TokenInfo {
    type Error = StoreError;

    fn try_from(c: TokenColumns) -> Result<Self, StoreError> {
        Ok(TokenInfo {
            role: c
                .role
                .parse()
                .map_err(|_| corrupt("tokens", "role", format!("unknown role '{}'", c.role)))?,
            name: c.name,
            created_at: from_micros(c.created_at_us),
            created_by: c.created_by,
            revoked_at: c.revoked_at_us.map(from_micros),
        })
    }
}

/// A row of `tokens`.
pub(crate) fn token(row: &DbRow) -> Result<TokenInfo, StoreError> {
    decode::<TokenColumns>("tokens", row)?.try_into()
}

#[derive(FromRow)]
struct EventColumns {
    seq: i64,
    ts_us: i64,
    #[sqlx(rename = "type")]
    kind: String,
    actor: String,
    subject: String,
    data: String,
}

impl From<EventColumns> for Event {
    fn from(c: EventColumns) -> Self {
        Event {
            seq: c.seq,
            ts: from_micros(c.ts_us),
            kind: c.kind,
            actor: c.actor,
            subject: c.subject,
            // Data that is not JSON is shown as the text it is.
            data: serde_json::from_str(&c.data).unwrap_or(serde_json::Value::String(c.data)),
        }
    }
}

/// A row of `events`.
pub(crate) fn event(row: &DbRow) -> Result<Event, StoreError> {
    Ok(decode::<EventColumns>("events", row)?.into())
}

#[derive(FromRow)]
struct AuditColumns {
    id: i64,
    ts_us: i64,
    actor: String,
    action: String,
    subject: String,
    outcome: String,
    details: String,
    prev_hash: String,
    hash: String,
}

impl From<AuditColumns> for AuditRecord {
    fn from(c: AuditColumns) -> Self {
        AuditRecord {
            id: c.id,
            ts: from_micros(c.ts_us),
            actor: c.actor,
            action: c.action,
            subject: c.subject,
            outcome: c.outcome,
            details: c.details,
            prev_hash: c.prev_hash,
            hash: c.hash,
        }
    }
}

/// A row of `audit`.
pub(crate) fn audit(row: &DbRow) -> Result<AuditRecord, StoreError> {
    Ok(decode::<AuditColumns>("audit", row)?.into())
}

#[derive(FromRow)]
struct ChainHeadColumns {
    audit_anchor_id: i64,
    audit_anchor_hash: String,
    audit_seq: i64,
    audit_hash: String,
}

/// The audit chain's head, from `log_head`.
pub(crate) fn chain_head(row: &DbRow) -> Result<ChainHead, StoreError> {
    let c = decode::<ChainHeadColumns>("log_head", row)?;
    Ok(ChainHead {
        anchor_id: c.audit_anchor_id,
        anchor_hash: c.audit_anchor_hash,
        last_id: c.audit_seq,
        last_hash: c.audit_hash,
    })
}

#[derive(FromRow)]
struct EventCountColumns {
    #[sqlx(rename = "type")]
    kind: String,
    outcome: String,
    n: i64,
}

/// A row of the count of notification events by type and outcome.
pub(crate) fn event_count(row: &DbRow) -> Result<(String, String, u64), StoreError> {
    let c = decode::<EventCountColumns>("events", row)?;
    Ok((c.kind, c.outcome, count(c.n)))
}

#[derive(FromRow)]
struct StatusCountColumns {
    status: String,
    n: i64,
}

/// Adds a row of the count of outbox messages by status to `counts`.
pub(crate) fn add_status_count(counts: &mut OutboxCounts, row: &DbRow) -> Result<(), StoreError> {
    let c = decode::<StatusCountColumns>("outbox", row)?;
    let n = count(c.n);
    match c.status.as_str() {
        "pending" => counts.pending = n,
        "sent" => counts.sent = n,
        "dead" => counts.dead = n,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use gaia_core::StoreError;
    use sqlx::{Connection, SqliteConnection};

    async fn row(sql: &str) -> super::DbRow {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query(sql).fetch_one(&mut conn).await.unwrap()
    }

    fn corrupt_message(e: StoreError) -> String {
        match e {
            StoreError::Corrupt(m) => m,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_value_of_the_wrong_type_is_corrupt_naming_table_and_column() {
        let r = row(
            "SELECT 'a' AS story, 'b' AS todolist, NULL AS agent, NULL AS operator,
                NULL AS fingerprint, 'seven' AS token, NULL AS acquired_at_us,
                NULL AS expires_at_us, 0 AS ttl_ms, NULL AS principal",
        )
        .await;
        let m = corrupt_message(super::claim(&r).unwrap_err());
        assert!(m.starts_with("claims.token: "), "{m}");
    }

    #[tokio::test]
    async fn a_missing_column_is_corrupt() {
        let r = row("SELECT 'a' AS name, 'admin' AS role").await;
        let m = corrupt_message(super::token(&r).unwrap_err());
        assert!(m.starts_with("tokens."), "{m}");
        assert!(m.ends_with(": missing"), "{m}");
    }

    #[tokio::test]
    async fn a_stored_value_that_does_not_parse_is_corrupt() {
        let r = row(
            "SELECT 'a' AS name, 'root' AS role, 1 AS created_at_us, 'x' AS created_by,
                NULL AS revoked_at_us",
        )
        .await;
        let m = corrupt_message(super::token(&r).unwrap_err());
        assert_eq!(m, "tokens.role: unknown role 'root'");
    }
}
