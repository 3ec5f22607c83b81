//! The storage traits. Each backend crate implements all of them; transports and services only
//! ever see `Arc<dyn Store>`, chosen at run time from the database URL.
//!
//! Every method that changes state commits the change, its events and its audit records in one
//! transaction (the first invariant), and returns the events as committed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audit::{AuditRecord, ChainHead, NewAudit};
use crate::claims::{ClaimResult, ClaimRow, Request};
use crate::error::StoreError;
use crate::event::{Event, EventFilter, NewEvent};
use crate::names::ClaimKey;
pub use crate::tx::WriteTx;

/// Events and audit records to append together, with no other state change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    pub events: Vec<NewEvent>,
    pub audit: Vec<NewAudit>,
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The event log.
#[async_trait]
pub trait EventStore: Transact {
    /// Appends the change's events and audit records in one transaction.
    async fn append(&self, change: Change) -> Result<Vec<Event>, StoreError> {
        crate::write_in!(self, tx => crate::usecase::log::append(tx, change).await)
    }

    /// Committed events with `seq > since` that match `filter`, in `seq` order, at most `limit`.
    /// A reader that always passes the last `seq` it saw never misses or repeats an event.
    async fn events_after(
        &self,
        since: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;

    /// The newest `limit` matching events with `seq < before`, oldest first (paging backwards:
    /// `gaia events tail`, the dashboard's history).
    async fn events_before(
        &self,
        before: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;

    /// The newest committed `seq` (0 when the log is empty).
    async fn last_seq(&self) -> Result<i64, StoreError>;

    /// Waits until a seq newer than `after` is committed by any process or node, or until
    /// `timeout` passes, and returns the newest committed seq. Backends with change
    /// notification (PostgreSQL's LISTEN) return as soon as one arrives; others poll.
    async fn wait_for_commit(
        &self,
        after: i64,
        timeout: std::time::Duration,
    ) -> Result<i64, StoreError>;
}

/// The hash-chained audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// The chain's anchor and last record as the head row records them.
    async fn audit_head(&self) -> Result<ChainHead, StoreError>;

    /// Stored records with `id > after`, in id order as stored (no gaps are filled in).
    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;

    /// The newest `limit` records, oldest first.
    async fn audit_tail(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Claims (leases) with fencing tokens.
#[async_trait]
pub trait ClaimStore: Transact {
    /// Locks the key, applies [`crate::claims::decide`] at the store's time, and commits the
    /// decision. Returns [`StoreError::LockTimeout`] when the key could not be locked in time.
    async fn claim(&self, req: &Request) -> Result<(ClaimResult, Vec<Event>), StoreError>;

    /// The stored row for `key`, if it was ever claimed.
    async fn claim_get(&self, key: &ClaimKey) -> Result<Option<ClaimRow>, StoreError>;

    /// Every row that has a holder recorded (live or expired), ordered by key.
    async fn claim_list(&self) -> Result<Vec<ClaimRow>, StoreError>;

    /// Whether any held claim may have expired unreported: a cheap read that spares the
    /// reaper a write transaction when none has (a backend whose writers do not exclude each
    /// other need not say).
    async fn claim_any_expired(&self) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Emits `claim.expired` once for each acquisition whose TTL has passed without a release
    /// (at most `limit` per call), in one transaction. Returns the events committed.
    async fn claim_reap(&self, limit: u32) -> Result<Vec<Event>, StoreError> {
        if !self.claim_any_expired().await? {
            return Ok(vec![]);
        }
        crate::write_in!(self, tx => crate::usecase::claims::reap(tx, limit).await)
    }
}

/// Write transactions: the one primitive every use case in [`crate::usecase`] starts from.
#[async_trait]
pub trait Transact: Send + Sync {
    /// Begins a write transaction (see [`WriteTx`] for what it provides).
    async fn begin_write(&self) -> Result<Box<dyn WriteTx>, StoreError>;
}

/// Command approval requests. The state changes are the use cases of
/// [`crate::usecase::commands`]; a backend provides reads and the [`WriteTx`] primitives.
#[async_trait]
pub trait CommandStore: Transact {
    /// Stores a new pending request under a fresh id, with its event and audit record.
    /// The approval messages for `notify` and the policy's `ruling` (its decision, and the
    /// approval or denial it applies) are written in the same transaction.
    async fn command_create(
        &self,
        new: &crate::commands::NewCommand,
        notify: &[crate::outbox::Target],
        ruling: Option<&crate::usecase::commands::Ruling<'_>>,
    ) -> Result<(crate::commands::CommandRecord, Vec<Event>), StoreError> {
        crate::write_in!(self, tx => crate::usecase::commands::create(tx, new, notify, ruling).await)
    }

    async fn command_get(
        &self,
        id: &str,
    ) -> Result<Option<crate::commands::CommandRecord>, StoreError>;

    /// Requests, newest first, optionally only those in `status`.
    async fn command_list(
        &self,
        status: Option<crate::commands::Status>,
        limit: u32,
    ) -> Result<Vec<crate::commands::CommandRecord>, StoreError>;

    /// Locks the request, applies [`crate::commands::plan`] at the store's time and commits
    /// it (a refused action can still record that the request expired). When the request ends
    /// (decided, expired, cancelled), the decision messages for `notify` are enqueued in the
    /// same transaction.
    async fn command_apply(
        &self,
        id: &str,
        action: &crate::commands::Action,
        notify: &[crate::outbox::Target],
    ) -> Result<crate::usecase::commands::Applied, StoreError> {
        crate::write_in!(self, tx => crate::usecase::commands::apply(tx, id, action, notify).await)
    }

    /// Whether any pending request may be past its expiry: a cheap read that spares the
    /// reaper a write transaction when nothing is due (a backend whose writers do not exclude
    /// each other need not say).
    async fn command_any_due(&self) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Expires pending requests past their expiry (at most `limit`), one event each.
    async fn command_expire_due(
        &self,
        limit: u32,
        notify: &[crate::outbox::Target],
    ) -> Result<Vec<Event>, StoreError> {
        if !self.command_any_due().await? {
            return Ok(vec![]);
        }
        crate::write_in!(self, tx => crate::usecase::commands::expire_due(tx, limit, notify).await)
    }
}

/// How many messages the outbox holds in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: u64,
    pub sent: u64,
    pub dead: u64,
}

/// The notification outbox.
#[async_trait]
pub trait OutboxStore: Transact {
    /// Enqueues messages in one transaction. A message whose dedupe key was seen before is
    /// skipped and reported by a `notify.duplicate_skipped` event. Returns the ids enqueued.
    async fn outbox_enqueue(
        &self,
        messages: &[crate::outbox::NewMessage],
    ) -> Result<(Vec<i64>, Vec<Event>), StoreError> {
        crate::write_in!(self, tx => crate::usecase::outbox::enqueue(tx, messages).await)
    }

    /// Leases up to `limit` due messages (pending, due, not leased) for `lease`, so that
    /// concurrent senders on any node never take the same message. Each comes with a new
    /// fencing token for [`outbox_reserve`](Self::outbox_reserve) and
    /// [`outbox_record_leased`](Self::outbox_record_leased).
    async fn outbox_lease(
        &self,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<crate::outbox::Leased>, StoreError> {
        crate::write_in!(self, tx => crate::usecase::outbox::lease(tx, limit, lease).await)
    }

    /// Asks for a send slot right before sending: in one transaction, at the store's time,
    /// checks that the message is still leased under the request's token, judges the chat's
    /// `retry_after` hold, another send in flight and the pacing limits (shared by every sender
    /// on the store, and kept across restarts), and on [`Slot::Go`](crate::outbox::Slot::Go)
    /// renews the lease for the send, counts the send and marks the chat busy until the attempt
    /// is recorded.
    async fn outbox_reserve(
        &self,
        req: &crate::outbox::SlotRequest,
    ) -> Result<crate::outbox::Slot, StoreError> {
        crate::write_in!(self, tx => crate::usecase::outbox::reserve(tx, req).await)
    }

    /// Records the outcome of an attempt made under the lease `token` (fencing): only while
    /// the message is still leased under that token. `Ok(None)` when it is not (another sender
    /// took it over, or it was recorded): nothing is recorded. A `retry_after` answer holds
    /// the message's chat in the store either way, since Telegram holds it either way.
    async fn outbox_record_leased(
        &self,
        id: i64,
        token: i64,
        attempt: &crate::outbox::Attempt,
        policy: &crate::outbox::RetryPolicy,
        unit: f64,
    ) -> Result<Option<(crate::outbox::Message, Vec<Event>)>, StoreError> {
        crate::write_in!(self, tx => crate::usecase::outbox::record(tx, id, Some(token), attempt, policy, unit).await)
    }

    /// [`outbox_record_leased`](Self::outbox_record_leased) and, in the same transaction,
    /// when the attempt was recorded, the chat's next message (its oldest pending one, if due
    /// and not leased) leased for `next.lease` with its send slot reserved as by
    /// [`outbox_reserve`](Self::outbox_reserve) for `next.request`, kept only when it may go
    /// now: a lane keeps working its chat at one write transaction per message.
    async fn outbox_record_next(
        &self,
        id: i64,
        token: i64,
        attempt: &crate::outbox::Attempt,
        policy: &crate::outbox::RetryPolicy,
        unit: f64,
        next: &crate::outbox::Next<'_>,
    ) -> Result<crate::outbox::Recorded, StoreError> {
        crate::write_in!(self, tx => crate::usecase::outbox::record_next(tx, id, token, attempt, policy, unit, next).await)
    }

    /// Records the outcome of an attempt on message `id` with its event, whoever holds its
    /// lease: for attempts recorded by hand (demos, tests), never by a sender, which uses
    /// [`outbox_record_leased`](Self::outbox_record_leased).
    async fn outbox_record(
        &self,
        id: i64,
        attempt: &crate::outbox::Attempt,
        policy: &crate::outbox::RetryPolicy,
        unit: f64,
    ) -> Result<Option<(crate::outbox::Message, Vec<Event>)>, StoreError> {
        crate::write_in!(self, tx => crate::usecase::outbox::record(tx, id, None, attempt, policy, unit).await)
    }

    async fn outbox_get(&self, id: i64) -> Result<Option<crate::outbox::Message>, StoreError>;

    /// The message enqueued under `dedupe_key`, if any.
    async fn outbox_by_key(
        &self,
        dedupe_key: &str,
    ) -> Result<Option<crate::outbox::Message>, StoreError>;

    /// Messages, newest first, optionally only those in `status`.
    async fn outbox_list(
        &self,
        status: Option<crate::outbox::Status>,
        limit: u32,
    ) -> Result<Vec<crate::outbox::Message>, StoreError>;

    /// Puts a dead message back in the queue (event and audit record; `auto` tells the
    /// automatic requeue from a person's). `None` when there is no such message or it is not
    /// dead.
    async fn outbox_requeue(
        &self,
        id: i64,
        actor: &str,
        auto: bool,
    ) -> Result<Option<(crate::outbox::Message, Vec<Event>)>, StoreError> {
        crate::write_in!(self, tx => crate::usecase::outbox::requeue(tx, id, actor, auto).await)
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;

    /// How many events of each `notify.*` type were appended, split by their `outcome` field
    /// (empty when absent): the source of the delivery metrics, so they survive restarts.
    async fn notify_event_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError>;
}

/// API tokens, stored hashed.
#[async_trait]
pub trait TokenStore: Transact {
    /// Stores a new token; [`StoreError::Conflict`] when the name is taken (even if revoked).
    async fn token_create(
        &self,
        info: &crate::tokens::TokenInfo,
        hash: &str,
    ) -> Result<Vec<Event>, StoreError> {
        crate::write_in!(self, tx => crate::usecase::tokens::create(tx, info, hash).await)
    }

    /// Every token, revoked ones included, by name.
    async fn token_list(&self) -> Result<Vec<crate::tokens::TokenInfo>, StoreError>;

    /// Revokes the named token. `Ok(None)` when there is no such live token.
    async fn token_revoke(
        &self,
        name: &str,
        actor: &str,
    ) -> Result<Option<Vec<Event>>, StoreError> {
        crate::write_in!(self, tx => crate::usecase::tokens::revoke(tx, name, actor).await)
    }

    /// The live (not revoked) token with this hash.
    async fn token_lookup(
        &self,
        hash: &str,
    ) -> Result<Option<crate::tokens::TokenInfo>, StoreError>;
}

/// Everything a backend provides.
#[async_trait]
pub trait Store:
    EventStore
    + AuditStore
    + ClaimStore
    + TokenStore
    + CommandStore
    + OutboxStore
    + BacklogStore
    + GithubSyncStore
    + RetentionStore
    + std::fmt::Debug
{
    fn backend(&self) -> Backend;

    /// The time by which expiry is judged: the database's clock, or an injected one.
    async fn now(&self) -> Result<DateTime<Utc>, StoreError>;

    /// The applied schema version.
    async fn schema_version(&self) -> Result<i64, StoreError>;

    /// The deployment-wide setting `name`; when unset, stores `init` first. Concurrent callers
    /// on any node all get the same value.
    async fn setting_get_or_init(&self, name: &str, init: &str) -> Result<String, StoreError>;

    /// Sets the deployment-wide setting `name` (for values that change, such as a poller's
    /// offset).
    async fn setting_set(&self, name: &str, value: &str) -> Result<(), StoreError>;

    /// Takes Telegram update `update_id` (delivered to the webhook) for handling until
    /// `until`: [`UpdateTake::Handle`] when it is new, or an earlier taker's hold ended at or
    /// before `now` without it being done; otherwise whether it was done or is being handled.
    async fn telegram_update_take(
        &self,
        update_id: i64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<UpdateTake, StoreError>;

    /// Marks update `update_id` as handled for good, and forgets updates whose hold ended
    /// before `forget_before` (Telegram redelivers an update for a day at most).
    async fn telegram_update_done(
        &self,
        update_id: i64,
        forget_before: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Closes connections; further calls fail.
    async fn close(&self);

    /// The store's raw rows, for whole-store copies (`None` when the backend has none).
    fn dump(&self) -> Option<&dyn crate::dump::Dump> {
        None
    }
}

/// What [`Store::telegram_update_take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateTake {
    /// This caller handles the update now.
    Handle,
    /// It was handled before: a redelivery, to acknowledge and ignore.
    Done,
    /// Another handler holds it: Telegram is to deliver it again later.
    Busy,
}

/// SQLite's `synchronous` setting. `Normal` (the default) is safe against a crash of any
/// process, including `kill -9`, in WAL mode; a power loss may drop the last commits but never
/// corrupts the file. `Full` also survives power loss, at the price of an fsync per commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    Off,
    #[default]
    Normal,
    Full,
    Extra,
}

impl std::str::FromStr for SqliteSync {
    type Err = crate::error::ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "normal" => Ok(Self::Normal),
            "full" => Ok(Self::Full),
            "extra" => Ok(Self::Extra),
            _ => Err(crate::error::ValidationError::new(format!(
                "invalid sqlite synchronous '{s}': use off, normal, full or extra"
            ))),
        }
    }
}

impl std::fmt::Display for SqliteSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Normal => "normal",
            Self::Full => "full",
            Self::Extra => "extra",
        })
    }
}

