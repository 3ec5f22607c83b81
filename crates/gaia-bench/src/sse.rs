//! `gaia-bench sse`: a real `gaia serve` child process on its own temporary SQLite database,
//! many event-stream subscribers connected from this process, and events appended over HTTP
//! at a steady pace. Measures append-to-delivery latency per subscriber per event and the
//! server's resident memory per connected subscriber.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use gaia_core::tokens::{Role, generate};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::exit::{self, BenchError, BenchResult, bench_error};
use crate::harness::{SseReader, checked, frame_data, micros, ms, sample_of};
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct SseArgs {
    /// Stream subscribers connected at once.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    subscribers: usize,
    /// Events appended while they are connected.
    #[arg(long, default_value_t = 200, value_name = "N")]
    events: usize,
    /// Events appended per second.
    #[arg(long, default_value_t = 20.0, value_name = "N")]
    rate: f64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Connections this process keeps open besides the subscribers (and the server likewise).
const FD_MARGIN: usize = 128;
/// Subscribers connecting at the same time.
const CONNECTING: usize = 32;
/// Event type the benchmark appends.
const TICK: &str = "bench.tick";

/// The `gaia serve` child, killed whenever this value is dropped (errors, interruption).
#[derive(Debug)]
pub struct ServerProcess {
    child: tokio::process::Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    log: std::path::PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl ServerProcess {
    /// Starts `gaia serve` on the database `db`, on 127.0.0.1 and an ephemeral port, isolated
    /// from the caller's configuration (run in `dir`, without any GAIA_* or MONITOR_*
    /// variable), and waits for the line that names its address. Its log is `dir/name.log`.
    pub async fn start(
        exe: &Path,
        dir: &Path,
        name: &str,
        db: &str,
        admin_token: &str,
    ) -> Result<Self, BenchError> {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log)?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.current_dir(dir)
            .arg("--db")
            .arg(db)
            .args(["serve", "--bind", "127.0.0.1:0"]);
        for (name, _) in std::env::vars_os() {
            let n = name.to_string_lossy();
            if n.starts_with("GAIA_") || n.starts_with("MONITOR_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("MONITOR_ADMIN_TOKEN", admin_token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| bench_error("cannot start gaia serve", e))?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take();
        // From here on the child is killed on every way out.
        let mut server = Self {
            child,
            pid,
            base: String::new(),
            log,
        };
        let Some(stdout) = stdout else {
            return Err(bench_error("gaia serve", "no stdout"));
        };
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("gaia serving on ") {
                    return rest.split_whitespace().next().map(str::to_owned);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(base)) => server.base = base,
            _ => {
                return Err(bench_error(
                    "gaia serve did not report its address",
                    server.log_tail(),
                ));
            }
        }
        // Keep reading its stdout so that it can never block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(server)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Resident memory in KiB (`VmRSS` in /proc/PID/status).
    fn rss_kib(&self) -> Result<u64, BenchError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .map_err(|e| bench_error("reading the server's memory (Linux /proc)", e))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| bench_error("reading the server's memory", "no VmRSS line"))
    }

    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// CPU time (user + system) a process has used, in seconds, from /proc/PID/stat; `None` off
/// Linux. Assumes the usual 100 clock ticks per second.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The soft limit on open files of this process (the child inherits it), from /proc.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(usize::MAX),
        n => n.parse().ok(),
    }
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Seen {
    /// Append-to-delivery latency of each benchmark event, in microseconds.
    latencies: Vec<u32>,
}

/// One subscriber: connects (at most `CONNECTING` at a time), reports that it is ready, then
/// records each benchmark event's latency until it has seen `events` of them or is stopped.
#[allow(clippy::too_many_arguments)]
async fn subscriber(
    client: reqwest::Client,
    url: String,
    token: String,
    events: usize,
    clock: Instant,
    gate: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<(), BenchError>>,
    stop: CancellationToken,
) -> Seen {
    let mut seen = Seen::default();
    let mut reader = {
        let Ok(_permit) = gate.acquire().await else {
            return seen;
        };
        let opened = async {
            let mut r = SseReader::open(&client, &url, &token).await?;
            // The first frame is the server's `connected` comment: the subscription is live.
            r.next_frame().await?;
            Ok::<_, BenchError>(r)
        }
        .await;
        match opened {
            Ok(r) => {
                let _ = ready.send(Ok(()));
                r
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return seen;
            }
        }
    };
    while seen.latencies.len() < events {
        let frame = tokio::select! {
            () = stop.cancelled() => break,
            f = reader.next_frame() => f,
        };
        let Ok(Some(frame)) = frame else { break };
        let now = clock.elapsed();
        let sent = frame_data(&frame)
            .filter(|v| v["type"] == TICK)
            .and_then(|v| v["data"]["sent_us"].as_u64());
        if let Some(sent) = sent {
            let latency = now.saturating_sub(Duration::from_micros(sent));
            seen.latencies.push(micros(latency));
        }
    }
    seen
}

pub async fn run(args: SseArgs, settings: &Settings) -> BenchResult {
    if args.subscribers == 0 || args.events == 0 || !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err(BenchError::bad_input(
            "--subscribers, --events and --rate take positive numbers",
        ));
    }
    let mut subscribers = args.subscribers;
    let limit = open_files_limit();
    if let Some(limit) = limit {
        let fits = limit.saturating_sub(FD_MARGIN);
        if subscribers > fits {
            eprintln!(
                "the open-file limit is {limit} (ulimit -n): measuring {fits} subscribers \
                 instead of {subscribers}; raise it with `ulimit -n` to measure more"
            );
            subscribers = fits;
        }
    }
    if subscribers == 0 {
        return Err(BenchError::bad_input("the open-file limit leaves no room"));
    }
    let dir = tempfile::tempdir()?;
    let admin = generate(Role::Admin);
    let db = format!("sqlite://{}", dir.path().join("gaia.db").display());
    let mut server =
        ServerProcess::start(&settings.gaia_binary()?, dir.path(), "serve", &db, &admin).await?;
    let res = tokio::select! {
        r = measure(&server, &admin, subscribers, &args) => r,
        _ = tokio::signal::ctrl_c() => Err(BenchError::new(exit::FAILURE, "interrupted")),
    };
    server.stop().await;
    let result = res?;
    result.print(args.json, limit);
    Ok(exit::OK)
}

