//! Claims on PostgreSQL: the key's row is locked (created when missing) by one upsert, then the
//! decision is written with its events and audit records in the same transaction. Concurrent
//! claim calls are committed together (see [`crate::batch`]).

use std::time::Duration;

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::claims::{ClaimResult, ClaimRow, Holder, Request};
use gaia_core::event::Event;
use gaia_core::names::ClaimKey;
use gaia_core::store::ClaimStore;
use gaia_core::time::from_micros;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::PgStore;
use crate::error::map_err;

pub(crate) const COLUMNS: &str = "story, todolist, agent, operator, fingerprint, token, acquired_at_us, expires_at_us, ttl_ms, principal";

pub(crate) fn row_to_claim(row: &PgRow) -> ClaimRow {
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
impl ClaimStore for PgStore {
    async fn claim(&self, req: &Request) -> Result<(ClaimResult, Vec<Event>), StoreError> {
        self.batcher().submit(req.clone()).await
    }

    async fn claim_get(&self, key: &ClaimKey) -> Result<Option<ClaimRow>, StoreError> {
        Ok(sqlx::query(&format!(
            "SELECT {COLUMNS} FROM claims WHERE key = $1 AND token > 0"
        ))
        .bind(key.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .map(|r| row_to_claim(&r)))
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
}

/// Held claims expired by `now_us` whose expiry is not reported yet, oldest first, locked.
/// SKIP LOCKED: rows being claimed right now are left for the next round, and several nodes
/// reaping at once share the work instead of reporting one expiry twice.
pub(crate) async fn expired(
    conn: &mut PgConnection,
    now_us: i64,
    limit: u32,
) -> Result<Vec<ClaimRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM claims
         WHERE agent IS NOT NULL AND expires_at_us <= $1 AND expiry_reported_token < token
         ORDER BY expires_at_us LIMIT $2
         FOR UPDATE SKIP LOCKED"
    ))
    .bind(now_us)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(rows.iter().map(row_to_claim).collect())
}

pub(crate) async fn mark_reported(
    conn: &mut PgConnection,
    key: &ClaimKey,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE claims SET expiry_reported_token = token WHERE key = $1")
        .bind(key.to_string())
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(())
}
