//! `gaia-bench backlog`: ready work on a large backlog. A store is seeded (in bulk SQL) with
//! `--stories` stories of `--tasks` tasks each; then `ready` is timed through Gaia beside the
//! same query run raw, and `ready --take` (take a task with its list's claim, then let the
//! claim go) is run by `--agents` concurrent agents through Gaia beside raw SQL doing the same
//! claim-and-update transaction, in alternating slices, on SQLite and optionally PostgreSQL.

use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Args;
use gaia_core::Gaia;
use gaia_core::backlog::Taken;
use gaia_core::claims::{Holder, Request};
use gaia_core::time::{parse_duration, to_micros};
use gaia_store_sql::shared::backlog::READY;
use serde_json::json;
use sqlx::{Any, Pool};

use crate::baseline::fake_hash;
use crate::claims::check_chain;
use crate::exit::{self, BenchError, BenchResult, bench_error};
use crate::sample::Sample;
use crate::scratch::Scratch;
use crate::settings::{Settings, open_store};

#[derive(Debug, Args)]
pub struct BacklogArgs {
    /// Stories to seed.
    #[arg(long, default_value_t = 10_000)]
    stories: i64,
    /// Tasks per story.
    #[arg(long, default_value_t = 10)]
    tasks: i64,
    /// Concurrent agents taking work.
    #[arg(long, default_value_t = 16)]
    agents: usize,
    /// `ready` queries timed on each side.
    #[arg(long, default_value_t = 300)]
    queries: usize,
    /// How long each side takes work.
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    duration: String,
    /// Each side's time is split into this many slices, alternating with the other side's.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
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

/// Claim lease of every take.
const TTL: Duration = Duration::from_secs(600);

/// Seeds stories, their `default` lists and their tasks, in three statements that both
/// dialects read alike (`$1` stories, `$2` tasks per story, `$3` false).
const SEED: [&str; 3] = [
    "INSERT INTO stories (slug, title, description, status, labels, created_by, created_at_us,
        updated_at_us, todolist)
     WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1)
     SELECT 'story-' || i, 'Story ' || i, '', 'open', '[]', 'bench', i, i, 'default' FROM n",
    "INSERT INTO todolists (story, name, created_at_us)
     SELECT slug, 'default', created_at_us FROM stories",
    "INSERT INTO tasks (story, todolist, title, body, status, position, blocked_by, is_final,
        created_by, created_at_us, updated_at_us)
     WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1 * $2)
     SELECT 'story-' || (i / $2), 'default', 'task ' || i, '', 'todo', (i % $2) + 1, '[]', $3,
        'bench', i, i FROM n",
];

/// One side of the take measurement.
#[derive(Clone)]
enum Side {
    Gaia(Gaia),
    Raw { pool: Pool<Any>, pg: bool },
}

impl Side {
    /// Takes one ready task as `agent` and lets the claim go; `false` when nothing was ready.
    async fn take(&self, agent: &str) -> Result<bool, BenchError> {
        match self {
            Self::Gaia(gaia) => {
                let holder = Holder {
                    agent: agent.to_owned(),
                    operator: "bench".into(),
                    fingerprint: "-".into(),
                    principal: None,
                };
                let Taken::Took { task, .. } = gaia.take_ready(None, &holder, TTL, agent).await?
                else {
                    return Ok(false);
                };
                gaia.apply_claim(&Request::release(task.key(), agent, None)?)
                    .await?;
                Ok(true)
            }
            Self::Raw { pool, pg } => {
                // The same retries as Gaia's service: 5 ms, 10 ms, ... while every list is busy.
                for attempt in 0..6 {
                    match raw_take(pool, *pg, agent)
                        .await
                        .map_err(|e| bench_error("raw take", e))?
                    {
                        Took::Yes => return Ok(true),
                        Took::Nothing => return Ok(false),
                        Took::Busy => {
                            tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                        }
                    }
                }
                Ok(false)
            }
        }
    }
}

