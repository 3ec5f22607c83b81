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
use sqlx::{FromRow, Row};

pub mod backlog;
pub mod github;

/// The stored value of `table.column` cannot be read.
fn corrupt(table: &str, column: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{table}.{column}: {detail}"))
}

/// Reads `row` of `table` as the columns `C`.
pub fn decode<'r, C: FromRow<'r, R>, R: Row>(table: &str, row: &'r R) -> Result<C, StoreError> {
    C::from_row(row).map_err(|e| match e {
        sqlx::Error::ColumnDecode { index, source } => {
            corrupt(table, index.trim_matches('"'), source)
        }
        sqlx::Error::ColumnNotFound(column) => corrupt(table, &column, "missing"),
        other => StoreError::Corrupt(format!("{table}: {other}")),
    })
}

/// Reads every row of `found` with `read`, failing on the first that cannot be read.
pub fn all<R, T>(found: &[R], read: fn(&R) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    found.iter().map(read).collect()
}

/// Reads the row `found`, if there is one, with `read`.
pub fn maybe<R, T>(
    found: Option<R>,
    read: fn(&R) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    found.as_ref().map(read).transpose()
}

/// The log head read before an append (`event_seq, audit_seq, audit_hash`, in that order, the
/// seqs being the last ones used); missing means the store is damaged.
pub fn log_head<R: Row>(found: Option<R>) -> Result<gaia_core::usecase::log::LogHead, StoreError>
where
    (i64, i64, String): for<'r> FromRow<'r, R>,
{
    let row = found.ok_or_else(|| StoreError::Corrupt("log_head row is missing".into()))?;
    let (event_seq, audit_id, audit_hash) = decode::<(i64, i64, String), _>("log_head", &row)?;
    Ok(gaia_core::usecase::log::LogHead {
        event_seq,
        audit_id,
        audit_hash,
    })
}

/// A count that cannot be negative.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A stored time, 0 meaning none.
fn stored_time(us: i64) -> Option<DateTime<Utc>> {
    (us > 0).then(|| from_micros(us))
}

