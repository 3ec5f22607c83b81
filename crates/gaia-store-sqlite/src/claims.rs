//! Claims on SQLite: the whole read-decide-write runs under the write lock.

use gaia_core::StoreError;
use gaia_core::claims::{ClaimResult, Request, decide};
use gaia_core::event::Event;
use gaia_core::time::to_micros;
use gaia_store_sql::rows;
use gaia_store_sql::shared::claims::CLAIM_COLUMNS;
use std::sync::LazyLock;

use sqlx::{QueryBuilder, Row, SqliteConnection};

use crate::SqliteStore;
use crate::error::{Db, boundary};
use crate::log::append_log_at;

/// The log head (first, as [`rows::log_head`] reads it) and the claim row of key `?`, if any
/// (`claim_key` is NULL when there is none).
static CLAIM_AND_HEAD: LazyLock<String> = LazyLock::new(|| {
    let claim: Vec<String> = CLAIM_COLUMNS
        .split(", ")
        .map(|c| format!("c.{c}"))
        .collect();
    format!(
        "SELECT h.event_seq, h.audit_seq, h.audit_hash, c.key AS claim_key, {}
         FROM log_head h LEFT JOIN claims c ON c.key = ? WHERE h.id = 1",
        claim.join(", ")
    )
});

impl SqliteStore {
    async fn claim_in_tx(&self, req: &Request) -> Db<(ClaimResult, Vec<Event>)> {
        let key = req.key();
        let mut tx = self.begin_writing().await?;
        // A refusal may rest on a claim another writer of the group has not committed yet.
        let settled = tx.settled();
        // Read the time only once the write lock is held, so decisions are ordered by it.
        let now = self.now_value();
        // The claim's row and the log head in one statement: each statement is a hand-off to
        // the connection's thread, a good part of a claim's time.
        let found = sqlx::query(&CLAIM_AND_HEAD)
            .bind(key.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let current = match &found {
            Some(row) if row.try_get::<Option<String>, _>("claim_key")?.is_some() => {
                Some(rows::claim(row)?)
            }
            _ => None,
        };
        let head = rows::log_head(found)?;
        let decision = decide(current, req, now);
        let Some(new) = decision.row else {
            tx.rollback().await?;
            settled.await;
            return Ok((decision.result, vec![]));
        };
        let holder = new.holder.as_ref();
        // The row is written in the same round trip as the log append.
        let mut batch = QueryBuilder::new(format!("INSERT INTO claims (key, {CLAIM_COLUMNS}) "));
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
            append_log_at(&mut tx, batch, head, &decision.events, &decision.audit, now).await?;
        tx.commit().await?;
        Ok((decision.result, events))
    }
}

gaia_store_sql::claims_sql!(
    store = SqliteStore,
    conn = SqliteConnection,
    skip_locked = "",
    {
        async fn claim(&self, req: &Request) -> Result<(ClaimResult, Vec<Event>), StoreError> {
            Ok(self.claim_in_tx(req).await?)
        }

        /// A look without the write lock first: usually nothing has expired.
        async fn claim_any_expired(&self) -> Result<bool, StoreError> {
            boundary(async {
            let due: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM claims WHERE agent IS NOT NULL AND expires_at_us <= $1 AND expiry_reported_token < token",
            )
            .bind(to_micros(self.now_value()))
            .fetch_one(&self.pool)
            .await?;
            Ok(due > 0)
        })
        .await
        }
    }
);
