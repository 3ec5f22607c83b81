//! The notification outbox on SQLite. Every write runs under SQLite's write lock
//! (`BEGIN IMMEDIATE`), so a slot reservation sees every other process's sends and holds.

use std::time::Duration;

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::event::{Event, NewEvent};
use gaia_core::outbox::{
    Attempt, Channel, GLOBAL_WINDOW, GROUP_WINDOW, Leased, Message, NewMessage, PaceState, Pacing,
    RetryPolicy, Slot, SlotRequest, Status, after_attempt, is_group_chat, pacing_key, requeue,
    slot_for,
};
use gaia_core::store::{OutboxCounts, OutboxStore};
use gaia_core::time::{from_micros, to_micros};
use serde_json::json;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::SqliteStore;
use crate::error::map_err;
use crate::log::append_log;

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

async fn write(conn: &mut SqliteConnection, m: &Message) -> Result<(), StoreError> {
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

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A stored time, 0 meaning none.
fn stored_time(us: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    (us > 0).then(|| from_micros(us))
}

/// The `n`-th most recent paced send after `after_us`, to `chat` or (without one) overall.
async fn nth_send(
    conn: &mut SqliteConnection,
    chat: Option<&str>,
    n: u32,
    after_us: i64,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
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

/// What the store knows about the chat `key` at `now_us`.
async fn pace_state(
    conn: &mut SqliteConnection,
    key: &str,
    group: bool,
    pacing: Option<&Pacing>,
    now_us: i64,
) -> Result<PaceState, StoreError> {
    let mut st = PaceState::default();
    if let Some(r) = sqlx::query(
        "SELECT held_until_us, last_sent_us, sending_until_us FROM outbox_pacing WHERE chat = ?",
    )
    .bind(key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err)?
    {
        st.held_until = stored_time(r.get("held_until_us"));
        st.last_sent = stored_time(r.get("last_sent_us"));
        st.busy_until = stored_time(r.get("sending_until_us"));
    }
    if let Some(p) = pacing {
        if let (true, Some(n)) = (group, p.group_per_minute) {
            let after = now_us.saturating_sub(micros(GROUP_WINDOW));
            st.group_nth = nth_send(conn, Some(key), n, after).await?;
        }
        if let Some(n) = p.global_per_second {
            let after = now_us.saturating_sub(micros(GLOBAL_WINDOW));
            st.global_nth = nth_send(conn, None, n, after).await?;
        }
    }
    Ok(st)
}

/// After an attempt on `m` (made under `token`, when known): the chat's send in flight, if it
/// is this one, is over, and the chat's pacing counts from now, after the answer, so arrivals
/// keep the interval whatever the latency; a `retry_after` holds the chat.
async fn finish_send(
    conn: &mut SqliteConnection,
    m: &Message,
    token: Option<i64>,
    attempt: &Attempt,
    now_us: i64,
) -> Result<(), StoreError> {
    let key = pacing_key(m.channel, &m.target);
    let row = sqlx::query(
        "SELECT last_sent_us, sending_id, sending_token FROM outbox_pacing WHERE chat = ?",
    )
    .bind(&key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err)?;
    if let Some(r) = row {
        let id: Option<i64> = r.get("sending_id");
        let tok: Option<i64> = r.get("sending_token");
        if id == Some(m.id) && token.is_none_or(|t| tok == Some(t)) {
            let reserved: i64 = r.get("last_sent_us");
            sqlx::query("UPDATE outbox_sends SET at_us = ?1 WHERE chat = ?2 AND at_us = ?3")
                .bind(now_us)
                .bind(&key)
                .bind(reserved)
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
            sqlx::query(
                "UPDATE outbox_pacing SET last_sent_us = MAX(last_sent_us, ?1), sending_id = NULL,
                    sending_token = NULL, sending_until_us = 0
                 WHERE chat = ?2",
            )
            .bind(now_us)
            .bind(&key)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        }
    }
    if let Attempt::RetryAfter(wait) = attempt {
        sqlx::query(
            "INSERT INTO outbox_pacing (chat, held_until_us) VALUES (?1, ?2)
             ON CONFLICT (chat) DO UPDATE
                SET held_until_us = MAX(outbox_pacing.held_until_us, excluded.held_until_us)",
        )
        .bind(&key)
        .bind(now_us.saturating_add(micros(*wait)))
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    }
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
    async fn outbox_lease(&self, limit: u32, lease: Duration) -> Result<Vec<Leased>, StoreError> {
        let mut tx = crate::begin_write(&self.pool).await?;
        let now = to_micros(self.now_value());
        let until = now.saturating_add(micros(lease));
        let rows = sqlx::query(
            "UPDATE outbox SET leased_until_us = ?1, lease_token = lease_token + 1
             WHERE id IN (SELECT id FROM outbox
                          WHERE status = 'pending' AND next_attempt_at_us <= ?2 AND leased_until_us <= ?2
                          ORDER BY next_attempt_at_us, id LIMIT ?3)
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
            .map(|r| {
                Ok(Leased {
                    message: message_from_row(r)?,
                    token: r.get("lease_token"),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        list.sort_by_key(|l| (l.message.next_attempt_at, l.message.id));
        Ok(list)
    }

    async fn outbox_reserve(&self, req: &SlotRequest) -> Result<Slot, StoreError> {
        let mut tx = crate::begin_write(&self.pool).await?;
        let now = self.now_value();
        let now_us = to_micros(now);
        let Some(row) = sqlx::query(
            "SELECT channel, target FROM outbox
             WHERE id = ? AND status = 'pending' AND lease_token = ?",
        )
        .bind(req.id)
        .bind(req.token)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?
        else {
            tx.rollback().await.map_err(map_err)?;
            return Ok(Slot::LostLease);
        };
        let channel: Channel = row
            .get::<String, _>("channel")
            .parse()
            .map_err(|_| StoreError::Corrupt("outbox channel".into()))?;
        let target: String = row.get("target");
        let key = pacing_key(channel, &target);
        let group = is_group_chat(channel, &target);
        let state = pace_state(&mut tx, &key, group, req.pacing.as_ref(), now_us).await?;
        let slot = slot_for(&state, req, now);
        let lease_until = now_us.saturating_add(micros(req.lease));
        match slot {
            Slot::Go => {
                sqlx::query(
                    "INSERT INTO outbox_pacing (chat, last_sent_us, sending_id, sending_token,
                        sending_until_us)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (chat) DO UPDATE SET last_sent_us = excluded.last_sent_us,
                        sending_id = excluded.sending_id, sending_token = excluded.sending_token,
                        sending_until_us = excluded.sending_until_us",
                )
                .bind(&key)
                .bind(now_us)
                .bind(req.id)
                .bind(req.token)
                .bind(lease_until)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if req.pacing.is_some() {
                    sqlx::query("INSERT INTO outbox_sends (chat, at_us) VALUES (?, ?)")
                        .bind(&key)
                        .bind(now_us)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    sqlx::query("DELETE FROM outbox_sends WHERE at_us <= ?")
                        .bind(now_us.saturating_sub(micros(GROUP_WINDOW)))
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                sqlx::query("UPDATE outbox SET leased_until_us = ? WHERE id = ?")
                    .bind(lease_until)
                    .bind(req.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
            Slot::Wait(_) | Slot::LostLease => {
                sqlx::query(
                    "UPDATE outbox SET leased_until_us = MAX(leased_until_us, ?) WHERE id = ?",
                )
                .bind(lease_until)
                .bind(req.id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            }
            Slot::Deferred(wait) => {
                sqlx::query(
                    "UPDATE outbox SET next_attempt_at_us = ?, leased_until_us = 0 WHERE id = ?",
                )
                .bind(now_us.saturating_add(micros(wait)))
                .bind(req.id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            }
        }
        tx.commit().await.map_err(map_err)?;
        Ok(slot)
    }

    async fn outbox_record_leased(
        &self,
        id: i64,
        token: i64,
        attempt: &Attempt,
        policy: &RetryPolicy,
        unit: f64,
    ) -> Result<Option<(Message, Vec<Event>)>, StoreError> {
        self.record(id, Some(token), attempt, policy, unit).await
    }

    async fn outbox_record(
        &self,
        id: i64,
        attempt: &Attempt,
        policy: &RetryPolicy,
        unit: f64,
    ) -> Result<Option<(Message, Vec<Event>)>, StoreError> {
        self.record(id, None, attempt, policy, unit).await
    }

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

    async fn outbox_requeue(
        &self,
        id: i64,
        actor: &str,
        auto: bool,
    ) -> Result<Option<(Message, Vec<Event>)>, StoreError> {
        let mut tx = crate::begin_write(&self.pool).await?;
        let now = self.now_value();
        let row = sqlx::query("SELECT * FROM outbox WHERE id = ?")
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
        Ok(Some((back, committed)))
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

impl SqliteStore {
    /// Records an attempt; with `token`, only while the message is leased under it (`None`
    /// when not), else whatever its lease (`None` when there is no such message).
    async fn record(
        &self,
        id: i64,
        token: Option<i64>,
        attempt: &Attempt,
        policy: &RetryPolicy,
        unit: f64,
    ) -> Result<Option<(Message, Vec<Event>)>, StoreError> {
        let mut tx = crate::begin_write(&self.pool).await?;
        let now = self.now_value();
        let Some(row) = sqlx::query("SELECT * FROM outbox WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
        else {
            tx.rollback().await.map_err(map_err)?;
            return Ok(None);
        };
        let current = message_from_row(&row)?;
        let now_us = to_micros(now);
        if token.is_some_and(|t| row.get::<i64, _>("lease_token") != t)
            || (token.is_some() && current.status != Status::Pending)
        {
            // Not this sender's any more: nothing to record, but its send is over and
            // Telegram's hold stands.
            finish_send(&mut tx, &current, token, attempt, now_us).await?;
            tx.commit().await.map_err(map_err)?;
            return Ok(None);
        }
        if current.status != Status::Pending {
            tx.rollback().await.map_err(map_err)?;
            return Ok(Some((current, vec![])));
        }
        finish_send(&mut tx, &current, token, attempt, now_us).await?;
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
        Ok(Some((o.message, committed)))
    }
}
