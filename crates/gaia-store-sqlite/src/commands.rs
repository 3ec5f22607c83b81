//! Command approval requests on SQLite.

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::commands::{
    Action, CommandRecord, NewCommand, Refusal, Status, approval_message, decision_message, new_id,
    plan,
};
use gaia_core::event::Event;
use gaia_core::outbox::Target;
use gaia_core::store::CommandStore;
use gaia_core::time::{from_micros, to_micros};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::SqliteStore;
use crate::error::map_err;
use crate::log::append_log;
use crate::outbox::enqueue_in;

/// Fresh ids tried before giving up (six characters from 30 make collisions rare).
const ID_ATTEMPTS: usize = 8;

fn record_from_row(row: &SqliteRow) -> Result<CommandRecord, StoreError> {
    let spec: String = row.get("spec");
    let status: String = row.get("status");
    let execution: Option<String> = row.get("execution");
    let id: String = row.get("id");
    Ok(CommandRecord {
        spec: serde_json::from_str(&spec)
            .map_err(|e| StoreError::Corrupt(format!("command spec: {e}")))?,
        cwd: row.get("cwd"),
        story: row.get("story"),
        todolist: row.get("todolist"),
        reason: row.get("reason"),
        requester: row.get("requester"),
        is_test: row.get("is_test"),
        test_allowed: row.get("test_allowed"),
        created_at: from_micros(row.get("created_at_us")),
        expires_at: from_micros(row.get("expires_at_us")),
        status: status
            .parse::<Status>()
            .map_err(|e| StoreError::Corrupt(e.0))?,
        decided_by: row.get("decided_by"),
        decided_via: row.get("decided_via"),
        decided_at: row.get::<Option<i64>, _>("decided_at_us").map(from_micros),
        decision_reason: row.get("decision_reason"),
        binding: row.get("binding"),
        id: id.clone(),
        execution: gaia_core::commands::Execution::from_stored(&id, execution.as_deref()),
    })
}

/// Writes every mutable column of `r` (the row exists).
async fn update(conn: &mut SqliteConnection, r: &CommandRecord) -> Result<(), StoreError> {
    let execution = r
        .execution
        .as_ref()
        .map(|e| serde_json::to_string(e).unwrap_or_default());
    sqlx::query(
        "UPDATE commands SET status = ?, test_allowed = ?, decided_by = ?, decided_via = ?,
            decided_at_us = ?, decision_reason = ?, execution = ?
         WHERE id = ?",
    )
    .bind(r.status.as_str())
    .bind(r.test_allowed)
    .bind(&r.decided_by)
    .bind(&r.decided_via)
    .bind(r.decided_at.map(to_micros))
    .bind(&r.decision_reason)
    .bind(execution)
    .bind(&r.id)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl CommandStore for SqliteStore {
    async fn command_create(
        &self,
        new: &NewCommand,
        notify: &[Target],
    ) -> Result<(CommandRecord, Vec<Event>), StoreError> {
        let mut tx = crate::begin_write(&self.pool).await?;
        let now = self.now_value();
        for _ in 0..ID_ATTEMPTS {
            let id = new_id();
            let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM commands WHERE id = ?")
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
            if taken.is_some() {
                continue;
            }
            let (r, event, audit) = new.record(id, now);
            sqlx::query(
                "INSERT INTO commands (id, spec, cwd, story, todolist, reason, requester, is_test,
                    test_allowed, created_at_us, expires_at_us, status, binding)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&r.id)
            .bind(serde_json::to_string(&r.spec).unwrap_or_default())
            .bind(&r.cwd)
            .bind(&r.story)
            .bind(&r.todolist)
            .bind(&r.reason)
            .bind(&r.requester)
            .bind(r.is_test)
            .bind(r.test_allowed)
            .bind(to_micros(r.created_at))
            .bind(to_micros(r.expires_at))
            .bind(r.status.as_str())
            .bind(&r.binding)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            let messages: Vec<_> = notify.iter().map(|t| approval_message(&r, t)).collect();
            let (_, mut events) = enqueue_in(&mut tx, &messages, to_micros(now)).await?;
            events.insert(0, event);
            let events = append_log(&mut tx, &events, &[audit], now).await?;
            tx.commit().await.map_err(map_err)?;
            return Ok((r, events));
        }
        Err(StoreError::Conflict(
            "could not find a free command id; retry".into(),
        ))
    }

    async fn command_get(&self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        sqlx::query("SELECT * FROM commands WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(record_from_row)
            .transpose()
    }

    async fn command_list(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM commands WHERE (?1 IS NULL OR status = ?1)
             ORDER BY created_at_us DESC, id LIMIT ?2",
        )
        .bind(status.map(Status::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(record_from_row).collect()
    }

    async fn command_apply(
        &self,
        id: &str,
        action: &Action,
        notify: &[Target],
    ) -> Result<Option<(Result<CommandRecord, Refusal>, Vec<Event>)>, StoreError> {
        let mut tx = crate::begin_write(&self.pool).await?;
        let now = self.now_value();
        let Some(row) = sqlx::query("SELECT * FROM commands WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
        else {
            tx.rollback().await.map_err(map_err)?;
            return Ok(None);
        };
        let current = record_from_row(&row)?;
        let p = plan(&current, action, now);
        let Some(last) = p.transitions.last() else {
            tx.rollback().await.map_err(map_err)?;
            return Ok(Some((p.outcome, vec![])));
        };
        update(&mut tx, &last.record).await?;
        let mut events: Vec<_> = p.transitions.iter().map(|t| t.event.clone()).collect();
        if current.status == Status::Pending {
            let messages: Vec<_> = notify
                .iter()
                .filter_map(|t| decision_message(&last.record, t))
                .collect();
            let (_, skipped) = enqueue_in(&mut tx, &messages, to_micros(now)).await?;
            events.extend(skipped);
        }
        let audit: Vec<_> = p.transitions.iter().map(|t| t.audit.clone()).collect();
        let committed = append_log(&mut tx, &events, &audit, now).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some((p.outcome, committed)))
    }

    async fn command_expire_due(
        &self,
        limit: u32,
        notify: &[Target],
    ) -> Result<Vec<Event>, StoreError> {
        let now = self.now_value();
        let due: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM commands WHERE status = 'pending' AND expires_at_us <= ?",
        )
        .bind(to_micros(now))
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        if due == 0 {
            return Ok(vec![]);
        }
        let mut tx = crate::begin_write(&self.pool).await?;
        let now = self.now_value();
        let rows = sqlx::query(
            "SELECT * FROM commands WHERE status = 'pending' AND expires_at_us <= ?
             ORDER BY expires_at_us LIMIT ?",
        )
        .bind(to_micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        let mut events = Vec::new();
        let mut audit = Vec::new();
        for row in &rows {
            let current = record_from_row(row)?;
            if let Ok(t) = gaia_core::commands::apply(&current, &Action::Expire, now) {
                update(&mut tx, &t.record).await?;
                let messages: Vec<_> = notify
                    .iter()
                    .filter_map(|n| decision_message(&t.record, n))
                    .collect();
                let (_, skipped) = enqueue_in(&mut tx, &messages, to_micros(now)).await?;
                events.push(t.event);
                events.extend(skipped);
                audit.push(t.audit);
            }
        }
        let committed = append_log(&mut tx, &events, &audit, now).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(committed)
    }
}
