//! The notification outbox on SQLite: row mapping and the SQL of the outbox and pacing
//! primitives. Every write runs under SQLite's write lock (`BEGIN IMMEDIATE`), so a slot
//! reservation sees every other process's sends and holds; the control flow is
//! `gaia_core::usecase::outbox`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::outbox::{Leased, Message, NewMessage, Status};
use gaia_core::store::{OutboxCounts, OutboxStore};
use gaia_core::time::{from_micros, to_micros};
use gaia_core::tx::{PacingRow, PacingStart};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::SqliteStore;
use crate::error::map_err;

fn message_from_row(row: &SqliteRow) -> Result<Message, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("outbox {what}"));
    let payload: String = row.get("payload");
    let result: Option<String> = row.get("result");
    Ok(Message {
        id: row.get("id"),
        channel: row
            .get::<String, _>("channel")
            .parse()
            .map_err(|_| corrupt("channel"))?,
        target: row.get("target"),
        kind: row.get("kind"),
        payload: serde_json::from_str(&payload).map_err(|_| corrupt("payload"))?,
        dedupe_key: row.get("dedupe_key"),
        status: row
            .get::<String, _>("status")
            .parse()
            .map_err(|_| corrupt("status"))?,
        attempts: u32::try_from(row.get::<i64, _>("attempts")).unwrap_or(u32::MAX),
        requeues: u32::try_from(row.get::<i64, _>("requeues")).unwrap_or(u32::MAX),
        created_at: from_micros(row.get("created_at_us")),
        next_attempt_at: from_micros(row.get("next_attempt_at_us")),
        last_error: row.get("last_error"),
        sent_at: row.get::<Option<i64>, _>("sent_at_us").map(from_micros),
        dead_at: row.get::<Option<i64>, _>("dead_at_us").map(from_micros),
        result: result
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|_| corrupt("result"))?,
    })
}

pub(crate) async fn write(conn: &mut SqliteConnection, m: &Message) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE outbox SET status = ?, attempts = ?, requeues = ?, next_attempt_at_us = ?,
            leased_until_us = 0, last_error = ?, sent_at_us = ?, dead_at_us = ?, result = ?
         WHERE id = ?",
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
    .await
    .map_err(map_err)?;
    Ok(())
}

/// A stored time, 0 meaning none.
fn stored_time(us: i64) -> Option<DateTime<Utc>> {
    (us > 0).then(|| from_micros(us))
}

/// Leases due messages until `until_us`, each under a new token.
pub(crate) async fn lease_due(
    conn: &mut SqliteConnection,
    now_us: i64,
    until_us: i64,
    limit: u32,
) -> Result<Vec<Leased>, StoreError> {
    let rows = sqlx::query(
        "UPDATE outbox SET leased_until_us = ?1, lease_token = lease_token + 1
         WHERE id IN (SELECT id FROM outbox
                      WHERE status = 'pending' AND next_attempt_at_us <= ?2 AND leased_until_us <= ?2
                      ORDER BY next_attempt_at_us, id LIMIT ?3)
         RETURNING *",
    )
    .bind(until_us)
    .bind(now_us)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err)?;
    rows.iter().map(leased_from_row).collect()
}

fn leased_from_row(row: &SqliteRow) -> Result<Leased, StoreError> {
    Ok(Leased {
        message: message_from_row(row)?,
        token: row.get("lease_token"),
    })
}