#[derive(Debug)]
struct SseResult {
    subscribers: usize,
    events: usize,
    rate: f64,
    connect: Duration,
    rss_before_kib: u64,
    rss_connected_kib: u64,
    rss_after_events_kib: u64,
    expected: u64,
    latencies: crate::sample::Sample,
    append: crate::sample::Sample,
    /// CPU the server used from the first append until every subscriber finished.
    server_cpu_s: Option<f64>,
    /// CPU this process (subscribers and appender) used over the same time.
    client_cpu_s: Option<f64>,
    events_wall: Duration,
}

impl SseResult {
    fn per_subscriber_kib(&self) -> f64 {
        self.rss_connected_kib.saturating_sub(self.rss_before_kib) as f64 / self.subscribers as f64
    }

    fn print(&self, json_out: bool, limit: Option<usize>) {
        let l = &self.latencies;
        if json_out {
            let out = json!({
                "subscribers": self.subscribers,
                "events": self.events,
                "rate_per_s": self.rate,
                "open_files_limit": limit,
                "connect_s": self.connect.as_secs_f64(),
                "rss_before_kib": self.rss_before_kib,
                "rss_connected_kib": self.rss_connected_kib,
                "rss_after_events_kib": self.rss_after_events_kib,
                "kib_per_subscriber": (self.per_subscriber_kib() * 10.0).round() / 10.0,
                "deliveries": l.ops,
                "expected_deliveries": self.expected,
                "p50_us": l.percentile(50),
                "p99_us": l.percentile(99),
                "max_us": l.latencies.last().copied().unwrap_or(0),
                "append_p50_us": self.append.percentile(50),
                "append_p99_us": self.append.percentile(99),
                "events_wall_s": self.events_wall.as_secs_f64(),
                "server_cpu_s": self.server_cpu_s,
                "client_cpu_s": self.client_cpu_s,
            });
            println!("{out}");
            return;
        }
        println!(
            "{} subscribers, {} events at {}/s, connected in {:.2} s",
            self.subscribers,
            self.events,
            self.rate,
            self.connect.as_secs_f64()
        );
        println!(
            "deliveries {} of {}; append->deliver p50 {} ms, p99 {} ms, max {} ms",
            l.ops,
            self.expected,
            ms(l.percentile(50)),
            ms(l.percentile(99)),
            ms(l.latencies.last().copied().unwrap_or(0)),
        );
        println!(
            "append request (POST /api/v1/events) p50 {} ms, p99 {} ms",
            ms(self.append.percentile(50)),
            ms(self.append.percentile(99)),
        );
        if let (Some(server), Some(client)) = (self.server_cpu_s, self.client_cpu_s) {
            println!(
                "CPU while appending and delivering ({:.1} s wall): server {:.1} s ({:.2} ms per \
                 event), this process {:.1} s",
                self.events_wall.as_secs_f64(),
                server,
                1000.0 * server / self.events as f64,
                client
            );
        }
        println!(
            "server VmRSS: {} KiB before, {} KiB with the subscribers connected, {} KiB after \
             the events; {:.1} KiB per subscriber",
            self.rss_before_kib,
            self.rss_connected_kib,
            self.rss_after_events_kib,
            self.per_subscriber_kib()
        );
    }
}

