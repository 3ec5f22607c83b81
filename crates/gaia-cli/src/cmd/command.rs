//! `gaia cmd request|list|show|approve|deny|allow-test|cancel|execute` and `gaia run`.

use std::time::Duration;

use chrono::Utc;
use gaia_core::commands::{
    Action, CommandRecord, CommandSpec, Decider, NewCommand, Refusal, Status, parse_id,
};
use gaia_core::time::{format_duration, parse_duration, rfc3339};

use crate::cli::{CmdCommand, ExecuteArgs, RequestArgs, RunArgs};
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

/// How long `--wait` waits when no --timeout is given: until the request expires.
const WAIT_FOREVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long `gaia cmd execute` lets a command run by default.
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(600);

fn cwd_or_here(cwd: Option<String>) -> Result<String, CliError> {
    match cwd {
        Some(c) => Ok(c),
        None => std::env::current_dir()
            .map(|d| d.display().to_string())
            .map_err(|e| CliError::bad_input(format!("cannot tell the current directory: {e}"))),
    }
}

/// The exit code for a request as it stands after waiting.
pub fn wait_code(r: &CommandRecord) -> u8 {
    match r.status {
        s if s.was_approved() => exit::OK,
        Status::Denied => exit::DENIED,
        Status::Cancelled => exit::CANCELLED,
        _ => exit::EXPIRED,
    }
}

fn one_line(r: &CommandRecord) -> String {
    let mut s = format!("{} {:9} {}", r.id, r.status.as_str(), r.spec.display());
    if r.is_test {
        s.push_str(if r.test_allowed {
            "  [TEST, allowed]"
        } else {
            "  [TEST]"
        });
    }
    s.push_str(&format!("  by {}", r.requester));
    if let Some(story) = &r.story {
        s.push_str(&format!("  story {story}"));
    }
    if r.status == Status::Pending {
        match (r.expires_at - Utc::now()).to_std() {
            Ok(left) => s.push_str(&format!(
                "  expires in {}",
                format_duration(Duration::from_secs(left.as_secs().max(1)))
            )),
            Err(_) => s.push_str("  (expired)"),
        }
    } else if let Some(by) = &r.decided_by {
        s.push_str(&format!("  {} by {by}", r.decision()));
    }
    s
}

fn details(r: &CommandRecord) -> Vec<String> {
    let mut lines = vec![
        format!("id:        {}", r.id),
        format!(
            "status:    {}{}",
            r.status.as_str(),
            if r.is_test {
                if r.test_allowed {
                    " (TEST, allowed)"
                } else {
                    " (TEST: allow-test before approving)"
                }
            } else {
                ""
            }
        ),
        format!("command:   {}", r.spec.display()),
        format!("cwd:       {}", r.cwd.as_deref().unwrap_or("-")),
        format!("requester: {}", r.requester),
        format!(
            "story:     {}{}",
            r.story.as_deref().unwrap_or("-"),
            r.todolist
                .as_ref()
                .map(|t| format!("/{t}"))
                .unwrap_or_default()
        ),
        format!("reason:    {}", r.reason.as_deref().unwrap_or("-")),
        format!("created:   {}", rfc3339(r.created_at)),
        format!("expires:   {}", rfc3339(r.expires_at)),
    ];
    if let Some(by) = &r.decided_by {
        lines.push(format!(
            "decided:   {} by {by} via {} at {}{}",
            r.decision(),
            r.decided_via.as_deref().unwrap_or("-"),
            r.decided_at.map(rfc3339).unwrap_or_default(),
            r.decision_reason
                .as_ref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        ));
    }
    if let Some(e) = &r.execution {
        lines.push(format!(
            "executed:  by {} at {}: exit {} in {} ms{}{}",
            e.executor,
            rfc3339(e.started_at),
            e.exit_code
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            e.duration_ms,
            if e.timed_out {
                " (timed out; process group killed)"
            } else {
                ""
            },
            e.error
                .as_ref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        ));
        if !e.stdout.is_empty() {
            lines.push(format!(
                "stdout{}:\n{}",
                if e.stdout_truncated { " (tail)" } else { "" },
                e.stdout.trim_end()
            ));
        }
        if !e.stderr.is_empty() {
            lines.push(format!(
                "stderr{}:\n{}",
                if e.stderr_truncated { " (tail)" } else { "" },
                e.stderr.trim_end()
            ));
        }
    }
    lines
}

