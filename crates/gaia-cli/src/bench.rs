//! `gaia bench`: Gaia's claim path measured beside raw SQL doing the same work in the same run,
//! and the wall time of one `gaia claim acquire` process beside the `sqlite3` CLI. The HTTP
//! benchmarks (`api`, `sse`, `approvals`) live in the submodules.
//!
//! The benchmark never writes into the database `--db` names: SQLite runs in a fresh temporary
//! file, PostgreSQL in a scratch database created on the `--postgres` server and dropped after.

mod api;
mod approvals;
mod harness;
mod outbox;
mod sse;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use gaia_core::Gaia;
use gaia_core::claims::{Outcome, Request};
use gaia_core::names::ClaimKey;
use gaia_core::store::{SqliteSync, StoreOptions};
use gaia_core::time::{Clock, parse_duration, rfc3339, to_micros};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, PgConnection};

use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Claims per second and latency, Gaia against a raw-SQL baseline, in-process.
    Claims(ClaimsArgs),
    /// Wall time of one `gaia claim acquire` process beside sqlite3 doing the same write.
    Process(ProcessArgs),
    /// Claims over HTTP against an in-process server, beside in-process and raw-SQL baselines.
    Api(api::ApiArgs),
    /// Event stream fan-out: append-to-delivery latency and server memory per subscriber.
    Sse(sse::SseArgs),
    /// Approval round trips over HTTP with an automated approver following the stream.
    Approvals(approvals::ApprovalsArgs),
    /// Outbox delivery to a fake Telegram: throughput beside a raw HTTP loop, and the sustained
    /// rate under Telegram's limits.
    Outbox(outbox::OutboxArgs),
}

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

#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// Processes started on each side.
    #[arg(long, default_value_t = 50, value_name = "N")]
    runs: u32,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn run(cmd: BenchCommand, config: &Config) -> CliResult {
    match cmd {
        BenchCommand::Claims(args) => claims(args, config).await,
        BenchCommand::Process(args) => process(args, config).await,
        BenchCommand::Api(args) => api::run(args, config).await,
        BenchCommand::Sse(args) => sse::run(args).await,
        BenchCommand::Approvals(args) => approvals::run(args, config).await,
        BenchCommand::Outbox(args) => outbox::run(args, config).await,
    }
}

/// Lease length of every acquisition in the benchmark.
const TTL: Duration = Duration::from_secs(1);

/// Every acquire must write, as the baseline's upsert always does; otherwise contended cells
/// would compare Gaia's cheap refusals with the baseline's writes. A clock that jumps past the
/// TTL on every reading makes each acquire find the previous lease expired.
#[derive(Debug)]
struct LeapClock {
    start: DateTime<Utc>,
    readings: AtomicI64,
}

impl Clock for LeapClock {
    fn now(&self) -> DateTime<Utc> {
        let n = self.readings.fetch_add(1, Ordering::Relaxed);
        self.start + chrono::Duration::seconds(2 * n)
    }
}

// ---------------------------------------------------------------------------------------------
// gaia bench claims

/// One measured run of one side.
#[derive(Debug, Default)]
struct Sample {
    /// Calls made: acquires plus releases.
    ops: u64,
    /// Calls that changed nothing (a release that found the key already released).
    noops: u64,
    /// Calls that gave up waiting for a lock.
    timeouts: u64,
    elapsed: Duration,
    /// Per-call latency in microseconds.
    latencies: Vec<u32>,
}

impl Sample {
    fn merge(&mut self, other: Sample) {
        self.ops += other.ops;
        self.noops += other.noops;
        self.timeouts += other.timeouts;
        self.latencies.extend(other.latencies);
    }

    /// Adds a whole measured run (its own elapsed time included).
    fn combine(&mut self, other: Sample) {
        self.elapsed += other.elapsed;
        self.merge(other);
    }

