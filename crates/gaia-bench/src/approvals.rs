//! `gaia-bench approvals`: what asking for approval costs over HTTP when the answer comes at
//! once. A server runs in this process; each round an agent files a command request and
//! long-polls its wait endpoint, while an automated approver follows the event stream for
//! `approval.requested` and approves each request as it sees it. Measures request-to-requester-returns latency and where
//! that time goes. With `--requesters N` (N > 1) N agents do this at once, beside one at a time
//! in the same run as the baseline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use gaia_core::Gaia;
use gaia_core::tokens::Role;
use gaia_server::AppState;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::exit::{self, BenchError, BenchResult, bench_error};
use crate::harness::{InProcess, SseReader, between, checked, ms, sample_of, server_options};
use crate::sample::Sample;
use crate::scratch::Backend;
use crate::settings::{Settings, open_store};

#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// Measured request-approve-return rounds.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    rounds: usize,
    /// Unmeasured rounds first.
    #[arg(long, default_value_t = 20, value_name = "N")]
    warmup: usize,
    /// Requesters with a request in flight at once; above 1, one requester is measured first
    /// in the same run as the baseline. The rounds are shared among them.
    #[arg(long, default_value_t = 1, value_name = "N")]
    requesters: usize,
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

/// The goal in BENCHMARKS.md, in microseconds.
const GOAL_P99_US: u32 = 20_000;

#[derive(Debug, Deserialize)]
struct CommandReply {
    id: String,
    status: String,
}

/// What the approver did for one request.
#[derive(Debug)]
struct Approval {
    id: String,
    /// When `approval.requested` reached it.
    seen: Instant,
    /// When its approve call returned.
    approved: Instant,
}

/// Every round's stage latencies, in microseconds.
#[derive(Debug, Default)]
struct Rounds {
    total: Vec<u32>,
    request: Vec<u32>,
    seen: Vec<u32>,
    approve: Vec<u32>,
    wait: Vec<u32>,
}

impl Rounds {
    fn extend(&mut self, other: Rounds) {
        self.total.extend(other.total);
        self.request.extend(other.request);
        self.seen.extend(other.seen);
        self.approve.extend(other.approve);
        self.wait.extend(other.wait);
    }
}

/// The approver's reports, in the order it approved.
type Reports = mpsc::UnboundedReceiver<Result<Approval, BenchError>>;

/// Hands each requester the approver's report for its own request. With several requests in
/// flight the reports arrive in any order: whoever holds the lock reads the channel and keeps
/// the others' reports for them.
struct Matcher {
    inner: Mutex<(Reports, HashMap<String, Approval>)>,
}

impl Matcher {
    fn new(done: Reports) -> Self {
        Self {
            inner: Mutex::new((done, HashMap::new())),
        }
    }

