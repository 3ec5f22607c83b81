//! Claims on PostgreSQL: the key's row is locked (created when missing) by one upsert, then the
//! decision is written with its events and audit records in the same transaction.

use std::time::Duration;

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::claims::{ClaimResult, ClaimRow, Holder, Request, decide};
use gaia_core::event::Event;
use gaia_core::names::ClaimKey;
use gaia_core::store::ClaimStore;
use gaia_core::time::{from_micros, to_micros};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::map_err;
use crate::log::append_log;
use crate::{NOW_US, PgStore};

const COLUMNS: &str =
    "story, todolist, agent, operator, fingerprint, token, acquired_at_us, expires_at_us, ttl_ms";

fn row_to_claim(row: &PgRow) -> ClaimRow {
    let agent: Option<String> = row.get("agent");
    let holder = agent.map(|agent| Holder {
        agent,
        operator: row.get::<Option<String>, _>("operator").unwrap_or_default(),
        fingerprint: row
            .get::<Option<String>, _>("fingerprint")
            .unwrap_or_default(),
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
        let key = req.key();
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // One statement creates the row when missing, locks it until commit, and reads the
        // server's clock after the lock is held (RETURNING runs once the row is locked).
        let locked = sqlx::query(&format!(
            "INSERT INTO claims (key, story, todolist, token, ttl_ms) VALUES ($1, $2, $3, 0, 0)
             ON CONFLICT (key) DO UPDATE SET key = claims.key
             RETURNING {COLUMNS}, {NOW_US} AS now_us"
        ))
        .bind(key.to_string())
        .bind(&key.story)
        .bind(&key.todolist)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        let now = match &self.clock {
            Some(c) => c.now(),
            None => from_micros(locked.get("now_us")),
        };
        let current = row_to_claim(&locked);
        // A freshly created placeholder row means "never claimed".
        let current = (current.token > 0 || current.holder.is_some()).then_some(current);
        let decision = decide(current, req, now);
        let Some(new) = decision.row else {
            tx.rollback().await.map_err(map_err)?;
            return Ok((decision.result, vec![]));
        };
        let holder = new.holder.as_ref();
        sqlx::query(
            "UPDATE claims SET agent = $2, operator = $3, fingerprint = $4, token = $5,
                acquired_at_us = $6, expires_at_us = $7, ttl_ms = $8
             WHERE key = $1",
        )
        .bind(new.key.to_string())
        .bind(holder.map(|h| h.agent.as_str()))
        .bind(holder.map(|h| h.operator.as_str()))
        .bind(holder.map(|h| h.fingerprint.as_str()))
        .bind(new.token)
        .bind(new.acquired_at.map(to_micros))
        .bind(new.expires_at.map(to_micros))
        .bind(i64::try_from(new.ttl.as_millis()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let events = append_log(&mut tx, &decision.events, &decision.audit, now).await?;
        tx.commit().await.map_err(map_err)?;
        self.announce(&events);
        Ok((decision.result, events))
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

    async fn claim_reap(&self, limit: u32) -> Result<Vec<Event>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let now = self.now_in(&mut tx).await?;
        // SKIP LOCKED: rows being claimed right now are left for the next round, and several
        // nodes reaping at once share the work instead of reporting one expiry twice.
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM claims
             WHERE agent IS NOT NULL AND expires_at_us <= $1 AND expiry_reported_token < token
             ORDER BY expires_at_us LIMIT $2
             FOR UPDATE SKIP LOCKED"
        ))
        .bind(to_micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        if rows.is_empty() {
            tx.rollback().await.map_err(map_err)?;
            return Ok(vec![]);
        }
        let mut events = Vec::new();
        let mut audit = Vec::new();
        for row in rows.iter().map(row_to_claim) {
            if let Some((e, a)) = gaia_core::claims::expiry(&row, now) {
                sqlx::query("UPDATE claims SET expiry_reported_token = token WHERE key = $1")
                    .bind(row.key.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                events.push(e);
                audit.push(a);
            }
        }
        let committed = append_log(&mut tx, &events, &audit, now).await?;
        tx.commit().await.map_err(map_err)?;
        self.announce(&committed);
        Ok(committed)
    }
}
