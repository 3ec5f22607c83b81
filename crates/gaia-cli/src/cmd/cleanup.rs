//! `gaia cleanup`: prints what the retention settings (`[retention]` in gaia.toml) would
//! archive and prune; with `--apply`, archives it, verifies the archive and prunes exactly
//! what it holds (see `gaia_core::service::cleanup`). `gaia audit verify --archive` is in
//! `audit.rs`.

use gaia_core::retention::{Job, Kind, Plan};
use gaia_core::service::{CleanupError, CleanupOptions};
use gaia_core::time::{format_duration, rfc3339};
use serde_json::json;
use std::io::{IsTerminal, Write};

use crate::cli::CleanupArgs;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

pub async fn run(args: CleanupArgs, config: &Config) -> CliResult {
    if config.remote.is_some() {
        return Err(CliError::bad_input(
            "gaia cleanup works on the store directly: unset GAIA_URL/--url and give --db",
        ));
    }
    let gaia = crate::open::gaia(config).await?;
    let opts = CleanupOptions {
        retention: config.retention.keep.clone(),
        archive_dir: config.retention.archive_dir.clone(),
        batch: args.batch.unwrap_or(config.retention.batch),
        actor: crate::client::cli_actor(),
        holder: format!(
            "cleanup-{}-{}",
            super::serve::hostname(),
            std::process::id()
        ),
    };
    if !args.apply {
        let plan = gaia.plan_cleanup(&opts.retention).await?;
        let open = gaia.open_cleanup_job().await.map_err(cleanup_error)?;
        if args.json {
            super::out_json(&json!({
                "plan": plan,
                "open_job": open,
                "archive_dir": opts.archive_dir,
            }))?;
        } else {
            print_plan(&plan, open.as_ref())?;
        }
        gaia.store().close().await;
        return Ok(exit::OK);
    }
    let progress = progress_printer();
    let applied = match gaia.apply_cleanup(&opts, &progress).await {
        Err(CleanupError::Busy { holder }) if gone(&holder) => {
            // The run that holds the lease was killed on this host: nothing renews it, so
            // let it go now rather than wait for it to lapse.
            progress(&format!(
                "{holder} is no longer running; taking over its lease"
            ));
            gaia.release_cleanup_lease(&holder).await?;
            gaia.apply_cleanup(&opts, &progress).await
        }
        other => other,
    }
    .map_err(cleanup_error)?;
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    gaia.store().close().await;
    let deleted: serde_json::Map<String, serde_json::Value> = applied
        .deleted
        .iter()
        .map(|(k, n)| (k.as_str().to_owned(), json!(n)))
        .collect();
    if args.json {
        super::out_json(&json!({
            "job": applied.job.as_ref().map(|j| &j.id),
            "resumed": applied.resumed,
            "archive": applied.archive,
            "sha256": applied.job.as_ref().and_then(|j| j.sha256.clone()),
            "deleted": deleted,
        }))?;
    } else if let (Some(job), Some(path)) = (&applied.job, &applied.archive) {
        super::out(&format!(
            "cleanup {} done{}: archive {} (sha256 {})",
            job.id,
            if applied.resumed { " (resumed)" } else { "" },
            path.display(),
            job.sha256.as_deref().unwrap_or("")
        ))?;
        for (k, n) in &applied.deleted {
            super::out(&format!("  pruned {n} {}", plural(*k)))?;
        }
    } else {
        super::out("nothing to clean up: no record is older than its retention")?;
    }
    Ok(exit::OK)
}

/// Progress lines on stderr: rewritten in place on a terminal, one per line in a pipe or a
/// log (which keeps each).
fn progress_printer() -> impl Fn(&str) + Send + Sync {
    let terminal = std::io::stderr().is_terminal();
    move |line: &str| {
        if terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[Kgaia cleanup: {line}");
            let _ = err.flush();
        } else {
            eprintln!("gaia cleanup: {line}");
        }
    }
}

/// Whether the lease holder `holder` (`cleanup-HOST-PID`) is a run on this host whose
/// process has ended.
fn gone(holder: &str) -> bool {
    let Some(rest) = holder.strip_prefix("cleanup-") else {
        return false;
    };
    let Some((host, pid)) = rest.rsplit_once('-') else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    host == super::serve::hostname()
        && pid > 0
        && matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        )
}

fn plural(k: Kind) -> &'static str {
    match k {
        Kind::Event => "events",
        Kind::Audit => "audit records",
        Kind::Outbox => "delivered messages",
        Kind::Command => "ended requests",
    }
}

fn print_plan(plan: &Plan, open: Option<&Job>) -> std::io::Result<()> {
    super::out(&format!(
        "cleanup plan at {} (dry run; --apply archives and prunes it)",
        rfc3339(plan.now)
    ))?;
    if let Some(job) = open {
        super::out(&format!(
            "an unfinished job {} ({:?}) is completed first by --apply",
            job.id, job.status
        ))?;
    }
    if plan.kinds.is_empty() {
        super::out(
            "no retention is set: [retention] events, audit, outbox, commands in gaia.toml",
        )?;
        return Ok(());
    }
    super::out(&format!(
        "{:<22} {:>8} {:>10}  {:<28} {}",
        "kind", "keep", "rows", "oldest", "range"
    ))?;
    for k in &plan.kinds {
        let keep = format_duration(std::time::Duration::from_millis(k.keep_ms));
        let range = match (k.kind, k.span.low, k.span.high) {
            (Kind::Event, Some(lo), Some(hi)) => format!("seq {lo}..{hi}"),
            (Kind::Audit, Some(lo), Some(hi)) => format!("id {lo}..{hi}"),
            (Kind::Outbox, Some(lo), Some(hi)) => format!("id {lo}..{hi}"),
            _ => String::new(),
        };
        super::out(&format!(
            "{:<22} {:>8} {:>10}  {:<28} {}",
            plural(k.kind),
            keep,
            k.span.count,
            k.span.oldest.map(rfc3339).unwrap_or_else(|| "-".into()),
            range
        ))?;
    }
    super::out(&format!(
        "{} rows would be archived and pruned",
        plan.total()
    ))
}

/// A cleanup failure: a store error keeps its exit code; an archive or job problem is a
/// failure (nothing unarchived was deleted).
pub fn cleanup_error(e: CleanupError) -> CliError {
    match e {
        CleanupError::Store(s) => s.into(),
        CleanupError::Gaia(e) => e.into(),
        other => CliError::new(exit::FAILURE, other),
    }
}
