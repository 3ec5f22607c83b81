//! `gaia sync github`: the backlog as GitHub issues through the user's `gh` login. Tasks are
//! synced first (with `--tasks`), so that each story's checklist can link its tasks' issues;
//! then the stories. With `--pull`, closed issues are first brought back (stories closed,
//! tasks done). One line per item as it is done (or `--json` at the end), then a summary.
//! Runs on the database directly: the sync records are its write-ahead log.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use gaia_core::backlog::check_slug;
use gaia_core::github::check_repo;
use gaia_github::backlog::{Loaded, Scope};
use gaia_github::limiter::Limits;
use gaia_github::pull::{PullResult, Pulled};
use gaia_github::sync::{ItemResult, Outcome, SyncError};
use gaia_github::{Gh, GhError, Summary, SyncOptions};
use serde_json::{Value, json};

use crate::cli::GithubSyncArgs;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

/// `gaia sync github`.
pub async fn github(args: GithubSyncArgs, config: &Config) -> CliResult {
    check_repo(&args.repo)?;
    if let Some(s) = &args.story {
        check_slug("story", s)?;
    }
    let gaia = crate::open::gaia(config).await?;
    let gh = Gh {
        timeout: Duration::from_secs(args.gh_timeout.max(1)),
        min_retry_wait: Duration::from_secs(args.min_retry_wait),
        ..Gh::default()
    };
    let opts = SyncOptions {
        dry_run: args.dry_run,
        settle: Duration::from_secs(args.settle),
        concurrency: usize::from(args.parallel),
        limits: Limits {
            spacing: Duration::from_millis(args.spacing_ms),
            window_scale: args.limit_scale,
            ..Limits::default()
        },
        ..SyncOptions::new(&args.repo, &crate::client::cli_actor())
    };
    let pulled = if args.pull {
        let pulled = gaia_github::pull::pull(&gaia, &gh, &args.repo, &opts.actor)
            .await
            .map_err(sync_error)?;
        if !args.json {
            for p in &pulled {
                super::out(&pulled_line(p))?;
            }
        }
        pulled
    } else {
        Vec::new()
    };
    let scope = Scope {
        story: args.story.clone(),
        tasks: args.tasks,
    };
    let loaded = Loaded::read(&gaia, &scope, &args.repo).await?;
    let json_out = args.json;
    let mut bar = Bar::new(loaded.items(), !json_out && std::io::stderr().is_terminal());
    let mut progress = move |r: &ItemResult| {
        if !json_out {
            bar.clear();
            let _ = super::out(&item_line(r));
            bar.step();
        }
    };
    let summary = gaia_github::backlog::sync_backlog(&gaia, &gh, &opts, &loaded, &mut progress)
        .await
        .map_err(sync_error)?;
    drop(progress);
    report(&args, &summary, &pulled)?;
    let pull_failed = pulled
        .iter()
        .any(|p| matches!(p.result, PullResult::Failed(_)));
    Ok(if summary.count("failed") > 0 || pull_failed {
        exit::FAILURE
    } else {
        exit::OK
    })
}

fn sync_error(e: SyncError) -> CliError {
    match e {
        SyncError::Gaia(e) => e.into(),
        SyncError::Gh(e) => gh_error(&e),
    }
}

fn pulled_line(p: &Pulled) -> String {
    let what = format!("{} {} #{}", p.kind.as_str(), p.item, p.issue);
    match &p.result {
        PullResult::Applied(done) => format!("pulled {what}: {done}"),
        PullResult::Skipped(why) => format!("pull skipped {what}: {why}"),
        PullResult::Failed(why) => format!("pull failed {what}: {why}"),
    }
}

fn pulled_json(p: &Pulled) -> Value {
    let (result, reason) = match &p.result {
        PullResult::Applied(done) => (*done, None),
        PullResult::Skipped(why) => ("skipped", Some(why)),
        PullResult::Failed(why) => ("failed", Some(why)),
    };
    json!({
        "kind": p.kind.as_str(),
        "item": p.item,
        "issue": p.issue,
        "result": result,
        "reason": reason,
    })
}

