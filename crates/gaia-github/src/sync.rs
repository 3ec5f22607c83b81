//! The sync: each desired item becomes one issue, created once and patched only when what
//! would be pushed differs from what was last pushed (by hash).
//!
//! A create is crash-safe: the intent (item, repository, sync key) is committed before the
//! POST, and the body ends with the key's marker line. Items with an intent but no issue are
//! reconciled by listing before anything is created; an answer that leaves it unknown whether
//! the create happened (5xx, timeout) is reconciled at once. An intent whose issue is not
//! found is created again only after a settle window, long enough for a create still in
//! flight (a `gh` left running by a killed sync) to have landed. Never a blind re-POST.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use chrono::{DateTime, Utc};
use gaia_core::Gaia;
use gaia_core::github::{ItemKind, SyncRecord, content_hash, marker};
use gaia_core::usecase::github::{Intent, Push, Pushed};
use serde_json::{Value, json};

use crate::error::GhError;
use crate::limiter::{Limiter, Limits};
use crate::reconcile::{self, Issue, Seen};
use crate::runner::Gh;

/// How many times one request is retried after a rate limit answer.
const RATE_RETRIES: u32 = 3;
/// The deployment-wide setting holding the last hour's mutating requests (wall-clock
/// microseconds), so that a sync started right after another (or after a killed one) keeps
/// the pace.
const PACE_SETTING: &str = "github.sync.mutations";

/// An item as its issue should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub kind: ItemKind,
    /// The story slug or the task id.
    pub item: String,
    pub title: String,
    /// The body without the marker line (added here).
    pub body: String,
    pub labels: Vec<String>,
    /// `Some(reason)` (`completed`, `not_planned`) when the issue should be closed.
    pub closed: Option<String>,
}

/// How to sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// `owner/name`.
    pub repo: String,
    /// Reports what would be done; no mutating call, nothing recorded.
    pub dry_run: bool,
    /// Who the events and audit records name.
    pub actor: String,
    /// How long after an unanswered create its intent waits before being created again.
    pub settle: Duration,
    pub limits: Limits,
    /// How many items are worked on at once (1, the default: GitHub asks for requests one
    /// after another). Mutating requests still start one at a time, `limits` apart, but with
    /// more than one a request may start while an earlier one's `gh` still runs, so their
    /// arrivals may come closer than `limits.spacing`: for fake servers only.
    pub concurrency: usize,
}

impl SyncOptions {
    pub fn new(repo: &str, actor: &str) -> Self {
        Self {
            repo: repo.to_owned(),
            dry_run: false,
            actor: actor.to_owned(),
            settle: Duration::from_secs(120),
            limits: Limits::default(),
            concurrency: 1,
        }
    }
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created(i64),
    /// An issue an interrupted earlier create made was found and linked (and updated if
    /// needed).
    Found(i64),
    Updated(i64),
    Closed(i64),
    Unchanged(i64),
    WouldCreate,
    WouldUpdate(i64),
    /// Left for a later run (a create whose outcome is not known yet).
    Pending(String),
    Failed(String),
}

impl Outcome {
    /// `created`, `updated`, `closed`, `unchanged`, `pending` or `failed`.
    pub fn bucket(&self) -> &'static str {
        match self {
            Self::Created(_) | Self::Found(_) | Self::WouldCreate => "created",
            Self::Updated(_) | Self::WouldUpdate(_) => "updated",
            Self::Closed(_) => "closed",
            Self::Unchanged(_) => "unchanged",
            Self::Pending(_) => "pending",
            Self::Failed(_) => "failed",
        }
    }

    pub fn issue(&self) -> Option<i64> {
        match self {
            Self::Created(n)
            | Self::Found(n)
            | Self::Updated(n)
            | Self::Closed(n)
            | Self::Unchanged(n)
            | Self::WouldUpdate(n) => Some(*n),
            _ => None,
        }
    }
}

/// One item's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemResult {
    pub kind: ItemKind,
    pub item: String,
    pub outcome: Outcome,
}

