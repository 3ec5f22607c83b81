//! `gaia-bench claims`: Gaia's claim path (`Gaia::apply_claim` through the store `gaia` would
//! open) measured beside the raw-SQL baseline doing the same writes, in the same run, in
//! alternating slices, on SQLite and optionally PostgreSQL. The audit chain Gaia wrote is
//! verified after.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Args;
use gaia_core::Gaia;
use gaia_core::claims::{Outcome, Request};
use gaia_core::names::ClaimKey;
use gaia_core::store::StoreOptions;
use gaia_core::time::{Clock, parse_duration};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use crate::api::HttpClaims;
use crate::baseline::{
    pg_acquire, pg_baseline, pg_release, raw_result, sqlite_acquire, sqlite_baseline,
    sqlite_release,
};
use crate::exit::{self, BenchError, BenchResult};
use crate::sample::{Done, Sample};
use crate::scratch::Scratch;
use crate::settings::{Settings, open_store, optional_duration};

#[derive(Debug, Args)]
pub struct ClaimsArgs {
    /// How long each side is measured in each cell.
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    duration: String,
    /// Unmeasured run before each side of each cell ("0" for none).
    #[arg(long, default_value = "500ms", value_name = "DURATION")]
    warmup: String,
    /// Each side's time is split into this many slices, alternating with the other side's.
    #[arg(long, default_value_t = 3, value_name = "N")]
    rounds: u32,
    /// Concurrent claimers, comma-separated.
    #[arg(
        long,
        default_value = "1,8,64",
        value_delimiter = ',',
        value_name = "N,..."
    )]
    concurrency: Vec<usize>,
    /// How many distinct keys the claimers pick from at random, comma-separated.
    #[arg(
        long,
        default_value = "1,1000",
        value_delimiter = ',',
        value_name = "N,..."
    )]
    keys: Vec<usize>,
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

/// Lease length of every acquisition in the benchmark.
pub const TTL: Duration = Duration::from_secs(1);

/// Every acquire must write, as the baseline's upsert always does; otherwise contended cells
/// would compare Gaia's cheap refusals with the baseline's writes. A clock that jumps past the
/// TTL on every reading makes each acquire find the previous lease expired.
#[derive(Debug)]
pub struct LeapClock {
    start: DateTime<Utc>,
    readings: AtomicI64,
}

impl Clock for LeapClock {
    fn now(&self) -> DateTime<Utc> {
        let n = self.readings.fetch_add(1, Ordering::Relaxed);
        self.start + chrono::Duration::seconds(2 * n)
    }
}

/// The code under test: Gaia's service (in-process or over HTTP), or the baseline's raw SQL on
/// one of the backends.
#[derive(Debug, Clone)]
pub enum Side {
    Gaia(Gaia),
    Http(Arc<HttpClaims>),
    /// etcd's lock recipe, the peer for locks (see [`crate::etcd`]).
    Etcd(Arc<crate::etcd::EtcdLocks>),
    SqliteRaw(SqlitePool),
    PgRaw(PgPool),
}

impl Side {
    async fn call(&self, key: &ClaimKey, claimer: &str, release: bool) -> Result<Done, BenchError> {
        match self {
            Self::Gaia(gaia) => {
                let req = if release {
                    Request::release(key.clone(), "bench", None)?
                } else {
                    Request::acquire(
                        key.clone(),
                        "bench",
                        Some("bench"),
                        Some(claimer),
                        Some(TTL),
                    )?
                };
                Ok(match gaia.apply_claim(&req).await?.outcome {
                    Outcome::Acquired | Outcome::TakenOver | Outcome::Released => Done::Wrote,
                    Outcome::LockTimeout => Done::TimedOut,
                    _ => Done::Noop,
                })
            }
            Self::Http(http) => http.call(key, claimer, release).await,
            Self::Etcd(etcd) => etcd.call(key, claimer, release).await,
            Self::SqliteRaw(pool) => raw_result(if release {
                sqlite_release(pool, key).await
            } else {
                sqlite_acquire(pool, key, claimer).await
            }),
            Self::PgRaw(pool) => raw_result(if release {
                pg_release(pool, key).await
            } else {
                pg_acquire(pool, key, claimer).await
            }),
        }
    }
}

/// One claimer: picks a random key, acquires it and releases it, until `until`.
async fn claimer(
    side: Side,
    keys: Arc<Vec<ClaimKey>>,
    id: usize,
    until: Instant,
) -> Result<Sample, BenchError> {
    let mut rng = StdRng::seed_from_u64(rand::random());
    let name = format!("c{id}");
    let mut sample = Sample::default();
    while Instant::now() < until {
        let Some(key) = keys.get(rng.random_range(0..keys.len())) else {
            break;
        };
        for release in [false, true] {
            let start = Instant::now();
            let done = side.call(key, &name, release).await?;
            sample
                .latencies
                .push(u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX));
            sample.ops += 1;
            match done {
                Done::Wrote => {}
                Done::Noop => sample.noops += 1,
                Done::TimedOut => sample.timeouts += 1,
            }
        }
    }
    Ok(sample)
}

