//! The [`Store`] methods every SQL backend answers the same way: settings, and the Telegram
//! updates taken by the webhook.
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

            async fn telegram_update_take(
                &self,
                update_id: i64,
                now: ::chrono::DateTime<::chrono::Utc>,
                until: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<::gaia_core::store::UpdateTake, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let taken: Option<i64> = ::sqlx::query_scalar(
                        "INSERT INTO telegram_updates (update_id, done, until_us) VALUES ($1, 0, $2)
                         ON CONFLICT (update_id) DO UPDATE SET until_us = excluded.until_us
                         WHERE telegram_updates.done = 0 AND telegram_updates.until_us <= $3
                         RETURNING update_id",
                    )
                    .bind(update_id)
                    .bind(::gaia_core::time::to_micros(until))
                    .bind(::gaia_core::time::to_micros(now))
                    .fetch_optional(&self.pool)
                    .await?;
                    if taken.is_some() {
                        return Ok(::gaia_core::store::UpdateTake::Handle);
                    }
                    let done: i64 =
                        ::sqlx::query_scalar("SELECT done FROM telegram_updates WHERE update_id = $1")
                            .bind(update_id)
                            .fetch_one(&self.pool)
                            .await?;
                    Ok(if done != 0 {
                        ::gaia_core::store::UpdateTake::Done
                    } else {
                        ::gaia_core::store::UpdateTake::Busy
                    })
                })
                .await
            }

            async fn telegram_update_done(
                &self,
                update_id: i64,
                forget_before: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<(), ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    ::sqlx::query("UPDATE telegram_updates SET done = 1 WHERE update_id = $1")
                        .bind(update_id)
                        .execute(&self.pool)
                        .await?;
                    ::sqlx::query("DELETE FROM telegram_updates WHERE until_us < $1")
                        .bind(::gaia_core::time::to_micros(forget_before))
                        .execute(&self.pool)
                        .await?;
                    Ok(())
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