/// Every item's result, and the API calls made.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub items: Vec<ItemResult>,
    /// Listing pages read while reconciling.
    pub listing_pages: u32,
}

impl Summary {
    /// Adds another run's results to these.
    pub fn absorb(&mut self, other: Summary) {
        self.items.extend(other.items);
        self.listing_pages += other.listing_pages;
    }

    /// How many items ended in `bucket` (see [`Outcome::bucket`]).
    pub fn count(&self, bucket: &str) -> usize {
        self.items
            .iter()
            .filter(|r| r.outcome.bucket() == bucket)
            .count()
    }
}

/// The outcome buckets of a summary, in the order they are reported.
pub const BUCKETS: [&str; 6] = [
    "created",
    "updated",
    "closed",
    "unchanged",
    "pending",
    "failed",
];

/// A failure that stops the whole sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Gh(#[from] GhError),
    #[error(transparent)]
    Gaia(#[from] gaia_core::error::Error),
}

/// What a sync shares between the items it works on at once: the pace (held while waiting
/// for a slot, so requests leave one at a time), what reconciling saw, and the highest
/// issue number known.
struct Engine<'a> {
    gaia: &'a Gaia,
    gh: &'a Gh,
    opts: &'a SyncOptions,
    limiter: tokio::sync::Mutex<Limiter>,
    viewer: String,
    seen: Mutex<Seen>,
    highest: Mutex<Option<i64>>,
}

/// Syncs `desired` to `opts.repo`; `progress` is told of each item as it is done.
pub async fn sync(
    gaia: &Gaia,
    gh: &Gh,
    opts: &SyncOptions,
    desired: &[Desired],
    progress: &mut (dyn FnMut(&ItemResult) + Send),
) -> Result<Summary, SyncError> {
    let records: HashMap<(ItemKind, String), SyncRecord> = gaia
        .github_sync_list(&opts.repo)
        .await?
        .into_iter()
        .map(|r| ((r.kind, r.item.clone()), r))
        .collect();
    // An item linked to its issue whose content hashes as last pushed needs no call: when
    // every item is such, the sync makes none at all.
    let work = desired
        .iter()
        .filter(|d| !unchanged(d, records.get(&(d.kind, d.item.clone()))))
        .count();
    let mut summary = Summary::default();
    if work == 0 {
        for d in desired {
            let n = records
                .get(&(d.kind, d.item.clone()))
                .and_then(|r| r.issue)
                .unwrap_or_default();
            let result = ItemResult {
                kind: d.kind,
                item: d.item.clone(),
                outcome: Outcome::Unchanged(n),
            };
            progress(&result);
            summary.items.push(result);
        }
        return Ok(summary);
    }
    // Three independent reads, at once: who the viewer is, whether the primary budget covers
    // the work, and the newest number, read before any intent (which also tells at once,
    // 404/410, that the repository is missing or has issues disabled).
    let (user, budget, highest) = tokio::join!(
        gh.get("user"),
        check_primary_budget(gh, work),
        reconcile::highest_number(gh, &opts.repo),
    );
    let viewer = user?
        .body
        .get("login")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    budget?;
    let highest = highest?;
    // Linked issues carry their own items' keys: a scan for a lost create skips them.
    let mut seen = Seen {
        numbers: records.values().filter_map(|r| r.issue).collect(),
        ..Seen::default()
    };
    let mut highest = highest;
    // Intents without an issue: look for what their creates made before anything is created.
    let pending: Vec<&SyncRecord> = desired
        .iter()
        .filter_map(|d| records.get(&(d.kind, d.item.clone())))
        .filter(|r| r.issue.is_none())
        .collect();
    if let Some(since) = pending.iter().map(|r| r.intent_at).min() {
        let since = since - chrono::Duration::minutes(5);
        summary.listing_pages +=
            reconcile::list_since(gh, &opts.repo, &viewer, since, &mut seen).await?;
        let unfound = pending
            .iter()
            .filter(|r| !seen.by_key.contains_key(&r.sync_key))
            .map(|r| r.last_seen)
            .min();
        if let Some(last_seen) = unfound {
            reconcile::scan_above(gh, &opts.repo, &viewer, last_seen, &mut seen).await?;
        }
        highest = highest.max(seen.highest);
    }
    let engine = Engine {
        gaia,
        gh,
        opts,
        limiter: tokio::sync::Mutex::new(Limiter::new(opts.limits)),
        viewer,
        seen: Mutex::new(seen),
        highest: Mutex::new(Some(highest)),
    };
    engine.restore_pace().await?;
    // Items in order, a few at once; results reported in order.
    let engine = &engine;
    // Boxed with their lifetime named, so the sync stays a `Send` future a worker can spawn.
    type ItemFuture<'f> = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = (&'f Desired, Result<Outcome, SyncError>)> + Send + 'f,
        >,
    >;
    let items: Vec<ItemFuture<'_>> = desired
        .iter()
        .map(|d| {
            let record = records.get(&(d.kind, d.item.clone()));
            Box::pin(async move { (d, engine.one(d, record).await) }) as ItemFuture<'_>
        })
        .collect();
    let mut results = futures_util::stream::iter(items).buffered(opts.concurrency.max(1));
    while let Some((d, outcome)) = results.next().await {
        let outcome = match outcome {
            Ok(o) => o,
            Err(SyncError::Gh(e @ (GhError::NotLoggedIn | GhError::Spawn(_)))) => {
                return Err(e.into());
            }
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let result = ItemResult {
            kind: d.kind,
            item: d.item.clone(),
            outcome,
        };
        progress(&result);
        summary.items.push(result);
    }
    Ok(summary)
}

