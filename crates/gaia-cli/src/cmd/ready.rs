//! `gaia ready`: the tasks that are ready (todo, every task they wait for done, on an open
//! story's current list nobody else holds), and `--take`, which takes the first one with its
//! list's claim in one step and prints the fencing token for `gaia todo done`.

use gaia_core::backlog::check_slug;
use gaia_core::claims::{Holder, Request};
use gaia_core::names::ClaimKey;
use gaia_core::time::{parse_duration, rfc3339};
use serde_json::json;

use crate::cli::ReadyArgs;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

pub async fn run(args: ReadyArgs, config: &Config) -> CliResult {
    if let Some(s) = &args.story {
        check_slug("story", s)?;
    }
    if args.take {
        take(args, config).await
    } else {
        list(config, args.story.as_deref(), args.limit, args.json).await
    }
}

/// `gaia ready`.
async fn list(config: &Config, story: Option<&str>, limit: u32, json: bool) -> CliResult {
    if !(1..=1000).contains(&limit) {
        return Err(CliError::bad_input("--limit must be 1 to 1000"));
    }
    let client = crate::client::connect(config).await?;
    let tasks = client.ready(story, limit).await?;
    if json {
        super::out_serde(&tasks)?;
    } else if tasks.is_empty() {
        super::out("no ready tasks")?;
    } else {
        for t in &tasks {
            super::out(&super::todo::line(t))?;
        }
    }
    Ok(exit::OK)
}

/// The holder and lease of `--take`, checked as a claim acquisition is.
fn holder(args: &ReadyArgs, config: &Config) -> Result<(Holder, std::time::Duration), CliError> {
    let agent = args
        .agent
        .as_deref()
        .ok_or_else(|| CliError::bad_input("--take needs --agent (or $GAIA_AGENT)"))?;
    let ttl = args.ttl.as_deref().map(parse_duration).transpose()?;
    // Any key will do: the request only checks the holder's names and the lease.
    let key = ClaimKey::new("ready", ClaimKey::DEFAULT_TODOLIST)?;
    let req = Request::acquire(
        key,
        agent,
        args.operator.as_deref(),
        args.fingerprint.as_deref(),
        Some(ttl.unwrap_or(config.default_ttl)),
    )?;
    match req {
        Request::Acquire { holder, ttl, .. } => Ok((holder, ttl)),
        _ => Err(CliError::new(exit::FAILURE, "unexpected claim request")),
    }
}

/// `gaia ready --take`: exit 0 with the task and token, 1 saying why nothing was taken.
async fn take(args: ReadyArgs, config: &Config) -> CliResult {
    let (holder, ttl) = holder(&args, config)?;
    let story = args.story.as_deref();
    let client = crate::client::connect(config).await?;
    let Some(took) = client.take_ready(story, &holder, ttl).await? else {
        let why = if client.ready(story, 1).await?.is_empty() {
            "nothing is ready: no todo task whose blockers are done on an open story's list"
        } else {
            "nothing could be taken: the lists of the ready tasks are held by other agents"
        };
        client.close().await;
        if args.json {
            super::out(&json!({ "taken": false, "reason": why }).to_string())?;
        } else {
            super::out(why)?;
        }
        return Ok(exit::FAILURE);
    };
    client.close().await;
    let expires = took.expires_at.map(rfc3339);
    if args.json {
        let v = json!({
            "taken": true, "task": took.task, "token": took.token, "expires_at": expires,
        });
        super::out_json(&v)?;
    } else {
        super::out(&format!("took {}", super::todo::line(&took.task)))?;
        super::out(&format!(
            "token {} (claim {} held by {} until {}); finish with: gaia todo done {} --agent {} --token {}",
            took.token,
            took.task.key(),
            holder.agent,
            expires.as_deref().unwrap_or("-"),
            took.task.id,
            holder.agent,
            took.token
        ))?;
    }
    Ok(exit::OK)
}
