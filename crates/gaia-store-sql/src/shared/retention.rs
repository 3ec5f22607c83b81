//! Cleanup: the deletions of `gaia_core::usecase::cleanup` and the [`RetentionStore`] reads
//! that plan and archive them.
//!
//! [`RetentionStore`]: gaia_core::store::RetentionStore

/// The request statuses that have ended, as SQL (see `gaia_core::retention::ENDED_COMMANDS`).
#[macro_export]
#[doc(hidden)]
macro_rules! ended_commands_sql {
    () => {
        "status IN ('denied', 'expired', 'cancelled', 'executed', 'failed', 'dryrun')"
    };
}

/// Adds `retention::{events_delete, audit_prune, outbox_delete_sent, command_delete_ended}` on
/// `$conn` and `RetentionStore` for `$store` to the calling backend.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! retention_sql {
    (store = $store:ty, conn = $conn:ty $(,)?) => {
        /// Deletes the events with `low <= seq <= high`.
        pub(crate) async fn events_delete(
            conn: &mut $conn,
            low: i64,
            high: i64,
        ) -> crate::error::Db<u64> {
            let done = ::sqlx::query("DELETE FROM events WHERE seq >= $1 AND seq <= $2")
                .bind(low)
                .bind(high)
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected())
        }

        /// Deletes the audit records with `low <= id <= high` and moves the anchor to `high`.
        /// The head row is written last, as every append takes it last.
        pub(crate) async fn audit_prune(
            conn: &mut $conn,
            low: i64,
            high: i64,
            hash: &str,
        ) -> crate::error::Db<u64> {
            let done = ::sqlx::query("DELETE FROM audit WHERE id >= $1 AND id <= $2")
                .bind(low)
                .bind(high)
                .execute(&mut *conn)
                .await?;
            ::sqlx::query(
                "UPDATE log_head SET audit_anchor_id = $1, audit_anchor_hash = $2
                 WHERE id = 1 AND audit_anchor_id < $1",
            )
            .bind(high)
            .bind(hash)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected())
        }

        /// Deletes message `id` if it is delivered.
        pub(crate) async fn outbox_delete_sent(conn: &mut $conn, id: i64) -> crate::error::Db<bool> {
            let done = ::sqlx::query("DELETE FROM outbox WHERE id = $1 AND status = 'sent'")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        /// Deletes request `id` if it has ended.
        pub(crate) async fn command_delete_ended(
            conn: &mut $conn,
            id: &str,
        ) -> crate::error::Db<bool> {
            let done = ::sqlx::query(concat!(
                "DELETE FROM commands WHERE id = $1 AND ",
                $crate::ended_commands_sql!()
            ))
            .bind(id)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        /// Reads one span row (`n, lo, hi, oldest, newest`).
        async fn span<'e>(
            pool: impl ::sqlx::Executor<'e, Database = <$conn as ::sqlx::Connection>::Database>,
            sql: &'static str,
            cutoff: ::chrono::DateTime<::chrono::Utc>,
        ) -> Result<::gaia_core::retention::Span, ::gaia_core::StoreError> {
            crate::error::boundary(async {
                let (n, low, high, oldest, newest): (i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>) =
                    ::sqlx::query_as(sql)
                        .bind(::gaia_core::time::to_micros(cutoff))
                        .fetch_one(pool)
                        .await?;
                Ok(::gaia_core::retention::Span {
                    count: u64::try_from(n).unwrap_or(0),
                    low,
                    high,
                    oldest: oldest.map(::gaia_core::time::from_micros),
                    newest: newest.map(::gaia_core::time::from_micros),
                })
            })
            .await
        }

        #[::async_trait::async_trait]
        impl ::gaia_core::store::RetentionStore for $store {
            async fn retention_events(
                &self,
                cutoff: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<::gaia_core::retention::Span, ::gaia_core::StoreError> {
                // Everything before the first event the retention keeps (one statement, one
                // snapshot: events committed meanwhile come after it).
                span(
                    &self.pool,
                    "SELECT COUNT(*), MIN(seq), MAX(seq), MIN(ts_us), MAX(ts_us) FROM events
                     WHERE seq < COALESCE((SELECT MIN(seq) FROM events WHERE ts_us >= $1),
                                          (SELECT MAX(seq) + 1 FROM events), 0)",
                    cutoff,
                )
                .await
            }

            async fn retention_audit(
                &self,
                cutoff: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<::gaia_core::retention::Span, ::gaia_core::StoreError> {
                span(
                    &self.pool,
                    "SELECT COUNT(*), MIN(id), MAX(id), MIN(ts_us), MAX(ts_us) FROM audit
                     WHERE id < COALESCE((SELECT MIN(id) FROM audit WHERE ts_us >= $1),
                                         (SELECT MAX(id) + 1 FROM audit), 0)",
                    cutoff,
                )
                .await
            }

            async fn retention_outbox(
                &self,
                cutoff: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<::gaia_core::retention::Span, ::gaia_core::StoreError> {
                span(
                    &self.pool,
                    "SELECT COUNT(*), MIN(id), MAX(id), MIN(sent_at_us), MAX(sent_at_us) FROM outbox
                     WHERE status = 'sent' AND sent_at_us < $1",
                    cutoff,
                )
                .await
            }

            async fn retention_commands(
                &self,
                cutoff: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<::gaia_core::retention::Span, ::gaia_core::StoreError> {
                span(
                    &self.pool,
                    concat!(
                        "SELECT COUNT(*), CAST(NULL AS BIGINT), CAST(NULL AS BIGINT),
                                MIN(COALESCE(decided_at_us, created_at_us)),
                                MAX(COALESCE(decided_at_us, created_at_us))
                         FROM commands WHERE COALESCE(decided_at_us, created_at_us) < $1 AND ",
                        $crate::ended_commands_sql!()
                    ),
                    cutoff,
                )
                .await
            }

            async fn retention_outbox_page(
                &self,
                cutoff: ::chrono::DateTime<::chrono::Utc>,
                after: i64,
                high: i64,
                limit: u32,
            ) -> Result<Vec<::gaia_core::outbox::Message>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(
                        "SELECT * FROM outbox
                         WHERE status = 'sent' AND sent_at_us < $1 AND id > $2 AND id <= $3
                         ORDER BY id LIMIT $4",
                    )
                    .bind(::gaia_core::time::to_micros(cutoff))
                    .bind(after)
                    .bind(high)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok($crate::rows::all(&found, $crate::rows::message)?)
                })
                .await
            }

            async fn retention_command_page(
                &self,
                cutoff: ::chrono::DateTime<::chrono::Utc>,
                after: &str,
                limit: u32,
            ) -> Result<Vec<::gaia_core::commands::CommandRecord>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(concat!(
                        "SELECT * FROM commands
                         WHERE COALESCE(decided_at_us, created_at_us) < $1 AND id > $2 AND ",
                        $crate::ended_commands_sql!(),
                        " ORDER BY id LIMIT $3"
                    ))
                    .bind(::gaia_core::time::to_micros(cutoff))
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok($crate::rows::all(&found, $crate::rows::command)?)
                })
                .await
            }
        }
    };
}