/// How to open a store. Backends ignore what does not apply to them.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Judge time by this clock instead of the database's (tests).
    pub clock: Option<std::sync::Arc<dyn crate::time::Clock>>,
    /// How long a write waits for a lock before [`StoreError::LockTimeout`].
    pub lock_timeout: std::time::Duration,
    /// How long opening the database may take before [`StoreError::Unavailable`].
    pub connect_timeout: std::time::Duration,
    pub max_connections: u32,
    pub sqlite_synchronous: SqliteSync,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            clock: None,
            lock_timeout: std::time::Duration::from_secs(5),
            connect_timeout: std::time::Duration::from_secs(5),
            max_connections: 8,
            sqlite_synchronous: SqliteSync::default(),
        }
    }
}

/// The backlog's reads. Its state changes are the use cases of [`crate::usecase::backlog`].
#[async_trait]
pub trait BacklogStore: Transact {
    /// The story `slug`.
    async fn story_get(&self, slug: &str) -> Result<Option<crate::backlog::Story>, StoreError>;

    /// Stories (with `status`, only those), oldest first, at most `limit`.
    async fn story_list(
        &self,
        status: Option<crate::backlog::StoryStatus>,
        limit: u32,
    ) -> Result<Vec<crate::backlog::Story>, StoreError>;

