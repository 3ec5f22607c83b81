//! `gaia-bench cleanup`: cleanup throughput and what it costs concurrent claims. A store is
//! seeded in bulk (`gaia_testkit::seed`) with `--events` events and `--audit` audit records,
//! nine in ten of them 200 days old; then `--claimers` concurrent claimers acquire and release
//! claims for `--duration` without cleanup (the baseline), and again while `Gaia::apply_cleanup`
//! (the code `gaia cleanup --apply` runs, on its own connection pool as a separate process
//! would) archives and prunes everything older than 90 days. Prints rows archived and pruned
//! per second, and the claim calls' p99 with cleanup beside the baseline's, on SQLite and
//! optionally PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Args;
use gaia_core::Gaia;
use gaia_core::claims::Request;
use gaia_core::names::ClaimKey;
use gaia_core::retention::Retention;
use gaia_core::service::CleanupOptions;
use gaia_core::store::StoreOptions;
use gaia_core::time::parse_duration;
use serde_json::json;

use crate::exit::{self, BenchError, BenchResult, bench_error};
use crate::sample::Sample;
use crate::scratch::Backend;
use crate::settings::{Settings, open_store};

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Events to seed.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Audit records to seed.
    #[arg(long, default_value_t = 20_000)]
    audit: usize,
    /// Concurrent claimers.
    #[arg(long, default_value_t = 4)]
    claimers: usize,
    /// How long the baseline claims run.
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    duration: String,
    /// Rows per delete transaction.
    #[arg(long, default_value_t = 1000)]
    batch: u32,
    /// Also measure on this PostgreSQL server, in a scratch database created and dropped here.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Skip SQLite.
    #[arg(long)]
    no_sqlite: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: CleanupArgs, _settings: &Settings) -> BenchResult {
    let duration = parse_duration(&args.duration)?;
    let mut results = Vec::new();
    if !args.no_sqlite {
        results.push(measure(&args, Backend::sqlite()?, duration).await?);
    }
    if let Some(server) = &args.postgres {
        results.push(measure(&args, Backend::postgres(server).await?, duration).await?);
    }
    if args.json {
        println!("{}", json!({ "cleanup": results }));
    } else {
        for r in &results {
            println!(
                "{}: {} rows archived and pruned in {:.2}s = {} rows/s; claim p99 {} us with cleanup vs {} us without (x{:.2}); p50 {} vs {} us; {} vs {} claim calls/s",
                r["backend"],
                r["rows"],
                r["cleanup_seconds"].as_f64().unwrap_or(0.0),
                r["rows_per_s"],
                r["with_cleanup"]["p99_us"],
                r["baseline"]["p99_us"],
                r["p99_ratio"].as_f64().unwrap_or(0.0),
                r["with_cleanup"]["p50_us"],
                r["baseline"]["p50_us"],
                r["with_cleanup"]["ops_per_s"],
                r["baseline"]["ops_per_s"],
            );
        }
    }
    Ok(exit::OK)
}

async fn measure(
    args: &CleanupArgs,
    backend: Backend,
    duration: Duration,
) -> Result<serde_json::Value, BenchError> {
    let url = backend.url();
    let opts = StoreOptions::default();
    // Opening migrates the new database before the bulk seed writes into it.
    let store = open_store(&url, &opts).await?;
    let now = Utc::now();
    let old = now - chrono::Duration::days(200);
    let recent = now - chrono::Duration::days(1);
    let stamp = |base: chrono::DateTime<Utc>, i: usize| {
        base + chrono::Duration::microseconds(i64::try_from(i).unwrap_or(0))
    };
    let split = |n: usize| n - n / 10;
    let events: Vec<_> = (0..args.events)
        .map(|i| stamp(if i < split(args.events) { old } else { recent }, i))
        .collect();
    let audit: Vec<_> = (0..args.audit)
        .map(|i| stamp(if i < split(args.audit) { old } else { recent }, i))
        .collect();
    gaia_testkit::seed::seed_log(&url, &events, &audit).await;
    let gaia = Gaia::new(store.clone());

    let baseline = claims_while(&gaia, args.claimers, async {
        tokio::time::sleep(duration).await;
        Ok(())
    })
    .await?;

    let cleaner = Gaia::new(open_store(&url, &opts).await?);
    let dir = tempfile::tempdir()?;
    let cleanup = CleanupOptions {
        retention: Retention {
            events: Some(Duration::from_secs(90 * 86_400)),
            audit: Some(Duration::from_secs(90 * 86_400)),
            outbox: None,
            commands: None,
        },
        archive_dir: dir.path().to_owned(),
        batch: args.batch,
        actor: "bench".into(),
        holder: "bench-cleanup".into(),
    };
    let rows = Arc::new(std::sync::Mutex::new((0u64, Duration::ZERO)));
    let with_cleanup = {
        let rows = rows.clone();
        claims_while(&gaia, args.claimers, async move {
            let start = Instant::now();
            let applied = cleaner
                .apply_cleanup(&cleanup, &|_| {})
                .await
                .map_err(|e| bench_error("cleanup", e))?;
            let n = applied.deleted.values().sum();
            if let Ok(mut r) = rows.lock() {
                *r = (n, start.elapsed());
            }
            cleaner.store().close().await;
            Ok(())
        })
        .await?
    };
    let (n, took) = rows.lock().map(|r| *r).unwrap_or_default();
    let expected = (split(args.events) + split(args.audit)) as u64;
    if n != expected {
        return Err(bench_error(
            "cleanup",
            format!("pruned {n} rows, expected {expected}"),
        ));
    }
    let report = gaia.verify_audit().await?;
    if let Some(b) = report.first_break {
        return Err(bench_error(
            "audit chain after cleanup",
            format!("broken at #{}: {}", b.id, b.reason),
        ));
    }
    store.close().await;
    let name = backend.name();
    backend.finish().await?;
    let p99 = |s: &Sample| f64::from(s.percentile(99).max(1));
    Ok(json!({
        "backend": name,
        "rows": n,
        "cleanup_seconds": took.as_secs_f64(),
        "rows_per_s": (n as f64 / took.as_secs_f64().max(1e-9)).round(),
        "baseline": baseline.to_json(),
        "with_cleanup": with_cleanup.to_json(),
        "p99_ratio": p99(&with_cleanup) / p99(&baseline),
    }))
}

/// `claimers` tasks acquiring and releasing their own claim until `work` completes.
async fn claims_while(
    gaia: &Gaia,
    claimers: usize,
    work: impl std::future::Future<Output = Result<(), BenchError>>,
) -> Result<Sample, BenchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in 0..claimers {
        let (gaia, stop) = (gaia.clone(), stop.clone());
        set.spawn(async move {
            let key = ClaimKey::new(&format!("bench-{c}"), "default")?;
            let agent = format!("agent-{c}");
            let mut sample = Sample::default();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let req = if n % 2 == 0 {
                    Request::acquire(key.clone(), &agent, None, None, None)?
                } else {
                    Request::release(key.clone(), &agent, None)?
                };
                let t = Instant::now();
                gaia.apply_claim(&req).await?;
                sample
                    .latencies
                    .push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                sample.ops += 1;
                n += 1;
            }
            Ok::<_, BenchError>(sample)
        });
    }
    let worked = work.await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Sample::default();
    while let Some(joined) = set.join_next().await {
        let sample = joined.map_err(|e| BenchError::new(exit::FAILURE, e.to_string()))??;
        total.merge(sample);
    }
    worked?;
    total.elapsed = start.elapsed();
    total.latencies.sort_unstable();
    Ok(total)
}
