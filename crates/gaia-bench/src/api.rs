//! `gaia-bench api`: claim acquire and release over HTTP against a server running in this
//! process, beside the same calls made in-process on the same service and beside the raw-SQL
//! baseline of `gaia-bench claims`, all in the same run and in alternating slices. With
//! `--etcd`, etcd's lock recipe over its HTTP gateway is measured beside them as the peer for
//! locks (see [`crate::etcd`]).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gaia_core::Gaia;
use gaia_core::names::ClaimKey;
use gaia_core::time::parse_duration;
use gaia_core::tokens::Role;
use gaia_server::AppState;
use serde::Deserialize;
use serde_json::json;

use crate::baseline::{pg_baseline, sqlite_baseline};
use crate::claims::{Side, bench_options, check_chain, measure};
use crate::exit::{self, BenchError, BenchResult, bench_error};
use crate::harness::{InProcess, checked, server_options};
use crate::sample::{Done, Sample};
use crate::scratch::Backend;
use crate::settings::{Settings, open_store, optional_duration};

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Concurrent HTTP clients (and claimers on the in-process sides).
    #[arg(long, default_value_t = 64, value_name = "N")]
    clients: usize,
    /// How long each side is measured.
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    duration: String,
    /// Unmeasured run of each side before measuring ("0" for none).
    #[arg(long, default_value = "500ms", value_name = "DURATION")]
    warmup: String,
    /// Each side's time is split into this many slices, alternating with the other sides'.
    #[arg(long, default_value_t = 3, value_name = "N")]
    rounds: u32,
    /// How many distinct keys the clients pick from at random.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    keys: usize,
    /// Also measure on this PostgreSQL server, in a scratch database created and dropped here.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Skip SQLite.
    #[arg(long)]
    no_sqlite: bool,
    /// Also measure etcd (the `etcd` binary from Debian's `etcd-server`, started here on a
    /// temporary directory) doing the same acquires and releases with its lock recipe.
    #[arg(long)]
    etcd: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Claim calls over HTTP with an agent token; one client, so one connection pool.
#[derive(Debug)]
pub struct HttpClaims {
    client: reqwest::Client,
    acquire: String,
    release: String,
    token: String,
}

#[derive(Debug, Deserialize)]
struct ClaimReply {
    outcome: String,
}

impl HttpClaims {
    /// Claim calls on the server at `base` (`http://HOST:PORT`) with `token`.
    pub fn new(client: reqwest::Client, base: &str, token: String) -> Self {
        Self {
            client,
            acquire: format!("{base}/api/v1/claims/acquire"),
            release: format!("{base}/api/v1/claims/release"),
            token,
        }
    }

