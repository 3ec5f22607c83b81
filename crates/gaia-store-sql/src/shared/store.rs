//! The [`Store`] methods every SQL backend answers the same way: settings.
//!
//! [`Store`]: gaia_core::store::Store

/// Adds `Store` for `$store` (with the backend's own methods `$own`: backend, now,
/// close; the schema version is read by the backend's `migrate::current_version`) to the calling backend.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! store_sql {
    (store = $store:ty, { $($own:tt)* } $(,)?) => {
        #[::async_trait::async_trait]
        impl ::gaia_core::store::Store for $store {
            $($own)*

            fn dump(&self) -> Option<&dyn ::gaia_core::dump::Dump> {
                Some(self)
            }

            async fn schema_version(&self) -> Result<i64, ::gaia_core::StoreError> {
                Ok(crate::migrate::current_version(&self.pool).await?)
            }

            async fn setting_get_or_init(
                &self,
                name: &str,
                init: &str,
            ) -> Result<String, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    ::sqlx::query(
                        "INSERT INTO settings (name, value) VALUES ($1, $2)
                         ON CONFLICT (name) DO NOTHING",
                    )
                    .bind(name)
                    .bind(init)
                    .execute(&self.pool)
                    .await?;
                    Ok(
                        ::sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                            .bind(name)
                            .fetch_one(&self.pool)
                            .await?,
                    )
                })
                .await
            }

            async fn setting_set(&self, name: &str, value: &str) -> Result<(), ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    ::sqlx::query(
                        "INSERT INTO settings (name, value) VALUES ($1, $2)
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    )
                    .bind(name)
                    .bind(value)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                })
                .await
            }
        }
    };
}