    /// The todolists of `story`, the current one and the archived ones, oldest first.
    async fn todolist_list(&self, story: &str)
    -> Result<Vec<crate::backlog::Todolist>, StoreError>;

    /// The tasks of `story`'s todolist `name`, in position order.
    async fn task_list(
        &self,
        story: &str,
        name: &str,
    ) -> Result<Vec<crate::backlog::Task>, StoreError>;

    /// Task `id`.
    async fn task_get(&self, id: i64) -> Result<Option<crate::backlog::Task>, StoreError>;

    /// Tasks of open stories' current lists that are `todo`, on a list nobody holds a live
    /// claim on at `now`, whose every blocker is done, and (for a final task) whose list has
    /// nothing else left: in story order, then position, at most `limit`.
    async fn ready(
        &self,
        story: Option<&str>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::backlog::Task>, StoreError>;

    /// Follow-ups (with `status`, only those), oldest first, at most `limit`.
    async fn followup_list(
        &self,
        status: Option<crate::backlog::FollowupStatus>,
        limit: u32,
    ) -> Result<Vec<crate::backlog::Followup>, StoreError>;

    /// Follow-up `id`.
    async fn followup_get(&self, id: i64) -> Result<Option<crate::backlog::Followup>, StoreError>;
}

/// GitHub sync records. Their state changes are the use cases of [`crate::usecase::github`].
#[async_trait]
pub trait GithubSyncStore: Transact {
    /// Records the intent to create `item`'s issue in `repo` (see
    /// [`crate::usecase::github::intend`]).
    async fn github_sync_intend(
        &self,
        repo: &str,
        kind: crate::github::ItemKind,
        item: &str,
        last_seen: i64,
        expected: Option<DateTime<Utc>>,
    ) -> Result<crate::usecase::github::Intent, StoreError> {
        crate::write_in!(self, tx => crate::usecase::github::intend(tx, repo, kind, item, last_seen, expected).await)
    }