/// The raw take: in one transaction, read the ready candidates as the agent sees them, lock
/// the first free list's claim row, write the claim and mark the task in progress, with an
/// event and an audit record each; then release the claim with its event and record.
async fn raw_take(pool: &Pool<Any>, pg: bool, agent: &str) -> Result<Took, sqlx::Error> {
    let mut tx = if pg {
        pool.begin().await?
    } else {
        pool.begin_with("BEGIN IMMEDIATE").await?
    };
    let ts = to_micros(Utc::now());
    let found: Vec<(i64, String, String)> =
        sqlx::query_as(&READY.replace("SELECT t.*", "SELECT t.id, t.story, t.todolist"))
            .bind(ts)
            .bind(None::<String>)
            .bind(256_i64)
            .bind(agent)
            .fetch_all(&mut *tx)
            .await?;
    // As Gaia does: each list's first ready task, at most 32 lists.
    let mut lists = std::collections::HashSet::new();
    let found = found
        .into_iter()
        .filter(|(_, story, list)| lists.insert(format!("{story}/{list}")))
        .take(32);
    let mut busy = false;
    // As Gaia does: a list another taker is deciding on right now is passed over.
    let lock = if pg { " FOR UPDATE SKIP LOCKED" } else { "" };
    for (id, story, list) in found {
        let key = format!("{story}/{list}");
        sqlx::query(
            "INSERT INTO claims (key, story, todolist, token, ttl_ms) VALUES ($1, $2, $3, 0, 0)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&key)
        .bind(&story)
        .bind(&list)
        .execute(&mut *tx)
        .await?;
        let held: Option<(Option<String>, Option<i64>)> = sqlx::query_as(&format!(
            "SELECT agent, expires_at_us FROM claims WHERE key = $1{lock}"
        ))
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?;
        match held {
            None => {
                busy = true;
                continue;
            }
            Some((Some(other), Some(until))) if other != agent && until > ts => continue,
            Some(_) => {}
        }
        let token: i64 = sqlx::query_scalar(
            "UPDATE claims SET agent = $2, operator = 'bench', fingerprint = '-',
                token = token + 1, acquired_at_us = $3, expires_at_us = $4, ttl_ms = 600000
             WHERE key = $1 RETURNING token",
        )
        .bind(&key)
        .bind(agent)
        .bind(ts)
        .bind(ts + 600_000_000)
        .fetch_one(&mut *tx)
        .await?;
        let took = sqlx::query(
            "UPDATE tasks SET status = 'in_progress', worker = $2, updated_at_us = $3
             WHERE id = $1 AND status = 'todo'",
        )
        .bind(id)
        .bind(agent)
        .bind(ts)
        .execute(&mut *tx)
        .await?;
        if took.rows_affected() == 0 {
            continue;
        }
        let data = json!({ "key": key, "token": token, "id": id, "agent": agent }).to_string();
        for kind in ["claim.acquired", "todo.started"] {
            raw_log(&mut tx, ts, kind, &key, &data).await?;
        }
        tx.commit().await?;
        raw_release(pool, pg, &key, agent).await?;
        return Ok(Took::Yes);
    }
    tx.rollback().await?;
    Ok(if busy { Took::Busy } else { Took::Nothing })
}

/// What one raw attempt came to (Gaia's service retries a busy attempt itself).
enum Took {
    Yes,
    Busy,
    Nothing,
}

async fn raw_release(
    pool: &Pool<Any>,
    pg: bool,
    key: &str,
    agent: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = if pg {
        pool.begin().await?
    } else {
        pool.begin_with("BEGIN IMMEDIATE").await?
    };
    let ts = to_micros(Utc::now());
    sqlx::query(
        "UPDATE claims SET agent = NULL, operator = NULL, fingerprint = NULL, expires_at_us = NULL
         WHERE key = $1 AND agent = $2",
    )
    .bind(key)
    .bind(agent)
    .execute(&mut *tx)
    .await?;
    let data = json!({ "key": key, "agent": agent }).to_string();
    raw_log(&mut tx, ts, "claim.released", key, &data).await?;
    tx.commit().await
}

async fn raw_log(
    tx: &mut sqlx::Transaction<'_, Any>,
    ts: i64,
    kind: &str,
    subject: &str,
    data: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO bench_events (ts_us, type, actor, subject, data) VALUES ($1, $2, 'bench', $3, $4)",
    )
    .bind(ts)
    .bind(kind)
    .bind(subject)
    .bind(data)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO bench_audit (ts_us, actor, action, subject, outcome, details, prev_hash, hash)
         VALUES ($1, 'bench', $2, $3, 'ok', $4, $5, $6)",
    )
    .bind(ts)
    .bind(kind)
    .bind(subject)
    .bind(data)
    .bind(fake_hash(ts))
    .bind(fake_hash(ts + 1))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `agents` agents taking work on `side` until `until`.
