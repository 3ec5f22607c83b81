//! `gaia hook claude-code`: one hook command for Claude Code's two permission events.
//!
//! - `PreToolUse` (every tool call): Gaia's policy decides Bash calls at once (allow, deny or
//!   ask, where ask hands the call to Claude Code's own permission flow). Other tools get no
//!   answer, leaving Claude Code's normal flow.
//! - `PermissionRequest` (only when Claude Code would ask its user): a Gaia approval request
//!   that any operator can decide from the CLI, the API or the dashboard; the hook waits and
//!   answers with the decision.
//!
//! Fail safe: bad input, an unreachable Gaia or no decision in time never yields `allow`.

use std::io::Read;
use std::time::Duration;

use gaia_core::commands::{Action, CommandSpec, NewCommand, Status};
use gaia_core::event::kinds;
use gaia_core::policy::Verdict;
use gaia_core::time::parse_duration;
use serde_json::{Value, json};

use crate::cli::HookCommand;
use crate::config::Config;
use crate::exit::{self, CliResult};

/// Largest hook input read.
const MAX_INPUT: u64 = 1024 * 1024;

fn pre_tool_use(verdict: &str, reason: &str) -> Value {
    json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": verdict,
            "permissionDecisionReason": reason,
        }
    })
}

fn permission(behavior: &str, message: &str) -> Value {
    json!({
        "hookSpecificOutput": {
            "hookEventName": "PermissionRequest",
            "decision": { "behavior": behavior, "message": message },
        }
    })
}

/// Answers a hook when Gaia's configuration cannot be loaded: `ask`, with the reason. The
/// hook's input is read first all the same, so that the agent writing it never finds the
/// pipe closed (a configuration error is found before anything else, in a few milliseconds).
pub fn config_error(e: &str) -> std::io::Result<()> {
    let _ = std::io::copy(&mut std::io::stdin().take(MAX_INPUT), &mut std::io::sink());
    super::out(
        &pre_tool_use(
            "ask",
            &format!("gaia configuration error ({e}); asking instead"),
        )
        .to_string(),
    )
}

pub async fn run(c: HookCommand, config: &Config) -> CliResult {
    let HookCommand::ClaudeCode { wait } = c;
    let wait = parse_duration(&wait)?;
    let mut raw = String::new();
    let read = std::io::stdin().take(MAX_INPUT).read_to_string(&mut raw);
    let input: Option<Value> = read.ok().and_then(|_| serde_json::from_str(&raw).ok());
    let answer = match input {
        None => Some(pre_tool_use(
            "ask",
            "gaia: the hook input is not valid JSON; asking instead",
        )),
        Some(input) => answer(&input, config, wait).await,
    };
    if let Some(a) = answer {
        super::out(&a.to_string())?;
    }
    Ok(exit::OK)
}

async fn answer(input: &Value, config: &Config, wait: Duration) -> Option<Value> {
    let event = input["hook_event_name"].as_str().unwrap_or("");
    let tool = input["tool_name"].as_str().unwrap_or("");
    match event {
        "PreToolUse" => {
            if tool != "Bash" {
                return None;
            }
            let Some(command) = input["tool_input"]["command"].as_str() else {
                return Some(pre_tool_use(
                    "ask",
                    "gaia: a Bash call without a command; asking instead",
                ));
            };
            let spec = CommandSpec::Shell(command.to_owned());
            let d = config.policy.check(&spec);
            // The decision is recorded; if Gaia cannot record it, Gaia is not reachable, and an
            // allow must not go through unrecorded.
            let recorded = record(config, input, &spec, &d).await;
            Some(match (d.verdict, recorded) {
                (Verdict::Allow, Err(e)) => pre_tool_use(
                    "ask",
                    &format!("gaia cannot be reached ({e}); asking instead"),
                ),
                (v, _) => pre_tool_use(v.as_str(), &format!("gaia: {}", d.reason)),
            })
        }
        "PermissionRequest" => Some(permission_request(input, tool, config, wait).await),
        "" => Some(pre_tool_use(
            "ask",
            "gaia: the hook input has no hook_event_name; asking instead",
        )),
        // Events this hook does not handle: no opinion.
        _ => None,
    }
}

