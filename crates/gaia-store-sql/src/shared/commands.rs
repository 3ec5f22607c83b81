//! Command approval requests: the primitives of `gaia_core::usecase::commands` and the
//! [`CommandStore`] reads.
//!
//! [`CommandStore`]: gaia_core::store::CommandStore

/// Adds `commands::{update, lock, due, insert}` on `$conn` and `CommandStore` for `$store`
/// (with the backend's own methods `$own`) to the calling backend. `for_update` and
/// `skip_locked` end the locking reads: row locks where the backend has them, nothing where a
/// write transaction already excludes every other writer.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! commands_sql {
    (
        store = $store:ty,
        conn = $conn:ty,
        for_update = $for_update:literal,
        skip_locked = $skip_locked:literal,
        { $($own:tt)* } $(,)?
    ) => {
        /// Writes every mutable column of `r` (the row exists).
        pub(crate) async fn update(
            conn: &mut $conn,
            r: &::gaia_core::commands::CommandRecord,
        ) -> crate::error::Db<()> {
            let execution = r.execution.as_ref().map($crate::serde_json::to_string).transpose().map_err(|e| {
                ::gaia_core::StoreError::Backend(format!("cannot store an execution: {e}"))
            })?;
            ::sqlx::query(
                "UPDATE commands SET status = $1, test_allowed = $2, decided_by = $3,
                    decided_via = $4, decided_at_us = $5, decision_reason = $6, execution = $7
                 WHERE id = $8",
            )
            .bind(r.status.as_str())
            .bind(r.test_allowed)
            .bind(&r.decided_by)
            .bind(&r.decided_via)
            .bind(r.decided_at.map(::gaia_core::time::to_micros))
            .bind(&r.decision_reason)
            .bind(execution)
            .bind(&r.id)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// The request `id`, locked until the transaction ends.
        pub(crate) async fn lock(
            conn: &mut $conn,
            id: &str,
        ) -> crate::error::Db<Option<::gaia_core::commands::CommandRecord>> {
            let found = ::sqlx::query(concat!("SELECT * FROM commands WHERE id = $1", $for_update))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            Ok($crate::rows::maybe(found, $crate::rows::command)?)
        }

        /// Pending requests expired by `now_us`, oldest expiry first, locked; a request being
        /// decided right now is left to that decision.
        pub(crate) async fn due(
            conn: &mut $conn,
            now_us: i64,
            limit: u32,
        ) -> crate::error::Db<Vec<::gaia_core::commands::CommandRecord>> {
            let found = ::sqlx::query(concat!(
                "SELECT * FROM commands WHERE status = 'pending' AND expires_at_us <= $1
                 ORDER BY expires_at_us LIMIT $2",
                $skip_locked
            ))
            .bind(now_us)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            Ok($crate::rows::all(&found, $crate::rows::command)?)
        }

        /// Inserts a new request; `false` when its id is taken.
        pub(crate) async fn insert(
            conn: &mut $conn,
            r: &::gaia_core::commands::CommandRecord,
        ) -> crate::error::Db<bool> {
            let spec = $crate::rows::spec_text(&r.spec)?;
            let inserted = ::sqlx::query(
                "INSERT INTO commands (id, spec, cwd, story, todolist, reason, requester, is_test,
                    test_allowed, created_at_us, expires_at_us, status, binding)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&r.id)
            .bind(spec)
            .bind(&r.cwd)
            .bind(&r.story)
            .bind(&r.todolist)
            .bind(&r.reason)
            .bind(&r.requester)
            .bind(r.is_test)
            .bind(r.test_allowed)
            .bind(::gaia_core::time::to_micros(r.created_at))
            .bind(::gaia_core::time::to_micros(r.expires_at))
            .bind(r.status.as_str())
            .bind(&r.binding)
            .execute(&mut *conn)
            .await?;
            Ok(inserted.rows_affected() == 1)
        }

        #[::async_trait::async_trait]
        impl ::gaia_core::store::CommandStore for $store {
            $($own)*

            async fn command_get(
                &self,
                id: &str,
            ) -> Result<Option<::gaia_core::commands::CommandRecord>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query("SELECT * FROM commands WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok($crate::rows::maybe(found, $crate::rows::command)?)
                })
                .await
            }

            async fn command_list(
                &self,
                status: Option<::gaia_core::commands::Status>,
                limit: u32,
            ) -> Result<Vec<::gaia_core::commands::CommandRecord>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(
                        "SELECT * FROM commands WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
                         ORDER BY created_at_us DESC, id LIMIT $2",
                    )
                    .bind(status.map(::gaia_core::commands::Status::as_str))
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