async fn take_for(side: &Side, agents: usize, until: Instant) -> Result<Sample, BenchError> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for a in 0..agents {
        let side = side.clone();
        set.spawn(async move {
            let agent = format!("agent-{a}");
            let mut sample = Sample::default();
            while Instant::now() < until {
                let t = Instant::now();
                if !side.take(&agent).await? {
                    break;
                }
                sample
                    .latencies
                    .push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                sample.ops += 1;
            }
            Ok::<_, BenchError>(sample)
        });
    }
    let mut total = Sample::default();
    while let Some(joined) = set.join_next().await {
        let sample = joined.map_err(|e| BenchError::new(exit::FAILURE, e.to_string()))??;
        total.merge(sample);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// Times `queries` ready reads on each side.
async fn time_ready(
    gaia: &Gaia,
    raw: &Pool<Any>,
    queries: usize,
) -> Result<(Sample, Sample), BenchError> {
    let (mut g, mut r) = (Sample::default(), Sample::default());
    for _ in 0..queries {
        let t = Instant::now();
        let found = gaia.list_ready(None, 50).await?;
        g.latencies
            .push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
        g.ops += u64::from(!found.is_empty());
        let t = Instant::now();
        let rows = sqlx::query(READY)
            .bind(to_micros(Utc::now()))
            .bind(None::<String>)
            .bind(50_i64)
            .bind(None::<String>)
            .fetch_all(raw)
            .await
            .map_err(|e| bench_error("raw ready", e))?;
        r.latencies
            .push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
        r.ops += u64::from(!rows.is_empty());
    }
    g.latencies.sort_unstable();
    r.latencies.sort_unstable();
    Ok((g, r))
}

struct Outcome {
    backend: &'static str,
    ready: (Sample, Sample),
    take: (Sample, Sample),
    seed_s: f64,
}

async fn bench_one(
    backend: &'static str,
    url: &str,
    args: &BacklogArgs,
    settings: &Settings,
) -> Result<Outcome, BenchError> {
    let store = open_store(url, &settings.store_options()).await?;
    sqlx::any::install_default_drivers();
    let pg = backend == "postgres";
    let raw: Pool<Any> = sqlx::pool::PoolOptions::new()
        .max_connections(settings.store_options().max_connections.max(1))
        .connect(url)
        .await
        .map_err(|e| bench_error("raw pool", e))?;
    let schema = if pg {
        crate::baseline::PG_BASELINE_SCHEMA
    } else {
        crate::baseline::SQLITE_BASELINE_SCHEMA
    };
    sqlx::raw_sql(schema)
        .execute(&raw)
        .await
        .map_err(|e| bench_error("baseline schema", e))?;
    let seeded = Instant::now();
    for sql in SEED {
        sqlx::query(sql)
            .bind(args.stories)
            .bind(args.tasks)
            .bind(false)
            .execute(&raw)
            .await
            .map_err(|e| bench_error("seeding", e))?;
    }
    if pg {
        sqlx::query("ANALYZE")
            .execute(&raw)
            .await
            .map_err(|e| bench_error("analyze", e))?;
    }
    let seed_s = seeded.elapsed().as_secs_f64();
    let gaia = Gaia::new(store.clone());
    let ready = time_ready(&gaia, &raw, args.queries).await?;
    let duration = parse_duration(&args.duration)?;
    let slice = duration / args.rounds.max(1);
    let (gside, rside) = (
        Side::Gaia(gaia.clone()),
        Side::Raw {
            pool: raw.clone(),
            pg,
        },
    );
    let (mut g, mut r) = (Sample::default(), Sample::default());
    for _ in 0..args.rounds.max(1) {
        g.combine(take_for(&gside, args.agents, Instant::now() + slice).await?);
        r.combine(take_for(&rside, args.agents, Instant::now() + slice).await?);
    }
    g.latencies.sort_unstable();
    r.latencies.sort_unstable();
    check_chain(&gaia, backend, args.json).await?;
    store.close().await;
    raw.close().await;
    Ok(Outcome {
        backend,
        ready,
        take: (g, r),
        seed_s,
    })
}

fn ratio(gaia: f64, raw: f64) -> f64 {
    if raw > 0.0 {
        (gaia / raw * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

pub async fn run(args: BacklogArgs, settings: &Settings) -> BenchResult {
    if args.stories < 1 || args.tasks < 1 || args.agents < 1 {
        return Err(BenchError::bad_input(
            "--stories, --tasks and --agents must be positive",
        ));
    }
    let mut outcomes = Vec::new();
    if !args.no_sqlite {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        outcomes.push(bench_one("sqlite", &url, &args, settings).await?);
    }
    if let Some(server) = &args.postgres {
        let scratch = Scratch::create(server).await?;
        let res = bench_one("postgres", &scratch.url, &args, settings).await;
        let dropped = scratch.drop_database().await;
        outcomes.push(res?);
        dropped?;
    }
    report(&args, &outcomes);
    Ok(exit::OK)
}

fn report(args: &BacklogArgs, outcomes: &[Outcome]) {
    if args.json {
        let cells: Vec<_> = outcomes
            .iter()
            .map(|o| {
                json!({
                    "backend": o.backend,
                    "seed_s": o.seed_s,
                    "ready_gaia": o.ready.0.to_json(),
                    "ready_raw": o.ready.1.to_json(),
                    "take_gaia": o.take.0.to_json(),
                    "take_raw": o.take.1.to_json(),
                    "take_ratio": ratio(o.take.0.ops_per_s(), o.take.1.ops_per_s()),
                })
            })
            .collect();
        println!(
            "{}",
            json!({ "stories": args.stories, "tasks": args.stories * args.tasks,
                    "agents": args.agents, "cells": cells })
        );
        return;
    }
    println!(
        "backlog: {} stories, {} tasks, {} agents",
        args.stories,
        args.stories * args.tasks,
        args.agents
    );
    println!(
        "backend   ready p50/p99 gaia (raw)        take/s gaia  raw      ratio  take p99 gaia (raw)"
    );
    for o in outcomes {
        println!(
            "{:<9} {:>6}/{:<6}us ({:>5}/{:<6}us) {:>10.0} {:>8.0} {:>6.2}x  {:>7}us ({}us)",
            o.backend,
            o.ready.0.percentile(50),
            o.ready.0.percentile(99),
            o.ready.1.percentile(50),
            o.ready.1.percentile(99),
            o.take.0.ops_per_s(),
            o.take.1.ops_per_s(),
            ratio(o.take.0.ops_per_s(), o.take.1.ops_per_s()),
            o.take.0.percentile(99),
            o.take.1.percentile(99),
        );
    }
}