async fn record(
    config: &Config,
    input: &Value,
    spec: &CommandSpec,
    d: &gaia_core::policy::Decision,
) -> Result<(), String> {
    let client = crate::client::connect(config)
        .await
        .map_err(|e| e.message)?;
    let data = json!({
        "command": spec.display(),
        "verdict": d.verdict.as_str(),
        "rule": d.rule,
        "reason": d.reason,
        "source": "claude-code",
        "session_id": input["session_id"],
        "tool_use_id": input["tool_use_id"],
    });
    let res = client
        .emit(kinds::POLICY_DECIDED, "claude-code", "policy", data)
        .await
        .map(|_| ())
        .map_err(|e| e.message);
    client.close().await;
    res
}

/// The approval request a PermissionRequest files, or why it cannot be filed.
fn permission_command(input: &Value, tool: &str, wait: Duration) -> Result<NewCommand, String> {
    let spec = match (tool, input["tool_input"]["command"].as_str()) {
        ("Bash", Some(cmd)) => CommandSpec::Shell(cmd.to_owned()),
        _ => CommandSpec::Shell(format!("{tool} {}", input["tool_input"])),
    };
    let session = input["session_id"].as_str().unwrap_or("session");
    let requester = std::env::var("GAIA_AGENT").unwrap_or_else(|_| {
        format!(
            "claude-code:{}",
            session.chars().take(8).collect::<String>()
        )
    });
    let reason = input["tool_input"]["description"]
        .as_str()
        .map_or_else(|| format!("Claude Code asks to use {tool}"), str::to_owned);
    let cwd = input["cwd"].as_str().map(str::to_owned);
    NewCommand::new(
        spec,
        cwd,
        None,
        None,
        Some(reason),
        &requester,
        false,
        Some(wait + Duration::from_secs(5)),
    )
    .map_err(|e| e.to_string())
}

async fn permission_request(input: &Value, tool: &str, config: &Config, wait: Duration) -> Value {
    let new = match permission_command(input, tool, wait) {
        Ok(n) => n,
        Err(e) => return permission("deny", &format!("gaia refused the request: {e}")),
    };
    let client = match crate::client::connect(config).await {
        Ok(c) => c,
        Err(e) => {
            return permission(
                "deny",
                &format!("gaia cannot be reached ({}); not allowed", e.message),
            );
        }
    };
    let answer = ask_and_wait(&client, &new, wait).await;
    client.close().await;
    answer.unwrap_or_else(|e| {
        permission("deny", &format!("gaia failed ({}); not allowed", e.message))
    })
}

/// Files the request and turns the decision (or its absence) into the hook's answer.
async fn ask_and_wait(
    client: &crate::client::Client,
    new: &NewCommand,
    wait: Duration,
) -> Result<Value, crate::exit::CliError> {
    let r = client.request_command(new).await?;
    let r = client.wait_command(&r.id, wait).await?;
    Ok(match r.status {
        s if s.was_approved() => permission(
            "allow",
            &format!(
                "approved by {} via {}",
                r.decided_by.as_deref().unwrap_or("?"),
                r.decided_via.as_deref().unwrap_or("?")
            ),
        ),
        Status::Denied => permission(
            "deny",
            &format!(
                "denied by {}{}",
                r.decided_by.as_deref().unwrap_or("?"),
                r.decision_reason
                    .as_ref()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            ),
        ),
        Status::Pending => {
            // Withdraw it, so nobody approves a request nobody waits for any more.
            let _ = client
                .command_apply(
                    &r.id,
                    &Action::Cancel {
                        by: new.requester.clone(),
                    },
                )
                .await;
            permission(
                "deny",
                &format!(
                    "no decision on gaia request {} within {}s; not allowed",
                    r.id,
                    wait.as_secs()
                ),
            )
        }
        other => permission(
            "deny",
            &format!("gaia request {} was {}", r.id, other.as_str()),
        ),
    })
}
