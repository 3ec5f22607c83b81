//! `tools/call`: each tool parses its arguments, checks the caller's role, and calls the
//! [`Gaia`] service as the API route of the same action does. Errors are tool results with
//! `isError`, never protocol errors, so the agent's model reads them.

use std::time::Duration;

use gaia_core::Gaia;
use gaia_core::backlog::{NewFollowup, Taken};
use gaia_core::claims::{ClaimResult, Holder, MIN_TTL, Request};
use gaia_core::event::EventFilter;
use gaia_core::names::ClaimKey;
use gaia_core::time::{MAX_DURATION, parse_duration, rfc3339};
use gaia_core::tokens::Role;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::caller::Caller;

/// Largest `limit` a listing tool takes.
pub const MAX_LIMIT: u32 = 200;

/// Why a tool call failed; shown to the agent as the result's text.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("invalid arguments: {0}")]
    Arguments(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The action does not apply now (a request already decided, say).
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Gaia(#[from] gaia_core::error::Error),
}

impl From<gaia_core::ValidationError> for ToolError {
    fn from(e: gaia_core::ValidationError) -> Self {
        Self::Gaia(e.into())
    }
}

/// What a tool answers: the JSON it returns.
pub type ToolResult = Result<Value, ToolError>;

/// Parses a tool's arguments (absent arguments read as `{}`).
pub fn args<T: DeserializeOwned>(v: Value) -> Result<T, ToolError> {
    let v = if v.is_null() { json!({}) } else { v };
    serde_json::from_value(v).map_err(|e| ToolError::Arguments(e.to_string()))
}

/// The lease a claim asks for, checked like the API's.
fn ttl(text: Option<&str>) -> Result<Option<Duration>, ToolError> {
    let Some(t) = text.map(parse_duration).transpose()? else {
        return Ok(None);
    };
    if t < MIN_TTL || t > MAX_DURATION {
        return Err(ToolError::Arguments(format!(
            "ttl must be 1s to {}s",
            MAX_DURATION.as_secs()
        )));
    }
    Ok(Some(t))
}

fn key(story: &str, todolist: Option<&str>) -> Result<ClaimKey, ToolError> {
    Ok(ClaimKey::new(
        story,
        todolist.unwrap_or(ClaimKey::DEFAULT_TODOLIST),
    )?)
}

fn limit(l: Option<u32>) -> Result<u32, ToolError> {
    match l.unwrap_or(20) {
        n @ 1..=MAX_LIMIT => Ok(n),
        _ => Err(ToolError::Arguments(format!(
            "limit must be 1 to {MAX_LIMIT}"
        ))),
    }
}

/// What the tools share: the service, the caller and the defaults.
#[derive(Debug, Clone)]
pub struct Tools {
    pub gaia: Gaia,
    pub caller: Caller,
    pub default_ttl: Duration,
    pub waits: crate::approvals::Waits,
    /// Where refusals are audited (`None`: written directly).
    pub refusals: Option<std::sync::Arc<dyn crate::caller::RefusalAudit>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimArgs {
    story: String,
    todolist: Option<String>,
    agent: Option<String>,
    operator: Option<String>,
    fingerprint: Option<String>,
    ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseArgs {
    story: String,
    todolist: Option<String>,
    agent: Option<String>,
    fingerprint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadyArgs {
    story: Option<String>,
    limit: Option<u32>,
    #[serde(default)]
    take: bool,
    agent: Option<String>,
    ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowupArgs {
    story: String,
    path: String,
    task: String,
    title: String,
    body: String,
    agent: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventArgs {
    #[serde(rename = "type")]
    kind: String,
    subject: String,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecentArgs {
    since: Option<i64>,
    limit: Option<u32>,
    #[serde(rename = "type")]
    kind: Option<String>,
    subject: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

impl Tools {
    /// Refuses, audited, a caller whose role is below `needed` for `action`.
    pub(crate) async fn require(&self, needed: Role, action: &str) -> Result<(), ToolError> {
        self.caller
            .require(&self.gaia, self.refusals.as_deref(), needed, action)
            .await
    }

    fn agent<'a>(&'a self, given: Option<&'a str>) -> &'a str {
        given.unwrap_or(&self.caller.name)
    }

    fn by(&self, req: Request) -> Request {
        match &self.caller.principal {
            Some(p) => req.by(p),
            None => req,
        }
    }

    async fn claim(&self, req: Request) -> ToolResult {
        let result: ClaimResult = self.gaia.apply_claim(&self.by(req)).await?;
        Ok(result.to_json())
    }

    pub async fn status(&self, a: Value) -> ToolResult {
        let NoArgs {} = args(a)?;
        let claims = self.gaia.list_claims(false).await?;
        let ready = self.gaia.list_ready(None, MAX_LIMIT).await?;
        let last_seq = self
            .gaia
            .store()
            .last_seq()
            .await
            .map_err(gaia_core::error::Error::from)?;
        Ok(json!({
            "gaia": env!("CARGO_PKG_VERSION"),
            "caller": self.caller.name,
            "role": self.caller.role.as_str(),
            "live_claims": claims.iter().map(ClaimResult::to_json).collect::<Vec<_>>(),
            "ready_tasks": ready.len(),
            "last_event_seq": last_seq,
        }))
    }

    pub async fn claim_acquire(&self, a: Value) -> ToolResult {
        let a: ClaimArgs = args(a)?;
        self.require(Role::Agent, "claim.acquire").await?;
        let req = Request::acquire(
            key(&a.story, a.todolist.as_deref())?,
            self.agent(a.agent.as_deref()),
            a.operator.as_deref(),
            a.fingerprint.as_deref(),
            Some(ttl(a.ttl.as_deref())?.unwrap_or(self.default_ttl)),
        )?;
        self.claim(req).await
    }

    pub async fn claim_refresh(&self, a: Value) -> ToolResult {
        let a: ClaimArgs = args(a)?;
        if a.operator.is_some() {
            return Err(ToolError::Arguments("refresh takes no operator".into()));
        }
        self.require(Role::Agent, "claim.refresh").await?;
        let req = Request::refresh(
            key(&a.story, a.todolist.as_deref())?,
            self.agent(a.agent.as_deref()),
            a.fingerprint.as_deref(),
            ttl(a.ttl.as_deref())?,
        )?;
        self.claim(req).await
    }

    pub async fn claim_release(&self, a: Value) -> ToolResult {
        let a: ReleaseArgs = args(a)?;
        self.require(Role::Agent, "claim.release").await?;
        let req = Request::release(
            key(&a.story, a.todolist.as_deref())?,
            self.agent(a.agent.as_deref()),
            a.fingerprint.as_deref(),
        )?;
        self.claim(req).await
    }

    pub async fn backlog_ready(&self, a: Value) -> ToolResult {
        let a: ReadyArgs = args(a)?;
        if let Some(s) = &a.story {
            gaia_core::names::check_name("story", s)?;
        }
        if !a.take {
            if a.agent.is_some() || a.ttl.is_some() {
                return Err(ToolError::Arguments(
                    "agent and ttl go with take=true".into(),
                ));
            }
            let tasks = self
                .gaia
                .list_ready(a.story.as_deref(), limit(a.limit)?)
                .await?;
            return Ok(json!({ "tasks": tasks }));
        }
        self.require(Role::Agent, "todo.take").await?;
        let agent = self.agent(a.agent.as_deref()).to_owned();
        gaia_core::names::check_name("agent id", &agent)?;
        let holder = Holder {
            agent,
            operator: "-".into(),
            fingerprint: "-".into(),
            principal: self.caller.principal.clone(),
        };
        let lease = ttl(a.ttl.as_deref())?.unwrap_or(self.default_ttl);
        let taken = self
            .gaia
            .take_ready(a.story.as_deref(), &holder, lease, &self.caller.name)
            .await?;
        Ok(match taken {
            Taken::Took { task, claim } => json!({
                "taken": true,
                "task": task,
                "claim": {
                    "key": claim.key.to_string(),
                    "token": claim.token,
                    "expires_at": claim.expires_at.map(rfc3339),
                },
            }),
            Taken::Nothing => json!({ "taken": false }),
        })
    }

    pub async fn backlog_followup(&self, a: Value) -> ToolResult {
        let a: FollowupArgs = args(a)?;
        self.require(Role::Agent, "followup.collect").await?;
        let hash = gaia_core::followup_doc::hash(format!("{}\n{}", a.title, a.body).as_bytes());
        let doc = NewFollowup {
            agent: self.agent(a.agent.as_deref()).to_owned(),
            path: a.path,
            hash,
            story: a.story,
            task: a.task,
            title: a.title,
            body: a.body,
        };
        let (outcome, f) = self.gaia.collect_followup(&doc, &self.caller.name).await?;
        Ok(json!({ "outcome": outcome, "followup": f }))
    }

    pub async fn event_append(&self, a: Value) -> ToolResult {
        let a: EventArgs = args(a)?;
        self.require(Role::Agent, "event.emit").await?;
        let data = a.data.unwrap_or_else(|| json!({}));
        let event = self
            .gaia
            .emit_event(&a.kind, &self.caller.name, &a.subject, data)
            .await?;
        Ok(json!({ "event": event }))
    }

    pub async fn events_recent(&self, a: Value) -> ToolResult {
        let a: RecentArgs = args(a)?;
        let filter = EventFilter {
            type_prefix: a.kind,
            subject: a.subject,
        };
        let limit = limit(a.limit)?;
        let events = match a.since {
            Some(since) => self.gaia.list_events_after(since, &filter, limit).await?,
            None => self
                .gaia
                .store()
                .events_before(i64::MAX, &filter, limit)
                .await
                .map_err(gaia_core::error::Error::from)?,
        };
        Ok(json!({ "events": events }))
    }
}
