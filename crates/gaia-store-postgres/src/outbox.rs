//! The notification outbox on PostgreSQL.

use std::time::Duration;

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::event::{Event, NewEvent};
use gaia_core::outbox::{
    Attempt, Message, NewMessage, RetryPolicy, Status, after_attempt, requeue,
};
use gaia_core::store::{OutboxCounts, OutboxStore};
use gaia_core::time::{from_micros, to_micros};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::PgStore;
use crate::error::map_err;
use crate::log::append_log;

fn message_from_row(row: &PgRow) -> Result<Message, StoreError> {
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

async fn write(conn: &mut PgConnection, m: &Message) -> Result<(), StoreError> {
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
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Inserts messages inside the caller's transaction; duplicates become events.
pub(crate) async fn enqueue_in(
    conn: &mut PgConnection,
    messages: &[NewMessage],
    now_us: i64,
) -> Result<(Vec<i64>, Vec<NewEvent>), StoreError> {
    let mut ids = Vec::new();
    let mut events = Vec::new();
    for m in messages {
        let id: Option<i64> = sqlx::query_scalar(
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
        .await
        .map_err(map_err)?;
        match id {
            Some(id) => ids.push(id),
            None => events.push(NewEvent::new(
                "notify.duplicate_skipped",
                "gaia",
                "outbox",
                json!({ "dedupe_key": m.dedupe_key, "kind": m.kind, "channel": m.channel.as_str() }),
            )),
        }
    }
    Ok((ids, events))
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn outbox_enqueue(
        &self,
        messages: &[NewMessage],
    ) -> Result<(Vec<i64>, Vec<Event>), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let now = self.now_in(&mut tx).await?;
        let (ids, events) = enqueue_in(&mut tx, messages, to_micros(now)).await?;
        let committed = append_log(&mut tx, &events, &[], now).await?;
        tx.commit().await.map_err(map_err)?;
        self.announce(&committed);
        Ok((ids, committed))
    }

    async fn outbox_lease(&self, limit: u32, lease: Duration) -> Result<Vec<Message>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let now = to_micros(self.now_in(&mut tx).await?);
        let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let rows = sqlx::query(
            "UPDATE outbox SET leased_until_us = $1
             WHERE id IN (SELECT id FROM outbox
                          WHERE status = 'pending' AND next_attempt_at_us <= $2 AND leased_until_us <= $2
                          ORDER BY next_attempt_at_us, id LIMIT $3
                          FOR UPDATE SKIP LOCKED)
             RETURNING *",
        )
        .bind(until)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        let mut list = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        list.sort_by_key(|m| (m.next_attempt_at, m.id));
        Ok(list)
    }

    async fn outbox_record(
        &self,
        id: i64,
        attempt: &Attempt,
        policy: &RetryPolicy,
        unit: f64,
    ) -> Result<Option<(Message, Vec<Event>)>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let now = self.now_in(&mut tx).await?;
        let Some(row) = sqlx::query("SELECT * FROM outbox WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
        else {
            tx.rollback().await.map_err(map_err)?;
            return Ok(None);
        };
        let current = message_from_row(&row)?;
        if current.status != Status::Pending {
            tx.rollback().await.map_err(map_err)?;
            return Ok(Some((current, vec![])));
        }
        let o = after_attempt(&current, attempt, policy, now, unit);
        write(&mut tx, &o.message).await?;
        let event = NewEvent::new(o.event, "gaia", format!("outbox/{id}"), o.data.clone());
        let audit: Vec<_> = (o.event == "notify.dead")
            .then(|| {
                gaia_core::audit::NewAudit::new(
                    "gaia",
                    "notify.dead",
                    format!("outbox/{id}"),
                    "dead",
                    o.data,
                )
            })
            .into_iter()
            .collect();
        let committed = append_log(&mut tx, &[event], &audit, now).await?;
        tx.commit().await.map_err(map_err)?;
        self.announce(&committed);
        Ok(Some((o.message, committed)))
    }

    async fn outbox_get(&self, id: i64) -> Result<Option<Message>, StoreError> {
        sqlx::query("SELECT * FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(message_from_row)
            .transpose()
    }

    async fn outbox_by_key(&self, dedupe_key: &str) -> Result<Option<Message>, StoreError> {
        sqlx::query("SELECT * FROM outbox WHERE dedupe_key = $1")
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
            "SELECT * FROM outbox WHERE ($1::TEXT IS NULL OR status = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(status.map(Status::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(message_from_row).collect()
    }

    async fn outbox_requeue(
        &self,
        id: i64,
        actor: &str,
        auto: bool,
    ) -> Result<Option<(Message, Vec<Event>)>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let now = self.now_in(&mut tx).await?;
        let row = sqlx::query("SELECT * FROM outbox WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(back) = row
            .as_ref()
            .map(message_from_row)
            .transpose()?
            .and_then(|m| requeue(&m, now))
        else {
            tx.rollback().await.map_err(map_err)?;
            return Ok(None);
        };
        write(&mut tx, &back).await?;
        let data = json!({
            "id": id,
            "requeues": back.requeues,
            "kind": back.kind,
            "channel": back.channel.as_str(),
            "outcome": if auto { "auto" } else { "manual" },
        });
        let subject = format!("outbox/{id}");
        let committed = append_log(
            &mut tx,
            &[NewEvent::new(
                "notify.requeued",
                actor,
                &subject,
                data.clone(),
            )],
            &[gaia_core::audit::NewAudit::new(
                actor,
                "notify.requeue",
                &subject,
                "requeued",
                data,
            )],
            now,
        )
        .await?;
        tx.commit().await.map_err(map_err)?;
        self.announce(&committed);
        Ok(Some((back, committed)))
    }

    async fn notify_event_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let rows = sqlx::query("SELECT type, COALESCE(data::jsonb ->> 'outcome', '') AS outcome, COUNT(*) AS n FROM events WHERE type LIKE 'notify.%' GROUP BY 1, 2")
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
