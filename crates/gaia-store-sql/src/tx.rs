//! The [`WriteTx`](gaia_core::tx::WriteTx) primitives every SQL backend forwards to its own
//! SQL functions, written once. A backend writes the three methods that differ (`now`,
//! `append`, `commit`), and [`write_tx!`](crate::write_tx) adds the rest, each calling the
//! backend's function of the same name in its `log`, `claims`, `backlog`, `commands`,
//! `github`, `outbox`, `retention` and `tokens` modules with the transaction's connection
//! (`self.tx`).

/// Implements `WriteTx` for `$ty` (a struct with a `tx` field holding the transaction) with
/// the given methods and forwarders for every other primitive.
// `crate::` here is meant to be the calling backend: the forwarders call its SQL functions.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! write_tx {
    ($ty:ty { $($own:tt)* }) => {
        #[::async_trait::async_trait]
        impl ::gaia_core::tx::WriteTx for $ty {
            $($own)*

        fn settled(&self) -> ::gaia_core::tx::Settled {
            self.tx.settled()
        }

        async fn rollback(self: Box<Self>) -> Result<(), ::gaia_core::StoreError> {
            let this = *self;
            Ok(crate::error::boundary(async move { Ok(this.tx.rollback().await?) }).await?)
        }

        async fn events_delete(&mut self, low: i64, high: i64) -> Result<u64, ::gaia_core::StoreError> {
            Ok(crate::retention::events_delete(&mut self.tx, low, high).await?)
        }

        async fn audit_prune(&mut self, low: i64, high: i64, hash: &str) -> Result<u64, ::gaia_core::StoreError> {
            Ok(crate::retention::audit_prune(&mut self.tx, low, high, hash).await?)
        }

        async fn outbox_delete_sent(&mut self, id: i64) -> Result<bool, ::gaia_core::StoreError> {
            Ok(crate::retention::outbox_delete_sent(&mut self.tx, id).await?)
        }

        async fn command_delete_ended(&mut self, id: &str) -> Result<bool, ::gaia_core::StoreError> {
            Ok(crate::retention::command_delete_ended(&mut self.tx, id).await?)
        }

        async fn claim_expired(
            &mut self,
            now: ::chrono::DateTime<::chrono::Utc>,
            limit: u32,
        ) -> Result<Vec<::gaia_core::claims::ClaimRow>, ::gaia_core::StoreError> {
            Ok(crate::claims::expired(&mut self.tx, ::gaia_core::time::to_micros(now), limit).await?)
        }

        async fn claim_mark_reported(&mut self, key: &::gaia_core::names::ClaimKey) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::claims::mark_reported(&mut self.tx, key).await?)
        }

        async fn claim_lock(&mut self, key: &::gaia_core::names::ClaimKey) -> Result<Option<::gaia_core::claims::ClaimRow>, ::gaia_core::StoreError> {
            Ok(crate::backlog::claim_lock(&mut self.tx, key).await?)
        }

        async fn claim_try_lock(&mut self, key: &::gaia_core::names::ClaimKey) -> Result<::gaia_core::tx::TryLock, ::gaia_core::StoreError> {
            Ok(crate::backlog::claim_try_lock(&mut self.tx, key).await?)
        }

        async fn claim_write(&mut self, row: &::gaia_core::claims::ClaimRow) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::backlog::claim_write(&mut self.tx, row).await?)
        }

        async fn story_lock(&mut self, slug: &str) -> Result<Option<::gaia_core::backlog::Story>, ::gaia_core::StoreError> {
            Ok(crate::backlog::story_lock(&mut self.tx, slug).await?)
        }

        async fn story_insert(&mut self, story: &::gaia_core::backlog::Story) -> Result<bool, ::gaia_core::StoreError> {
            Ok(crate::backlog::story_insert(&mut self.tx, story).await?)
        }

        async fn story_update(&mut self, story: &::gaia_core::backlog::Story) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::backlog::story_update(&mut self.tx, story).await?)
        }

        async fn todolist_insert(&mut self, list: &::gaia_core::backlog::Todolist) -> Result<bool, ::gaia_core::StoreError> {
            Ok(crate::backlog::todolist_insert(&mut self.tx, list).await?)
        }

        async fn todolist_archive(
            &mut self,
            story: &str,
            from: &str,
            to: &str,
            at: ::chrono::DateTime<::chrono::Utc>,
        ) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::backlog::todolist_archive(&mut self.tx, story, from, to, ::gaia_core::time::to_micros(at)).await?)
        }

        async fn todolist_finalize(
            &mut self,
            story: &str,
            name: &str,
            at: ::chrono::DateTime<::chrono::Utc>,
        ) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::backlog::todolist_finalize(&mut self.tx, story, name, ::gaia_core::time::to_micros(at)).await?)
        }

        async fn tasks_in(&mut self, story: &str, name: &str) -> Result<Vec<::gaia_core::backlog::Task>, ::gaia_core::StoreError> {
            Ok(crate::backlog::tasks_in(&mut self.tx, story, name).await?)
        }

        async fn task_get(&mut self, id: i64) -> Result<Option<::gaia_core::backlog::Task>, ::gaia_core::StoreError> {
            Ok(crate::backlog::task_get(&mut self.tx, id).await?)
        }

        async fn task_lock(&mut self, id: i64) -> Result<Option<::gaia_core::backlog::Task>, ::gaia_core::StoreError> {
            Ok(crate::backlog::task_lock(&mut self.tx, id).await?)
        }

        async fn task_insert(&mut self, task: &::gaia_core::backlog::Task) -> Result<i64, ::gaia_core::StoreError> {
            Ok(crate::backlog::task_insert(&mut self.tx, task).await?)
        }

        async fn task_update(&mut self, task: &::gaia_core::backlog::Task) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::backlog::task_update(&mut self.tx, task).await?)
        }

        async fn ready_for(
            &mut self,
            story: Option<&str>,
            agent: &str,
            now: ::chrono::DateTime<::chrono::Utc>,
            limit: u32,
        ) -> Result<Vec<::gaia_core::backlog::Task>, ::gaia_core::StoreError> {
            Ok(crate::backlog::ready_for(&mut self.tx, story, Some(agent), ::gaia_core::time::to_micros(now), limit).await?)
        }

        async fn followup_lock_path(&mut self, path: &str) -> Result<Option<::gaia_core::backlog::Followup>, ::gaia_core::StoreError> {
            Ok(crate::backlog::followup_lock_path(&mut self.tx, path).await?)
        }

        async fn followup_lock(&mut self, id: i64) -> Result<Option<::gaia_core::backlog::Followup>, ::gaia_core::StoreError> {
            Ok(crate::backlog::followup_lock(&mut self.tx, id).await?)
        }

        async fn followup_insert(&mut self, f: &::gaia_core::backlog::Followup) -> Result<Option<i64>, ::gaia_core::StoreError> {
            Ok(crate::backlog::followup_insert(&mut self.tx, f).await?)
        }

        async fn followup_update(&mut self, f: &::gaia_core::backlog::Followup) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::backlog::followup_update(&mut self.tx, f).await?)
        }

        async fn command_lock(&mut self, id: &str) -> Result<Option<::gaia_core::commands::CommandRecord>, ::gaia_core::StoreError> {
            Ok(crate::commands::lock(&mut self.tx, id).await?)
        }

        async fn command_due(
            &mut self,
            now: ::chrono::DateTime<::chrono::Utc>,
            limit: u32,
        ) -> Result<Vec<::gaia_core::commands::CommandRecord>, ::gaia_core::StoreError> {
            Ok(crate::commands::due(&mut self.tx, ::gaia_core::time::to_micros(now), limit).await?)
        }

        async fn command_insert(&mut self, r: &::gaia_core::commands::CommandRecord) -> Result<bool, ::gaia_core::StoreError> {
            Ok(crate::commands::insert(&mut self.tx, r).await?)
        }

        async fn command_update(&mut self, r: &::gaia_core::commands::CommandRecord) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::commands::update(&mut self.tx, r).await?)
        }

        async fn outbox_insert(
            &mut self,
            m: &::gaia_core::outbox::NewMessage,
            now: ::chrono::DateTime<::chrono::Utc>,
        ) -> Result<Option<i64>, ::gaia_core::StoreError> {
            Ok(crate::outbox::insert(&mut self.tx, m, ::gaia_core::time::to_micros(now)).await?)
        }

        async fn outbox_lease_due(
            &mut self,
            now: ::chrono::DateTime<::chrono::Utc>,
            until: ::chrono::DateTime<::chrono::Utc>,
            limit: u32,
        ) -> Result<Vec<::gaia_core::outbox::Leased>, ::gaia_core::StoreError> {
            Ok(crate::outbox::lease_due(&mut self.tx, ::gaia_core::time::to_micros(now), ::gaia_core::time::to_micros(until), limit).await?)
        }

        async fn outbox_lease_chat(
            &mut self,
            channel: ::gaia_core::outbox::Channel,
            target: &str,
            now: ::chrono::DateTime<::chrono::Utc>,
            until: ::chrono::DateTime<::chrono::Utc>,
        ) -> Result<Option<::gaia_core::outbox::Leased>, ::gaia_core::StoreError> {
            Ok(crate::outbox::lease_chat(&mut self.tx, channel.as_str(), target, ::gaia_core::time::to_micros(now), ::gaia_core::time::to_micros(until)).await?)
        }

        async fn outbox_lock(&mut self, id: i64) -> Result<Option<::gaia_core::outbox::Leased>, ::gaia_core::StoreError> {
            Ok(crate::outbox::lock(&mut self.tx, id).await?)
        }

        async fn outbox_write(&mut self, m: &::gaia_core::outbox::Message) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::outbox::write(&mut self.tx, m).await?)
        }

        async fn outbox_set_lease(
            &mut self,
            id: i64,
            until: ::chrono::DateTime<::chrono::Utc>,
            keep_later: bool,
        ) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::outbox::set_lease(&mut self.tx, id, ::gaia_core::time::to_micros(until), keep_later).await?)
        }

        async fn outbox_defer(&mut self, id: i64, at: ::chrono::DateTime<::chrono::Utc>) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::outbox::defer(&mut self.tx, id, ::gaia_core::time::to_micros(at)).await?)
        }

        async fn pacing_lock(&mut self, key: &str) -> Result<::gaia_core::tx::PacingRow, ::gaia_core::StoreError> {
            Ok(crate::outbox::pacing_lock(&mut self.tx, key).await?)
        }

        async fn pacing_nth_send(
            &mut self,
            chat: Option<&str>,
            n: u32,
            after: ::chrono::DateTime<::chrono::Utc>,
        ) -> Result<Option<::chrono::DateTime<::chrono::Utc>>, ::gaia_core::StoreError> {
            Ok(crate::outbox::pacing_nth_send(&mut self.tx, chat, n, ::gaia_core::time::to_micros(after)).await?)
        }

        async fn pacing_start(&mut self, start: &::gaia_core::tx::PacingStart<'_>) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::outbox::pacing_start(&mut self.tx, start).await?)
        }

        async fn pacing_finish(
            &mut self,
            key: &str,
            reserved: Option<::chrono::DateTime<::chrono::Utc>>,
            at: ::chrono::DateTime<::chrono::Utc>,
        ) -> Result<(), ::gaia_core::StoreError> {
            let reserved = reserved.map_or(0, ::gaia_core::time::to_micros);
            Ok(crate::outbox::pacing_finish(&mut self.tx, key, reserved, ::gaia_core::time::to_micros(at)).await?)
        }

        async fn pacing_hold(&mut self, key: &str, until: ::chrono::DateTime<::chrono::Utc>) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::outbox::pacing_hold(&mut self.tx, key, ::gaia_core::time::to_micros(until)).await?)
        }

        async fn github_sync_lock(
            &mut self,
            repo: &str,
            kind: ::gaia_core::github::ItemKind,
            item: &str,
        ) -> Result<Option<::gaia_core::github::SyncRecord>, ::gaia_core::StoreError> {
            Ok(crate::github::sync_lock(&mut self.tx, repo, kind, item).await?)
        }

        async fn github_sync_insert(&mut self, record: &::gaia_core::github::SyncRecord) -> Result<bool, ::gaia_core::StoreError> {
            Ok(crate::github::sync_insert(&mut self.tx, record).await?)
        }

        async fn github_sync_update(&mut self, record: &::gaia_core::github::SyncRecord) -> Result<(), ::gaia_core::StoreError> {
            Ok(crate::github::sync_update(&mut self.tx, record).await?)
        }

        async fn token_insert(&mut self, info: &::gaia_core::tokens::TokenInfo, hash: &str) -> Result<bool, ::gaia_core::StoreError> {
            Ok(crate::tokens::insert(&mut self.tx, info, hash).await?)
        }

        async fn token_revoke(
            &mut self,
            name: &str,
            now: ::chrono::DateTime<::chrono::Utc>,
        ) -> Result<Option<::gaia_core::tokens::TokenInfo>, ::gaia_core::StoreError> {
            Ok(crate::tokens::revoke(&mut self.tx, name, ::gaia_core::time::to_micros(now)).await?)
        }
        }
    };
}
