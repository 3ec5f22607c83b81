//! Gaia's runtime: what runs besides answering requests. The event hub (which commits exist),
//! outbox delivery (`senders`), the Telegram listener, execution of approved commands, the
//! scheduled GitHub sync (`github`), and the
//! background workers that drive them. `gaia serve` runs it behind the HTTP transport
//! (`gaia-server`); `gaia telegram listen` runs it alone.

pub mod buttons;
pub mod exec;
pub mod github;
pub mod hub;
pub mod senders;
pub mod telegram;
pub mod workers;

use std::sync::Arc;
use std::time::Duration;

use gaia_core::Gaia;
use tokio_util::sync::CancellationToken;

use crate::hub::EventHub;

/// How the workers behave.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// How often the hub polls the store for commits made elsewhere.
    pub poll_interval: Duration,
    /// How often the reaper looks for expired claims and requests.
    pub reap_interval: Duration,
    /// Whether approved commands really run (`ALLOW_COMMAND_EXECUTION=1`); else dry runs.
    pub allow_execution: bool,
    /// Longest an executed command may run before its process group is killed.
    pub exec_timeout: Duration,
    /// Execute approved argv commands as soon as they are approved (`continue_on_approve`).
    pub continue_on_approve: bool,
    /// Which dead notifications the automatic requeue takes.
    pub auto_requeue: gaia_core::outbox::AutoRequeuePolicy,
    /// How often the automatic requeue runs (`None`: never on its own).
    pub auto_requeue_every: Option<Duration>,
    /// Alert thresholds, and how often the checker runs.
    pub thresholds: Vec<gaia_core::metrics::Threshold>,
    pub alert_every: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            reap_interval: Duration::from_secs(1),
            allow_execution: false,
            exec_timeout: Duration::from_secs(600),
            continue_on_approve: false,
            auto_requeue: gaia_core::outbox::AutoRequeuePolicy::default(),
            auto_requeue_every: None,
            thresholds: vec![],
            alert_every: Duration::from_secs(30),
        }
    }
}

/// The running parts, shared by every worker.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub gaia: Gaia,
    pub hub: EventHub,
    pub opts: Arc<RuntimeOptions>,
    /// Cancelled on shutdown: workers and streams end.
    pub shutdown: CancellationToken,
    /// Delivers outbox messages; `None` leaves them queued (tests, CLI-only deployments).
    pub senders: Option<senders::Senders>,
    /// Takes decisions from Telegram; `None` when Telegram is not configured.
    pub telegram: Option<telegram::Listener>,
    /// Syncs the backlog to GitHub on a schedule; `None` when not configured (the default).
    pub github: Option<github::GithubSync>,
}

impl Runtime {
    /// Wires the service to a new hub: this node's own commits wake streams and workers at
    /// once; other processes' commits are learned by the hub's poller.
    pub async fn new(gaia: Gaia, opts: RuntimeOptions) -> Result<Self, gaia_core::StoreError> {
        let hub = EventHub::new(gaia.store().last_seq().await?);
        let hook_hub = hub.clone();
        let gaia = gaia.with_commit_hook(Arc::new(move |events| hook_hub.committed_events(events)));
        Ok(Self {
            gaia,
            hub,
            opts: Arc::new(opts),
            shutdown: CancellationToken::new(),
            senders: None,
            telegram: None,
            github: None,
        })
    }

    /// Listens to Telegram for decisions from `approvers` (numeric user ids).
    pub fn with_telegram(
        mut self,
        bot: gaia_telegram::BotClient,
        approvers: Vec<i64>,
        node: String,
    ) -> Self {
        self.telegram = Some(telegram::Listener {
            bot,
            gaia: self.gaia.clone(),
            approvers,
            node,
            webhook: None,
        });
        self
    }

    /// Takes Telegram's updates through a webhook instead of polling (see
    /// [`telegram::Webhook`]); only with [`with_telegram`](Self::with_telegram) first.
    pub fn with_telegram_webhook(mut self, webhook: telegram::Webhook) -> Self {
        if let Some(listener) = &mut self.telegram {
            listener.webhook = Some(webhook);
        }
        self
    }

    /// Syncs the backlog to GitHub on a schedule (under a leader lease, see [`github`]).
    pub fn with_github(mut self, sync: github::GithubSync) -> Self {
        self.github = Some(sync);
        self
    }

    /// Sends outbox messages through these senders (the outbox worker runs only with them).
    pub fn with_senders(mut self, senders: senders::Senders) -> Self {
        self.senders = Some(senders);
        self
    }
}
