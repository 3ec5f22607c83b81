//! Reading the event log and the audit chain: the [`EventStore`] reads (waiting for a commit
//! is the backend's) and [`AuditStore`]. Appending is each backend's, tuned to its engine.
//!
//! [`EventStore`]: gaia_core::store::EventStore
//! [`AuditStore`]: gaia_core::store::AuditStore

/// Adds `EventStore` (with the backend's own methods `$own`, at least `wait_for_commit`) and
/// `AuditStore` for `$store` to the calling backend.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! log_reads_sql {
    (store = $store:ty, { $($own:tt)* } $(,)?) => {
        #[::async_trait::async_trait]
        impl ::gaia_core::store::EventStore for $store {
            $($own)*

            async fn events_after(
                &self,
                since: i64,
                filter: &::gaia_core::event::EventFilter,
                limit: u32,
            ) -> Result<Vec<::gaia_core::event::Event>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    // Whole-segment prefix match: `claim` matches `claim` and `claim.*`, never
                    // `claims`.
                    let found = ::sqlx::query(
                        "SELECT seq, ts_us, type, actor, subject, data FROM events
                         WHERE seq > $1
                           AND (CAST($2 AS TEXT) IS NULL OR type = $2
                                OR substr(type, 1, length($2) + 1) = $2 || '.')
                           AND (CAST($3 AS TEXT) IS NULL OR subject = $3)
                         ORDER BY seq LIMIT $4",
                    )
                    .bind(since)
                    .bind(filter.type_prefix.as_deref())
                    .bind(filter.subject.as_deref())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok($crate::rows::all(&found, $crate::rows::event)?)
                })
                .await
            }

            async fn events_before(
                &self,
                before: i64,
                filter: &::gaia_core::event::EventFilter,
                limit: u32,
            ) -> Result<Vec<::gaia_core::event::Event>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(
                        "SELECT * FROM (
                            SELECT seq, ts_us, type, actor, subject, data FROM events
                            WHERE seq < $1
                              AND (CAST($2 AS TEXT) IS NULL OR type = $2
                                   OR substr(type, 1, length($2) + 1) = $2 || '.')
                              AND (CAST($3 AS TEXT) IS NULL OR subject = $3)
                            ORDER BY seq DESC LIMIT $4
                         ) newest ORDER BY seq",
                    )
                    .bind(before)
                    .bind(filter.type_prefix.as_deref())
                    .bind(filter.subject.as_deref())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok($crate::rows::all(&found, $crate::rows::event)?)
                })
                .await
            }

            async fn last_seq(&self) -> Result<i64, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    Ok(
                        ::sqlx::query_scalar("SELECT event_seq FROM log_head WHERE id = 1")
                            .fetch_one(&self.pool)
                            .await?,
                    )
                })
                .await
            }
        }

        #[::async_trait::async_trait]
        impl ::gaia_core::store::AuditStore for $store {
            async fn audit_head(&self) -> Result<::gaia_core::audit::ChainHead, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let row = ::sqlx::query(
                        "SELECT audit_anchor_id, audit_anchor_hash, audit_seq, audit_hash
                         FROM log_head WHERE id = 1",
                    )
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| {
                        ::gaia_core::StoreError::Corrupt("log_head row is missing".into())
                    })?;
                    Ok($crate::rows::chain_head(&row)?)
                })
                .await
            }

            async fn audit_page(
                &self,
                after: i64,
                limit: u32,
            ) -> Result<Vec<::gaia_core::audit::AuditRecord>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found =
                        ::sqlx::query("SELECT * FROM audit WHERE id > $1 ORDER BY id LIMIT $2")
                            .bind(after)
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await?;
                    Ok($crate::rows::all(&found, $crate::rows::audit)?)
                })
                .await
            }

            async fn audit_tail(
                &self,
                limit: u32,
            ) -> Result<Vec<::gaia_core::audit::AuditRecord>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(
                        "SELECT * FROM (SELECT * FROM audit ORDER BY id DESC LIMIT $1) t
                         ORDER BY id",
                    )
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok($crate::rows::all(&found, $crate::rows::audit)?)
                })
                .await
            }
        }
    };
}
