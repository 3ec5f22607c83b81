//! `gaia-bench github`: the GitHub sync against the fake GitHub server, through the real
//! `gh`, on SQLite.
//!
//! 1. Rate of new items: `--items` new issues created under GitHub's secondary limits (one
//!    mutating request per second, 80 per minute, 500 per hour). At real time 500 items take
//!    more than six minutes, so the limiter's clock runs `--scale` times faster (spacing,
//!    minute and hour all shrink alike) and `gh` calls overlap (`--parallel`); the baseline is
//!    the time the limits allow at best in the same scaled clock: the 80/min ceiling, and the
//!    one-per-second spacing (which alone caps the rate at 60/min, 75 % of the ceiling). The
//!    fake's arrival times are checked against the scaled limits.
//! 2. Calls of a re-sync: `--resync-items` items already linked to their issues (seeded
//!    directly: issues on the fake, records in the store) are synced again with nothing
//!    changed, then with one item changed; the baseline is the goal of listing pages only
//!    (one per 100 issues).

use std::time::{Duration, Instant};

use clap::Args;
use gaia_core::Gaia;
use gaia_core::github::ItemKind;
use gaia_core::usecase::github::{Push, Pushed};
use gaia_github::limiter::Limits;
use gaia_github::sync::{full_body, pushed_hash};
use gaia_github::{Desired, Gh, SyncOptions};
use gaia_testkit::fake_github::{Call, FakeGithub, VIEWER};
use serde_json::json;

use crate::exit::{self, BenchError, BenchResult, bench_error};
use crate::settings::{Settings, open_store};

