//! [`Gaia`]: the use cases every transport calls. It validates input, calls the store, and
//! after a commit mirrors the committed events to the optional NDJSON file sink.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use crate::audit::{AuditRecord, Verifier, VerifyReport};
use crate::claims::{ClaimResult, Request};
use crate::commands::{Action, CommandRecord, CommandSpec, Decider, NewCommand, Refusal, Status};
use crate::error::{Error, StoreError, ValidationError};
use crate::event::{Event, EventFilter, NewEvent};
use crate::metrics::{Check, Snapshot, Threshold, check};
use crate::names::{ClaimKey, check_event_type, check_name, check_subject};
use crate::outbox::{AutoRequeuePolicy, Message, NewMessage, Status as OutboxStatus, Target};
use crate::policy::{Decision as PolicyDecision, Policy, Verdict};
use crate::redact::Redactor;
use crate::store::{Change, Store};
use crate::tokens::{self, Role, TokenInfo};

/// Largest `data` payload of an emitted event, serialised.
pub const MAX_EVENT_DATA: usize = 64 * 1024;

/// Records per page when walking the audit trail.
const AUDIT_PAGE: u32 = 1_000;

/// Called after every commit with the newest committed seq, so that a server can wake its
/// stream subscribers at once instead of waiting for its next poll.
pub type CommitHook = Arc<dyn Fn(i64) + Send + Sync>;

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