fn print(r: &CommandRecord, json: bool) -> std::io::Result<()> {
    if json {
        super::out(&r.to_json().to_string())
    } else {
        super::out(&one_line(r))
    }
}

/// Prints the outcome of a decision; a refusal is exit 3 with the request as it stands.
fn decided(outcome: Result<CommandRecord, Refusal>, json: bool) -> CliResult {
    match outcome {
        Ok(r) => {
            print(&r, json)?;
            Ok(exit::OK)
        }
        Err(refusal) => {
            if json {
                super::out(&refusal.current.to_json().to_string())?;
            }
            Err(CliError::new(
                exit::CONFLICT,
                format!("refused: {}", refusal.reason),
            ))
        }
    }
}

pub async fn run(c: CmdCommand, config: &Config) -> CliResult {
    match c {
        CmdCommand::Request(args) => request(args, config).await,
        CmdCommand::List {
            status,
            limit,
            json,
        } => list(config, status.as_deref(), limit, json).await,
        CmdCommand::Show { id, json } => show(config, &id, json).await,
        CmdCommand::Approve {
            id,
            reason,
            decider,
            json,
        } => {
            decide(config, &id, decider, json, |by| Action::Approve {
                by,
                reason,
            })
            .await
        }
        CmdCommand::Deny {
            id,
            reason,
            decider,
            json,
        } => decide(config, &id, decider, json, |by| Action::Deny { by, reason }).await,
        CmdCommand::AllowTest { id, decider, json } => {
            decide(config, &id, decider, json, |by| Action::AllowTest { by }).await
        }
        CmdCommand::Cancel { id, actor, json } => cancel(config, &id, actor, json).await,
        CmdCommand::Execute(args) => execute(args, config).await,
    }
}

/// `gaia cmd request`: files the request; with `--wait`, exits with the decision's code.
async fn request(args: RequestArgs, config: &Config) -> CliResult {
    let expires = args.expires.as_deref().map(parse_duration).transpose()?;
    let timeout = args.timeout.as_deref().map(parse_duration).transpose()?;
    let new = NewCommand::new(
        CommandSpec::Argv(args.argv),
        Some(cwd_or_here(args.cwd)?),
        args.context.story,
        args.context.todolist,
        args.context.reason,
        &args.agent,
        args.test,
        expires,
    )?;
    let client = crate::client::connect(config).await?;
    let r = client.request_command(&new).await?;
    if !args.wait {
        client.close().await;
        if args.json {
            print(&r, true)?;
        } else {
            super::out(&r.id)?;
        }
        return Ok(exit::OK);
    }
    if !args.json {
        eprintln!(
            "gaia: waiting for a decision on {} ({})",
            r.id,
            r.spec.display()
        );
    }
    let r = client
        .wait_command(&r.id, timeout.unwrap_or(WAIT_FOREVER))
        .await?;
    client.close().await;
    print(&r, args.json)?;
    Ok(wait_code(&r))
}

/// `gaia cmd list`.
async fn list(config: &Config, status: Option<&str>, limit: u32, json: bool) -> CliResult {
    let status = status.map(str::parse::<Status>).transpose()?;
    if !(1..=1000).contains(&limit) {
        return Err(CliError::bad_input("--limit must be 1 to 1000"));
    }
    let client = crate::client::connect(config).await?;
    let list = client.commands(status, limit).await?;
    if json {
        super::out_json(&serde_json::Value::Array(
            list.iter().map(CommandRecord::to_json).collect(),
        ))?;
    } else if list.is_empty() {
        super::out("no command requests")?;
    } else {
        for r in &list {
            super::out(&one_line(r))?;
        }
    }
    Ok(exit::OK)
}

