//! GitHub sync records: the primitives of `gaia_core::usecase::github` and the
//! [`GithubSyncStore`] reads.
//!
//! [`GithubSyncStore`]: gaia_core::store::GithubSyncStore

/// Adds `github::{sync_lock, sync_insert, sync_update}` on `$conn` and `GithubSyncStore` for `$store` to
/// the calling backend. `for_update` ends a read that locks what it returns.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! github_sql {
    (store = $store:ty, conn = $conn:ty, for_update = $for_update:literal $(,)?) => {
        /// The record of `item` in `repo`, locked.
        pub(crate) async fn sync_lock(
            conn: &mut $conn,
            repo: &str,
            kind: ::gaia_core::github::ItemKind,
            item: &str,
        ) -> crate::error::Db<Option<::gaia_core::github::SyncRecord>> {
            let found = ::sqlx::query(concat!(
                "SELECT * FROM github_sync WHERE repo = $1 AND item_kind = $2 AND item = $3",
                $for_update
            ))
            .bind(repo)
            .bind(kind.as_str())
            .bind(item)
            .fetch_optional(&mut *conn)
            .await?;
            Ok($crate::rows::maybe(
                found,
                $crate::rows::github::sync_record,
            )?)
        }

        /// Inserts `r`; `false` (and nothing written) when the item already has a record.
        /// The conflict has no target: a record racing in for the same item can collide on
        /// the sync key (a function of the item) before the item's own key, and PostgreSQL
        /// would raise that collision on an index it was not told to arbitrate.
        pub(crate) async fn sync_insert(
            conn: &mut $conn,
            r: &::gaia_core::github::SyncRecord,
        ) -> crate::error::Db<bool> {
            let inserted = ::sqlx::query(
                "INSERT INTO github_sync (repo, item_kind, item, sync_key, issue, pushed_hash,
                     intent_at_us, attempt_at_us, last_seen, updated_at_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&r.repo)
            .bind(r.kind.as_str())
            .bind(&r.item)
            .bind(&r.sync_key)
            .bind(r.issue)
            .bind(r.pushed_hash.as_deref())
            .bind(::gaia_core::time::to_micros(r.intent_at))
            .bind(::gaia_core::time::to_micros(r.attempt_at))
            .bind(r.last_seen)
            .bind(::gaia_core::time::to_micros(r.updated_at))
            .execute(&mut *conn)
            .await?;
            Ok(inserted.rows_affected() == 1)
        }

        /// Writes every mutable column of an existing record (the sync key and the intent's
        /// time and last seen number never change).
        pub(crate) async fn sync_update(
            conn: &mut $conn,
            r: &::gaia_core::github::SyncRecord,
        ) -> crate::error::Db<()> {
            ::sqlx::query(
                "UPDATE github_sync SET issue = $4, pushed_hash = $5, attempt_at_us = $6,
                     updated_at_us = $7
                 WHERE repo = $1 AND item_kind = $2 AND item = $3",
            )
            .bind(&r.repo)
            .bind(r.kind.as_str())
            .bind(&r.item)
            .bind(r.issue)
            .bind(r.pushed_hash.as_deref())
            .bind(::gaia_core::time::to_micros(r.attempt_at))
            .bind(::gaia_core::time::to_micros(r.updated_at))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        #[::async_trait::async_trait]
        impl ::gaia_core::store::GithubSyncStore for $store {
            async fn github_sync_list(
                &self,
                repo: &str,
            ) -> Result<Vec<::gaia_core::github::SyncRecord>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(
                        "SELECT * FROM github_sync WHERE repo = $1
                         ORDER BY item_kind, item",
                    )
                    .bind(repo)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok($crate::rows::all(
                        &found,
                        $crate::rows::github::sync_record,
                    )?)
                })
                .await
            }
        }
    };
}