    /// The same calls as the in-process sides: acquire with a 1 s lease, release as the agent.
    pub async fn call(
        &self,
        key: &ClaimKey,
        claimer: &str,
        release: bool,
    ) -> Result<Done, BenchError> {
        let (url, body) = if release {
            (
                &self.release,
                json!({ "story": key.story, "todolist": key.todolist }),
            )
        } else {
            (
                &self.acquire,
                json!({
                    "story": key.story,
                    "todolist": key.todolist,
                    "operator": "bench",
                    "fingerprint": claimer,
                    "ttl": "1s",
                }),
            )
        };
        let res = self
            .client
            .post(url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await;
        let reply: ClaimReply = checked(res, "claim over HTTP")
            .await?
            .json()
            .await
            .map_err(|e| bench_error("claim over HTTP", e))?;
        Ok(match reply.outcome.as_str() {
            "acquired" | "taken_over" | "released" => Done::Wrote,
            "lock_timeout" => Done::TimedOut,
            _ => Done::Noop,
        })
    }
}

/// One side's result on one backend.
#[derive(Debug)]
struct Row {
    backend: &'static str,
    side: &'static str,
    sample: Sample,
}

#[derive(Debug)]
struct ApiPlan {
    clients: usize,
    keys: usize,
    duration: Duration,
    warmup: Option<Duration>,
    rounds: u32,
    quiet: bool,
    /// etcd's lock calls, measured beside each backend's sides.
    etcd: Option<Side>,
}

pub async fn run(args: ApiArgs, settings: &Settings) -> BenchResult {
    if args.clients == 0 || args.keys == 0 {
        return Err(BenchError::bad_input(
            "--clients and --keys take positive numbers",
        ));
    }
    if args.no_sqlite && args.postgres.is_none() {
        return Err(BenchError::bad_input(
            "--no-sqlite leaves nothing to measure without --postgres",
        ));
    }
    let plan = ApiPlan {
        clients: args.clients,
        keys: args.keys,
        duration: parse_duration(&args.duration)?,
        warmup: optional_duration(&args.warmup)?,
        rounds: args.rounds.max(1),
        quiet: args.json,
        etcd: None,
    };
    let mut plan = plan;
    let etcd = if args.etcd {
        let etcd = crate::etcd::EtcdProcess::start().await?;
        plan.etcd = Some(Side::Etcd(Arc::new(crate::etcd::EtcdLocks::new(
            http_client(plan.clients)?,
            &etcd.base,
        ))));
        Some(etcd)
    } else {
        None
    };
    let mut rows = Vec::new();
    if !args.no_sqlite {
        let backend = Backend::sqlite()?;
        let res = bench_backend(&backend, &plan, settings, &mut rows).await;
        res.and(backend.finish().await)?;
    }
    if let Some(server) = &args.postgres {
        let backend = Backend::postgres(server).await?;
        let res = bench_backend(&backend, &plan, settings, &mut rows).await;
        res.and(backend.finish().await)?;
    }
    drop(etcd);
    report(&rows, &plan, args.json);
    Ok(exit::OK)
}

/// The client of one side: a connection per concurrent caller, no Nagle delay.
pub fn http_client(clients: usize) -> Result<reqwest::Client, BenchError> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| bench_error("HTTP client", e))
}

/// HTTP requests per second over the raw baseline's calls per second.
fn ratio(a: &Sample, b: &Sample) -> f64 {
    let base = b.ops_per_s();
    if base > 0.0 {
        a.ops_per_s() / base
    } else {
        0.0
    }
}

fn report(rows: &[Row], plan: &ApiPlan, json_out: bool) {
    let baseline = |backend: &str| {
        rows.iter()
            .find(|r| r.backend == backend && r.side == "raw-sql")
            .map(|r| &r.sample)
    };
    if json_out {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                let mut v = r.sample.to_json();
                v["backend"] = json!(r.backend);
                v["side"] = json!(r.side);
                v["ratio_to_raw_sql"] = json!(
                    baseline(r.backend).map(|b| (ratio(&r.sample, b) * 1000.0).round() / 1000.0)
                );
                v
            })
            .collect();
        let doc = json!({
            "clients": plan.clients,
            "keys": plan.keys,
            "duration_s": plan.duration.as_secs_f64(),
            "rows": out,
        });
        println!("{doc}");
        return;
    }
    println!(
        "{:<8} {:<10} {:>7} {:>5} {:>9} {:>6} {:>9} {:>9} {:>6}",
        "backend", "side", "clients", "keys", "calls/s", "ratio", "p50", "p99", "noop%"
    );
    for r in rows {
        let s = &r.sample;
        let noop = if s.ops == 0 {
            0.0
        } else {
            100.0 * s.noops as f64 / s.ops as f64
        };
        println!(
            "{:<8} {:<10} {:>7} {:>5} {:>9.0} {:>5.2}x {:>7}us {:>7}us {:>5.1}",
            r.backend,
            r.side,
            plan.clients,
            plan.keys,
            s.ops_per_s(),
            baseline(r.backend).map_or(0.0, |b| ratio(s, b)),
            s.percentile(50),
            s.percentile(99),
            noop,
        );
        if s.timeouts > 0 {
            println!(
                "         {}: {} calls timed out on a lock",
                r.side, s.timeouts
            );
        }
    }
    for r in rows.iter().filter(|r| r.side == "http") {
        if let Some(e) = rows
            .iter()
            .find(|e| e.backend == r.backend && e.side == "etcd")
        {
            println!(
                "{}: gaia over http / etcd = {:.2}x calls/s; p99 {} us against etcd's {} us",
                r.backend,
                ratio(&r.sample, &e.sample),
                r.sample.percentile(99),
                e.sample.percentile(99),
            );
        }
    }
    println!(
        "calls are single claim calls (acquire or release), each one transaction; http is one \
         request per call; ratio is calls/s over raw-sql's on the same backend; etcd's acquire \
         is a lease grant plus a put-if-absent transaction, its release a delete-if-mine \
         transaction"
    );
}

