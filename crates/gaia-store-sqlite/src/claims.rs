//! Claims on SQLite: the whole read-decide-write runs under the write lock.

use std::time::Duration;

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::claims::{ClaimResult, ClaimRow, Holder, Request, decide};
use gaia_core::event::Event;
use gaia_core::names::ClaimKey;
use gaia_core::store::ClaimStore;
use gaia_core::time::{from_micros, to_micros};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, SqliteConnection};

use crate::SqliteStore;
use crate::error::map_err;
use crate::log::append_log_with;

const COLUMNS: &str = "story, todolist, agent, operator, fingerprint, token, acquired_at_us, expires_at_us, ttl_ms, principal";

fn row_to_claim(row: &SqliteRow) -> ClaimRow {
    let agent: Option<String> = row.get("agent");
    let holder = agent.map(|agent| Holder {
        agent,
        operator: row.get::<Option<String>, _>("operator").unwrap_or_default(),
        fingerprint: row
            .get::<Option<String>, _>("fingerprint")
            .unwrap_or_default(),
        principal: row.get("principal"),
    });
    ClaimRow {
        key: ClaimKey {
            story: row.get("story"),
            todolist: row.get("todolist"),
        },
        holder,
        token: row.get("token"),
        acquired_at: row.get::<Option<i64>, _>("acquired_at_us").map(from_micros),
        expires_at: row.get::<Option<i64>, _>("expires_at_us").map(from_micros),
        ttl: Duration::from_millis(u64::try_from(row.get::<i64, _>("ttl_ms")).unwrap_or(0)),
    }
}

#[async_trait]
impl ClaimStore for SqliteStore {
    async fn claim(&self, req: &Request) -> Result<(ClaimResult, Vec<Event>), StoreError> {
        let key = req.key();
        let mut tx = crate::begin_write(&self.pool).await?;
        // Read the time only once the write lock is held, so decisions are ordered by it.
        let now = self.now_value();
        let current = sqlx::query(&format!("SELECT {COLUMNS} FROM claims WHERE key = ?"))
            .bind(key.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .map(|r| row_to_claim(&r));
        let decision = decide(current, req, now);
        let Some(new) = decision.row else {
            tx.rollback().await.map_err(map_err)?;
            return Ok((decision.result, vec![]));
        };
        let holder = new.holder.as_ref();
        // The row is written in the same round trip as the log append.
        let mut batch = QueryBuilder::new(format!("INSERT INTO claims (key, {COLUMNS}) "));
        batch.push_values([&new], |mut row, new| {
            row.push_bind(new.key.to_string())
                .push_bind(new.key.story.clone())
                .push_bind(new.key.todolist.clone())
                .push_bind(holder.map(|h| h.agent.clone()))
                .push_bind(holder.map(|h| h.operator.clone()))
                .push_bind(holder.map(|h| h.fingerprint.clone()))
                .push_bind(new.token)
                .push_bind(new.acquired_at.map(to_micros))
                .push_bind(new.expires_at.map(to_micros))
                .push_bind(i64::try_from(new.ttl.as_millis()).unwrap_or(i64::MAX))
                .push_bind(holder.and_then(|h| h.principal.clone()));
        });
        batch.push(
            " ON CONFLICT (key) DO UPDATE SET
               agent = excluded.agent, operator = excluded.operator,
               fingerprint = excluded.fingerprint, token = excluded.token,
               acquired_at_us = excluded.acquired_at_us, expires_at_us = excluded.expires_at_us,
               ttl_ms = excluded.ttl_ms, principal = excluded.principal; ",
        );
        let events =
            append_log_with(&mut tx, batch, &decision.events, &decision.audit, now).await?;
        tx.commit().await.map_err(map_err)?;
        Ok((decision.result, events))
    }

    async fn claim_get(&self, key: &ClaimKey) -> Result<Option<ClaimRow>, StoreError> {
        Ok(
            sqlx::query(&format!("SELECT {COLUMNS} FROM claims WHERE key = ?"))
                .bind(key.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?
                .map(|r| row_to_claim(&r)),
        )
    }

    async fn claim_list(&self) -> Result<Vec<ClaimRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM claims WHERE agent IS NOT NULL ORDER BY key"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(rows.iter().map(row_to_claim).collect())
    }

    /// A look without the write lock first: usually nothing has expired.
    async fn claim_any_expired(&self) -> Result<bool, StoreError> {
        let due: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM claims WHERE agent IS NOT NULL AND expires_at_us <= ? AND expiry_reported_token < token",
        )
        .bind(to_micros(self.now_value()))
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(due > 0)
    }
}

/// Held claims expired by `now_us` whose expiry is not reported yet, oldest first.
pub(crate) async fn expired(
    conn: &mut SqliteConnection,
    now_us: i64,
    limit: u32,
) -> Result<Vec<ClaimRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM claims
         WHERE agent IS NOT NULL AND expires_at_us <= ? AND expiry_reported_token < token
         ORDER BY expires_at_us LIMIT ?"
    ))
    .bind(now_us)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(rows.iter().map(row_to_claim).collect())
}

pub(crate) async fn mark_reported(
    conn: &mut SqliteConnection,
    key: &ClaimKey,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE claims SET expiry_reported_token = token WHERE key = ?")
        .bind(key.to_string())
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(())
}