async fn append(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    data: serde_json::Value,
) -> Result<(), BenchError> {
    let res = client
        .post(format!("{base}/api/v1/events"))
        .bearer_auth(token)
        .json(&json!({ "type": TICK, "subject": "bench", "data": data }))
        .send()
        .await;
    checked(res, "appending an event").await.map(|_| ())
}

async fn measure(
    server: &ServerProcess,
    token: &str,
    subscribers: usize,
    args: &SseArgs,
) -> Result<SseResult, BenchError> {
    let base = &server.base;
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| bench_error("HTTP client", e))?;
    let stream_url = format!("{base}/api/v1/events/stream");
    let clock = Instant::now();
    // Warm the server up (first requests, first stream, allocator arenas) before the baseline
    // reading, so that the difference is the subscribers' own.
    append(&client, base, token, json!({ "warmup": true })).await?;
    {
        let mut r = SseReader::open(&client, &stream_url, token).await?;
        r.next_frame().await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before_kib = server.rss_kib()?;

    let gate = Arc::new(Semaphore::new(CONNECTING));
    let stop = CancellationToken::new();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    let connecting = Instant::now();
    for _ in 0..subscribers {
        tasks.spawn(subscriber(
            client.clone(),
            stream_url.clone(),
            token.to_owned(),
            args.events,
            clock,
            gate.clone(),
            ready_tx.clone(),
            stop.clone(),
        ));
    }
    drop(ready_tx);
    let ready = async {
        for _ in 0..subscribers {
            match ready_rx.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(bench_error("a subscriber", "ended before connecting")),
            }
        }
        Ok(())
    };
    let connected = match tokio::time::timeout(Duration::from_secs(120), ready).await {
        Ok(r) => r,
        Err(_) => Err(bench_error(
            "connecting the subscribers",
            "timed out after 120 s",
        )),
    };
    let connect = connecting.elapsed();
    if let Err(e) = connected {
        stop.cancel();
        tasks.shutdown().await;
        return Err(e);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected_kib = server.rss_kib()?;
    if !args.json {
        eprintln!(
            "{subscribers} subscribers connected in {:.2} s",
            connect.as_secs_f64()
        );
    }

    let server_pid = server.pid.to_string();
    let cpu_before = (cpu_seconds(&server_pid), cpu_seconds("self"));
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let start = tokio::time::Instant::now();
    let mut append_us = Vec::with_capacity(args.events);
    for i in 0..args.events {
        tokio::time::sleep_until(start + period.mul_f64(i as f64)).await;
        let sent = clock.elapsed();
        let data = json!({ "sent_us": sent.as_micros() as u64, "i": i });
        let posted = append(&client, base, token, data).await;
        append_us.push(micros(clock.elapsed().saturating_sub(sent)));
        if let Err(e) = posted {
            stop.cancel();
            tasks.shutdown().await;
            return Err(e);
        }
    }
    // Give stragglers time to receive the last events, then stop everyone.
    let stopper = stop.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(15)).await;
        stopper.cancel();
    });
    let mut seen = Vec::with_capacity(subscribers);
    while let Some(joined) = tasks.join_next().await {
        if let Ok(s) = joined {
            seen.push(s);
        }
    }
    timer.abort();
    let cpu_after = (cpu_seconds(&server_pid), cpu_seconds("self"));
    let spent = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
    let cpu = (
        spent(cpu_before.0, cpu_after.0),
        spent(cpu_before.1, cpu_after.1),
    );
    let events_wall = start.elapsed();
    stop.cancel();
    let rss_after_events_kib = server.rss_kib()?;
    let latencies = sample_of(seen.into_iter().flat_map(|s| s.latencies).collect());
    Ok(SseResult {
        subscribers,
        events: args.events,
        rate: args.rate,
        connect,
        rss_before_kib,
        rss_connected_kib,
        rss_after_events_kib,
        expected: (subscribers * args.events) as u64,
        latencies,
        append: sample_of(append_us),
        server_cpu_s: cpu.0,
        client_cpu_s: cpu.1,
        events_wall,
    })
}