    fn ops_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }

    /// The `pct` percentile in microseconds; `latencies` must be sorted.
    fn percentile(&self, pct: usize) -> u32 {
        if self.latencies.is_empty() {
            return 0;
        }
        let i = (self.latencies.len() * pct / 100).min(self.latencies.len() - 1);
        self.latencies[i]
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "ops": self.ops,
            "ops_per_s": self.ops_per_s().round(),
            "p50_us": self.percentile(50),
            "p99_us": self.percentile(99),
            "noops": self.noops,
            "timeouts": self.timeouts,
            "seconds": self.elapsed.as_secs_f64(),
        })
    }
}

/// What one call did.
enum Done {
    Wrote,
    Noop,
    TimedOut,
}

/// The code under test: Gaia's service (in-process or over HTTP), or the baseline's raw SQL on
/// one of the backends.
#[derive(Debug, Clone)]
enum Side {
    Gaia(Gaia),
    Http(Arc<api::HttpClaims>),
    SqliteRaw(SqlitePool),
    PgRaw(PgPool),
}

impl Side {
    async fn call(&self, key: &ClaimKey, claimer: &str, release: bool) -> Result<Done, CliError> {
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

/// A lock wait that ran out is an outcome, as it is for Gaia's claims; anything else fails.
fn raw_result(res: Result<bool, sqlx::Error>) -> Result<Done, CliError> {
    match res {
        Ok(true) => Ok(Done::Wrote),
        Ok(false) => Ok(Done::Noop),
        Err(sqlx::Error::PoolTimedOut) => Ok(Done::TimedOut),
        Err(sqlx::Error::Database(db))
            if matches!(
                db.code().as_deref(),
                Some("5" | "6" | "517" | "55P03" | "40P01")
            ) =>
        {
            Ok(Done::TimedOut)
        }
        Err(e) => Err(CliError::new(exit::FAILURE, format!("baseline: {e}"))),
    }
}

/// The claim event's data, shaped like Gaia's so that rows are the same size.
fn acquire_data(key: &str, claimer: &str, token: i64, now: DateTime<Utc>) -> String {
    json!({
        "key": key,
        "agent": "bench",
        "operator": "bench",
        "fingerprint": claimer,
        "token": token,
        "expires_at": rfc3339(now + chrono::Duration::seconds(1)),
        "ttl_ms": 1000,
    })
    .to_string()
}

fn release_data(key: &str, token: i64, held_ms: Option<i64>) -> String {
    json!({ "key": key, "agent": "bench", "token": token, "held_ms": held_ms }).to_string()
}

/// Stands in for the audit hashes: the same 64 hex characters, without the hashing.
fn fake_hash(n: i64) -> String {
    format!("{n:064x}")
}

const SQLITE_BASELINE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bench_events (
    seq INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL, type TEXT NOT NULL, actor TEXT NOT NULL,
    subject TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS bench_events_subject ON bench_events (subject, seq);
CREATE TABLE IF NOT EXISTS bench_audit (
    id INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, outcome TEXT NOT NULL, details TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bench_claims (
    key TEXT PRIMARY KEY, story TEXT NOT NULL, todolist TEXT NOT NULL, agent TEXT, operator TEXT,
    fingerprint TEXT, token INTEGER NOT NULL, acquired_at_us INTEGER, expires_at_us INTEGER,
    ttl_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS bench_claims_held ON bench_claims (expires_at_us)
    WHERE agent IS NOT NULL;
";

const PG_BASELINE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bench_events (
    seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ts_us BIGINT NOT NULL,
    type TEXT NOT NULL, actor TEXT NOT NULL, subject TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS bench_events_subject ON bench_events (subject, seq);
CREATE TABLE IF NOT EXISTS bench_audit (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ts_us BIGINT NOT NULL,
    actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, outcome TEXT NOT NULL,
    details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bench_claims (
    key TEXT PRIMARY KEY, story TEXT NOT NULL, todolist TEXT NOT NULL, agent TEXT, operator TEXT,
    fingerprint TEXT, token BIGINT NOT NULL, acquired_at_us BIGINT, expires_at_us BIGINT,
    ttl_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS bench_claims_held ON bench_claims (expires_at_us)
    WHERE agent IS NOT NULL;
";

async fn sqlite_acquire(
    pool: &SqlitePool,
    key: &ClaimKey,
    claimer: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let now = Utc::now();
    let ts = to_micros(now);
    let k = key.to_string();
    let token: i64 = sqlx::query_scalar(
        "INSERT INTO bench_claims (key, story, todolist, agent, operator, fingerprint, token,
            acquired_at_us, expires_at_us, ttl_ms)
         VALUES (?, ?, ?, 'bench', 'bench', ?, 1, ?, ?, 1000)
         ON CONFLICT (key) DO UPDATE SET
           agent = excluded.agent, operator = excluded.operator,
           fingerprint = excluded.fingerprint, token = bench_claims.token + 1,
           acquired_at_us = excluded.acquired_at_us, expires_at_us = excluded.expires_at_us,
           ttl_ms = excluded.ttl_ms
         RETURNING token",
    )
    .bind(&k)
    .bind(&key.story)
    .bind(&key.todolist)
    .bind(claimer)
    .bind(ts)
    .bind(ts + 1_000_000)
    .fetch_one(&mut *tx)
    .await?;
    let data = acquire_data(&k, claimer, token, now);
    let subject = format!("claim/{k}");
    sqlx::query(
        "INSERT INTO bench_events (ts_us, type, actor, subject, data)
         VALUES (?, 'claim.acquired', 'bench', ?, ?)",
    )
    .bind(ts)
    .bind(&subject)
    .bind(&data)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO bench_audit (ts_us, actor, action, subject, outcome, details, prev_hash, hash)
         VALUES (?, 'bench', 'claim.acquire', ?, 'acquired', ?, ?, ?)",
    )
    .bind(ts)
    .bind(&subject)
    .bind(&data)
    .bind(fake_hash(ts))
    .bind(fake_hash(ts + 1))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Like Gaia's release by agent: a key that is already released changes nothing.
async fn sqlite_release(pool: &SqlitePool, key: &ClaimKey) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let now = Utc::now();
    let ts = to_micros(now);
    let k = key.to_string();
    let row: Option<(i64, Option<i64>)> = sqlx::query_as(
        "UPDATE bench_claims SET agent = NULL, operator = NULL, fingerprint = NULL,
            expires_at_us = NULL
         WHERE key = ? AND agent = 'bench'
         RETURNING token, acquired_at_us",
    )
    .bind(&k)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((token, acquired)) = row else {
        tx.rollback().await?;
        return Ok(false);
    };
    let data = release_data(&k, token, acquired.map(|a| (ts - a) / 1000));
    let subject = format!("claim/{k}");
    sqlx::query(
        "INSERT INTO bench_events (ts_us, type, actor, subject, data)
         VALUES (?, 'claim.released', 'bench', ?, ?)",
    )
    .bind(ts)
    .bind(&subject)
    .bind(&data)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO bench_audit (ts_us, actor, action, subject, outcome, details, prev_hash, hash)
         VALUES (?, 'bench', 'claim.release', ?, 'released', ?, ?, ?)",
    )
    .bind(ts)
    .bind(&subject)
    .bind(&data)
    .bind(fake_hash(ts))
    .bind(fake_hash(ts + 1))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

async fn pg_acquire(pool: &PgPool, key: &ClaimKey, claimer: &str) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let now = Utc::now();
    let ts = to_micros(now);
    let k = key.to_string();
    let token: i64 = sqlx::query_scalar(
        "INSERT INTO bench_claims (key, story, todolist, agent, operator, fingerprint, token,
            acquired_at_us, expires_at_us, ttl_ms)
         VALUES ($1, $2, $3, 'bench', 'bench', $4, 1, $5, $6, 1000)
         ON CONFLICT (key) DO UPDATE SET
           agent = excluded.agent, operator = excluded.operator,
           fingerprint = excluded.fingerprint, token = bench_claims.token + 1,
           acquired_at_us = excluded.acquired_at_us, expires_at_us = excluded.expires_at_us,
           ttl_ms = excluded.ttl_ms
         RETURNING token",
    )
    .bind(&k)
    .bind(&key.story)
    .bind(&key.todolist)
    .bind(claimer)
    .bind(ts)
    .bind(ts + 1_000_000)
    .fetch_one(&mut *tx)
    .await?;
    let data = acquire_data(&k, claimer, token, now);
    let subject = format!("claim/{k}");
    sqlx::query(
        "INSERT INTO bench_events (ts_us, type, actor, subject, data)
         VALUES ($1, 'claim.acquired', 'bench', $2, $3)",
    )
    .bind(ts)
    .bind(&subject)
    .bind(&data)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO bench_audit (ts_us, actor, action, subject, outcome, details, prev_hash, hash)
         VALUES ($1, 'bench', 'claim.acquire', $2, 'acquired', $3, $4, $5)",
    )
    .bind(ts)
    .bind(&subject)
    .bind(&data)
    .bind(fake_hash(ts))
    .bind(fake_hash(ts + 1))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

async fn pg_release(pool: &PgPool, key: &ClaimKey) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let now = Utc::now();
    let ts = to_micros(now);
    let k = key.to_string();
    let row: Option<(i64, Option<i64>)> = sqlx::query_as(
        "UPDATE bench_claims SET agent = NULL, operator = NULL, fingerprint = NULL,
            expires_at_us = NULL
         WHERE key = $1 AND agent = 'bench'
         RETURNING token, acquired_at_us",
    )
    .bind(&k)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((token, acquired)) = row else {
        tx.rollback().await?;
        return Ok(false);
    };
    let data = release_data(&k, token, acquired.map(|a| (ts - a) / 1000));
    let subject = format!("claim/{k}");
    sqlx::query(
        "INSERT INTO bench_events (ts_us, type, actor, subject, data)
         VALUES ($1, 'claim.released', 'bench', $2, $3)",
    )
    .bind(ts)
    .bind(&subject)
    .bind(&data)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO bench_audit (ts_us, actor, action, subject, outcome, details, prev_hash, hash)
         VALUES ($1, 'bench', 'claim.release', $2, 'released', $3, $4, $5)",
    )
    .bind(ts)
    .bind(&subject)
    .bind(&data)
    .bind(fake_hash(ts))
    .bind(fake_hash(ts + 1))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// One claimer: picks a random key, acquires it and releases it, until `until`.
async fn claimer(
    side: Side,
    keys: Arc<Vec<ClaimKey>>,
    id: usize,
    until: Instant,
) -> Result<Sample, CliError> {
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
async fn measure(
    side: &Side,
    keys: &Arc<Vec<ClaimKey>>,
    concurrency: usize,
    duration: Duration,
) -> Result<Sample, CliError> {
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
                failure = failure.or(Some(CliError::new(
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
struct Cell {
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
struct Plan {
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
) -> Result<(), CliError> {
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

fn positive(what: &str, values: &[usize]) -> Result<(), CliError> {
    if values.is_empty() || values.contains(&0) {
        return Err(CliError::bad_input(format!(
            "--{what} takes positive numbers, e.g. 1,8,64"
        )));
    }
    Ok(())
}

fn sqlite_sync(s: SqliteSync) -> SqliteSynchronous {
    match s {
        SqliteSync::Off => SqliteSynchronous::Off,
        SqliteSync::Normal => SqliteSynchronous::Normal,
        SqliteSync::Full => SqliteSynchronous::Full,
        SqliteSync::Extra => SqliteSynchronous::Extra,
    }
}

fn bench_error(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::new(exit::FAILURE, format!("{what}: {e}"))
}

/// The baseline's pool: the connection settings and pool size Gaia's SQLite store uses.
async fn sqlite_baseline(path: &Path, opts: &StoreOptions) -> Result<SqlitePool, CliError> {
    let connect = SqliteConnectOptions::from_str("sqlite:")
        .map_err(|e| bench_error("baseline", e))?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sqlite_sync(opts.sqlite_synchronous))
        .busy_timeout(opts.lock_timeout)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .min_connections(0)
        .acquire_timeout(opts.lock_timeout + opts.connect_timeout)
        .connect_with(connect)
        .await
        .map_err(|e| bench_error("baseline", e))?;
    sqlx::raw_sql(SQLITE_BASELINE_SCHEMA)
        .execute(&pool)
        .await
        .map_err(|e| bench_error("baseline schema", e))?;
    Ok(pool)
}

/// The baseline's pool: the connection settings and pool size Gaia's PostgreSQL store uses.
async fn pg_baseline(url: &str, opts: &StoreOptions) -> Result<PgPool, CliError> {
    let lock_ms = opts.lock_timeout.as_millis().to_string();
    let connect = PgConnectOptions::from_str(url)
        .map_err(|e| bench_error("baseline", e))?
        .application_name("gaia")
        .options([("lock_timeout", lock_ms.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .min_connections(0)
        .acquire_timeout(opts.connect_timeout + opts.lock_timeout)
        .connect_lazy_with(connect);
    sqlx::raw_sql(PG_BASELINE_SCHEMA)
        .execute(&pool)
        .await
        .map_err(|e| bench_error("baseline schema", e))?;
    Ok(pool)
}

fn bench_options(config: &Config) -> StoreOptions {
    let mut opts = config.store_options();
    opts.clock = Some(Arc::new(LeapClock {
        start: Utc::now(),
        readings: AtomicI64::new(0),
    }));
    opts
}

/// The measured path must not have bought its speed with the invariants: the audit chain
/// written during the run has to verify, record for record.
async fn check_chain(gaia: &Gaia, backend: &str, quiet: bool) -> Result<(), CliError> {
    let report = gaia.verify_audit().await?;
    if let Some(b) = report.first_break {
        return Err(CliError::new(
            exit::FAILURE,
            format!("{backend}: the audit chain written by the benchmark is broken: {b:?}"),
        ));
    }
    if !quiet {
        eprintln!("{backend}: audit chain intact ({} records)", report.checked);
    }
    Ok(())
}

async fn bench_sqlite(plan: &Plan, config: &Config, cells: &mut Vec<Cell>) -> Result<(), CliError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let opts = bench_options(config);
    // Gaia first: its migration refuses a file that already holds another application's tables.
    let store = crate::open::open_store(&format!("sqlite://{}", path.display()), &opts).await?;
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

/// A database made for one benchmark run on a PostgreSQL server, dropped afterwards.
#[derive(Debug)]
struct Scratch {
    server: String,
    name: String,
    url: String,
}

impl Scratch {
    async fn create(server: &str) -> Result<Self, CliError> {
        let name = format!("gaia_bench_{:016x}", rand::random::<u64>());
        let mut admin = PgConnection::connect(server)
            .await
            .map_err(|e| CliError::bad_input(format!("--postgres: {e}")))?;
        let created = sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await;
        let _ = admin.close().await;
        created.map_err(|e| bench_error("creating the scratch database", e))?;
        Ok(Self {
            url: with_database(server, &name),
            server: server.to_owned(),
            name,
        })
    }

    async fn drop_database(self) -> Result<(), CliError> {
        let mut admin = PgConnection::connect(&self.server)
            .await
            .map_err(|e| bench_error("dropping the scratch database", e))?;
        let dropped = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await;
        let _ = admin.close().await;
        dropped
            .map(|_| ())
            .map_err(|e| bench_error(&format!("dropping {}", self.name), e))
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

async fn bench_postgres(
    server: &str,
    plan: &Plan,
    config: &Config,
    cells: &mut Vec<Cell>,
) -> Result<(), CliError> {
    if !(server.starts_with("postgres://") || server.starts_with("postgresql://")) {
        return Err(CliError::bad_input(
            "--postgres takes a postgres://USER@HOST/DB URL",
        ));
    }
    let scratch = Scratch::create(server).await?;
    let opts = bench_options(config);
    let res = async {
        let store = crate::open::open_store(&scratch.url, &opts).await?;
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

fn optional_duration(text: &str) -> Result<Option<Duration>, CliError> {
    if text.trim() == "0" {
        return Ok(None);
    }
    Ok(Some(parse_duration(text)?))
}

async fn claims(args: ClaimsArgs, config: &Config) -> CliResult {
    positive("concurrency", &args.concurrency)?;
    positive("keys", &args.keys)?;
    if args.no_sqlite && args.postgres.is_none() {
        return Err(CliError::bad_input(
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
        bench_sqlite(&plan, config, &mut cells).await?;
    }
    if let Some(server) = &args.postgres {
        bench_postgres(server, &plan, config, &mut cells).await?;
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
            "max_connections": config.store_options().max_connections,
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

// ---------------------------------------------------------------------------------------------
// gaia bench process

/// Wall times of one side, in milliseconds.
#[derive(Debug)]
struct Walls(Vec<f64>);

impl Walls {
    fn mean(&self) -> f64 {
        if self.0.is_empty() {
            0.0
        } else {
            self.0.iter().sum::<f64>() / self.0.len() as f64
        }
    }

    /// The median; `self.0` must be sorted.
    fn median(&self) -> f64 {
        let n = self.0.len();
        match n {
            0 => 0.0,
            _ if n % 2 == 1 => self.0[n / 2],
            _ => (self.0[n / 2 - 1] + self.0[n / 2]) / 2.0,
        }
    }

    fn min(&self) -> f64 {
        self.0.first().copied().unwrap_or(0.0)
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "runs": self.0.len(),
            "mean_ms": self.mean(),
            "median_ms": self.median(),
            "min_ms": self.min(),
        })
    }
}

/// Runs `cmd` to completion and returns its wall time; a failure is an error with its stderr.
async fn timed(mut cmd: tokio::process::Command, what: &str) -> Result<f64, CliError> {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let start = Instant::now();
    let out = cmd
        .output()
        .await
        .map_err(|e| bench_error(&format!("cannot start {what}"), e))?;
    let wall = start.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(bench_error(
            &format!("{what} failed ({})", out.status),
            stderr.trim(),
        ));
    }
    Ok(wall)
}

/// `gaia claim acquire` on a fresh key, isolated from the caller's configuration: it runs in
/// the temporary directory (no gaia.toml, no env file) without any GAIA_* variable.
fn gaia_process(exe: &Path, dir: &Path, db: &Path, story: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.current_dir(dir)
        .arg("--db")
        .arg(format!("sqlite://{}", db.display()))
        .args(["claim", "acquire", story])
        .args([
            "--agent",
            "bench",
            "--operator",
            "bench",
            "--fingerprint",
            "p",
        ])
        .args(["--ttl", "15m"]);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GAIA_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// The same write as `gaia claim acquire` in one sqlite3 invocation: Gaia's PRAGMAs, then the
/// claim upsert, the event and the audit record in one `BEGIN IMMEDIATE` transaction.
fn sqlite3_script(story: &str, sync: SqliteSync, busy_ms: u128) -> String {
    let now = Utc::now();
    let ts = to_micros(now);
    let key = format!("{story}/default");
    let data = acquire_data(&key, "p", 1, now).replace('\'', "''");
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = {busy_ms};
         PRAGMA foreign_keys = ON;
         BEGIN IMMEDIATE;
         INSERT INTO bench_claims (key, story, todolist, agent, operator, fingerprint, token,
             acquired_at_us, expires_at_us, ttl_ms)
         VALUES ('{key}', '{story}', 'default', 'bench', 'bench', 'p', 1, {ts}, {exp}, 900000)
         ON CONFLICT (key) DO UPDATE SET
           agent = excluded.agent, operator = excluded.operator,
           fingerprint = excluded.fingerprint, token = bench_claims.token + 1,
           acquired_at_us = excluded.acquired_at_us, expires_at_us = excluded.expires_at_us,
           ttl_ms = excluded.ttl_ms;
         INSERT INTO bench_events (ts_us, type, actor, subject, data)
         VALUES ({ts}, 'claim.acquired', 'bench', 'claim/{key}', '{data}');
         INSERT INTO bench_audit (ts_us, actor, action, subject, outcome, details, prev_hash, hash)
         VALUES ({ts}, 'bench', 'claim.acquire', 'claim/{key}', 'acquired', '{data}',
                 '{h1}', '{h2}');
         COMMIT;",
        exp = ts + 900_000_000,
        h1 = fake_hash(ts),
        h2 = fake_hash(ts + 1),
    )
}

fn sqlite3_command(db: &Path, script: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("sqlite3");
    cmd.arg(db).arg(script);
    cmd
}

async fn sqlite3_available() -> bool {
    tokio::process::Command::new("sqlite3")
        .arg("-version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

async fn process(args: ProcessArgs, config: &Config) -> CliResult {
    if args.runs == 0 {
        return Err(CliError::bad_input("--runs must be at least 1"));
    }
    let exe = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    let gaia_db = dir.path().join("gaia.db");
    let raw_db = dir.path().join("sqlite3.db");
    let opts = config.store_options();
    // Creating and migrating the database is a one-off: keep it out of the measurement.
    timed(
        gaia_process(&exe, dir.path(), &gaia_db, "warmup"),
        "gaia claim acquire",
    )
    .await?;
    let sqlite3 = sqlite3_available().await;
    if sqlite3 {
        let schema = format!("PRAGMA journal_mode = WAL; {SQLITE_BASELINE_SCHEMA}");
        timed(sqlite3_command(&raw_db, &schema), "sqlite3").await?;
    } else if !args.json {
        println!("sqlite3 is not installed: measuring gaia only");
    }
    let busy_ms = opts.lock_timeout.as_millis();
    let (mut gaia, mut raw) = (Vec::new(), Vec::new());
    for i in 0..args.runs {
        let story = format!("bench-{i}");
        gaia.push(
            timed(
                gaia_process(&exe, dir.path(), &gaia_db, &story),
                "gaia claim acquire",
            )
            .await?,
        );
        if sqlite3 {
            let script = sqlite3_script(&story, opts.sqlite_synchronous, busy_ms);
            raw.push(timed(sqlite3_command(&raw_db, &script), "sqlite3").await?);
        }
    }
    gaia.sort_by(f64::total_cmp);
    raw.sort_by(f64::total_cmp);
    let (gaia, raw) = (Walls(gaia), Walls(raw));
    let ratio = (sqlite3 && raw.mean() > 0.0).then(|| gaia.mean() / raw.mean());
    if args.json {
        let out = json!({
            "gaia": gaia.to_json(),
            "sqlite3": sqlite3.then(|| raw.to_json()),
            "ratio_mean": ratio,
        });
        println!("{out}");
        return Ok(exit::OK);
    }
    println!(
        "{:<28} {:>5} {:>9} {:>9} {:>9}",
        "process", "runs", "mean ms", "median ms", "min ms"
    );
    let mut rows = vec![("gaia claim acquire", &gaia)];
    if sqlite3 {
        rows.push(("sqlite3 (same transaction)", &raw));
    }
    for (name, w) in rows {
        println!(
            "{:<28} {:>5} {:>9.2} {:>9.2} {:>9.2}",
            name,
            w.0.len(),
            w.mean(),
            w.median(),
            w.min()
        );
    }
    if let Some(r) = ratio {
        println!("ratio (gaia / sqlite3, mean wall time): {r:.2}x");
    }
    Ok(exit::OK)
}
