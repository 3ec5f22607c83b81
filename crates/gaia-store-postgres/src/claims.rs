//! Claims on PostgreSQL: the key's row is locked (created when missing) by one upsert, then the
//! decision is written with its events and audit records in the same transaction. Concurrent
//! claim calls are committed together (see [`crate::batch`]).

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::claims::{ClaimResult, ClaimRow, Request};
use gaia_core::event::Event;
use gaia_core::names::ClaimKey;
use gaia_core::store::ClaimStore;
use sqlx::PgConnection;

use crate::PgStore;
use crate::error::{Db, boundary};
use gaia_store_sql::rows;

pub(crate) const COLUMNS: &str = "story, todolist, agent, operator, fingerprint, token, acquired_at_us, expires_at_us, ttl_ms, principal";

#[async_trait]
impl ClaimStore for PgStore {
    async fn claim(&self, req: &Request) -> Result<(ClaimResult, Vec<Event>), StoreError> {
        self.batcher().submit(req.clone()).await
    }

    async fn claim_get(&self, key: &ClaimKey) -> Result<Option<ClaimRow>, StoreError> {
        boundary(async {
            let found = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM claims WHERE key = $1 AND token > 0"
            ))
            .bind(key.to_string())
            .fetch_optional(&self.pool)
            .await?;
            Ok(rows::maybe(found, rows::claim)?)
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
}

/// Held claims expired by `now_us` whose expiry is not reported yet, oldest first, locked.
/// SKIP LOCKED: rows being claimed right now are left for the next round, and several nodes
/// reaping at once share the work instead of reporting one expiry twice.
pub(crate) async fn expired(conn: &mut PgConnection, now_us: i64, limit: u32) -> Db<Vec<ClaimRow>> {
    let found = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM claims
         WHERE agent IS NOT NULL AND expires_at_us <= $1 AND expiry_reported_token < token
         ORDER BY expires_at_us LIMIT $2
         FOR UPDATE SKIP LOCKED"
    ))
    .bind(now_us)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows::all(&found, rows::claim)?)
}

pub(crate) async fn mark_reported(conn: &mut PgConnection, key: &ClaimKey) -> Db<()> {
    sqlx::query("UPDATE claims SET expiry_reported_token = token WHERE key = $1")
        .bind(key.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