    async fn take(&self, id: &str) -> Result<Approval, BenchError> {
        let found = async {
            let mut guard = self.inner.lock().await;
            let (done, kept) = &mut *guard;
            loop {
                if let Some(a) = kept.remove(id) {
                    return Ok(a);
                }
                match done.recv().await {
                    Some(a) => {
                        let a = a?;
                        kept.insert(a.id.clone(), a);
                    }
                    None => return Err(bench_error("the approver", "stopped")),
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), found).await {
            Ok(r) => r,
            Err(_) => Err(bench_error("the approver", "did not report within 10 s")),
        }
    }
}

/// Follows the stream for new requests and approves each, reporting when it saw and approved it.
async fn approver(
    client: reqwest::Client,
    base: String,
    token: String,
    ready: oneshot::Sender<Result<(), BenchError>>,
    done: mpsc::UnboundedSender<Result<Approval, BenchError>>,
) {
    let url = format!("{base}/api/v1/events/stream?type=approval.requested");
    let opened = async {
        let mut r = SseReader::open(&client, &url, &token).await?;
        r.next_frame().await?;
        Ok::<_, BenchError>(r)
    }
    .await;
    let mut reader = match opened {
        Ok(r) => {
            let _ = ready.send(Ok(()));
            r
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    loop {
        let event = match reader.next_data().await {
            Ok(Some(v)) => v,
            Ok(None) => return,
            Err(e) => {
                let _ = done.send(Err(e));
                return;
            }
        };
        let seen = Instant::now();
        let Some(id) = event["data"]["id"].as_str().map(str::to_owned) else {
            continue;
        };
        if done.is_closed() {
            return;
        }
        // Each approval is sent on a task of its own: with several requests in flight the
        // next event is read while earlier approvals are on their way, so a request does not
        // queue behind the others' approve calls in this process.
        let (client, base, token, done) =
            (client.clone(), base.clone(), token.clone(), done.clone());
        tokio::spawn(async move {
            let res = client
                .post(format!("{base}/api/v1/commands/{id}/approve"))
                .bearer_auth(&token)
                .json(&json!({ "reason": "bench" }))
                .send()
                .await;
            let sent = checked(res, "approving").await.map(|_| Approval {
                id,
                seen,
                approved: Instant::now(),
            });
            let _ = done.send(sent);
        });
    }
}

/// One round: request, wait for the decision, and match it with the approver's report.
async fn round(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    done: &Matcher,
    rounds: &mut Rounds,
) -> Result<(), BenchError> {
    let start = Instant::now();
    let res = client
        .post(format!("{base}/api/v1/commands"))
        .bearer_auth(token)
        .json(&json!({ "command": { "argv": ["true"] }, "reason": "bench" }))
        .send()
        .await;
    let filed: CommandReply = checked(res, "requesting approval")
        .await?
        .json()
        .await
        .map_err(|e| bench_error("requesting approval", e))?;
    let requested = Instant::now();
    if filed.status != "pending" {
        return Err(bench_error(
            "requesting approval",
            format!("expected a pending request, got {}", filed.status),
        ));
    }
    let res = client
        .get(format!(
            "{base}/api/v1/commands/{}/wait?timeout=30s",
            filed.id
        ))
        .bearer_auth(token)
        .send()
        .await;
    let decided: CommandReply = checked(res, "waiting for the decision")
        .await?
        .json()
        .await
        .map_err(|e| bench_error("waiting for the decision", e))?;
    let returned = Instant::now();
    if decided.status != "approved" {
        return Err(bench_error(
            "waiting for the decision",
            format!("expected approved, got {}", decided.status),
        ));
    }
    let approval = done.take(&filed.id).await?;
    rounds.total.push(between(start, returned));
    rounds.request.push(between(start, requested));
    rounds.seen.push(between(start, approval.seen));
    rounds
        .approve
        .push(between(approval.seen, approval.approved));
    rounds.wait.push(between(approval.approved, returned));
    Ok(())
}

/// One backend's result.
#[derive(Debug)]
struct Outcome {
    backend: &'static str,
    /// Requests in flight at once.
    requesters: usize,
    /// (stage, latencies)
    stages: Vec<(&'static str, Sample)>,
}

pub async fn run(args: ApprovalsArgs, settings: &Settings) -> BenchResult {
    if args.rounds == 0 {
        return Err(BenchError::bad_input("--rounds must be at least 1"));
    }
    if args.requesters == 0 {
        return Err(BenchError::bad_input("--requesters must be at least 1"));
    }
    if args.no_sqlite && args.postgres.is_none() {
        return Err(BenchError::bad_input(
            "--no-sqlite leaves nothing to measure without --postgres",
        ));
    }
    let mut outcomes = Vec::new();
    if !args.no_sqlite {
        let backend = Backend::sqlite()?;
        let res = bench_backend(&backend, &args, settings).await;
        let finished = backend.finish().await;
        outcomes.extend(res?);
        finished?;
    }
    if let Some(server) = &args.postgres {
        let backend = Backend::postgres(server).await?;
        let res = bench_backend(&backend, &args, settings).await;
        let finished = backend.finish().await;
        outcomes.extend(res?);
        finished?;
    }
    report(&outcomes, &args);
    Ok(exit::OK)
}

fn report(outcomes: &[Outcome], args: &ApprovalsArgs) {
    if args.json {
        let rows: Vec<_> = outcomes
            .iter()
            .map(|o| {
                let stages: serde_json::Map<_, _> = o
                    .stages
                    .iter()
                    .map(|(name, s)| {
                        (
                            (*name).to_owned(),
                            json!({
                                "p50_us": s.percentile(50),
                                "p99_us": s.percentile(99),
                                "max_us": s.latencies.last().copied().unwrap_or(0),
                            }),
                        )
                    })
                    .collect();
                json!({ "backend": o.backend, "requesters": o.requesters, "stages": stages })
            })
            .collect();
        let out = json!({
            "rounds": args.rounds,
            "goal_p99_us": GOAL_P99_US,
            "backends": rows,
        });
        println!("{out}");
        return;
    }
    println!(
        "{:<8} {:>10} {:<34} {:>9} {:>9} {:>9}",
        "backend", "requesters", "stage", "p50 ms", "p99 ms", "max ms"
    );
    for o in outcomes {
        for (name, s) in &o.stages {
            println!(
                "{:<8} {:>10} {:<34} {:>9} {:>9} {:>9}",
                o.backend,
                o.requesters,
                name,
                ms(s.percentile(50)),
                ms(s.percentile(99)),
                ms(s.latencies.last().copied().unwrap_or(0)),
            );
        }
        if let Some((_, total)) = o.stages.first() {
            let p99 = total.percentile(99);
            println!(
                "{} with {} requester(s): {} rounds; goal p99 <= {} ms: {}",
                o.backend,
                o.requesters,
                total.ops,
                ms(GOAL_P99_US),
                if p99 <= GOAL_P99_US { "met" } else { "not met" }
            );
            // The baseline is the same backend with one request in flight.
            let baseline = outcomes
                .iter()
                .find(|b| b.backend == o.backend && b.requesters == 1)
                .and_then(|b| b.stages.first());
            if let Some((_, base)) = baseline.filter(|_| o.requesters > 1) {
                let ratio =
                    |q| f64::from(total.percentile(q)) / f64::from(base.percentile(q).max(1));
                println!(
                    "{}: {} requesters / 1 requester: p50 {:.2}x, p99 {:.2}x",
                    o.backend,
                    o.requesters,
                    ratio(50),
                    ratio(99)
                );
            }
        }
    }
    println!(
        "stages are measured from the moment the request is sent, except approve (the \
         approver's POST) and wait tail (approve returned -> requester's wait returned)"
    );
}

async fn bench_backend(
    backend: &Backend,
    args: &ApprovalsArgs,
    settings: &Settings,
) -> Result<Vec<Outcome>, BenchError> {
    let url = backend.url();
    let store = open_store(&url, &settings.store_options()).await?;
    // The default policy asks a person for every command: each request stays pending.
    let gaia = Gaia::new(store.clone());
    let (_, agent) = gaia
        .create_token("bench-agent", Role::Agent, "bench")
        .await?;
    let (_, operator) = gaia
        .create_token("bench-operator", Role::Operator, "bench")
        .await?;
    let state = AppState::new(gaia, server_options(&url), None).await?;
    let server = InProcess::start(state).await?;
    let res = rounds(&server.base, &agent, &operator, args).await;
    let stopped = server.stop().await;
    store.close().await;
    let measured = res?;
    stopped?;
    Ok(measured
        .into_iter()
        .map(|(requesters, rounds)| Outcome {
            backend: backend.name(),
            requesters,
            stages: vec![
                ("request -> requester returns", sample_of(rounds.total)),
                ("POST /commands", sample_of(rounds.request)),
                ("request -> approver sees event", sample_of(rounds.seen)),
                ("approve (POST .../approve)", sample_of(rounds.approve)),
                ("wait tail", sample_of(rounds.wait)),
            ],
        })
        .collect())
}

/// `requesters` agents at once, sharing `total` rounds among them.
async fn concurrent(
    client: &reqwest::Client,
    base: &str,
    agent: &str,
    done: &Arc<Matcher>,
    requesters: usize,
    total: usize,
) -> Result<Rounds, BenchError> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..requesters {
        // The first `total % requesters` requesters do one round more.
        let share = total / requesters + usize::from(i < total % requesters);
        let (client, base, agent, done) = (
            client.clone(),
            base.to_owned(),
            agent.to_owned(),
            Arc::clone(done),
        );
        tasks.spawn(async move {
            let mut mine = Rounds::default();
            for _ in 0..share {
                round(&client, &base, &agent, &done, &mut mine).await?;
            }
            Ok::<_, BenchError>(mine)
        });
    }
    let mut all = Rounds::default();
    while let Some(joined) = tasks.join_next().await {
        let mine = joined.map_err(|e| bench_error("a requester", e))??;
        all.extend(mine);
    }
    Ok(all)
}

async fn rounds(
    base: &str,
    agent: &str,
    operator: &str,
    args: &ApprovalsArgs,
) -> Result<Vec<(usize, Rounds)>, BenchError> {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| bench_error("HTTP client", e))?;
    // The stream must not time out: the approver gets a client of its own.
    let stream_client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| bench_error("HTTP client", e))?;
    let (ready_tx, ready_rx) = oneshot::channel();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let done = Arc::new(Matcher::new(done_rx));
    let task = tokio::spawn(approver(
        stream_client,
        base.to_owned(),
        operator.to_owned(),
        ready_tx,
        done_tx,
    ));
    let res = async {
        match ready_rx.await {
            Ok(r) => r?,
            Err(_) => return Err(bench_error("the approver", "stopped before connecting")),
        }
        let mut warm = Rounds::default();
        for _ in 0..args.warmup {
            round(&client, base, agent, &done, &mut warm).await?;
        }
        let mut counts = vec![1];
        if args.requesters > 1 {
            counts.push(args.requesters);
        }
        let mut measured = Vec::new();
        for n in counts {
            let rounds = concurrent(&client, base, agent, &done, n, args.rounds).await?;
            measured.push((n, rounds));
        }
        Ok(measured)
    }
    .await;
    task.abort();
    res
}