    /// Records a push (see [`crate::usecase::github::record_push`]).
    async fn github_sync_record_push(
        &self,
        push: &crate::usecase::github::Push<'_>,
        actor: &str,
    ) -> Result<Option<(crate::github::SyncRecord, Vec<Event>)>, StoreError> {
        crate::write_in!(self, tx => crate::usecase::github::record_push(tx, push, actor).await)
    }

    /// Every record of `repo`, stories first, then by item.
    async fn github_sync_list(
        &self,
        repo: &str,
    ) -> Result<Vec<crate::github::SyncRecord>, StoreError>;
}

/// What `gaia cleanup` reads to plan and archive (see [`crate::retention`]); its deletions are
/// the use cases of [`crate::usecase::cleanup`].
#[async_trait]
pub trait RetentionStore: Transact {
    /// The longest prefix of the stored event log (by seq) whose every event is older than
    /// `cutoff`: a reader resuming after any kept event finds no gap.
    async fn retention_events(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<crate::retention::Span, StoreError>;

    /// The longest prefix of the stored audit records (by id) older than `cutoff`.
    async fn retention_audit(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<crate::retention::Span, StoreError>;

    /// Delivered (`sent`) messages sent before `cutoff`.
    async fn retention_outbox(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<crate::retention::Span, StoreError>;

    /// Requests that ended ([`crate::retention::ENDED_COMMANDS`]) and were decided (or, never
    /// decided, created) before `cutoff`.
    async fn retention_commands(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<crate::retention::Span, StoreError>;

    /// The messages [`retention_outbox`](Self::retention_outbox) selects with
    /// `after < id <= high`, by id, at most `limit`.
    async fn retention_outbox_page(
        &self,
        cutoff: DateTime<Utc>,
        after: i64,
        high: i64,
        limit: u32,
    ) -> Result<Vec<crate::outbox::Message>, StoreError>;

    /// The requests [`retention_commands`](Self::retention_commands) selects with an id after
    /// `after` (in the database's order of ids), at most `limit`.
    async fn retention_command_page(
        &self,
        cutoff: DateTime<Utc>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<crate::commands::CommandRecord>, StoreError>;
}