/// Message `id` with its lease token (the write lock is held: reading is locking).
pub(crate) async fn lock(
    conn: &mut SqliteConnection,
    id: i64,
) -> Result<Option<Leased>, StoreError> {
    sqlx::query("SELECT * FROM outbox WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?
        .as_ref()
        .map(leased_from_row)
        .transpose()
}

pub(crate) async fn set_lease(
    conn: &mut SqliteConnection,
    id: i64,
    until_us: i64,
    keep_later: bool,
) -> Result<(), StoreError> {
    let sql = if keep_later {
        "UPDATE outbox SET leased_until_us = MAX(leased_until_us, ?) WHERE id = ?"
    } else {
        "UPDATE outbox SET leased_until_us = ? WHERE id = ?"
    };
    sqlx::query(sql)
        .bind(until_us)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn defer(
    conn: &mut SqliteConnection,
    id: i64,
    at_us: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE outbox SET next_attempt_at_us = ?, leased_until_us = 0 WHERE id = ?")
        .bind(at_us)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// The pacing row of `key`, created empty when missing.
pub(crate) async fn pacing_lock(
    conn: &mut SqliteConnection,
    key: &str,
) -> Result<PacingRow, StoreError> {
    sqlx::query("INSERT INTO outbox_pacing (chat) VALUES (?) ON CONFLICT (chat) DO NOTHING")
        .bind(key)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    let r = sqlx::query(
        "SELECT held_until_us, last_sent_us, sending_id, sending_token, sending_until_us
         FROM outbox_pacing WHERE chat = ?",
    )
    .bind(key)
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(PacingRow {
        held_until: stored_time(r.get("held_until_us")),
        last_sent: stored_time(r.get("last_sent_us")),
        sending_id: r.get("sending_id"),
        sending_token: r.get("sending_token"),
        sending_until: stored_time(r.get("sending_until_us")),
    })
}

pub(crate) async fn pacing_nth_send(
    conn: &mut SqliteConnection,
    chat: Option<&str>,
    n: u32,
    after_us: i64,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let at: Option<i64> = sqlx::query_scalar(
        "SELECT at_us FROM outbox_sends WHERE (?1 IS NULL OR chat = ?1) AND at_us > ?2
         ORDER BY at_us DESC LIMIT 1 OFFSET ?3",
    )
    .bind(chat)
    .bind(after_us)
    .bind(i64::from(n.max(1) - 1))
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(at.map(from_micros))
}

pub(crate) async fn pacing_start(
    conn: &mut SqliteConnection,
    s: &PacingStart<'_>,
) -> Result<(), StoreError> {
    let at = to_micros(s.at);
    sqlx::query(
        "UPDATE outbox_pacing SET last_sent_us = ?, sending_id = ?, sending_token = ?,
            sending_until_us = ?
         WHERE chat = ?",
    )
    .bind(at)
    .bind(s.id)
    .bind(s.token)
    .bind(to_micros(s.until))
    .bind(s.key)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    if s.paced {
        sqlx::query("INSERT INTO outbox_sends (chat, at_us) VALUES (?, ?)")
            .bind(s.key)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        sqlx::query("DELETE FROM outbox_sends WHERE at_us <= ?")
            .bind(to_micros(s.forget_before))
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
    }
    Ok(())
}

pub(crate) async fn pacing_finish(
    conn: &mut SqliteConnection,
    key: &str,
    reserved_us: i64,
    at_us: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE outbox_sends SET at_us = ?1 WHERE chat = ?2 AND at_us = ?3")
        .bind(at_us)
        .bind(key)
        .bind(reserved_us)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    sqlx::query(
        "UPDATE outbox_pacing SET last_sent_us = MAX(last_sent_us, ?1), sending_id = NULL,
            sending_token = NULL, sending_until_us = 0
         WHERE chat = ?2",
    )
    .bind(at_us)
    .bind(key)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn pacing_hold(
    conn: &mut SqliteConnection,
    key: &str,
    until_us: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox_pacing (chat, held_until_us) VALUES (?1, ?2)
         ON CONFLICT (chat) DO UPDATE
            SET held_until_us = MAX(outbox_pacing.held_until_us, excluded.held_until_us)",
    )
    .bind(key)
    .bind(until_us)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Inserts a pending message due at `now_us`; `None` when its dedupe key was seen before.
pub(crate) async fn insert(
    conn: &mut SqliteConnection,
    m: &NewMessage,
    now_us: i64,
) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar(
        "INSERT INTO outbox (channel, target, kind, payload, dedupe_key, status, attempts,
            requeues, created_at_us, next_attempt_at_us)
         VALUES (?, ?, ?, ?, ?, 'pending', 0, 0, ?, ?)
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
    .await
    .map_err(map_err)
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn outbox_get(&self, id: i64) -> Result<Option<Message>, StoreError> {
        sqlx::query("SELECT * FROM outbox WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(message_from_row)
            .transpose()
    }

    async fn outbox_by_key(&self, dedupe_key: &str) -> Result<Option<Message>, StoreError> {
        sqlx::query("SELECT * FROM outbox WHERE dedupe_key = ?")
            .bind(dedupe_key)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(message_from_row)
            .transpose()
    }

    async fn outbox_list(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM outbox WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC LIMIT ?2",
        )
        .bind(status.map(Status::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(message_from_row).collect()
    }

    async fn notify_event_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let rows = sqlx::query("SELECT type, COALESCE(json_extract(data, '$.outcome'), '') AS outcome, COUNT(*) AS n FROM events WHERE type LIKE 'notify.%' GROUP BY 1, 2")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>("type"),
                    r.get::<String, _>("outcome"),
                    u64::try_from(r.get::<i64, _>("n")).unwrap_or(0),
                )
            })
            .collect())
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        let mut c = OutboxCounts::default();
        for r in rows {
            let n = u64::try_from(r.get::<i64, _>("n")).unwrap_or(0);
            match r.get::<String, _>("status").as_str() {
                "pending" => c.pending = n,
                "sent" => c.sent = n,
                "dead" => c.dead = n,
                _ => {}
            }
        }
        Ok(c)
    }
}
