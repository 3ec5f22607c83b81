//! The notification outbox on PostgreSQL: the SQL of the outbox and pacing primitives (rows
//! are read in `rows`). Row locks (`FOR UPDATE`, `SKIP LOCKED` when leasing) keep senders on every
//! node apart; the control flow is `gaia_core::usecase::outbox`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::outbox::{Leased, Message, NewMessage, Status};
use gaia_core::store::{OutboxCounts, OutboxStore};
use gaia_core::time::{from_micros, to_micros};
use gaia_core::tx::{PacingRow, PacingStart};
use sqlx::PgConnection;

use crate::PgStore;
use crate::error::{Db, boundary};
use gaia_store_sql::rows;

pub(crate) async fn write(conn: &mut PgConnection, m: &Message) -> Db<()> {
    sqlx::query(
        "UPDATE outbox SET status = $1, attempts = $2, requeues = $3, next_attempt_at_us = $4,
            leased_until_us = 0, last_error = $5, sent_at_us = $6, dead_at_us = $7, result = $8
         WHERE id = $9",
    )
    .bind(m.status.as_str())
    .bind(i64::from(m.attempts))
    .bind(i64::from(m.requeues))
    .bind(to_micros(m.next_attempt_at))
    .bind(&m.last_error)
    .bind(m.sent_at.map(to_micros))
    .bind(m.dead_at.map(to_micros))
    .bind(m.result.as_ref().map(serde_json::Value::to_string))
    .bind(m.id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Leases due messages until `until_us`, each under a new token; rows another sender is
/// leasing right now are skipped.
pub(crate) async fn lease_due(
    conn: &mut PgConnection,
    now_us: i64,
    until_us: i64,
    limit: u32,
) -> Db<Vec<Leased>> {
    let found = sqlx::query(
        "UPDATE outbox SET leased_until_us = $1, lease_token = lease_token + 1
         WHERE id IN (SELECT id FROM outbox
                      WHERE status = 'pending' AND next_attempt_at_us <= $2 AND leased_until_us <= $2
                      ORDER BY next_attempt_at_us, id LIMIT $3
                      FOR UPDATE SKIP LOCKED)
         RETURNING *",
    )
    .bind(until_us)
    .bind(now_us)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows::all(&found, rows::leased)?)
}

/// Message `id` with its lease token, locked.
pub(crate) async fn lock(conn: &mut PgConnection, id: i64) -> Db<Option<Leased>> {
    let found = sqlx::query("SELECT * FROM outbox WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(rows::maybe(found, rows::leased)?)
}

pub(crate) async fn set_lease(
    conn: &mut PgConnection,
    id: i64,
    until_us: i64,
    keep_later: bool,
) -> Db<()> {
    let sql = if keep_later {
        "UPDATE outbox SET leased_until_us = GREATEST(leased_until_us, $1) WHERE id = $2"
    } else {
        "UPDATE outbox SET leased_until_us = $1 WHERE id = $2"
    };
    sqlx::query(sql)
        .bind(until_us)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(crate) async fn defer(conn: &mut PgConnection, id: i64, at_us: i64) -> Db<()> {
    sqlx::query("UPDATE outbox SET next_attempt_at_us = $1, leased_until_us = 0 WHERE id = $2")
        .bind(at_us)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The pacing row of `key`, created empty when missing, locked until the transaction ends.
pub(crate) async fn pacing_lock(conn: &mut PgConnection, key: &str) -> Db<PacingRow> {
    sqlx::query("INSERT INTO outbox_pacing (chat) VALUES ($1) ON CONFLICT (chat) DO NOTHING")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    let row = sqlx::query(
        "SELECT held_until_us, last_sent_us, sending_id, sending_token, sending_until_us
         FROM outbox_pacing WHERE chat = $1 FOR UPDATE",
    )
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    Ok(rows::pacing(&row)?)
}

pub(crate) async fn pacing_nth_send(
    conn: &mut PgConnection,
    chat: Option<&str>,
    n: u32,
    after_us: i64,
) -> Db<Option<DateTime<Utc>>> {
    let at: Option<i64> = sqlx::query_scalar(
        "SELECT at_us FROM outbox_sends WHERE ($1::TEXT IS NULL OR chat = $1) AND at_us > $2
         ORDER BY at_us DESC LIMIT 1 OFFSET $3",
    )
    .bind(chat)
    .bind(after_us)
    .bind(i64::from(n.max(1) - 1))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(at.map(from_micros))
}

pub(crate) async fn pacing_start(conn: &mut PgConnection, s: &PacingStart<'_>) -> Db<()> {
    let at = to_micros(s.at);
    sqlx::query(
        "UPDATE outbox_pacing SET last_sent_us = $1, sending_id = $2, sending_token = $3,
            sending_until_us = $4
         WHERE chat = $5",
    )
    .bind(at)
    .bind(s.id)
    .bind(s.token)
    .bind(to_micros(s.until))
    .bind(s.key)
    .execute(&mut *conn)
    .await?;
    if s.paced {
        sqlx::query("INSERT INTO outbox_sends (chat, at_us) VALUES ($1, $2)")
            .bind(s.key)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM outbox_sends WHERE at_us <= $1")
            .bind(to_micros(s.forget_before))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(crate) async fn pacing_finish(
    conn: &mut PgConnection,
    key: &str,
    reserved_us: i64,
    at_us: i64,
) -> Db<()> {
    sqlx::query("UPDATE outbox_sends SET at_us = $1 WHERE chat = $2 AND at_us = $3")
        .bind(at_us)
        .bind(key)
        .bind(reserved_us)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE outbox_pacing SET last_sent_us = GREATEST(last_sent_us, $1), sending_id = NULL,
            sending_token = NULL, sending_until_us = 0
         WHERE chat = $2",
    )
    .bind(at_us)
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) async fn pacing_hold(conn: &mut PgConnection, key: &str, until_us: i64) -> Db<()> {
    sqlx::query(
        "INSERT INTO outbox_pacing (chat, held_until_us) VALUES ($1, $2)
         ON CONFLICT (chat) DO UPDATE
            SET held_until_us = GREATEST(outbox_pacing.held_until_us, excluded.held_until_us)",
    )
    .bind(key)
    .bind(until_us)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts a pending message due at `now_us`; `None` when its dedupe key was seen before.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    m: &NewMessage,
    now_us: i64,
) -> Db<Option<i64>> {
    Ok(sqlx::query_scalar(
        "INSERT INTO outbox (channel, target, kind, payload, dedupe_key, status, attempts,
            requeues, created_at_us, next_attempt_at_us)
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, 0, $6, $7)
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING id",
    )
    .bind(m.channel.as_str())
    .bind(&m.target)
    .bind(&m.kind)
    .bind(m.payload.to_string())
    .bind(&m.dedupe_key)
    .bind(now_us)
    .bind(now_us)
    .fetch_optional(&mut *conn)
    .await?)
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn outbox_get(&self, id: i64) -> Result<Option<Message>, StoreError> {
        boundary(async {
            let found = sqlx::query("SELECT * FROM outbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            Ok(rows::maybe(found, rows::message)?)
        })
        .await
    }

    async fn outbox_by_key(&self, dedupe_key: &str) -> Result<Option<Message>, StoreError> {
        boundary(async {
            let found = sqlx::query("SELECT * FROM outbox WHERE dedupe_key = $1")
                .bind(dedupe_key)
                .fetch_optional(&self.pool)
                .await?;
            Ok(rows::maybe(found, rows::message)?)
        })
        .await
    }

    async fn outbox_list(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        boundary(async {
            let found = sqlx::query(
                "SELECT * FROM outbox WHERE ($1::TEXT IS NULL OR status = $1) ORDER BY id DESC LIMIT $2",
            )
            .bind(status.map(Status::as_str))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows::all(&found, rows::message)?)
        })
        .await
    }

    async fn notify_event_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        boundary(async {
            let found = sqlx::query("SELECT type, COALESCE(data::jsonb ->> 'outcome', '') AS outcome, COUNT(*) AS n FROM events WHERE type LIKE 'notify.%' GROUP BY 1, 2")
                .fetch_all(&self.pool)
                .await?;
            Ok(rows::all(&found, rows::event_count)?)
        })
        .await
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        boundary(async {
            let found = sqlx::query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
            let mut counts = OutboxCounts::default();
            for row in &found {
                rows::add_status_count(&mut counts, row)?;
            }
            Ok(counts)
        })
        .await
    }
}