/// Runs `concurrency` claimers for `duration` and merges what they measured.
pub async fn measure(
    side: &Side,
    keys: &Arc<Vec<ClaimKey>>,
    concurrency: usize,
    duration: Duration,
) -> Result<Sample, BenchError> {
    let start = Instant::now();
    let until = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..concurrency {
        tasks.spawn(claimer(side.clone(), keys.clone(), id, until));
    }
    let mut total = Sample::default();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(sample)) => total.merge(sample),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => {
                failure = failure.or(Some(BenchError::new(
                    exit::FAILURE,
                    format!("a claimer failed: {e}"),
                )))
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    // Claimers finish their last pair after the deadline: count the time that took too.
    total.elapsed = start.elapsed();
    total.latencies.sort_unstable();
    Ok(total)
}

/// One row of the result table.
#[derive(Debug)]
pub struct Cell {
    backend: &'static str,
    concurrency: usize,
    keys: usize,
    gaia: Sample,
    baseline: Sample,
}

impl Cell {
    fn ratio(&self) -> f64 {
        let base = self.baseline.ops_per_s();
        if base > 0.0 {
            self.gaia.ops_per_s() / base
        } else {
            0.0
        }
    }
}

#[derive(Debug)]
pub struct Plan {
    duration: Duration,
    warmup: Option<Duration>,
    rounds: u32,
    concurrency: Vec<usize>,
    keys: Vec<usize>,
    quiet: bool,
}

async fn run_cells(
    backend: &'static str,
    gaia: &Side,
    baseline: &Side,
    plan: &Plan,
    cells: &mut Vec<Cell>,
) -> Result<(), BenchError> {
    for &n_keys in &plan.keys {
        let keys: Arc<Vec<ClaimKey>> = Arc::new(
            (0..n_keys)
                .map(|i| ClaimKey::new(&format!("bench-{i}"), "default"))
                .collect::<Result<_, _>>()?,
        );
        for &concurrency in &plan.concurrency {
            if let Some(w) = plan.warmup {
                measure(gaia, &keys, concurrency, w).await?;
                measure(baseline, &keys, concurrency, w).await?;
            }
            let (mut g, mut b) = (Sample::default(), Sample::default());
            let slice = plan.duration / plan.rounds;
            for round in 0..plan.rounds {
                // Short alternating slices, the first side changing each round: a burst of
                // load from elsewhere on the machine then hits both sides alike.
                let gaia_first = round % 2 == 0;
                for first in [true, false] {
                    if first == gaia_first {
                        g.combine(measure(gaia, &keys, concurrency, slice).await?);
                    } else {
                        b.combine(measure(baseline, &keys, concurrency, slice).await?);
                    }
                }
            }
            g.latencies.sort_unstable();
            b.latencies.sort_unstable();
            if !plan.quiet {
                eprintln!(
                    "{backend} c={concurrency} keys={n_keys}: gaia {:.0} ops/s, baseline {:.0} ops/s",
                    g.ops_per_s(),
                    b.ops_per_s()
                );
            }
            cells.push(Cell {
                backend,
                concurrency,
                keys: n_keys,
                gaia: g,
                baseline: b,
            });
        }
    }
    Ok(())
}

fn positive(what: &str, values: &[usize]) -> Result<(), BenchError> {
    if values.is_empty() || values.contains(&0) {
        return Err(BenchError::bad_input(format!(
            "--{what} takes positive numbers, e.g. 1,8,64"
        )));
    }
    Ok(())
}

pub fn bench_options(settings: &Settings) -> StoreOptions {
    let mut opts = settings.store_options();
    opts.clock = Some(Arc::new(LeapClock {
        start: Utc::now(),
        readings: AtomicI64::new(0),
    }));
    opts
}

/// The measured path must not have bought its speed with the invariants: the audit chain
/// written during the run has to verify, record for record.
pub async fn check_chain(gaia: &Gaia, backend: &str, quiet: bool) -> Result<(), BenchError> {
    let report = gaia.verify_audit().await?;
    if let Some(b) = report.first_break {
        return Err(BenchError::new(
            exit::FAILURE,
            format!("{backend}: the audit chain written by the benchmark is broken: {b:?}"),
        ));
    }
    if !quiet {
        eprintln!("{backend}: audit chain intact ({} records)", report.checked);
    }
    Ok(())
}