#[derive(Debug, Args)]
pub struct GithubArgs {
    /// New items created in the rate run.
    #[arg(long, default_value_t = 500)]
    items: usize,
    /// The limiter's clock runs this many times faster (1: real time, over six minutes for
    /// 500 items).
    #[arg(long, default_value_t = 30)]
    scale: u32,
    /// Items worked on at once in the rate run.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// Items already linked in the re-sync run.
    #[arg(long, default_value_t = 1000)]
    resync_items: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

const REPO: &str = "bench/widgets";
const PER_MINUTE: usize = 80;

fn items(n: usize) -> Vec<Desired> {
    (0..n)
        .map(|i| Desired {
            kind: ItemKind::Task,
            item: i.to_string(),
            title: format!("bench item {i}"),
            body: format!("- [ ] step one of item {i}\n- [ ] step two"),
            labels: vec!["gaia".into(), "gaia:task".into(), "status:todo".into()],
            closed: None,
        })
        .collect()
}

async fn store(
    dir: &tempfile::TempDir,
    name: &str,
    settings: &Settings,
) -> Result<Gaia, BenchError> {
    let url = format!("sqlite://{}", dir.path().join(name).display());
    Ok(Gaia::new(
        open_store(&url, &settings.store_options()).await?,
    ))
}

pub async fn run(args: GithubArgs, settings: &Settings) -> BenchResult {
    if args.scale == 0 || args.parallel == 0 || args.items == 0 {
        return Err(BenchError::bad_input(
            "--items, --scale and --parallel must be at least 1",
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| bench_error("temporary directory", e))?;
    let fake = FakeGithub::start().await;
    let mut env = fake.gh_env();
    env.push(("GH_CONFIG_DIR".into(), dir.path().display().to_string()));
    let gh = Gh {
        env,
        timeout: Duration::from_secs(60),
        min_retry_wait: Duration::from_secs(60) / args.scale,
        ..Gh::default()
    };

    // 1. New items under the scaled limits.
    let gaia = store(&dir, "rate.db", settings).await?;
    let limits = Limits {
        spacing: Duration::from_secs(1) / args.scale,
        window_scale: args.scale,
        ..Limits::default()
    };
    let opts = SyncOptions {
        limits,
        concurrency: args.parallel,
        ..SyncOptions::new(REPO, "bench")
    };
    let desired = items(args.items);
    let started = Instant::now();
    let summary = gaia_github::sync(&gaia, &gh, &opts, &desired, &mut |_| {})
        .await
        .map_err(|e| bench_error("sync", e))?;
    let took = started.elapsed();
    let created = summary.count("created");
    if created != args.items {
        return Err(bench_error(
            "sync",
            format!("{created} of {} items created", args.items),
        ));
    }
    let (minute, hour) = limits.windows();
    let is_create = |c: &Call| c.is_create();
    let max_minute = fake.max_in_window(minute, is_create);
    let max_hour = fake.max_in_window(hour, is_create);
    let limit_hits = fake
        .calls()
        .iter()
        .filter(|c| c.status == 403 || c.status == 429)
        .count();
    // In the scaled clock: the best the 80/min ceiling allows, and the spacing alone.
    let ceiling = minute.mul_f64(args.items as f64 / PER_MINUTE as f64);
    let spacing_bound = limits.spacing * u32::try_from(args.items).unwrap_or(u32::MAX);
    let per_min = args.items as f64 / took.as_secs_f64() * minute.as_secs_f64();

    // 2. A re-sync of linked items.
    let gaia = store(&dir, "resync.db", settings).await?;
    let linked = items(args.resync_items);
    for d in &linked {
        let intent = gaia
            .github_sync_intend(REPO, d.kind, &d.item, 0, None)
            .await
            .map_err(|e| bench_error("seed intent", e))?
            .record;
        let number = fake.add_issue(
            REPO,
            VIEWER,
            &d.title,
            &full_body(d, &intent.sync_key),
            false,
        );
        let push = Push {
            repo: REPO,
            kind: d.kind,
            item: &d.item,
            issue: i64::try_from(number).unwrap_or(i64::MAX),
            hash: &pushed_hash(d, &intent.sync_key),
            what: Pushed::Created,
        };
        gaia.github_sync_record_push(&push, "bench")
            .await
            .map_err(|e| bench_error("seed push", e))?;
    }
    let plain = SyncOptions::new(REPO, "bench");
    fake.clear_calls();
    let again = gaia_github::sync(&gaia, &gh, &plain, &linked, &mut |_| {})
        .await
        .map_err(|e| bench_error("re-sync", e))?;
    let quiet_calls = fake.calls().len();
    let unchanged = again.count("unchanged");
    let mut one_changed = linked.clone();
    if let Some(first) = one_changed.first_mut() {
        first.title.push_str(" (edited)");
    }
    fake.clear_calls();
    gaia_github::sync(&gaia, &gh, &plain, &one_changed, &mut |_| {})
        .await
        .map_err(|e| bench_error("re-sync with one change", e))?;
    let changed_calls = fake.calls();
    let changed_mutating = changed_calls.iter().filter(|c| c.is_mutating()).count();
    let pages_goal = args.resync_items.div_ceil(100);
    fake.shutdown().await;

    let result = json!({
        "rate": {
            "items": args.items,
            "scale": args.scale,
            "parallel": args.parallel,
            "seconds": took.as_secs_f64(),
            "items_per_scaled_minute": per_min,
            "ceiling_seconds": ceiling.as_secs_f64(),
            "share_of_ceiling": ceiling.as_secs_f64() / took.as_secs_f64(),
            "spacing_bound_seconds": spacing_bound.as_secs_f64(),
            "share_of_spacing_bound": spacing_bound.as_secs_f64() / took.as_secs_f64(),
            "max_creates_in_a_minute": max_minute,
            "max_creates_in_an_hour": max_hour,
            "limit_answers": limit_hits,
        },
        "resync": {
            "items": args.resync_items,
            "unchanged": unchanged,
            "calls_no_change": quiet_calls,
            "listing_pages_goal": pages_goal,
            "calls_one_changed": changed_calls.len(),
            "mutating_calls_one_changed": changed_mutating,
        },
    });
    if args.json {
        println!("{result}");
    } else {
        println!(
            "github sync, {} new items, limiter clock x{} (spacing {:?}, minute {:?}), {} at once:",
            args.items, args.scale, limits.spacing, minute, args.parallel
        );
        println!(
            "  {:.1} s = {:.1} items per (scaled) minute; ceiling 80/min allows {:.1} s: {:.0} % of the ceiling",
            took.as_secs_f64(),
            per_min,
            ceiling.as_secs_f64(),
            100.0 * ceiling.as_secs_f64() / took.as_secs_f64()
        );
        println!(
            "  the 1/s spacing alone allows {:.1} s: {:.0} % of that bound",
            spacing_bound.as_secs_f64(),
            100.0 * spacing_bound.as_secs_f64() / took.as_secs_f64()
        );
        println!(
            "  most creates in any (scaled) minute {max_minute} (limit 80), hour {max_hour} (limit 500); limit answers {limit_hits}"
        );
        println!(
            "re-sync of {} linked items: {unchanged} unchanged with {quiet_calls} API calls (goal: listing pages only, {pages_goal}); one changed: {} calls, {changed_mutating} mutating",
            args.resync_items,
            changed_calls.len()
        );
    }
    let within = max_minute <= PER_MINUTE && max_hour <= 500 && limit_hits == 0;
    Ok(if within { exit::OK } else { exit::FAILURE })
}
