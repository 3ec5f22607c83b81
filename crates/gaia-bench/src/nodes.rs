//! `gaia-bench nodes`: scale-out on one PostgreSQL database. For each node count it starts that
//! many `gaia serve` processes on one scratch database, spreads HTTP claim clients over them
//! (acquire then release of a random key, as `gaia-bench api`), and counts the events each
//! node's stream subscribers receive meanwhile. Beside it, in the same run and on the same
//! database server, `pgbench` runs the raw baseline's transactions (the same upsert, event and
//! audit inserts per acquire and per release) with as many clients.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use gaia_core::Gaia;
use gaia_core::names::ClaimKey;
use gaia_core::time::parse_duration;
use gaia_core::tokens::{Role, generate};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::{HttpClaims, http_client};
use crate::baseline::pg_baseline;
use crate::claims::{Side, measure};
use crate::exit::{self, BenchError, BenchResult, bench_error};
use crate::harness::SseReader;
use crate::sample::Sample;
use crate::scratch::Scratch;
use crate::settings::{Settings, open_store};
use crate::sse::ServerProcess;

#[derive(Debug, Args)]
pub struct NodesArgs {
    /// The PostgreSQL server; a scratch database is created on it and dropped afterwards.
    #[arg(long, value_name = "URL")]
    postgres: String,
    /// Node counts to measure, comma-separated.
    #[arg(
        long,
        default_value = "1,2,4",
        value_delimiter = ',',
        value_name = "N,..."
    )]
    nodes: Vec<usize>,
    /// Concurrent HTTP claim clients, spread evenly over the nodes (and pgbench's clients).
    #[arg(long, default_value_t = 32, value_name = "N")]
    clients: usize,
    /// Stream subscribers on every node.
    #[arg(long, default_value_t = 4, value_name = "N")]
    subscribers: usize,
    /// How many distinct keys the clients pick from at random.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    keys: usize,
    /// How long each node count (and pgbench) is measured.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    duration: String,
    /// The pgbench binary.
    #[arg(long, default_value = "pgbench", value_name = "PATH")]
    pgbench: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// The raw baseline's transactions as a pgbench script: one acquire (upsert, event, audit
