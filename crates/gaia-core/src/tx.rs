//! The transaction seam: the primitives a backend provides so that each use case (a state
//! change with its events, audit records and notifications) is written once, in
//! [`crate::usecase`], and every backend runs the same control flow.
//!
//! A [`WriteTx`] is one write transaction. The backend decides how it serialises writers
//! (SQLite's write lock from `BEGIN IMMEDIATE`; row locks on PostgreSQL, taken by the `*_lock`
//! primitives) and how it reads its clock; the use case decides what to read, what to write
//! and in which order, and always appends the events and audit records last, with the commit
//! ([`WriteTx::append_and_commit`]), so that the log head's lock is the last one taken and
//! held to commit (invariant 2).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audit::NewAudit;
use crate::backlog::{Followup, Story, Task, Todolist};
use crate::claims::ClaimRow;
use crate::commands::CommandRecord;
use crate::error::StoreError;
use crate::event::{Event, NewEvent};
use crate::names::ClaimKey;
use crate::outbox::{Leased, Message, NewMessage};
use crate::tokens::TokenInfo;

/// See [`WriteTx::settled`].
pub type Settled = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs `$body` with `$tx` bound to a new write transaction of `$store` and returns its
/// value once the transaction is settled ([`WriteTx::settled`]): the way every use case is
/// run, so that no answer reaches anyone before what it was based on is committed.
#[macro_export]
macro_rules! write_in {
    ($store:expr, $tx:ident => $body:expr) => {{
        let $tx = $store.begin_write().await?;
        let settled = $crate::tx::WriteTx::settled(&*$tx);
        let out = $body;
        settled.await;
        out
    }};
}

/// One write transaction. Dropping it without [`commit`](Self::commit) rolls it back.
#[async_trait]
pub trait WriteTx: Send {
    /// The store's clock. Use cases read it after taking the locks they need, so that
    /// decisions are ordered by it.
    async fn now(&mut self) -> Result<DateTime<Utc>, StoreError>;

