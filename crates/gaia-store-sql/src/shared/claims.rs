//! Claims: the reaper's primitives of `gaia_core::usecase::claims` and the [`ClaimStore`]
//! reads. Acquire, refresh and release stay with each backend, which writes them in as few
//! round trips as it can.
//!
//! [`ClaimStore`]: gaia_core::store::ClaimStore

/// The columns a claim is read from, in [`ClaimColumns`](crate::rows::ClaimColumns) order.
pub const CLAIM_COLUMNS: &str = "story, todolist, agent, operator, fingerprint, token, acquired_at_us, expires_at_us, ttl_ms, principal";

/// Adds `claims::{expired, mark_reported}` on `$conn` and `ClaimStore` for `$store` (with the
/// backend's own methods `$own`, at least `claim`) to the calling backend. `skip_locked` ends
/// the reaper's read: rows being claimed right now are left for the next round, and several
/// nodes reaping at once share the work instead of reporting one expiry twice.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! claims_sql {
    (
        store = $store:ty,
        conn = $conn:ty,
        skip_locked = $skip_locked:literal,
        { $($own:tt)* } $(,)?
    ) => {
        /// Held claims expired by `now_us` whose expiry is not reported yet, oldest first,
        /// locked.
        pub(crate) async fn expired(
            conn: &mut $conn,
            now_us: i64,
            limit: u32,
        ) -> crate::error::Db<Vec<::gaia_core::claims::ClaimRow>> {
            let found = ::sqlx::query(&format!(
                "SELECT {} FROM claims
                 WHERE agent IS NOT NULL AND expires_at_us <= $1 AND expiry_reported_token < token
                 ORDER BY expires_at_us LIMIT $2{}",
                $crate::shared::claims::CLAIM_COLUMNS,
                $skip_locked
            ))
            .bind(now_us)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            Ok($crate::rows::all(&found, $crate::rows::claim)?)
        }

        pub(crate) async fn mark_reported(
            conn: &mut $conn,
            key: &::gaia_core::names::ClaimKey,
        ) -> crate::error::Db<()> {
            ::sqlx::query("UPDATE claims SET expiry_reported_token = token WHERE key = $1")
                .bind(key.to_string())
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        #[::async_trait::async_trait]
        impl ::gaia_core::store::ClaimStore for $store {
            $($own)*

            async fn claim_get(
                &self,
                key: &::gaia_core::names::ClaimKey,
            ) -> Result<Option<::gaia_core::claims::ClaimRow>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(&format!(
                        "SELECT {} FROM claims WHERE key = $1 AND token > 0",
                        $crate::shared::claims::CLAIM_COLUMNS
                    ))
                    .bind(key.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok($crate::rows::maybe(found, $crate::rows::claim)?)
                })
                .await
            }

            async fn claim_list(
                &self,
            ) -> Result<Vec<::gaia_core::claims::ClaimRow>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(&format!(
                        "SELECT {} FROM claims WHERE agent IS NOT NULL ORDER BY key",
                        $crate::shared::claims::CLAIM_COLUMNS
                    ))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok($crate::rows::all(&found, $crate::rows::claim)?)
                })
                .await
            }
        }
    };
}
