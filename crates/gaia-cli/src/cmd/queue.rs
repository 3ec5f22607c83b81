//! `gaia queue list|requeue|auto-requeue`: the notification outbox and its dead set.

use gaia_core::outbox::{Message, Status};
use gaia_core::time::rfc3339;

use crate::cli::QueueCommand;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

/// Most dead messages a `#N` index can reach.
const DEAD_WINDOW: u32 = 1000;

fn line(index: Option<usize>, m: &Message) -> String {
    let number = index.map(|i| format!("#{i:<3} ")).unwrap_or_default();
    let text = m.payload["text"].as_str().unwrap_or("");
    let short: String = text.chars().take(60).collect();
    format!(
        "{number}{:>6} {:7} {:8} {:10} attempts={} requeues={} created={}{}  {}",
        m.id,
        m.status.as_str(),
        m.channel.as_str(),
        m.kind,
        m.attempts,
        m.requeues,
        rfc3339(m.created_at),
        m.last_error
            .as_ref()
            .map(|e| format!(" error=\"{e}\""))
            .unwrap_or_default(),
        short.replace('\n', " ")
    )
}

/// The dead set, oldest first: the order `#N` indexes.
async fn dead_set(client: &crate::client::Client) -> Result<Vec<Message>, CliError> {
    let mut dead = client.queue(Some(Status::Dead), DEAD_WINDOW).await?;
    dead.reverse();
    Ok(dead)
}

pub async fn run(c: QueueCommand, config: &Config) -> CliResult {
    match c {
        QueueCommand::List {
            dead,
            status,
            limit,
            json,
        } => list(config, dead, status.as_deref(), limit, json).await,
        QueueCommand::Requeue { target, json } => requeue(config, &target, json).await,
        QueueCommand::AutoRequeue { dry_run, json } => auto_requeue(config, dry_run, json).await,
    }
}

/// `gaia queue list`.
async fn list(
    config: &Config,
    dead: bool,
    status: Option<&str>,
    limit: u32,
    json: bool,
) -> CliResult {
    let status = if dead {
        Some(Status::Dead)
    } else {
        status.map(str::parse).transpose()?
    };
    if !(1..=1000).contains(&limit) {
        return Err(CliError::bad_input("--limit must be 1 to 1000"));
    }
    let client = crate::client::connect(config).await?;
    let list = if status == Some(Status::Dead) {
        dead_set(&client)
            .await?
            .into_iter()
            .take(limit as usize)
            .collect()
    } else {
        client.queue(status, limit).await?
    };
    if json {
        super::out_json(&serde_json::Value::Array(
            list.iter().map(Message::to_json).collect(),
        ))?;
    } else if list.is_empty() {
        super::out(if dead {
            "the dead set is empty"
        } else {
            "no messages"
        })?;
    } else {
        for (i, m) in list.iter().enumerate() {
            super::out(&line((status == Some(Status::Dead)).then_some(i), m))?;
        }
    }
    Ok(exit::OK)
}

/// `gaia queue requeue ID|#N`.
async fn requeue(config: &Config, target: &str, json: bool) -> CliResult {
    let client = crate::client::connect(config).await?;
    let id = match target.strip_prefix('#') {
        Some(n) => {
            let n: usize = n
                .parse()
                .map_err(|_| CliError::bad_input(format!("'{target}' is not an index like #0")))?;
            let dead = dead_set(&client).await?;
            dead.get(n).map(|m| m.id).ok_or_else(|| {
                CliError::new(
                    exit::CONFLICT,
                    format!("the dead set has no #{n} ({} messages)", dead.len()),
                )
            })?
        }
        None => target
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| CliError::bad_input(format!("'{target}' is not a message id or #N")))?,
    };
    let m = client.requeue(id).await?;
    client.close().await;
    if json {
        super::out(&m.to_json().to_string())?;
    } else {
        super::out(&format!("requeued #{} ({} times so far)", m.id, m.requeues))?;
    }
    Ok(exit::OK)
}

/// `gaia queue auto-requeue`: the configured policy, once.
async fn auto_requeue(config: &Config, dry_run: bool, json: bool) -> CliResult {
    let client = crate::client::connect(config).await?;
    let list = client.auto_requeue(&config.auto_requeue, dry_run).await?;
    client.close().await;
    if json {
        super::out_json(&serde_json::json!({
            "dry_run": dry_run,
            "requeued": list.iter().map(Message::to_json).collect::<Vec<_>>(),
        }))?;
    } else {
        let verb = if dry_run { "would requeue" } else { "requeued" };
        super::out(&format!("{verb} {} message(s)", list.len()))?;
        for m in &list {
            super::out(&line(None, m))?;
        }
    }
    Ok(exit::OK)
}
