//! The approval tools: `approval_request` files a command approval request and waits for a
//! person's decision, `approval_wait` waits on one already filed, and `permission_prompt`
//! answers Claude Code's `--permission-prompt-tool` from a Gaia decision. Waiting sends
//! progress notifications so a client's timeout that resets on progress does not fire; a
//! cancelled call is dropped while its request stays for whoever decides it.

use std::time::Duration;

use gaia_core::commands::{
    Action, CommandRecord, CommandSpec, Decided, Decider, NewCommand, Status, parse_id,
};
use gaia_core::time::parse_duration;
use gaia_core::tokens::Role;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::call::{ToolError, ToolResult, Tools, args};
use crate::session::Progress;

/// How long the approval tools wait at most, and how often they report progress meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    pub wait: Duration,
    pub progress_every: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(50),
            progress_every: Duration::from_secs(10),
        }
    }
}

/// Longest a poll of the store sleeps between looks at the request.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestArgs {
    command: Option<String>,
    argv: Option<Vec<String>>,
    cwd: Option<String>,
    reason: Option<String>,
    story: Option<String>,
    todolist: Option<String>,
    agent: Option<String>,
    expires: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitArgs {
    id: String,
    timeout_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideArgs {
    id: String,
    decision: String,
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PromptArgs {
    tool_name: String,
    #[serde(default)]
    input: Value,
    tool_use_id: Option<String>,
}

/// A request's state as the tools answer it, with what to do next while it is pending.
fn answer(r: &CommandRecord) -> Value {
    let mut v = r.to_json();
    if let (Status::Pending, Some(obj)) = (r.status, v.as_object_mut()) {
        obj.insert(
            "next".into(),
            json!(format!(
                "not decided yet: call approval_wait with id {}",
                r.id
            )),
        );
    }
    v
}

fn allow(input: Value, message: String) -> Value {
    json!({ "behavior": "allow", "updatedInput": input, "message": message })
}

fn deny(message: impl Into<String>) -> Value {
    json!({ "behavior": "deny", "message": message.into() })
}

impl Tools {
    /// Waits until request `id` is decided or `wait` passes, sending progress every
    /// `progress_every`; records the expiry of a request found past it.
    async fn wait_decision(
        &self,
        id: &str,
        wait: Duration,
        progress: &Progress,
    ) -> Result<CommandRecord, ToolError> {
        let store = self.gaia.store();
        let started = Instant::now();
        let deadline = started + wait;
        let mut next_progress = started + self.waits.progress_every;
        let mut seq = store
            .last_seq()
            .await
            .map_err(gaia_core::error::Error::from)?;
        loop {
            let mut rec = self.gaia.get_command(id).await?;
            let now = store.now().await.map_err(gaia_core::error::Error::from)?;
            if rec.status == Status::Pending && now >= rec.expires_at {
                let _ = self.gaia.apply_command(id, &Action::Expire).await?;
                rec = self.gaia.get_command(id).await?;
            }
            let at = Instant::now();
            if rec.status != Status::Pending || at >= deadline {
                return Ok(rec);
            }
            if at >= next_progress {
                let waited = at.duration_since(started).as_secs();
                progress.send(
                    waited as f64,
                    Some(wait.as_secs() as f64),
                    &format!("waiting for a decision on {id} ({waited}s)"),
                );
                next_progress += self.waits.progress_every;
            }
            let nap = POLL
                .min(deadline.saturating_duration_since(at))
                .min(next_progress.saturating_duration_since(at));
            // Wakes at the next commit anywhere (a decision is one), or after the nap.
            seq = store
                .wait_for_commit(seq, nap)
                .await
                .map_err(gaia_core::error::Error::from)?;
        }
    }

    /// Files a request as the caller, the API's way (the policy decides first).
    async fn file(&self, new: NewCommand) -> Result<CommandRecord, ToolError> {
        self.require(Role::Agent, "command.request").await?;
        Ok(self.gaia.request_command(&new).await?)
    }

    pub async fn approval_request(&self, a: Value, progress: &Progress) -> ToolResult {
        let a: RequestArgs = args(a)?;
        let spec = match (a.command, a.argv) {
            (Some(c), None) => CommandSpec::Shell(c),
            (None, Some(v)) => CommandSpec::Argv(v),
            _ => {
                return Err(ToolError::Arguments(
                    "give exactly one of command (a shell line) or argv".into(),
                ));
            }
        };
        let expires = a.expires.as_deref().map(parse_duration).transpose()?;
        let new = NewCommand::new(
            spec,
            a.cwd,
            a.story,
            a.todolist,
            a.reason,
            &self.caller.name,
            false,
            expires,
        )?
        .acting_for(a.agent.as_deref())?;
        let r = self.file(new).await?;
        let r = self.wait_decision(&r.id, self.waits.wait, progress).await?;
        Ok(answer(&r))
    }

    pub async fn approval_wait(&self, a: Value, progress: &Progress) -> ToolResult {
        let a: WaitArgs = args(a)?;
        let id = parse_id(&a.id)?;
        let max = self.waits.wait.as_secs();
        let wait = match a.timeout_s {
            None => self.waits.wait,
            Some(s) if s <= max => Duration::from_secs(s),
            Some(_) => {
                return Err(ToolError::Arguments(format!(
                    "timeout_s must be 0 to {max}"
                )));
            }
        };
        let r = self.wait_decision(&id, wait, progress).await?;
        Ok(answer(&r))
    }

    /// Approves or denies a pending request, as an operator does through the API (the same
    /// use case; `via` says mcp). The first decision wins; a later one is a refusal.
    pub async fn approval_decide(&self, a: Value) -> ToolResult {
        let a: DecideArgs = args(a)?;
        let action = match a.decision.as_str() {
            "approve" => "command.approve",
            "deny" => "command.deny",
            other => {
                return Err(ToolError::Arguments(format!(
                    "decision is approve or deny, not '{other}'"
                )));
            }
        };
        self.require(Role::Operator, action).await?;
        let id = parse_id(&a.id)?;
        let by = Decider {
            name: self.caller.name.clone(),
            via: "mcp".into(),
        };
        let reason = a.reason;
        let change = if action == "command.approve" {
            Action::Approve { by, reason }
        } else {
            Action::Deny { by, reason }
        };
        match self.gaia.apply_command(&id, &change).await? {
            Decided::Done(r) => Ok(r.to_json()),
            Decided::Refused(r) => Err(ToolError::Refused(format!(
                "{} (status {})",
                r.reason,
                r.current.status.as_str()
            ))),
        }
    }

    /// Claude Code's permission prompt: allow only on an approval (by the policy or a person);
    /// anything else, including Gaia failing, is a deny with the reason.
    pub async fn permission_prompt(&self, a: Value, progress: &Progress) -> Value {
        match self.prompt(a, progress).await {
            Ok(v) => v,
            Err(e) => deny(format!("gaia could not decide ({e}); not allowed")),
        }
    }

    async fn prompt(&self, a: Value, progress: &Progress) -> Result<Value, ToolError> {
        let a: PromptArgs = args(a)?;
        let spec = match (a.tool_name.as_str(), a.input["command"].as_str()) {
            ("Bash", Some(cmd)) => CommandSpec::Shell(cmd.to_owned()),
            (tool, _) => CommandSpec::Shell(format!("{tool} {}", a.input)),
        };
        let reason = a.input["description"].as_str().map_or_else(
            || format!("Claude Code asks to use {}", a.tool_name),
            str::to_owned,
        );
        let wait = self.waits.wait;
        let new = NewCommand::new(
            spec,
            None,
            None,
            None,
            Some(reason),
            &self.caller.name,
            false,
            Some(wait + Duration::from_secs(5)),
        )?;
        let r = self.file(new).await?;
        let r = self.wait_decision(&r.id, wait, progress).await?;
        let by = r.decided_by.as_deref().unwrap_or("?");
        Ok(match r.status {
            s if s.was_approved() => allow(
                a.input,
                format!(
                    "approved by {by} via {}",
                    r.decided_via.as_deref().unwrap_or("?")
                ),
            ),
            Status::Denied => deny(format!(
                "denied by {by}{}",
                r.decision_reason
                    .as_ref()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            )),
            Status::Pending => {
                // Withdrawn, so nobody approves a request nobody waits for any more.
                let cancel = Action::Cancel {
                    by: self.caller.name.clone(),
                };
                if let Err(e) = self.gaia.apply_command(&r.id, &cancel).await {
                    tracing::warn!(id = %r.id, error = %e, "could not withdraw a request");
                }
                let _ = a.tool_use_id;
                deny(format!(
                    "no decision on gaia request {} within {}s; not allowed",
                    r.id,
                    wait.as_secs()
                ))
            }
            other => deny(format!("gaia request {} was {}", r.id, other.as_str())),
        })
    }
}
