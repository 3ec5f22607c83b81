//! API tokens: the primitives of `gaia_core::usecase::tokens` and the [`TokenStore`] reads.
//!
//! [`TokenStore`]: gaia_core::store::TokenStore

/// Adds `tokens::{insert, revoke}` on `$conn` and `TokenStore` for `$store` to the calling
/// backend.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! tokens_sql {
    (store = $store:ty, conn = $conn:ty $(,)?) => {
        /// Inserts a token; `false` when a token of that name ever existed (names are never
        /// reused, so a revoked token's sessions and tickets can never come back to life).
        pub(crate) async fn insert(
            conn: &mut $conn,
            info: &::gaia_core::tokens::TokenInfo,
            hash: &str,
        ) -> crate::error::Db<bool> {
            let inserted = ::sqlx::query(
                "INSERT INTO tokens (name, role, hash, created_at_us, created_by)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&info.name)
            .bind(info.role.as_str())
            .bind(hash)
            .bind(::gaia_core::time::to_micros(info.created_at))
            .bind(&info.created_by)
            .execute(&mut *conn)
            .await?;
            Ok(inserted.rows_affected() == 1)
        }

        /// Marks the live token `name` revoked; the token as it was, or `None`.
        pub(crate) async fn revoke(
            conn: &mut $conn,
            name: &str,
            now_us: i64,
        ) -> crate::error::Db<Option<::gaia_core::tokens::TokenInfo>> {
            let found = ::sqlx::query(
                "UPDATE tokens SET revoked_at_us = $1 WHERE name = $2 AND revoked_at_us IS NULL
                 RETURNING *",
            )
            .bind(now_us)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
            Ok($crate::rows::maybe(found, $crate::rows::token)?)
        }

        #[::async_trait::async_trait]
        impl ::gaia_core::store::TokenStore for $store {
            async fn token_list(
                &self,
            ) -> Result<Vec<::gaia_core::tokens::TokenInfo>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query("SELECT * FROM tokens ORDER BY name")
                        .fetch_all(&self.pool)
                        .await?;
                    Ok($crate::rows::all(&found, $crate::rows::token)?)
                })
                .await
            }

            async fn token_lookup(
                &self,
                hash: &str,
            ) -> Result<Option<::gaia_core::tokens::TokenInfo>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(
                        "SELECT * FROM tokens WHERE hash = $1 AND revoked_at_us IS NULL",
                    )
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok($crate::rows::maybe(found, $crate::rows::token)?)
                })
                .await
            }
        }
    };
}
