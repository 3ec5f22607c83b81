//! Claims on SQLite: the whole read-decide-write runs under the write lock.

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::claims::{ClaimResult, ClaimRow, Request, decide};
use gaia_core::event::Event;
use gaia_core::names::ClaimKey;
use gaia_core::store::ClaimStore;
use gaia_core::time::to_micros;
use sqlx::{QueryBuilder, SqliteConnection};

use crate::SqliteStore;
use crate::error::{Db, boundary};
use crate::log::append_log_with;
use gaia_store_sql::rows;

const COLUMNS: &str = "story, todolist, agent, operator, fingerprint, token, acquired_at_us, expires_at_us, ttl_ms, principal";

impl SqliteStore {
    async fn claim_in_tx(&self, req: &Request) -> Db<(ClaimResult, Vec<Event>)> {
        let key = req.key();
        let mut tx = crate::begin_write(&self.pool).await?;
        // Read the time only once the write lock is held, so decisions are ordered by it.
        let now = self.now_value();
        let current = sqlx::query(&format!("SELECT {COLUMNS} FROM claims WHERE key = ?"))
            .bind(key.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let current = rows::maybe(current, rows::claim)?;
        let decision = decide(current, req, now);
        let Some(new) = decision.row else {
            tx.rollback().await?;
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
        tx.commit().await?;
        Ok((decision.result, events))
    }
}

#[async_trait]
impl ClaimStore for SqliteStore {
    async fn claim(&self, req: &Request) -> Result<(ClaimResult, Vec<Event>), StoreError> {
        Ok(self.claim_in_tx(req).await?)
    }

    async fn claim_get(&self, key: &ClaimKey) -> Result<Option<ClaimRow>, StoreError> {
        boundary(async {
            let row = sqlx::query(&format!("SELECT {COLUMNS} FROM claims WHERE key = ?"))
                .bind(key.to_string())
                .fetch_optional(&self.pool)
                .await?;
            Ok(rows::maybe(row, rows::claim)?)
        })
        .await
    }

    async fn claim_list(&self) -> Result<Vec<ClaimRow>, StoreError> {
        boundary(async {
            let found = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM claims WHERE agent IS NOT NULL ORDER BY key"
            ))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows::all(&found, rows::claim)?)
        })
        .await
    }

    /// A look without the write lock first: usually nothing has expired.
    async fn claim_any_expired(&self) -> Result<bool, StoreError> {
        boundary(async {
            let due: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM claims WHERE agent IS NOT NULL AND expires_at_us <= ? AND expiry_reported_token < token",
            )
            .bind(to_micros(self.now_value()))
            .fetch_one(&self.pool)
            .await?;
            Ok(due > 0)
        })
        .await
    }
}

/// Held claims expired by `now_us` whose expiry is not reported yet, oldest first.
pub(crate) async fn expired(
    conn: &mut SqliteConnection,
    now_us: i64,
    limit: u32,
) -> Db<Vec<ClaimRow>> {
    let found = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM claims
         WHERE agent IS NOT NULL AND expires_at_us <= ? AND expiry_reported_token < token
         ORDER BY expires_at_us LIMIT ?"
    ))
    .bind(now_us)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows::all(&found, rows::claim)?)
}

pub(crate) async fn mark_reported(conn: &mut SqliteConnection, key: &ClaimKey) -> Db<()> {
    sqlx::query("UPDATE claims SET expiry_reported_token = token WHERE key = ?")
        .bind(key.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
