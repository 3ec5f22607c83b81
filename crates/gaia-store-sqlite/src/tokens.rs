//! API tokens on SQLite.

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::event::Event;
use gaia_core::store::TokenStore;
use gaia_core::time::{from_micros, to_micros};
use gaia_core::tokens::TokenInfo;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStore;
use crate::error::map_err;
use crate::log::append_log;

fn token_from_row(row: &SqliteRow) -> Result<TokenInfo, StoreError> {
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
impl TokenStore for SqliteStore {
    async fn token_create(&self, info: &TokenInfo, hash: &str) -> Result<Vec<Event>, StoreError> {
        let mut tx = crate::begin_write(&self.pool).await?;
        let now = self.now_value();
        let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tokens WHERE name = ?")
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
        sqlx::query(
            "INSERT INTO tokens (name, role, hash, created_at_us, created_by) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&info.name)
        .bind(info.role.as_str())
        .bind(hash)
        .bind(to_micros(now))
        .bind(&info.created_by)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let (events, audit) = gaia_core::service::token_change("token.created", info);
        let events = append_log(&mut tx, &events, &audit, now).await?;
        tx.commit().await.map_err(map_err)?;
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
        let mut tx = crate::begin_write(&self.pool).await?;
        let now = self.now_value();
        let row = sqlx::query("SELECT * FROM tokens WHERE name = ? AND revoked_at_us IS NULL")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(map_err)?;
            return Ok(None);
        };
        let mut info = token_from_row(&row)?;
        sqlx::query("UPDATE tokens SET revoked_at_us = ? WHERE name = ?")
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
        Ok(Some(events))
    }

    async fn token_lookup(&self, hash: &str) -> Result<Option<TokenInfo>, StoreError> {
        sqlx::query("SELECT * FROM tokens WHERE hash = ? AND revoked_at_us IS NULL")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }
}