/// record) and one release (update, event, audit record), each its own transaction, so one
/// script run is two claim calls.
const PGBENCH_SCRIPT: &str = r#"\set k random(1, :keys)
BEGIN;
INSERT INTO bench_claims (key, story, todolist, agent, operator, fingerprint, token,
    acquired_at_us, expires_at_us, ttl_ms)
  VALUES ('bench-' || :k || '/default', 'bench-' || :k, 'default', 'bench', 'bench', 'pgbench', 1,
    (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT,
    (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT + 1000000, 1000)
  ON CONFLICT (key) DO UPDATE SET agent = excluded.agent, operator = excluded.operator,
    fingerprint = excluded.fingerprint, token = bench_claims.token + 1,
    acquired_at_us = excluded.acquired_at_us, expires_at_us = excluded.expires_at_us,
    ttl_ms = excluded.ttl_ms
  RETURNING token;
INSERT INTO bench_events (ts_us, type, actor, subject, data)
  VALUES (0, 'claim.acquired', 'bench', 'claim/bench-' || :k || '/default',
    '{"key":"bench","holder":"pgbench","token":1,"expires_at":"2026-01-01T00:00:00Z"}');
INSERT INTO bench_audit (ts_us, actor, action, subject, outcome, details, prev_hash, hash)
  VALUES (0, 'bench', 'claim.acquire', 'claim/bench-' || :k || '/default', 'acquired',
    '{"key":"bench","holder":"pgbench","token":1}', md5(random()::text), md5(random()::text));
COMMIT;
BEGIN;
UPDATE bench_claims SET agent = NULL, operator = NULL, fingerprint = NULL, expires_at_us = NULL
  WHERE key = 'bench-' || :k || '/default' RETURNING token, acquired_at_us;
INSERT INTO bench_events (ts_us, type, actor, subject, data)
  VALUES (0, 'claim.released', 'bench', 'claim/bench-' || :k || '/default',
    '{"key":"bench","token":1,"held_ms":1}');
INSERT INTO bench_audit (ts_us, actor, action, subject, outcome, details, prev_hash, hash)
  VALUES (0, 'bench', 'claim.release', 'claim/bench-' || :k || '/default', 'released',
    '{"key":"bench","token":1}', md5(random()::text), md5(random()::text));
COMMIT;
"#;

/// What one node count came to.
#[derive(Debug)]
struct Step {
    nodes: usize,
    sample: Sample,
    /// Events appended to the log per second during the measurement.
    appended_per_s: f64,
    /// Events per second received by the slowest and the fastest subscriber of any node
    /// (`None`: no subscribers).
    delivered_min_per_s: Option<f64>,
    delivered_max_per_s: Option<f64>,
}

/// What pgbench measured.
#[derive(Debug)]
struct PgbenchResult {
    /// Claim calls per second (two transactions per script run).
    calls_per_s: f64,
    latency_avg_ms: f64,
}

pub async fn run(args: NodesArgs, settings: &Settings) -> BenchResult {
    if args.nodes.is_empty() || args.nodes.contains(&0) || args.clients == 0 || args.keys == 0 {
        return Err(BenchError::bad_input(
            "--nodes, --clients and --keys take positive numbers",
        ));
    }
    let duration = parse_duration(&args.duration)?;
    let scratch = Scratch::create(&args.postgres).await?;
    let res = bench(&args, settings, &scratch.url, duration).await;
    let dropped = scratch.drop_database().await;
    let (steps, pgbench) = res?;
    dropped?;
    report(&args, &steps, &pgbench);
    Ok(exit::OK)
}

async fn bench(
    args: &NodesArgs,
    settings: &Settings,
    url: &str,
    duration: Duration,
) -> Result<(Vec<Step>, PgbenchResult), BenchError> {
    let opts = settings.store_options();
    // Gaia's schema first, then the baseline's tables beside it for pgbench.
    let store = open_store(url, &opts).await?;
    let gaia = Gaia::new(store.clone());
    let (_, token) = gaia.create_token("bench", Role::Agent, "bench").await?;
    let baseline = pg_baseline(url, &opts).await?;
    baseline.close().await;
    let keys: Arc<Vec<ClaimKey>> = Arc::new(
        (0..args.keys)
            .map(|i| ClaimKey::new(&format!("bench-{i}"), "default"))
            .collect::<Result<_, _>>()?,
    );
    let exe = settings.gaia_binary()?;
    let dir = tempfile::tempdir()?;
    let admin = generate(Role::Admin);
    let mut steps = Vec::new();
    for &n in &args.nodes {
        let mut servers = Vec::new();
        for i in 0..n {
            let name = format!("node-{n}-{i}");
            servers.push(ServerProcess::start(&exe, dir.path(), &name, url, &admin).await?);
        }
        let step = measure_nodes(args, &servers, &keys, &token, &admin, &gaia, duration).await;
        for s in &mut servers {
            s.stop().await;
        }
        steps.push(step?);
        if !args.json {
            if let Some(s) = steps.last() {
                eprintln!(
                    "{} node(s): {:.0} claims/s over HTTP, p99 {} us",
                    s.nodes,
                    s.sample.ops_per_s(),
                    s.sample.percentile(99)
                );
            }
        }
    }
    let pgbench = run_pgbench(args, url, dir.path(), duration).await?;
    store.close().await;
    Ok((steps, pgbench))
}

#[allow(clippy::too_many_arguments)]
async fn measure_nodes(
    args: &NodesArgs,
    servers: &[ServerProcess],
    keys: &Arc<Vec<ClaimKey>>,
    token: &str,
    admin: &str,
    gaia: &Gaia,
    duration: Duration,
) -> Result<Step, BenchError> {
    // Subscribers on every node, counting the event frames they receive.
    let stop = CancellationToken::new();
    let counts: Vec<Arc<AtomicU64>> = (0..servers.len() * args.subscribers)
        .map(|_| Arc::default())
        .collect();
    let stream_client = reqwest::Client::new();
    let mut readers = tokio::task::JoinSet::new();
    for (i, count) in counts.iter().enumerate() {
        let server = &servers[i % servers.len()];
        let url = format!("{}/api/v1/events/stream", server.base);
        let mut reader = SseReader::open(&stream_client, &url, admin).await?;
        reader.next_frame().await?;
        let (count, stop) = (count.clone(), stop.clone());
        readers.spawn(async move {
            loop {
                let frame = tokio::select! {
                    () = stop.cancelled() => break,
                    f = reader.next_frame() => f,
                };
                match frame {
                    Ok(Some(f)) if f.lines().any(|l| l.starts_with("id:")) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        });
    }
    // Clients spread evenly: client i talks to node i mod n.
    let mut sides = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let share = args.clients / servers.len() + usize::from(i < args.clients % servers.len());
        let http = HttpClaims::new(http_client(share)?, &server.base, token.to_owned());
        sides.push((Side::Http(Arc::new(http)), share));
    }
    // Unmeasured warm-up: connections, prepared statements.
    warm(&sides, keys, Duration::from_millis(500)).await?;
    let head_before = gaia.store().last_seq().await?;
    let before: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let started = Instant::now();
    let mut runs = tokio::task::JoinSet::new();
    for (side, share) in sides.iter().filter(|(_, share)| *share > 0) {
        let (side, keys, share) = (side.clone(), keys.clone(), *share);
        runs.spawn(async move { measure(&side, &keys, share, duration).await });
    }
    let mut sample = Sample::default();
    while let Some(joined) = runs.join_next().await {
        let s = joined.map_err(|e| bench_error("a node's clients", e))??;
        sample.elapsed = sample.elapsed.max(s.elapsed);
        sample.merge(s);
    }
    sample.latencies.sort_unstable();
    let wall = started.elapsed().as_secs_f64();
    let head_after = gaia.store().last_seq().await?;
    // Subscribers get a moment to receive the last events before they are counted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered: Vec<f64> = counts
        .iter()
        .zip(before)
        .map(|(c, b)| (c.load(Ordering::Relaxed) - b) as f64 / wall)
        .collect();
    stop.cancel();
    while readers.join_next().await.is_some() {}
    Ok(Step {
        nodes: servers.len(),
        sample,
        appended_per_s: (head_after - head_before) as f64 / wall,
        delivered_min_per_s: delivered.iter().copied().reduce(f64::min),
        delivered_max_per_s: delivered.iter().copied().reduce(f64::max),
    })
}

async fn warm(
    sides: &[(Side, usize)],
    keys: &Arc<Vec<ClaimKey>>,
    d: Duration,
) -> Result<(), BenchError> {
    let mut runs = tokio::task::JoinSet::new();
    for (side, share) in sides.iter().filter(|(_, share)| *share > 0) {
        let (side, keys, share) = (side.clone(), keys.clone(), *share);
        runs.spawn(async move { measure(&side, &keys, share, d).await });
    }
    while let Some(joined) = runs.join_next().await {
        joined.map_err(|e| bench_error("warming up", e))??;
    }
    Ok(())
}

/// Runs pgbench with the baseline's transactions and as many clients as the HTTP side.
async fn run_pgbench(
    args: &NodesArgs,
    url: &str,
    dir: &std::path::Path,
    duration: Duration,
) -> Result<PgbenchResult, BenchError> {
    let script = dir.join("claims.sql");
    std::fs::write(&script, PGBENCH_SCRIPT)?;
    let secs = duration.as_secs().max(1);
    let out = tokio::process::Command::new(&args.pgbench)
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg(format!("-c{}", args.clients))
        .arg(format!("-T{secs}"))
        .arg(format!("-Dkeys={}", args.keys))
        .arg("-f")
        .arg(&script)
        .arg(url)
        .output()
        .await
        .map_err(|e| bench_error("cannot run pgbench", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(bench_error(
            "pgbench failed",
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    let number = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
    };
    let tps = number("tps = ").ok_or_else(|| bench_error("pgbench", "no tps line"))?;
    Ok(PgbenchResult {
        calls_per_s: 2.0 * tps,
        latency_avg_ms: number("latency average = ").unwrap_or(0.0) / 2.0,
    })
}

fn report(args: &NodesArgs, steps: &[Step], pgbench: &PgbenchResult) {
    let first = steps.first().map_or(0.0, |s| s.sample.ops_per_s());
    let over = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    if args.json {
        let rows: Vec<_> = steps
            .iter()
            .map(|s| {
                let mut v = s.sample.to_json();
                v["nodes"] = json!(s.nodes);
                v["ratio_to_one_node"] = json!(over(s.sample.ops_per_s(), first));
                v["ratio_to_pgbench"] = json!(over(s.sample.ops_per_s(), pgbench.calls_per_s));
                v["events_appended_per_s"] = json!(s.appended_per_s.round());
                v["delivered_min_per_s"] = json!(s.delivered_min_per_s.map(f64::round));
                v["delivered_max_per_s"] = json!(s.delivered_max_per_s.map(f64::round));
                v
            })
            .collect();
        let doc = json!({
            "clients": args.clients,
            "keys": args.keys,
            "subscribers_per_node": args.subscribers,
            "rows": rows,
            "pgbench": {
                "calls_per_s": pgbench.calls_per_s.round(),
                "latency_avg_ms": pgbench.latency_avg_ms,
            },
        });
        println!("{doc}");
        return;
    }
    println!(
        "{:>5} {:>9} {:>7} {:>9} {:>9} {:>6} {:>10} {:>11} {:>11}",
        "nodes",
        "claims/s",
        "x1node",
        "xpgbench",
        "p99",
        "noop%",
        "appended/s",
        "stream min",
        "stream max"
    );
    for s in steps {
        let ops = s.sample.ops_per_s();
        let noop = if s.sample.ops == 0 {
            0.0
        } else {
            100.0 * s.sample.noops as f64 / s.sample.ops as f64
        };
        println!(
            "{:>5} {:>9.0} {:>6.2}x {:>8.2}x {:>7}us {:>5.1} {:>10.0} {:>11} {:>11}",
            s.nodes,
            ops,
            over(ops, first),
            over(ops, pgbench.calls_per_s),
            s.sample.percentile(99),
            noop,
            s.appended_per_s,
            per_s(s.delivered_min_per_s),
            per_s(s.delivered_max_per_s),
        );
    }
    println!(
        "pgbench: {:.0} calls/s (two transactions per script run), average latency {:.2} ms per call",
        pgbench.calls_per_s, pgbench.latency_avg_ms
    );
    println!(
        "{} HTTP clients spread over the nodes, {} keys; claims/s counts acquires and releases; \
         stream min/max are events/s received by the slowest and fastest of {} subscriber(s) per \
         node, beside appended/s, the events the log gained per second",
        args.clients, args.keys, args.subscribers
    );
}

/// A rate for the table, `-` when there is none.
fn per_s(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_owned(), |r| format!("{r:.0}"))
}
