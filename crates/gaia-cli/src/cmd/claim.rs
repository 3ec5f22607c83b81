//! `gaia claim acquire|refresh|release|inspect|list`.

use chrono::Utc;
use gaia_core::claims::{ClaimResult, Outcome, Request};
use gaia_core::names::ClaimKey;
use gaia_core::time::{format_duration, parse_duration, rfc3339};

use crate::cli::{ClaimCommand, ClaimTarget};
use crate::config::Config;
use crate::exit::{self, CliResult};

fn key(t: &ClaimTarget) -> Result<ClaimKey, gaia_core::ValidationError> {
    ClaimKey::new(&t.story, &t.todolist)
}

fn ttl(text: Option<&str>) -> Result<Option<std::time::Duration>, gaia_core::ValidationError> {
    text.map(parse_duration).transpose()
}

pub async fn run(c: ClaimCommand, config: &Config) -> CliResult {
    // Each request is validated before the store is touched: bad input changes nothing.
    match c {
        ClaimCommand::Acquire {
            target,
            agent,
            operator,
            fingerprint,
            ttl: t,
            json,
        } => {
            let ttl = ttl(t.as_deref())?.or(Some(config.default_ttl));
            let key = key(&target)?;
            let req = Request::acquire(
                key,
                &agent,
                operator.as_deref(),
                fingerprint.as_deref(),
                ttl,
            )?;
            change(config, &req, json).await
        }
        ClaimCommand::Refresh {
            target,
            agent,
            fingerprint,
            ttl: t,
            json,
        } => {
            let key = key(&target)?;
            let req = Request::refresh(key, &agent, fingerprint.as_deref(), ttl(t.as_deref())?)?;
            change(config, &req, json).await
        }
        ClaimCommand::Release {
            target,
            agent,
            fingerprint,
            json,
        } => {
            let req = Request::release(key(&target)?, &agent, fingerprint.as_deref())?;
            change(config, &req, json).await
        }
        ClaimCommand::Inspect { target, json } => {
            let key = key(&target)?;
            let gaia = crate::client::connect(config).await?;
            print(&gaia.inspect(&key).await?, json)
        }
        ClaimCommand::List { all, json } => list(config, all, json).await,
    }
}

/// `gaia claim acquire|refresh|release`: one validated request.
async fn change(config: &Config, req: &Request, json: bool) -> CliResult {
    let gaia = crate::client::connect(config).await?;
    let result = gaia.claim(req).await?;
    gaia.close().await;
    print(&result, json)
}

/// Prints a claim's outcome; the exit code is the outcome's.
fn print(result: &ClaimResult, json: bool) -> CliResult {
    if json {
        super::out(&result.to_json().to_string())?;
    } else {
        super::out(&human(result))?;
    }
    Ok(code(result.outcome))
}

/// `gaia claim list`.
async fn list(config: &Config, all: bool, json: bool) -> CliResult {
    let gaia = crate::client::connect(config).await?;
    let list = gaia.list_claims(all).await?;
    if json {
        let arr: Vec<_> = list.iter().map(ClaimResult::to_json).collect();
        super::out_json(&serde_json::Value::Array(arr))?;
    } else if list.is_empty() {
        super::out(if all { "no claims" } else { "no live claims" })?;
    } else {
        for r in &list {
            super::out(&human(r))?;
        }
    }
    Ok(exit::OK)
}

/// The exit code of a claim outcome.
pub fn code(o: Outcome) -> u8 {
    match o {
        Outcome::HeldByOther | Outcome::NotHeld => exit::CONFLICT,
        Outcome::LockTimeout => exit::LOCK_TIMEOUT,
        _ => exit::OK,
    }
}

/// One line for people: outcome, key, holder, token and time left.
pub fn human(r: &ClaimResult) -> String {
    let mut s = format!("{} {}", r.outcome.as_str(), r.key);
    if let Some(h) = &r.holder {
        s.push_str(&format!(
            " holder={} operator={} fingerprint={}",
            h.agent, h.operator, h.fingerprint
        ));
    }
    if r.token > 0 {
        s.push_str(&format!(" token={}", r.token));
    }
    if let (Some(e), true) = (r.expires_at, r.holder.is_some()) {
        let left = (e - Utc::now())
            .to_std()
            .map(|d| format_duration(std::time::Duration::from_secs(d.as_secs().max(1))));
        match left {
            Ok(left) => s.push_str(&format!(" expires={} (in {left})", rfc3339(e))),
            Err(_) => s.push_str(&format!(" expired={}", rfc3339(e))),
        }
    }
    if let Some(p) = &r.previous {
        s.push_str(&format!(" previous={}", p.agent));
    }
    if r.outcome == Outcome::LockTimeout {
        s.push_str(" (the store was busy; retry)");
    }
    s
}