async fn bench_sqlite(
    plan: &Plan,
    settings: &Settings,
    cells: &mut Vec<Cell>,
) -> Result<(), BenchError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let opts = bench_options(settings);
    // Gaia first: its migration refuses a file that already holds another application's tables.
    let store = open_store(&format!("sqlite://{}", path.display()), &opts).await?;
    let pool = sqlite_baseline(&path, &opts).await?;
    let gaia = Gaia::new(store.clone());
    let mut res = run_cells(
        "sqlite",
        &Side::Gaia(gaia.clone()),
        &Side::SqliteRaw(pool.clone()),
        plan,
        cells,
    )
    .await;
    if res.is_ok() {
        res = check_chain(&gaia, "sqlite", plan.quiet).await;
    }
    store.close().await;
    pool.close().await;
    res
}

async fn bench_postgres(
    server: &str,
    plan: &Plan,
    settings: &Settings,
    cells: &mut Vec<Cell>,
) -> Result<(), BenchError> {
    if !(server.starts_with("postgres://") || server.starts_with("postgresql://")) {
        return Err(BenchError::bad_input(
            "--postgres takes a postgres://USER@HOST/DB URL",
        ));
    }
    let scratch = Scratch::create(server).await?;
    let opts = bench_options(settings);
    let res = async {
        let store = open_store(&scratch.url, &opts).await?;
        let pool = pg_baseline(&scratch.url, &opts).await?;
        let gaia = Gaia::new(store.clone());
        let mut res = run_cells(
            "postgres",
            &Side::Gaia(gaia.clone()),
            &Side::PgRaw(pool.clone()),
            plan,
            cells,
        )
        .await;
        if res.is_ok() {
            res = check_chain(&gaia, "postgres", plan.quiet).await;
        }
        store.close().await;
        pool.close().await;
        res
    }
    .await;
    let dropped = scratch.drop_database().await;
    res.and(dropped)
}

pub async fn run(args: ClaimsArgs, settings: &Settings) -> BenchResult {
    positive("concurrency", &args.concurrency)?;
    positive("keys", &args.keys)?;
    if args.no_sqlite && args.postgres.is_none() {
        return Err(BenchError::bad_input(
            "--no-sqlite leaves nothing to measure without --postgres",
        ));
    }
    let plan = Plan {
        duration: parse_duration(&args.duration)?,
        warmup: optional_duration(&args.warmup)?,
        rounds: args.rounds.max(1),
        concurrency: args.concurrency,
        keys: args.keys,
        quiet: args.json,
    };
    let mut cells = Vec::new();
    if !args.no_sqlite {
        bench_sqlite(&plan, settings, &mut cells).await?;
    }
    if let Some(server) = &args.postgres {
        bench_postgres(server, &plan, settings, &mut cells).await?;
    }
    if args.json {
        let rows: Vec<_> = cells
            .iter()
            .map(|c| {
                json!({
                    "backend": c.backend,
                    "concurrency": c.concurrency,
                    "keys": c.keys,
                    "gaia": c.gaia.to_json(),
                    "baseline": c.baseline.to_json(),
                    "ratio": (c.ratio() * 1000.0).round() / 1000.0,
                })
            })
            .collect();
        let out = json!({
            "duration_s": plan.duration.as_secs_f64(),
            "max_connections": settings.store_options().max_connections,
            "cells": rows,
        });
        println!("{out}");
        return Ok(exit::OK);
    }
    println!(
        "{:<8} {:>4} {:>5} {:>10} {:>10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "backend",
        "conc",
        "keys",
        "gaia op/s",
        "base op/s",
        "ratio",
        "gaia p50",
        "gaia p99",
        "base p50",
        "base p99",
        "noop%"
    );
    for c in &cells {
        let noop = |s: &Sample| {
            if s.ops == 0 {
                0.0
            } else {
                100.0 * s.noops as f64 / s.ops as f64
            }
        };
        println!(
            "{:<8} {:>4} {:>5} {:>10.0} {:>10.0} {:>5.2}x {:>7}us {:>7}us {:>7}us {:>7}us {:>2.0}/{:<2.0}",
            c.backend,
            c.concurrency,
            c.keys,
            c.gaia.ops_per_s(),
            c.baseline.ops_per_s(),
            c.ratio(),
            c.gaia.percentile(50),
            c.gaia.percentile(99),
            c.baseline.percentile(50),
            c.baseline.percentile(99),
            noop(&c.gaia),
            noop(&c.baseline),
        );
        for (name, s) in [("gaia", &c.gaia), ("baseline", &c.baseline)] {
            if s.timeouts > 0 {
                println!("         {name}: {} calls timed out on a lock", s.timeouts);
            }
        }
    }
    println!(
        "ops are single claim calls (acquire or release), each one transaction; noop% counts \
         releases that found the key already released (gaia/baseline)"
    );
    Ok(exit::OK)
}