async fn bench_backend(
    backend: &Backend,
    plan: &ApiPlan,
    settings: &Settings,
    rows: &mut Vec<Row>,
) -> Result<(), BenchError> {
    let url = backend.url();
    let opts = bench_options(settings);
    // Gaia first: its migration refuses a file that already holds another application's tables.
    let store = open_store(&url, &opts).await?;
    let baseline = match backend {
        Backend::Sqlite { path, .. } => Side::SqliteRaw(sqlite_baseline(path, &opts).await?),
        Backend::Postgres(s) => Side::PgRaw(pg_baseline(&s.url, &opts).await?),
    };
    let gaia = Gaia::new(store.clone());
    let (_, token) = gaia.create_token("bench", Role::Agent, "bench").await?;
    // The injected clock makes every lease look expired at once: with the reaper on, it would
    // write a claim.expired event for every claim between acquire and release, work a server
    // with a real clock never sees. Keep it from running during the measurement.
    let defaults = server_options(&url);
    let server_opts = gaia_server::ServerOptions {
        runtime: gaia_server::RuntimeOptions {
            reap_interval: Duration::from_secs(3600),
            ..defaults.runtime.clone()
        },
        ..defaults
    };
    let state = AppState::new(gaia, server_opts, None).await?;
    let server = InProcess::start(state).await?;
    let client = http_client(plan.clients)?;
    let http = Side::Http(Arc::new(HttpClaims {
        client,
        acquire: format!("{}/api/v1/claims/acquire", server.base),
        release: format!("{}/api/v1/claims/release", server.base),
        token,
    }));
    let in_process = Side::Gaia(server.state.gaia.clone());
    let mut sides = vec![
        ("http", http),
        ("in-process", in_process),
        ("raw-sql", baseline.clone()),
    ];
    if let Some(etcd) = &plan.etcd {
        sides.push(("etcd", etcd.clone()));
    }
    let res = measure_sides(backend.name(), &sides, plan, rows).await;
    let res = match res {
        Ok(()) => check_chain(&server.state.gaia, backend.name(), plan.quiet).await,
        Err(e) => Err(e),
    };
    let stopped = server.stop().await;
    store.close().await;
    match baseline {
        Side::SqliteRaw(p) => p.close().await,
        Side::PgRaw(p) => p.close().await,
        _ => {}
    }
    res.and(stopped)
}

async fn measure_sides(
    backend: &'static str,
    sides: &[(&'static str, Side)],
    plan: &ApiPlan,
    rows: &mut Vec<Row>,
) -> Result<(), BenchError> {
    let keys: Arc<Vec<ClaimKey>> = Arc::new(
        (0..plan.keys)
            .map(|i| ClaimKey::new(&format!("bench-{i}"), "default"))
            .collect::<Result<_, _>>()?,
    );
    if let Some(w) = plan.warmup {
        for (_, side) in sides {
            measure(side, &keys, plan.clients, w).await?;
        }
    }
    let mut samples: Vec<Sample> = sides.iter().map(|_| Sample::default()).collect();
    let slice = plan.duration / plan.rounds;
    for round in 0..plan.rounds as usize {
        // Short slices, the first side rotating each round: a burst of load from elsewhere on
        // the machine then hits every side alike.
        for i in 0..sides.len() {
            let at = (round + i) % sides.len();
            if let (Some((_, side)), Some(total)) = (sides.get(at), samples.get_mut(at)) {
                total.combine(measure(side, &keys, plan.clients, slice).await?);
            }
        }
    }
    for ((name, _), mut sample) in sides.iter().zip(samples) {
        sample.latencies.sort_unstable();
        if !plan.quiet {
            eprintln!(
                "{backend} {name}: {:.0} calls/s, p99 {} us",
                sample.ops_per_s(),
                sample.percentile(99)
            );
        }
        rows.push(Row {
            backend,
            side: name,
            sample,
        });
    }
    Ok(())
}