/// The exit code of a failure that stops the sync.
fn gh_error(e: &GhError) -> CliError {
    let code = match e {
        GhError::NotLoggedIn | GhError::Spawn(_) | GhError::NotFound { .. } => exit::BAD_INPUT,
        GhError::Timeout(_) | GhError::Server { .. } | GhError::RateLimited { .. } => {
            exit::UNAVAILABLE
        }
        GhError::Validation(_) | GhError::Other { .. } => exit::FAILURE,
    };
    CliError::new(code, format!("github: {e}"))
}

fn result_word(o: &Outcome) -> &'static str {
    match o {
        Outcome::Created(_) => "created",
        Outcome::Found(_) => "found",
        Outcome::Updated(_) => "updated",
        Outcome::Closed(_) => "closed",
        Outcome::Unchanged(_) => "unchanged",
        Outcome::WouldCreate => "would create",
        Outcome::WouldUpdate(_) => "would update",
        Outcome::Pending(_) => "pending",
        Outcome::Failed(_) => "failed",
    }
}

fn reason(o: &Outcome) -> Option<&str> {
    match o {
        Outcome::Pending(r) | Outcome::Failed(r) => Some(r),
        _ => None,
    }
}

fn item_line(r: &ItemResult) -> String {
    let mut line = format!("{} {} {}", result_word(&r.outcome), r.kind.as_str(), r.item);
    if let Some(n) = r.outcome.issue() {
        line.push_str(&format!(" #{n}"));
    }
    if let Some(why) = reason(&r.outcome) {
        line.push_str(&format!(": {why}"));
    }
    line
}

/// A one-line progress bar on stderr, drawn only on a terminal (piped output gets the plain
/// lines alone).
struct Bar {
    done: usize,
    total: usize,
    on: bool,
}

impl Bar {
    const WIDTH: usize = 30;

    fn new(total: usize, on: bool) -> Self {
        Self { done: 0, total, on }
    }

    fn step(&mut self) {
        self.done += 1;
        if !self.on || self.total == 0 {
            return;
        }
        let filled = Self::WIDTH * self.done.min(self.total) / self.total;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {}/{}",
            "#".repeat(filled),
            "-".repeat(Self::WIDTH - filled),
            self.done,
            self.total
        );
        let _ = err.flush();
    }

    fn clear(&self) {
        if self.on && self.done > 0 {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.clear();
    }
}

use gaia_github::sync::BUCKETS;

fn report(args: &GithubSyncArgs, summary: &Summary, pulled: &[Pulled]) -> Result<(), CliError> {
    if args.json {
        let counts: serde_json::Map<String, Value> = BUCKETS
            .iter()
            .map(|b| ((*b).to_owned(), json!(summary.count(b))))
            .collect();
        let items: Vec<Value> = summary
            .items
            .iter()
            .map(|r| {
                json!({
                    "kind": r.kind.as_str(),
                    "item": r.item,
                    "result": result_word(&r.outcome),
                    "issue": r.outcome.issue(),
                    "reason": reason(&r.outcome),
                })
            })
            .collect();
        let pulled: Vec<Value> = pulled.iter().map(pulled_json).collect();
        super::out_json(&json!({
            "repo": args.repo,
            "dry_run": args.dry_run,
            "summary": counts,
            "items": items,
            "pulled": pulled,
        }))?;
    } else {
        let parts: Vec<String> = BUCKETS
            .iter()
            .map(|b| format!("{} {b}", summary.count(b)))
            .collect();
        let prefix = if args.dry_run { "dry run: " } else { "" };
        super::out(&format!("{prefix}{}", parts.join(", ")))?;
    }
    Ok(())
}