/// `gaia cmd show`.
async fn show(config: &Config, id: &str, json: bool) -> CliResult {
    let id = parse_id(id)?;
    let client = crate::client::connect(config).await?;
    let r = client.command(&id).await?;
    if json {
        super::out_json(&r.to_json())?;
    } else {
        for line in details(&r) {
            super::out(&line)?;
        }
    }
    Ok(exit::OK)
}

/// `gaia cmd approve|deny|allow-test`: `action` makes the decision for whoever decides.
async fn decide(
    config: &Config,
    id: &str,
    decider: Option<String>,
    json: bool,
    action: impl FnOnce(Decider) -> Action,
) -> CliResult {
    let id = parse_id(id)?;
    let client = crate::client::connect(config).await?;
    let action = action(decider_of(&client, decider).await?);
    let outcome = client.command_apply(&id, &action).await?;
    client.close().await;
    decided(outcome, json)
}

/// `gaia cmd cancel`.
async fn cancel(config: &Config, id: &str, actor: Option<String>, json: bool) -> CliResult {
    let id = parse_id(id)?;
    let client = crate::client::connect(config).await?;
    let by = match acting_as(&client, actor).await? {
        Some(by) => by,
        None => std::env::var("GAIA_AGENT")
            .or_else(|_| std::env::var("GAIA_OPERATOR"))
            .map_err(|_| CliError::bad_input("say who cancels: --as NAME (or set GAIA_AGENT)"))?,
    };
    gaia_core::names::check_name("--as", &by)?;
    let outcome = client.command_apply(&id, &Action::Cancel { by }).await?;
    client.close().await;
    decided(outcome, json)
}

/// `gaia cmd execute`: runs an approved request here (or records a dry run).
async fn execute(args: ExecuteArgs, config: &Config) -> CliResult {
    let id = parse_id(&args.id)?;
    let timeout = args
        .timeout
        .as_deref()
        .map(parse_duration)
        .transpose()?
        .unwrap_or(DEFAULT_EXEC_TIMEOUT);
    if let Some(name) = &args.executor {
        gaia_core::names::check_name("--as", name)?;
    }
    let allowed = config.execution_allowed;
    if args.execute && !allowed && config.remote.is_none() {
        eprintln!("gaia: ALLOW_COMMAND_EXECUTION is not 1: recording a dry run instead");
    }
    let limits = gaia_exec::Limits {
        timeout,
        ..gaia_exec::Limits::default()
    };
    let client = crate::client::connect(config).await?;
    let executor = acting_as(&client, args.executor)
        .await?
        .or_else(|| std::env::var("GAIA_OPERATOR").ok())
        .unwrap_or_else(|| "cli".to_owned());
    gaia_core::names::check_name("--as", &executor)?;
    let outcome = client
        .execute_command(&id, &executor, args.execute && allowed, limits)
        .await?;
    client.close().await;
    let r = outcome
        .map_err(|refusal| CliError::new(exit::CONFLICT, format!("refused: {}", refusal.reason)))?;
    if args.json {
        super::out(&r.to_json().to_string())?;
    } else {
        for line in details(&r) {
            super::out(&line)?;
        }
    }
    Ok(match r.status {
        Status::Executed | Status::Dryrun => exit::OK,
        _ => exit::FAILURE,
    })
}

/// Who a decision is recorded for: `--as NAME`, else $GAIA_OPERATOR.
async fn decider_of(
    client: &crate::client::Client,
    named: Option<String>,
) -> Result<Decider, CliError> {
    let name = acting_as(client, named)
        .await?
        .or_else(|| std::env::var("GAIA_OPERATOR").ok())
        .ok_or_else(|| CliError::bad_input("say who decides: --as NAME (or set GAIA_OPERATOR)"))?;
    gaia_core::names::check_name("--as", &name)?;
    Ok(Decider {
        name,
        via: "cli".to_owned(),
    })
}