/// The event and audit record of a token change. Neither carries the token or its hash.
pub fn token_change(kind: &str, info: &TokenInfo) -> (Vec<NewEvent>, Vec<crate::audit::NewAudit>) {
    let subject = format!("token/{}", info.name);
    let data = json!({ "name": info.name, "role": info.role.as_str() });
    let action = match kind {
        "token.created" => "token.create",
        "token.revoked" => "token.revoke",
        other => other,
    };
    (
        vec![NewEvent::new(
            kind,
            &info.created_by,
            &subject,
            data.clone(),
        )],
        vec![crate::audit::NewAudit::new(
            &info.created_by,
            action,
            &subject,
            "ok",
            data,
        )],
    )
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

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Applies the policy to a command and records the decision (event and audit record).
    pub async fn policy_decide(
        &self,
        spec: &CommandSpec,
        actor: &str,
        context: serde_json::Value,
    ) -> Result<PolicyDecision, Error> {
        let d = self.policy.check(spec);
        let data = self.redactor.json(json!({
            "command": spec.display(),
            "verdict": d.verdict.as_str(),
            "rule": d.rule,
            "reason": d.reason,
            "context": context,
        }));
        let change = Change {
            events: vec![NewEvent::new(
                "policy.decided",
                actor,
                "policy",
                data.clone(),
            )],
            audit: vec![crate::audit::NewAudit::new(
                actor,
                "policy.decide",
                "policy",
                d.verdict.as_str(),
                data,
            )],
        };
        let events = self.store.append(change).await?;
        self.mirror(&events);
        Ok(d)
    }

    /// Calls `hook` with the newest seq after every commit made through this service.
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

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Acquires, refreshes or releases a claim. A lock timeout is an outcome, not an error: the
    /// caller is expected to retry.
    pub async fn claim(&self, req: &Request) -> Result<ClaimResult, Error> {
        match self.store.claim(req).await {
            Ok((result, events)) => {
                self.mirror(&events);
                Ok(result)
            }
            Err(StoreError::LockTimeout) => Ok(ClaimResult::lock_timeout(req.key().clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// The state of one key (`free` when it was never claimed).
    pub async fn inspect(&self, key: &ClaimKey) -> Result<ClaimResult, Error> {
        let now = self.store.now().await?;
        let row = self
            .store
            .claim_get(key)
            .await?
            .unwrap_or_else(|| crate::claims::ClaimRow::vacant(key.clone()));
        Ok(ClaimResult::observe(&row, now))
    }

    /// Live claims; with `all`, also those whose TTL passed without a release.
    pub async fn list_claims(&self, all: bool) -> Result<Vec<ClaimResult>, Error> {
        let now = self.store.now().await?;
        Ok(self
            .store
            .claim_list()
            .await?
            .iter()
            .filter(|row| all || row.is_live(now))
            .map(|row| ClaimResult::observe(row, now))
            .collect())
    }

    /// Emits an event of the caller's own (`chat.message`, `story.updated` ...), audited.
    pub async fn emit(
        &self,
        kind: &str,
        actor: &str,
        subject: &str,
        data: serde_json::Value,
    ) -> Result<Event, Error> {
        self.emit_for(kind, actor, None, subject, data).await
    }

    /// [`emit`](Self::emit) by an authenticated `actor` acting for `agent` (an agent behind a
    /// shared token): the actor is what the event and the audit record name; the agent is kept
    /// beside it in the audit record.
    pub async fn emit_for(
        &self,
        kind: &str,
        actor: &str,
        agent: Option<&str>,
        subject: &str,
        data: serde_json::Value,
    ) -> Result<Event, Error> {
        check_event_type(kind)?;
        check_name("actor", actor)?;
        let agent = agent.filter(|a| *a != actor);
        if let Some(a) = agent {
            check_name("agent", a)?;
        }
        check_subject(subject)?;
        crate::text::check_json("event data", &data)?;
        let data = self.redactor.json(data);
        let subject = self.redactor.text(subject);
        if data.to_string().len() > MAX_EVENT_DATA {
            return Err(ValidationError::new(format!(
                "event data is larger than {} KiB",
                MAX_EVENT_DATA / 1024
            ))
            .into());
        }
        let change = Change {
            events: vec![NewEvent::new(kind, actor, &subject, data)],
            audit: vec![crate::audit::NewAudit::new(
                actor,
                "event.emit",
                &subject,
                "ok",
                match agent {
                    Some(a) => json!({ "type": kind, "agent": a }),
                    None => json!({ "type": kind }),
                },
            )],
        };
        let events = self.store.append(change).await?;
        self.mirror(&events);
        events
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("append returned no event".into()).into())
    }

    pub async fn events_after(
        &self,
        since: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<Event>, Error> {
        if since < 0 {
            return Err(ValidationError::new("--since must be 0 or a positive event seq").into());
        }
        Ok(self.store.events_after(since, filter, limit).await?)
    }

    pub async fn audit_tail(&self, limit: u32) -> Result<Vec<AuditRecord>, Error> {
        Ok(self.store.audit_tail(limit).await?)
    }

    /// Walks the whole trail and reports the first record that breaks the chain.
    pub async fn audit_verify(&self) -> Result<VerifyReport, Error> {
        let head = self.store.audit_head().await?;
        let mut verifier = Verifier::new(&head);
        let mut after = head.anchor_id;
        loop {
            let page = self.store.audit_page(after, AUDIT_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            if !page.iter().all(|r| verifier.feed(r)) {
                break;
            }
        }
        Ok(verifier.finish(&head))
    }

    /// Files a command approval request. Commands that contain a configured secret are
    /// refused: the request, its events and its audit records would all carry it.
    pub async fn request_command(&self, new: &NewCommand) -> Result<CommandRecord, Error> {
        let text = match &new.spec {
            CommandSpec::Argv(a) => a.join(" "),
            CommandSpec::Shell(s) => s.clone(),
        };
        let text = format!(
            "{text} {} {}",
            new.cwd.as_deref().unwrap_or(""),
            new.reason.as_deref().unwrap_or("")
        );
        if self.redactor.text(&text) != text {
            return Err(ValidationError::new(
                "the command contains a configured secret; pass secrets through the environment, not the command line",
            )
            .into());
        }
        let (record, events) = self.store.command_create(new, &self.notify).await?;
        self.mirror(&events);
        // The policy decides before a person is asked; `ask` leaves the request pending.
        let d = self
            .policy_decide(&record.spec, "policy", json!({ "id": record.id }))
            .await?;
        let by = Decider {
            name: "policy".into(),
            via: "policy".into(),
        };
        let action = match d.verdict {
            Verdict::Allow => Action::Approve {
                by,
                reason: Some(d.reason),
            },
            Verdict::Deny => Action::Deny {
                by,
                reason: Some(d.reason),
            },
            Verdict::Ask => return Ok(record),
        };
        // A refusal here (a test request cannot be approved before allow-test) leaves it
        // pending for a person.
        match self.command_apply(&record.id, &action).await? {
            Ok(decided) => Ok(decided),
            Err(refusal) => Ok(*refusal.current),
        }
    }

    pub async fn command(&self, id: &str) -> Result<CommandRecord, Error> {
        self.store
            .command_get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no command request '{id}'")))
    }

    pub async fn commands(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, Error> {
        Ok(self.store.command_list(status, limit).await?)
    }

    /// Decides, cancels or executes a request. A refusal (already decided, the requester
    /// deciding, expired ...) is `Ok(Err(refusal))` carrying the request as it stands.
    pub async fn command_apply(
        &self,
        id: &str,
        action: &Action,
    ) -> Result<Result<CommandRecord, Refusal>, Error> {
        use crate::usecase::commands::Applied;
        action.check()?;
        match self.store.command_apply(id, action, &self.notify).await? {
            Applied::Done { record, events } => {
                self.mirror(&events);
                Ok(Ok(*record))
            }
            Applied::Refused { refusal, events } => {
                self.mirror(&events);
                Ok(Err(refusal))
            }
            Applied::Missing => Err(Error::NotFound(format!("no command request '{id}'"))),
        }
    }

    /// Expires pending requests past their expiry.
    pub async fn expire_commands(&self, limit: u32) -> Result<Vec<Event>, Error> {
        let events = self.store.command_expire_due(limit, &self.notify).await?;
        self.mirror(&events);
        Ok(events)
    }

    /// Enqueues notifications (duplicates by dedupe key are skipped and counted).
    pub async fn enqueue(&self, messages: &[NewMessage]) -> Result<Vec<i64>, Error> {
        let (ids, events) = self.store.outbox_enqueue(messages).await?;
        self.mirror(&events);
        Ok(ids)
    }

    /// Outbox messages, newest first.
    pub async fn queue(
        &self,
        status: Option<OutboxStatus>,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        Ok(self.store.outbox_list(status, limit).await?)
    }

    /// Requeues one dead message. `NotFound` when there is no such dead message.
    pub async fn requeue(&self, id: i64, actor: &str) -> Result<Message, Error> {
        match self.store.outbox_requeue(id, actor, false).await? {
            Some((m, events)) => {
                self.mirror(&events);
                Ok(m)
            }
            None => Err(Error::NotFound(format!("no dead message #{id}"))),
        }
    }

    /// Requeues the dead messages the policy allows (oldest first, at most `max_per_run`).
    /// With `dry_run`, only says which.
    pub async fn auto_requeue(
        &self,
        policy: &AutoRequeuePolicy,
        dry_run: bool,
        actor: &str,
    ) -> Result<Vec<Message>, Error> {
        let now = self.store.now().await?;
        let mut dead = self
            .store
            .outbox_list(Some(OutboxStatus::Dead), 10_000)
            .await?;
        dead.reverse();
        let chosen: Vec<Message> = dead
            .into_iter()
            .filter(|m| policy.eligible(m, now))
            .take(policy.max_per_run as usize)
            .collect();
        if dry_run {
            return Ok(chosen);
        }
        let mut done = Vec::with_capacity(chosen.len());
        for m in chosen {
            // Another requeue may have got there first: skip it.
            if let Some((back, events)) = self.store.outbox_requeue(m.id, actor, true).await? {
                self.mirror(&events);
                done.push(back);
            }
        }
        Ok(done)
    }

    /// The metrics, derived from the store.
    pub async fn metrics(&self) -> Result<Snapshot, Error> {
        let mut s = Snapshot::default();
        for name in [
            "telegram.retry.attempt.error",
            "telegram.retry.attempt.retry_after",
            "telegram.retry.moved_permanent",
            "telegram.sent",
            "notify.requeued.manual",
            "notify.requeued.auto",
            "notify.duplicate_skipped",
            "notify.fallback",
        ] {
            s.set(name, 0.0);
        }
        for (kind, outcome, n) in self.store.notify_event_counts().await? {
            let n = n as f64;
            let name = match (kind.as_str(), outcome.as_str()) {
                ("notify.retry", "retry_after") => "telegram.retry.attempt.retry_after".to_owned(),
                ("notify.retry", _) => "telegram.retry.attempt.error".to_owned(),
                ("notify.dead", _) => "telegram.retry.moved_permanent".to_owned(),
                ("notify.sent", _) => "telegram.sent".to_owned(),
                ("notify.requeued", "auto") => "notify.requeued.auto".to_owned(),
                ("notify.requeued", _) => "notify.requeued.manual".to_owned(),
                (other, _) => other.to_owned(),
            };
            let prev = s.get(&name).unwrap_or(0.0);
            s.set(&name, prev + n);
        }
        let counts = self.store.outbox_counts().await?;
        s.set("outbox.dead", counts.dead as f64);
        s.set("outbox.pending", counts.pending as f64);
        let pending = self
            .store
            .command_list(Some(Status::Pending), 10_000)
            .await?;
        s.set("approvals.pending", pending.len() as f64);
        s.set("claims.live", self.list_claims(false).await?.len() as f64);
        s.set("events.appended", self.store.last_seq().await? as f64);
        // Approval latency over the latest decided requests decided by a person.
        let mut latencies: Vec<f64> = self
            .store
            .command_list(None, 1000)
            .await?
            .iter()
            .filter(|r| r.decided_via.as_deref().is_some_and(|v| v != "policy"))
            .filter_map(|r| {
                r.decided_at
                    .map(|d| (d - r.created_at).num_milliseconds() as f64 / 1000.0)
            })
            .collect();
        let mut histogram =
            crate::metrics::Histogram::new(&[1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0]);
        for l in &latencies {
            histogram.observe(*l);
        }
        s.1.insert("approval.latency_seconds".into(), histogram);
        latencies.sort_by(f64::total_cmp);
        if !latencies.is_empty() {
            let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
            s.set("approval.latency.p50_seconds", at(0.5));
            s.set("approval.latency.p99_seconds", at(0.99));
        }
        Ok(s)
    }

    /// Sends an alert to every notify target (Telegram first, console when Telegram is not
    /// configured). `payload` carries at least `text`.
    pub async fn notify_alert(&self, payload: serde_json::Value) -> Result<(), Error> {
        let messages: Vec<NewMessage> = self
            .notify
            .iter()
            .map(|t| NewMessage {
                channel: t.channel,
                target: t.target.clone(),
                kind: "alert".into(),
                payload: payload.clone(),
                dedupe_key: None,
            })
            .collect();
        self.enqueue(&messages).await?;
        Ok(())
    }

    /// Checks the thresholds. Unless `dry_run`, a newly breached threshold fires once
    /// (`alert.fired`, an alert message to the notify targets) and a cleared one resolves
    /// (`alert.resolved`); the firing state is kept in the store, so restarts and several
    /// nodes do not fire twice.
    pub async fn alert_check(
        &self,
        thresholds: &[Threshold],
        dry_run: bool,
    ) -> Result<Vec<Check>, Error> {
        let snapshot = self.metrics().await?;
        let checks = check(&snapshot, thresholds);
        if dry_run {
            return Ok(checks);
        }
        for c in &checks {
            let key = format!("alert.firing.{}", c.metric);
            let firing = self.store.setting_get_or_init(&key, "0").await? == "1";
            let (kind, text) = match (c.breached, firing) {
                (true, false) => (
                    "alert.fired",
                    format!(
                        "ALERT {} = {} (threshold {})",
                        c.metric, c.value, c.threshold
                    ),
                ),
                (false, true) => (
                    "alert.resolved",
                    format!(
                        "RESOLVED {} = {} (threshold {})",
                        c.metric, c.value, c.threshold
                    ),
                ),
                _ => continue,
            };
            self.store
                .setting_set(&key, if c.breached { "1" } else { "0" })
                .await?;
            self.emit(kind, "gaia", &format!("alert/{}", c.metric), json!(c))
                .await?;
            self.notify_alert(json!({ "text": text, "metric": c.metric, "value": c.value }))
                .await?;
        }
        Ok(checks)
    }

    /// Emits `claim.expired` for acquisitions whose TTL passed without a release.
    pub async fn reap_claims(&self, limit: u32) -> Result<Vec<Event>, Error> {
        let events = self.store.claim_reap(limit).await?;
        self.mirror(&events);
        Ok(events)
    }

    /// Creates a token and returns it with its secret, which is shown once and never stored.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        actor: &str,
    ) -> Result<(TokenInfo, String), Error> {
        check_name("token name", name)?;
        let secret = tokens::generate(role);
        let info = TokenInfo {
            name: name.to_owned(),
            role,
            created_at: self.store.now().await?,
            created_by: actor.to_owned(),
            revoked_at: None,
        };
        let events = self
            .store
            .token_create(&info, &tokens::hash(&secret))
            .await?;
        self.mirror(&events);
        Ok((info, secret))
    }

    /// Stores a token whose secret was chosen elsewhere (the admin token from configuration).
    pub async fn import_token(
        &self,
        name: &str,
        role: Role,
        secret: &str,
        actor: &str,
    ) -> Result<TokenInfo, Error> {
        check_name("token name", name)?;
        let info = TokenInfo {
            name: name.to_owned(),
            role,
            created_at: self.store.now().await?,
            created_by: actor.to_owned(),
            revoked_at: None,
        };
        let events = self
            .store
            .token_create(&info, &tokens::hash(secret))
            .await?;
        self.mirror(&events);
        Ok(info)
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        Ok(self.store.token_list().await?)
    }

    /// Revokes a token; `Ok(false)` when no live token has that name.
    pub async fn revoke_token(&self, name: &str, actor: &str) -> Result<bool, Error> {
        match self.store.token_revoke(name, actor).await? {
            Some(events) => {
                self.mirror(&events);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The live token a presented secret belongs to.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<TokenInfo>, Error> {
        Ok(self.store.token_lookup(&tokens::hash(secret)).await?)
    }

    /// Records a refused request (wrong token, missing role) in the audit trail.
    pub async fn audit_refusal(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        outcome: &str,
        details: serde_json::Value,
    ) -> Result<(), Error> {
        let change = Change {
            events: vec![],
            audit: vec![crate::audit::NewAudit::new(
                actor,
                action,
                self.redactor.text(subject),
                outcome,
                self.redactor.json(details),
            )],
        };
        self.store.append(change).await?;
        Ok(())
    }

    /// Appends committed events to the NDJSON sink. The events are already durable in the
    /// store, so a sink failure is logged rather than reported as a failed call.
    fn mirror(&self, events: &[Event]) {
        if let (Some(hook), Some(last)) = (&self.on_commit, events.last()) {
            hook(last.seq);
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
