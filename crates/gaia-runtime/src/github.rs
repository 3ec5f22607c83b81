//! The scheduled GitHub sync of `gaia serve`: every interval, the backlog (its stories, and
//! its tasks when configured) is synced to one repository through `gh`, exactly as
//! `gaia sync github` does, closed issues optionally pulled back first.
//!
//! One sync per deployment: the worker holds a Gaia claim as its leader lease (as the
//! Telegram poller does) and renews it during a run; a node that loses it stops its run at
//! once, which the sync's write-ahead records make safe. The holder writes what it did (last
//! run, counts, last error, next run, its own name) to a deployment-wide setting, so every
//! node shows the same state.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use gaia_core::Gaia;
use gaia_core::github::WorkerState;
use gaia_core::names::ClaimKey;
use gaia_core::time::rfc3339;
use gaia_github::backlog::{Loaded, Scope, sync_backlog};
use gaia_github::pull::PullResult;
use gaia_github::{Gh, SyncOptions};
use tokio_util::sync::CancellationToken;

/// The leader lease: renewed well within its TTL, during runs too.
const LEASE_TTL: Duration = Duration::from_secs(60);
const LEASE_RENEW: Duration = Duration::from_secs(20);
/// The claim that is the lease.
const LEASE_STORY: &str = "gaia-github";
const LEASE_LIST: &str = "sync";

/// What to sync, how often, and as which node.
#[derive(Debug, Clone)]
pub struct GithubSync {
    pub gaia: Gaia,
    pub gh: Gh,
    /// The repository, the pacing and the settle window (`actor` is set from `node`).
    pub opts: SyncOptions,
    /// Whether tasks become issues too.
    pub tasks: bool,
    /// Whether closed issues are brought back before each run.
    pub pull: bool,
    pub interval: Duration,
    /// Identifies this node in the lease and the state.
    pub node: String,
}

/// How one run ended.
struct RunResult {
    counts: BTreeMap<String, u64>,
    error: Option<String>,
}

impl GithubSync {
    /// Syncs every interval while holding the lease, until cancelled. Returns how many runs
    /// this node made.
    pub async fn run(mut self, cancel: CancellationToken) -> u64 {
        self.opts.actor = format!("gaia-github@{}", self.node);
        let Ok(key) = ClaimKey::new(LEASE_STORY, LEASE_LIST) else {
            return 0;
        };
        let mut leader = false;
        let mut runs = 0;
        let mut next = tokio::time::Instant::now();
        let mut state = WorkerState::default();
        while !cancel.is_cancelled() {
            let was = leader;
            leader = self.lease(&key, leader).await;
            if leader && !was {
                // Taken over: keep what the last holder reported, under this node's name.
                state = self
                    .gaia
                    .github_worker_state()
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                state.holder.clone_from(&self.node);
                state.runs = 0;
                runs = 0;
                next = tokio::time::Instant::now();
            }
            if leader && tokio::time::Instant::now() >= next {
                state.last_started = Some(rfc3339(Utc::now()));
                self.record(&mut state, None).await;
                let result = self.run_once(&key, &cancel).await;
                runs += 1;
                next = tokio::time::Instant::now() + self.interval;
                state.last_finished = Some(rfc3339(Utc::now()));
                state.counts = result.counts;
                state.last_error = result.error;
                state.runs = runs;
                if !cancel.is_cancelled() {
                    self.record(&mut state, Some(self.interval)).await;
                }
            }
            let pause = if leader {
                LEASE_RENEW.min(next.saturating_duration_since(tokio::time::Instant::now()))
            } else {
                LEASE_RENEW
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        if leader {
            let _ = self.gaia.release_lease(&key, &self.node).await;
        }
        runs
    }

    /// Writes `state` (with the next run `after` from now, when one is planned).
    async fn record(&self, state: &mut WorkerState, after: Option<Duration>) {
        state.repo.clone_from(&self.opts.repo);
        state.tasks = self.tasks;
        state.next_run = after
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| rfc3339(Utc::now() + d));
        state.updated_at = rfc3339(Utc::now());
        if let Err(e) = self.gaia.github_worker_record(state).await {
            tracing::warn!(error = %e, "github sync: cannot record its state");
        }
    }

    /// One pull and sync, renewing the lease meanwhile; stopped (safely: every create has its
    /// intent recorded first) when the lease is lost or the server shuts down.
    async fn run_once(&self, key: &ClaimKey, cancel: &CancellationToken) -> RunResult {
        let work = self.pull_and_sync();
        tokio::pin!(work);
        loop {
            tokio::select! {
                r = &mut work => return r,
                () = cancel.cancelled() => return RunResult {
                    counts: BTreeMap::new(),
                    error: Some("stopped by shutdown".into()),
                },
                () = tokio::time::sleep(LEASE_RENEW) => {
                    if !self.lease(key, true).await {
                        return RunResult {
                            counts: BTreeMap::new(),
                            error: Some("the lease was lost during the run".into()),
                        };
                    }
                }
            }
        }
    }

    async fn pull_and_sync(&self) -> RunResult {
        let mut counts = BTreeMap::new();
        let mut errors = Vec::new();
        let repo = &self.opts.repo;
        if self.pull {
            match gaia_github::pull::pull(&self.gaia, &self.gh, repo, &self.opts.actor).await {
                Ok(pulled) => {
                    counts.insert("pulled".to_owned(), pulled.len() as u64);
                    for p in pulled {
                        if let PullResult::Failed(why) = p.result {
                            errors.push(format!("pull {} {}: {why}", p.kind.as_str(), p.item));
                        }
                    }
                }
                Err(e) => errors.push(format!("pull: {e}")),
            }
        }
        let scope = Scope {
            story: None,
            tasks: self.tasks,
        };
        let loaded = match Loaded::read(&self.gaia, &scope, repo).await {
            Ok(l) => l,
            Err(e) => {
                errors.push(e.to_string());
                return RunResult {
                    counts,
                    error: Some(errors.join("; ")),
                };
            }
        };
        match sync_backlog(&self.gaia, &self.gh, &self.opts, &loaded, &mut |_| {}).await {
            Ok(summary) => {
                for b in gaia_github::sync::BUCKETS {
                    counts.insert(b.to_owned(), summary.count(b) as u64);
                }
                for r in &summary.items {
                    if let gaia_github::Outcome::Failed(why) = &r.outcome {
                        errors.push(format!("{} {}: {why}", r.kind.as_str(), r.item));
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        if !errors.is_empty() {
            tracing::warn!(errors = errors.len(), first = %errors[0], "github sync: run had failures");
        }
        RunResult {
            counts,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }

    /// Takes or renews the lease; whether this node holds it.
    async fn lease(&self, key: &ClaimKey, held: bool) -> bool {
        match self.gaia.hold_lease(key, &self.node, LEASE_TTL, held).await {
            Ok(holds) => holds,
            Err(e) => {
                tracing::warn!(error = %e, "github sync: cannot hold the lease");
                false
            }
        }
    }
}