#[derive(Debug, FromRow)]
pub struct ClaimColumns {
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
pub fn claim<R: Row>(row: &R) -> Result<ClaimRow, StoreError>
where
    for<'r> ClaimColumns: FromRow<'r, R>,
{
    Ok(decode::<ClaimColumns, _>("claims", row)?.into())
}

#[derive(Debug, FromRow)]
pub struct CommandColumns {
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

/// A request's command as stored in `commands.spec` (the form [`command`] reads back).
pub fn spec_text(spec: &gaia_core::commands::CommandSpec) -> Result<String, StoreError> {
    serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(format!("commands.spec: {e}")))
}

/// A row of `commands`.
pub fn command<R: Row>(row: &R) -> Result<CommandRecord, StoreError>
where
    for<'r> CommandColumns: FromRow<'r, R>,
{
    decode::<CommandColumns, _>("commands", row)?.try_into()
}

#[derive(Debug, FromRow)]
pub struct OutboxColumns {
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
pub fn message<R: Row>(row: &R) -> Result<Message, StoreError>
where
    for<'r> OutboxColumns: FromRow<'r, R>,
{
    decode::<OutboxColumns, _>("outbox", row)?.try_into()
}

#[derive(Debug, FromRow)]
pub struct LeaseColumns {
    lease_token: i64,
}

/// A row of `outbox` with its lease token.
pub fn leased<R: Row>(row: &R) -> Result<Leased, StoreError>
where
    for<'r> OutboxColumns: FromRow<'r, R>,
    for<'r> LeaseColumns: FromRow<'r, R>,
{
    Ok(Leased {
        message: message(row)?,
        token: decode::<LeaseColumns, _>("outbox", row)?.lease_token,
    })
}

#[derive(Debug, FromRow)]
pub struct PacingColumns {
    held_until_us: i64,
    last_sent_us: i64,
    sending_id: Option<i64>,
    sending_token: Option<i64>,
    sending_until_us: i64,
}

/// A row of `outbox_pacing`.
pub fn pacing<R: Row>(row: &R) -> Result<PacingRow, StoreError>
where
    for<'r> PacingColumns: FromRow<'r, R>,
{
    let c = decode::<PacingColumns, _>("outbox_pacing", row)?;
    Ok(PacingRow {
        held_until: stored_time(c.held_until_us),
        last_sent: stored_time(c.last_sent_us),
        sending_id: c.sending_id,
        sending_token: c.sending_token,
        sending_until: stored_time(c.sending_until_us),
    })
}

#[derive(Debug, FromRow)]
pub struct TokenColumns {
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
pub fn token<R: Row>(row: &R) -> Result<TokenInfo, StoreError>
where
    for<'r> TokenColumns: FromRow<'r, R>,
{
    decode::<TokenColumns, _>("tokens", row)?.try_into()
}

#[derive(Debug, FromRow)]
pub struct EventColumns {
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
pub fn event<R: Row>(row: &R) -> Result<Event, StoreError>
where
    for<'r> EventColumns: FromRow<'r, R>,
{
    Ok(decode::<EventColumns, _>("events", row)?.into())
}

#[derive(Debug, FromRow)]
pub struct AuditColumns {
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
pub fn audit<R: Row>(row: &R) -> Result<AuditRecord, StoreError>
where
    for<'r> AuditColumns: FromRow<'r, R>,
{
    Ok(decode::<AuditColumns, _>("audit", row)?.into())
}

#[derive(Debug, FromRow)]
pub struct ChainHeadColumns {
    audit_anchor_id: i64,
    audit_anchor_hash: String,
    audit_seq: i64,
    audit_hash: String,
}

/// The audit chain's head, from `log_head`.
pub fn chain_head<R: Row>(row: &R) -> Result<ChainHead, StoreError>
where
    for<'r> ChainHeadColumns: FromRow<'r, R>,
{
    let c = decode::<ChainHeadColumns, _>("log_head", row)?;
    Ok(ChainHead {
        anchor_id: c.audit_anchor_id,
        anchor_hash: c.audit_anchor_hash,
        last_id: c.audit_seq,
        last_hash: c.audit_hash,
    })
}

#[derive(Debug, FromRow)]
pub struct EventCountColumns {
    #[sqlx(rename = "type")]
    kind: String,
    outcome: String,
    n: i64,
}

/// A row of the count of notification events by type and outcome.
pub fn event_count<R: Row>(row: &R) -> Result<(String, String, u64), StoreError>
where
    for<'r> EventCountColumns: FromRow<'r, R>,
{
    let c = decode::<EventCountColumns, _>("events", row)?;
    Ok((c.kind, c.outcome, count(c.n)))
}

#[derive(Debug, FromRow)]
pub struct StatusCountColumns {
    status: String,
    n: i64,
}

/// Adds a row of the count of outbox messages by status to `counts`.
pub fn add_status_count<R: Row>(counts: &mut OutboxCounts, row: &R) -> Result<(), StoreError>
where
    for<'r> StatusCountColumns: FromRow<'r, R>,
{
    let c = decode::<StatusCountColumns, _>("outbox", row)?;
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
    use sqlx::sqlite::SqliteRow;
    use sqlx::{Connection, SqliteConnection};

    async fn row(sql: &str) -> SqliteRow {
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

    /// The same reading on PostgreSQL, when `GAIA_TEST_POSTGRES_URL` names a server.
    #[tokio::test]
    async fn a_value_of_the_wrong_type_is_corrupt_on_postgres_too() {
        use sqlx::PgConnection;
        let Ok(url) = std::env::var("GAIA_TEST_POSTGRES_URL") else {
            return;
        };
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let r = sqlx::query(
            "SELECT 'a' AS name, 'admin' AS role, 'soon' AS created_at_us, 'x' AS created_by,
                NULL::BIGINT AS revoked_at_us",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let m = corrupt_message(super::token(&r).unwrap_err());
        assert!(m.starts_with("tokens.created_at_us: "), "{m}");
    }
}