/// Reads the primary rate limit (`gh api rate_limit`, which does not count against it) and
/// refuses to start when what is left could not cover one call per item and the listings:
/// better to stop before than halfway.
async fn check_primary_budget(gh: &Gh, items: usize) -> Result<(), GhError> {
    let r = gh.get("rate_limit").await?;
    let core = r
        .body
        .pointer("/resources/core")
        .or_else(|| r.body.get("rate"));
    let Some(remaining) = core
        .and_then(|c| c.get("remaining"))
        .and_then(Value::as_u64)
    else {
        return Ok(());
    };
    let needed = u64::try_from(items).unwrap_or(u64::MAX).saturating_add(10);
    if remaining >= needed {
        return Ok(());
    }
    let reset = core
        .and_then(|c| c.get("reset"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let wait = u64::try_from(reset - Utc::now().timestamp()).unwrap_or(0);
    Err(GhError::RateLimited {
        status: 200,
        retry_after: Duration::from_secs(wait.max(60)),
    })
}

/// Locks shared state; a panic elsewhere leaves it usable (it only ever grows).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The body pushed for `d`: its text, then the marker line.
pub fn full_body(d: &Desired, key: &str) -> String {
    if d.body.is_empty() {
        marker(key)
    } else {
        format!("{}\n\n{}", d.body.trim_end(), marker(key))
    }
}

fn state_of(d: &Desired) -> &'static str {
    if d.closed.is_some() { "closed" } else { "open" }
}

fn hash_of(d: &Desired, body: &str) -> String {
    content_hash(&d.title, body, &d.labels, state_of(d))
}

/// The hash a sync records after pushing `d` with sync key `key` (see
/// [`gaia_core::github::content_hash`]).
pub fn pushed_hash(d: &Desired, key: &str) -> String {
    hash_of(d, &full_body(d, key))
}

/// Whether `d` is linked to its issue and hashes as what was last pushed to it.
fn unchanged(d: &Desired, record: Option<&SyncRecord>) -> bool {
    let Some(r) = record else {
        return false;
    };
    r.issue.is_some() && r.pushed_hash.as_deref() == Some(pushed_hash(d, &r.sync_key).as_str())
}

fn hash_of_issue(i: &Issue) -> String {
    content_hash(&i.title, &i.body, &i.labels, &i.state)
}

impl Engine<'_> {
    async fn one(&self, d: &Desired, record: Option<&SyncRecord>) -> Result<Outcome, SyncError> {
        let key = record.map_or_else(
            || gaia_core::github::sync_key(&self.opts.repo, d.kind, &d.item),
            |r| r.sync_key.clone(),
        );
        let body = full_body(d, &key);
        let hash = hash_of(d, &body);
        match record {
            Some(r) if r.issue.is_some() => {
                let n = r.issue.unwrap_or_default();
                self.update(d, n, &body, &hash, r.pushed_hash.as_deref(), false)
                    .await
            }
            Some(r) => {
                let found = lock(&self.seen).by_key.get(&r.sync_key).cloned();
                if let Some(found) = found {
                    if self.opts.dry_run {
                        return Ok(Outcome::WouldUpdate(found.number));
                    }
                    let was = hash_of_issue(&found);
                    self.record(d, found.number, &was, Pushed::Found).await?;
                    return self
                        .update(d, found.number, &body, &hash, Some(&was), true)
                        .await;
                }
                let settled = Utc::now()
                    .signed_duration_since(r.attempt_at)
                    .to_std()
                    .is_ok_and(|age| age >= self.opts.settle);
                if !settled {
                    return Ok(Outcome::Pending(
                        "an earlier create is not found yet; looking again after the settle window"
                            .into(),
                    ));
                }
                self.create(d, &body, &hash, Some(r.attempt_at)).await
            }
            None => self.create(d, &body, &hash, None).await,
        }
    }

    fn raise_highest(&self, n: i64) {
        let mut h = lock(&self.highest);
        *h = Some(h.map_or(n, |h| h.max(n)));
    }

    async fn record(
        &self,
        d: &Desired,
        issue: i64,
        hash: &str,
        what: Pushed,
    ) -> Result<(), SyncError> {
        let push = Push {
            repo: &self.opts.repo,
            kind: d.kind,
            item: &d.item,
            issue,
            hash,
            what,
        };
        self.gaia
            .github_sync_record_push(&push, &self.opts.actor)
            .await?;
        Ok(())
    }

    async fn restore_pace(&self) -> Result<(), SyncError> {
        let text = self
            .gaia
            .store()
            .setting_get_or_init(PACE_SETTING, "[]")
            .await
            .map_err(gaia_core::error::Error::from)?;
        let sent: Vec<i64> = serde_json::from_str(&text).unwrap_or_default();
        self.limiter
            .lock()
            .await
            .restore(Instant::now(), Utc::now().timestamp_micros(), &sent);
        Ok(())
    }

    /// Waits for the limiter and records the request about to go, in the store too.
    async fn pace(&self) -> Result<(), SyncError> {
        // Held until the request is counted and saved: requests leave one at a time.
        let mut limiter = self.limiter.lock().await;
        limiter.acquire().await;
        let sent = limiter.to_wall(Instant::now(), Utc::now().timestamp_micros());
        self.gaia
            .store()
            .setting_set(
                PACE_SETTING,
                &serde_json::to_string(&sent).unwrap_or_default(),
            )
            .await
            .map_err(gaia_core::error::Error::from)?;
        Ok(())
    }

    /// A mutating call, paced, retried after rate limit answers.
    async fn mutate(&self, method: &str, path: &str, body: &Value) -> Result<Value, SyncError> {
        let mut tries = 0;
        loop {
            self.pace().await?;
            match self.gh.api(method, path, Some(body)).await {
                Ok(r) => return Ok(r.body),
                Err(GhError::RateLimited { retry_after, .. }) if tries < RATE_RETRIES => {
                    tries += 1;
                    self.limiter.lock().await.hold(Instant::now() + retry_after);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Creates `d`'s issue, for the attempt seen last (`expected`; `None`: no record).
    async fn create(
        &self,
        d: &Desired,
        body: &str,
        hash: &str,
        expected: Option<DateTime<Utc>>,
    ) -> Result<Outcome, SyncError> {
        if self.opts.dry_run {
            return Ok(Outcome::WouldCreate);
        }
        let known = *lock(&self.highest);
        let highest = match known {
            Some(h) => h,
            None => {
                let h = reconcile::highest_number(self.gh, &self.opts.repo).await?;
                self.raise_highest(h);
                h
            }
        };
        let Intent { record: intent, go } = self
            .gaia
            .github_sync_intend(&self.opts.repo, d.kind, &d.item, highest, expected)
            .await?;
        if let Some(n) = intent.issue {
            // Linked meanwhile by another sync.
            return self
                .update(d, n, body, hash, intent.pushed_hash.as_deref(), false)
                .await;
        }
        if !go {
            return Ok(Outcome::Pending(
                "another sync is creating this issue; looking again after the settle window".into(),
            ));
        }
        let payload = json!({"title": d.title, "body": body, "labels": d.labels});
        let path = format!("repos/{}/issues", self.opts.repo);
        match self.mutate("POST", &path, &payload).await {
            Ok(v) => {
                let n = v
                    .get("number")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| GhError::Other {
                        code: Some(0),
                        status: None,
                        message: "the created issue has no number".into(),
                    })?;
                self.raise_highest(n);
                lock(&self.seen).numbers.insert(n);
                let created_hash = content_hash(&d.title, body, &d.labels, "open");
                self.record(d, n, &created_hash, Pushed::Created).await?;
                if d.closed.is_some() {
                    return self
                        .update(d, n, body, hash, Some(&created_hash), false)
                        .await;
                }
                Ok(Outcome::Created(n))
            }
            Err(SyncError::Gh(e)) if e.is_ambiguous() => {
                // The issue may exist: look for it now, by number (listings lag).
                // Numbers already seen or linked carry other keys: only the rest is fetched.
                let mut seen = Seen {
                    numbers: lock(&self.seen).numbers.clone(),
                    ..Seen::default()
                };
                reconcile::scan_above(
                    self.gh,
                    &self.opts.repo,
                    &self.viewer,
                    intent.last_seen,
                    &mut seen,
                )
                .await?;
                self.raise_highest(seen.highest);
                // Looked up after merging: a scan for another item may have fetched it.
                let found = {
                    let mut shared = lock(&self.seen);
                    shared.merge(seen);
                    shared.by_key.get(&intent.sync_key).cloned()
                };
                match found {
                    Some(found) => {
                        let was = hash_of_issue(&found);
                        let n = found.number;
                        self.record(d, n, &was, Pushed::Found).await?;
                        self.update(d, n, body, hash, Some(&was), true).await
                    }
                    None => Ok(Outcome::Pending(format!(
                        "create unanswered ({e}); looking again after the settle window"
                    ))),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn update(
        &self,
        d: &Desired,
        n: i64,
        body: &str,
        hash: &str,
        pushed: Option<&str>,
        found: bool,
    ) -> Result<Outcome, SyncError> {
        if pushed == Some(hash) {
            return Ok(if found {
                Outcome::Found(n)
            } else {
                Outcome::Unchanged(n)
            });
        }
        if self.opts.dry_run {
            return Ok(Outcome::WouldUpdate(n));
        }
        let mut payload = json!({
            "title": d.title,
            "body": body,
            "labels": d.labels,
            "state": state_of(d),
        });
        if let Some(reason) = &d.closed {
            payload["state_reason"] = json!(reason);
        }
        let path = format!("repos/{}/issues/{n}", self.opts.repo);
        self.mutate("PATCH", &path, &payload).await?;
        let what = if d.closed.is_some() {
            Pushed::Closed
        } else {
            Pushed::Updated
        };
        self.record(d, n, hash, what).await?;
        Ok(if found {
            Outcome::Found(n)
        } else if d.closed.is_some() {
            Outcome::Closed(n)
        } else {
            Outcome::Updated(n)
        })
    }
}
