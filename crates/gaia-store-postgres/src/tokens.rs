//! API tokens on PostgreSQL.

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::event::Event;
use gaia_core::store::TokenStore;
use gaia_core::time::{from_micros, to_micros};
use gaia_core::tokens::TokenInfo;
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::PgStore;
use crate::error::map_err;
use crate::log::append_log;

fn token_from_row(row: &PgRow) -> Result<TokenInfo, StoreError> {
    let role: String = row.get("role");
    Ok(TokenInfo {
        name: row.get("name"),
        role: role
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("token has unknown role '{role}'")))?,
        created_at: from_micros(row.get("created_at_us")),
        created_by: row.get("created_by"),
        revoked_at: row.get::<Option<i64>, _>("revoked_at_us").map(from_micros),
    })
}

#[async_trait]
impl TokenStore for PgStore {
    async fn token_create(&self, info: &TokenInfo, hash: &str) -> Result<Vec<Event>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let now = self.now_in(&mut tx).await?;
        let taken: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM tokens WHERE name = $1 FOR UPDATE")
                .bind(&info.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!(
                "a token named '{}' already exists",
                info.name
            )));
        }
        let inserted = sqlx::query(
            "INSERT INTO tokens (name, role, hash, created_at_us, created_by) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&info.name)
        .bind(info.role.as_str())
        .bind(hash)
        .bind(to_micros(now))
        .bind(&info.created_by)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "a token named '{}' already exists",
                info.name
            )));
        }
        let (events, audit) = gaia_core::service::token_change("token.created", info);
        let events = append_log(&mut tx, &events, &audit, now).await?;
        tx.commit().await.map_err(map_err)?;
        self.announce(&events);
        Ok(events)
    }

    async fn token_list(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tokens ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn token_revoke(
        &self,
        name: &str,
        actor: &str,
    ) -> Result<Option<Vec<Event>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let now = self.now_in(&mut tx).await?;
        let row = sqlx::query(
            "SELECT * FROM tokens WHERE name = $1 AND revoked_at_us IS NULL FOR UPDATE",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(map_err)?;
            return Ok(None);
        };
        let mut info = token_from_row(&row)?;
        sqlx::query("UPDATE tokens SET revoked_at_us = $1 WHERE name = $2")
            .bind(to_micros(now))
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        info.revoked_at = Some(now);
        info.created_by = actor.to_owned();
        let (events, audit) = gaia_core::service::token_change("token.revoked", &info);
        let events = append_log(&mut tx, &events, &audit, now).await?;
        tx.commit().await.map_err(map_err)?;
        self.announce(&events);
        Ok(Some(events))
    }

    async fn token_lookup(&self, hash: &str) -> Result<Option<TokenInfo>, StoreError> {
        sqlx::query("SELECT * FROM tokens WHERE hash = $1 AND revoked_at_us IS NULL")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }
}
