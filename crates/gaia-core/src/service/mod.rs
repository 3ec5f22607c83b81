//! [`Gaia`]: the use cases every transport calls. It validates input, calls the store, and
//! after a commit mirrors the committed events to the optional NDJSON file sink.
//!
//! The service is split by area, one `impl Gaia` block per file: the backlog (`backlog.rs`),
//! claims (`claims.rs`), cleanup: retention, archives and pruning (`cleanup.rs`), events
//! (`events.rs`), the audit trail (`audit.rs`), command approval requests (`commands.rs`), the
//! notification outbox (`outbox.rs`), tokens (`tokens.rs`), metrics (`metrics.rs`), alerts
//! (`alerts.rs`), the command policy (`policy.rs`) and the Telegram updates the webhook takes
//! (`telegram.rs`). This file holds the struct, its
//! builders and the commit mirror.
//!
//! Method names are `verb_noun`:
//! - `get_<noun>` reads one thing by its key (`get_command`, `get_claim`, `get_metrics`);
//!   a missing key is [`Error::NotFound`](crate::error::Error::NotFound) or, for claims, the `free` state;
//! - `list_<nouns>` reads many (`list_claims`, `list_commands`, `list_events_after`,
//!   `list_audit_tail`, `list_messages`, `list_tokens`);
//! - every state change is named by the verb it performs on its noun (`apply_claim`,
//!   `reap_claims`, `emit_event`, `request_command`, `apply_command`, `expire_commands`,
//!   `enqueue_messages`, `requeue_message`, `create_token`, `revoke_token`, `check_alerts`,
//!   `audit_refusal` ...);
//! - `with_<part>` are builders, and `store()` and `policy()` plain accessors.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::event::Event;
use crate::outbox::Target;
use crate::policy::Policy;
use crate::redact::Redactor;
use crate::store::Store;

mod alerts;
mod audit;
mod backlog;
mod claims;
mod cleanup;
mod commands;
mod events;
mod github;
mod metrics;
mod outbox;
mod policy;
mod telegram;
mod tokens;

pub use backlog::StoryView;
pub use cleanup::{Applied, ArchiveCheck, CleanupError, CleanupOptions, Join, Progress};
pub use events::MAX_EVENT_DATA;

/// Called after every commit with the events it committed (in seq order, the newest last), so
/// that a server can wake its stream subscribers at once instead of waiting for its next poll,
/// and hand them these events without reading them back.
pub type CommitHook = Arc<dyn Fn(&[Event]) + Send + Sync>;

/// The entry point of every use case.
#[derive(Clone)]
pub struct Gaia {
    store: Arc<dyn Store>,
    sink: Option<PathBuf>,
    redactor: Redactor,
    on_commit: Option<CommitHook>,
    policy: Arc<Policy>,
    notify: Arc<Vec<Target>>,
}

impl std::fmt::Debug for Gaia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gaia")
            .field("store", &self.store)
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

impl Gaia {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            sink: None,
            redactor: Redactor::default(),
            on_commit: None,
            policy: Arc::new(Policy::default()),
            notify: Arc::new(vec![]),
        }
    }

    /// Where approval requests and decisions are announced (Telegram chat, console ...).
    pub fn with_notify(mut self, targets: Vec<Target>) -> Self {
        self.notify = Arc::new(targets);
        self
    }

    /// The rules that decide commands before a person is asked.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// Calls `hook` with the committed events after every commit made through this service.
    pub fn with_commit_hook(mut self, hook: CommitHook) -> Self {
        self.on_commit = Some(hook);
        self
    }

    /// Also appends every committed event to this NDJSON file (created when missing).
    pub fn with_ndjson_sink(mut self, path: Option<PathBuf>) -> Self {
        self.sink = path;
        self
    }

    /// Secret values that must never be stored in events or audit records.
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Tells the commit hook and appends committed events to the NDJSON sink. The events are
    /// already durable in the store, so a sink failure is logged rather than reported as a
    /// failed call.
    fn mirror(&self, events: &[Event]) {
        if let (Some(hook), false) = (&self.on_commit, events.is_empty()) {
            hook(events);
        }
        let Some(path) = &self.sink else { return };
        if events.is_empty() {
            return;
        }
        let mut buf = String::new();
        for e in events {
            buf.push_str(&e.to_ndjson());
            buf.push('\n');
        }
        // One write on an O_APPEND file: lines from concurrent processes do not interleave.
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(buf.as_bytes()));
        if let Err(e) = res {
            tracing::warn!(path = %path.display(), error = %e, "could not append to the events NDJSON sink");
        }
    }
}