    /// Appends events and audit records (numbered, the audit records hash-chained, all
    /// stamped `now`) and commits, as one step: the last of every use case that logs. A
    /// backend may send the append with its commit, so that the log head's lock is held for
    /// the append and the commit only. With no events and no audit records it is a plain
    /// commit (the log head is not touched). Returns the events as committed.
    async fn append_and_commit(
        self: Box<Self>,
        events: &[NewEvent],
        audit: &[NewAudit],
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError>;

    /// Makes everything durable and visible, then tells other processes and nodes. For a
    /// use case with nothing to log.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;

    /// Undoes everything and releases every lock now. Dropping a transaction also rolls it
    /// back, but only once its connection is next used: a use case that ends without
    /// committing while others may wait on its locks calls this.
    async fn rollback(self: Box<Self>) -> Result<(), StoreError>;

    /// Resolves once everything this transaction could read is committed or undone. A
    /// backend that commits writers in groups lets a writer see the uncommitted work of those
    /// before it in the group; whatever the writer answers (even a refusal, without committing
    /// anything) must not reach anyone before that work is durable. Taken right after the
    /// transaction begins; see [`write_in!`](crate::write_in).
    fn settled(&self) -> Settled {
        Box::pin(std::future::ready(()))
    }

    // --- claims ----------------------------------------------------------------------------

    /// Held claims whose TTL passed by `now` and whose expiry is not reported yet, oldest
    /// first, locked (rows being claimed right now may be skipped for the next round).
    async fn claim_expired(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClaimRow>, StoreError>;

    /// Marks the current acquisition of `key` as reported expired.
    async fn claim_mark_reported(&mut self, key: &ClaimKey) -> Result<(), StoreError>;

    /// The row of `key`, locked until the transaction ends (created empty when missing, so
    /// that the lock holds); `None` when it was never claimed.
    async fn claim_lock(&mut self, key: &ClaimKey) -> Result<Option<ClaimRow>, StoreError>;

    /// Like [`claim_lock`](Self::claim_lock), but without waiting: [`TryLock::Busy`] when
    /// another transaction holds the row's lock (someone is deciding on that key right now).
    async fn claim_try_lock(&mut self, key: &ClaimKey) -> Result<TryLock, StoreError>;

    /// Writes `key`'s row as [`crate::claims::decide`] left it (used by use cases that take a
    /// claim together with another change).
    async fn claim_write(&mut self, row: &ClaimRow) -> Result<(), StoreError>;

    // --- backlog ---------------------------------------------------------------------------

    /// The story `slug`, locked; `None` when there is none.
    async fn story_lock(&mut self, slug: &str) -> Result<Option<Story>, StoreError>;

    /// Inserts a story; `false` (and nothing written) when the slug is taken.
    async fn story_insert(&mut self, story: &Story) -> Result<bool, StoreError>;

    /// Writes every mutable column of an existing story.
    async fn story_update(&mut self, story: &Story) -> Result<(), StoreError>;

    /// Inserts a todolist row; `false` when the story already has one of that name.
    async fn todolist_insert(&mut self, list: &Todolist) -> Result<bool, StoreError>;

    /// Renames `story`'s todolist `from` (row and tasks) to `to`, marking it archived at `at`.
    async fn todolist_archive(
        &mut self,
        story: &str,
        from: &str,
        to: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Marks `story`'s todolist `name` finalized at `at`.
    async fn todolist_finalize(
        &mut self,
        story: &str,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The tasks of `story`'s todolist `name`, in position order.
    async fn tasks_in(&mut self, story: &str, name: &str) -> Result<Vec<Task>, StoreError>;

    /// Task `id` as committed, not locked (to learn which claim and story to lock first).
    async fn task_get(&mut self, id: i64) -> Result<Option<Task>, StoreError>;

    /// Task `id`, locked; `None` when there is none.
    async fn task_lock(&mut self, id: i64) -> Result<Option<Task>, StoreError>;

    /// Inserts a task (its `id` is ignored) and returns the id it was given.
    async fn task_insert(&mut self, task: &Task) -> Result<i64, StoreError>;

    /// Writes every mutable column of an existing task.
    async fn task_update(&mut self, task: &Task) -> Result<(), StoreError>;

    /// Ready tasks (see [`crate::store::BacklogStore::ready`]) as `agent` sees them: lists it
    /// holds itself count as free. Not locked: the caller locks the claim and the task.
    async fn ready_for(
        &mut self,
        story: Option<&str>,
        agent: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError>;

    /// The follow-up collected from `path`, locked; `None` when there is none.
    async fn followup_lock_path(&mut self, path: &str) -> Result<Option<Followup>, StoreError>;

    /// Follow-up `id`, locked; `None` when there is none.
    async fn followup_lock(&mut self, id: i64) -> Result<Option<Followup>, StoreError>;

    /// Inserts a follow-up (its `id` is ignored); `None` when its path is already collected.
    async fn followup_insert(&mut self, f: &Followup) -> Result<Option<i64>, StoreError>;

    /// Writes every mutable column of an existing follow-up.
    async fn followup_update(&mut self, f: &Followup) -> Result<(), StoreError>;

    // --- GitHub sync ----------------------------------------------------------------------

    /// The sync record of `item` in `repo`, locked; `None` when there is none.
    async fn github_sync_lock(
        &mut self,
        repo: &str,
        kind: crate::github::ItemKind,
        item: &str,
    ) -> Result<Option<crate::github::SyncRecord>, StoreError>;

    /// Inserts a record; `false` (and nothing written) when the item already has one (a
    /// concurrent insert of the same item waits for the other to end, then finds it).
    async fn github_sync_insert(
        &mut self,
        record: &crate::github::SyncRecord,
    ) -> Result<bool, StoreError>;

    /// Writes every mutable column of an existing record.
    async fn github_sync_update(
        &mut self,
        record: &crate::github::SyncRecord,
    ) -> Result<(), StoreError>;

    // --- commands --------------------------------------------------------------------------

    /// The request `id`, locked until the transaction ends; `None` when there is none.
    async fn command_lock(&mut self, id: &str) -> Result<Option<CommandRecord>, StoreError>;

    /// Pending requests whose expiry is at or before `now`, oldest expiry first, locked.
    async fn command_due(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError>;

    /// Inserts a new request; `false` (and nothing written) when its id is taken.
    async fn command_insert(&mut self, r: &CommandRecord) -> Result<bool, StoreError>;

    /// Writes every mutable column of an existing request.
    async fn command_update(&mut self, r: &CommandRecord) -> Result<(), StoreError>;

    // --- outbox ----------------------------------------------------------------------------

    /// Inserts a pending message due at `now`; `None` (and nothing written) when a message
    /// with the same dedupe key exists.
    async fn outbox_insert(
        &mut self,
        m: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError>;

    /// Leases up to `limit` due messages (pending, due by `now`, not leased) until `until`,
    /// each under a new fencing token, skipping rows another transaction holds.
    async fn outbox_lease_due(
        &mut self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Leased>, StoreError>;

    /// Leases the head of one chat (its oldest pending message) until `until` under a new
    /// fencing token, locked, if it is due by `now` and not leased; `None` otherwise.
    async fn outbox_lease_chat(
        &mut self,
        channel: crate::outbox::Channel,
        target: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Leased>, StoreError>;

    /// Message `id` with its current lease token, locked; `None` when there is none.
    async fn outbox_lock(&mut self, id: i64) -> Result<Option<Leased>, StoreError>;

    /// Writes every mutable column of an existing message.
    async fn outbox_write(&mut self, m: &Message) -> Result<(), StoreError>;

    /// Sets message `id`'s lease to end at `until` (with `keep_later`, only if that is later
    /// than it is).
    async fn outbox_set_lease(
        &mut self,
        id: i64,
        until: DateTime<Utc>,
        keep_later: bool,
    ) -> Result<(), StoreError>;

    /// Gives message `id` back, due at `at`, unleased, without using an attempt.
    async fn outbox_defer(&mut self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;

    // --- pacing (Telegram's limits and holds, per chat, shared by every sender) ------------

    /// The pacing row of chat `key` (created empty when missing), locked until the end.
    async fn pacing_lock(&mut self, key: &str) -> Result<PacingRow, StoreError>;

    /// The `n`-th most recent paced send after `after`, to `chat` or (without one) overall.
    async fn pacing_nth_send(
        &mut self,
        chat: Option<&str>,
        n: u32,
        after: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Records that message `id` (lease `token`) is being sent to chat `key` at `at`, in
    /// flight until `until`; a paced send is also counted (and counts older than
    /// `forget_before` are dropped).
    async fn pacing_start(&mut self, start: &PacingStart<'_>) -> Result<(), StoreError>;

    /// The chat's send reserved at `reserved` ended at `at`: it counts from `at`, and nothing
    /// is in flight any more.
    async fn pacing_finish(
        &mut self,
        key: &str,
        reserved: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Holds chat `key` until `until` (or later, if it is already held longer).
    async fn pacing_hold(&mut self, key: &str, until: DateTime<Utc>) -> Result<(), StoreError>;

    // --- cleanup (rows already in a verified archive) ----------------------------------------

    /// Deletes the events with `low <= seq <= high`; how many were stored.
    async fn events_delete(&mut self, low: i64, high: i64) -> Result<u64, StoreError>;

    /// Deletes the audit records with `low <= id <= high` and moves the chain's anchor to
    /// record `high`, whose hash is `hash` (unless the anchor is already there or later).
    async fn audit_prune(&mut self, low: i64, high: i64, hash: &str) -> Result<u64, StoreError>;

    /// Deletes message `id` if it is delivered; whether it did.
    async fn outbox_delete_sent(&mut self, id: i64) -> Result<bool, StoreError>;

    /// Deletes request `id` if it has ended; whether it did.
    async fn command_delete_ended(&mut self, id: &str) -> Result<bool, StoreError>;

    // --- tokens ----------------------------------------------------------------------------

    /// Inserts a token by its hash; `false` (and nothing written) when the name was ever used.
    async fn token_insert(&mut self, info: &TokenInfo, hash: &str) -> Result<bool, StoreError>;

    /// Marks the live token `name` revoked at `now` and returns it as it was; `None` when no
    /// live token has that name.
    async fn token_revoke(
        &mut self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenInfo>, StoreError>;
}

/// What [`WriteTx::claim_try_lock`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryLock {
    /// Another transaction holds the row: nothing was read.
    Busy,
    /// The row is locked until the end; `None` when the key was never claimed.
    Locked(Option<ClaimRow>),
}

/// A chat's stored pacing state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacingRow {
    /// `retry_after` hold: nothing goes to the chat before this.
    pub held_until: Option<DateTime<Utc>>,
    /// When the last send to the chat was reserved or, once answered, ended.
    pub last_sent: Option<DateTime<Utc>>,
    /// The message in flight to the chat, its lease token, and until when it may be.
    pub sending_id: Option<i64>,
    pub sending_token: Option<i64>,
    pub sending_until: Option<DateTime<Utc>>,
}

/// A send about to start (see [`WriteTx::pacing_start`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacingStart<'a> {
    pub key: &'a str,
    pub at: DateTime<Utc>,
    pub id: i64,
    pub token: i64,
    pub until: DateTime<Utc>,
    pub paced: bool,
    pub forget_before: DateTime<Utc>,
}
