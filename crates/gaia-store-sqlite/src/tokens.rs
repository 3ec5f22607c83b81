//! API tokens on SQLite.

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::store::TokenStore;
use gaia_core::time::to_micros;
use gaia_core::tokens::TokenInfo;
use sqlx::SqliteConnection;

use crate::SqliteStore;
use crate::error::{Db, boundary};
use gaia_store_sql::rows;

/// Inserts a token; `false` when a token of that name ever existed (names are never reused,
/// so a revoked token's sessions and tickets can never come back to life).
pub(crate) async fn insert(conn: &mut SqliteConnection, info: &TokenInfo, hash: &str) -> Db<bool> {
    let inserted = sqlx::query(
        "INSERT INTO tokens (name, role, hash, created_at_us, created_by) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&info.name)
    .bind(info.role.as_str())
    .bind(hash)
    .bind(to_micros(info.created_at))
    .bind(&info.created_by)
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Marks the live token `name` revoked; the token as it was, or `None`.
pub(crate) async fn revoke(
    conn: &mut SqliteConnection,
    name: &str,
    now_us: i64,
) -> Db<Option<TokenInfo>> {
    let found = sqlx::query(
        "UPDATE tokens SET revoked_at_us = ? WHERE name = ? AND revoked_at_us IS NULL
         RETURNING *",
    )
    .bind(now_us)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(rows::maybe(found, rows::token)?)
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn token_list(&self) -> Result<Vec<TokenInfo>, StoreError> {
        boundary(async {
            let found = sqlx::query("SELECT * FROM tokens ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
            Ok(rows::all(&found, rows::token)?)
        })
        .await
    }

    async fn token_lookup(&self, hash: &str) -> Result<Option<TokenInfo>, StoreError> {
        boundary(async {
            let found =
                sqlx::query("SELECT * FROM tokens WHERE hash = ? AND revoked_at_us IS NULL")
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(rows::maybe(found, rows::token)?)
        })
        .await
    }
}