/// The name given with `--as`. Over the API the server records the token's name, never a name
/// the client sends: in remote mode `--as` is that name or nothing, and any other name is
/// refused rather than silently dropped.
async fn acting_as(
    client: &crate::client::Client,
    named: Option<String>,
) -> Result<Option<String>, CliError> {
    let crate::client::Client::Remote(remote) = client else {
        return Ok(named);
    };
    let me = remote.whoami().await?;
    match named {
        Some(name) if name != me => Err(CliError::bad_input(format!(
            "--as {name}: in remote mode the token's name ({me}) acts; use {name}'s token or drop --as"
        ))),
        _ => Ok(Some(me)),
    }
}

/// `gaia run --approve -- ARGV`: request, wait, then run here with inherited stdio and exit
/// with the command's exit code.
pub async fn run_approved(args: RunArgs, config: &Config) -> CliResult {
    let _ = args.approve;
    let timeout = args.timeout.as_deref().map(parse_duration).transpose()?;
    let cwd = cwd_or_here(None)?;
    let client = crate::client::connect(config).await?;
    // The requester runs the command, so over the API it is the token's own name.
    let agent = match (&args.agent, &client) {
        (Some(a), _) => a.clone(),
        (None, crate::client::Client::Remote(r)) => r.whoami().await?,
        (None, crate::client::Client::Direct(_)) => std::env::var("USER")
            .map(|u| format!("run:{u}"))
            .unwrap_or_else(|_| "run".to_owned()),
    };
    let new = NewCommand::new(
        CommandSpec::Argv(args.argv.clone()),
        Some(cwd.clone()),
        args.context.story,
        args.context.todolist,
        args.context.reason,
        &agent,
        false,
        None,
    )?;
    let r = client.request_command(&new).await?;
    eprintln!(
        "gaia: waiting for approval of {} ({})",
        r.id,
        r.spec.display()
    );
    let r = client
        .wait_command(&r.id, timeout.unwrap_or(WAIT_FOREVER))
        .await?;
    let code = wait_code(&r);
    if code != exit::OK {
        client.close().await;
        return Err(CliError::new(
            code,
            format!("{} was {}", r.id, r.status.as_str()),
        ));
    }
    // Record that the requester runs it, so the request cannot also be executed elsewhere.
    let begin = Action::BeginExecution {
        executor: agent.clone(),
        dry_run: false,
        binding: gaia_core::commands::binding(&r.spec, r.cwd.as_deref()),
    };
    if let Err(refusal) = client.command_apply(&r.id, &begin).await? {
        client.close().await;
        return Err(CliError::new(
            exit::CONFLICT,
            format!("refused: {}", refusal.reason),
        ));
    }
    let (exit_code, error) = run_and_record(&client, &r.id, agent, &args.argv).await?;
    client.close().await;
    match (exit_code, error) {
        (_, Some(e)) => Err(CliError::new(127, e)),
        (Some(c), None) => Ok(u8::try_from(c).unwrap_or(exit::FAILURE)),
        // Killed by a signal: the shell convention would be 128+N; 1 keeps it simple.
        (None, None) => Ok(exit::FAILURE),
    }
}

/// Runs `argv` here with inherited stdio and records the execution under `id`. Returns the
/// exit code (`None` when killed by a signal) and why it could not start, if it could not.
async fn run_and_record(
    client: &crate::client::Client,
    id: &str,
    executor: String,
    argv: &[String],
) -> Result<(Option<i32>, Option<String>), CliError> {
    let started_at = Utc::now();
    let started = std::time::Instant::now();
    let status = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .await;
    let (exit_code, error) = match &status {
        Ok(s) => (s.code(), None),
        Err(e) => (None, Some(format!("cannot start {}: {e}", argv[0]))),
    };
    let execution = gaia_core::commands::Execution {
        executor,
        dry_run: false,
        started_at,
        exit_code,
        timed_out: false,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        stdout: String::new(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        error: error.clone(),
    };
    let _ = client
        .command_apply(id, &Action::FinishExecution { execution })
        .await?;
    Ok((exit_code, error))
}
