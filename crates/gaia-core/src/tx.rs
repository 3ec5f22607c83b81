//! The transaction seam: the primitives a backend provides so that each use case (a state
//! change with its events, audit records and notifications) is written once, in
//! [`crate::usecase`], and every backend runs the same control flow.
//!
//! A [`WriteTx`] is one write transaction. The backend decides how it serialises writers
//! (SQLite's write lock from `BEGIN IMMEDIATE`; row locks on PostgreSQL, taken by the `*_lock`
//! primitives) and how it reads its clock; the use case decides what to read, what to write
//! and in which order, and always appends the events and audit records last, so that the
//! log head's lock is the last one taken and held to commit (invariant 2).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audit::NewAudit;
use crate::commands::CommandRecord;
use crate::error::StoreError;
use crate::event::{Event, NewEvent};
use crate::outbox::NewMessage;
use crate::tokens::TokenInfo;

/// One write transaction. Dropping it without [`commit`](Self::commit) rolls it back.
#[async_trait]
pub trait WriteTx: Send {
    /// The store's clock. Use cases read it after taking the locks they need, so that
    /// decisions are ordered by it.
    async fn now(&mut self) -> Result<DateTime<Utc>, StoreError>;

    /// Appends events and audit records (numbered, the audit records hash-chained) and
    /// returns the events as they will be committed. Called last in a use case.
    async fn append(
        &mut self,
        events: &[NewEvent],
        audit: &[NewAudit],
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError>;

    /// Makes everything durable and visible, then tells other processes and nodes.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;

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
