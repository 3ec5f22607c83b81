//! `gaia-bench mcp`: the overhead of a `claim_acquire` through MCP over stdio (a `gaia mcp`
//! child, one client, sequential calls) beside the same acquire made in-process on the
//! `Gaia` service, on the same database in the same run. The two sides alternate call by call,
//! so load from elsewhere on the machine hits both alike; every call takes a fresh key, so
//! each is a real write (claim, event, audit record) on both sides.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use gaia_core::Gaia;
use gaia_core::claims::{Outcome, Request};
use gaia_core::names::ClaimKey;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::exit::{self, BenchError, BenchResult, bench_error};
use crate::harness::{micros, ms, sample_of};
use crate::sample::Sample;
use crate::scratch::Backend;
use crate::settings::{Settings, open_store};

#[derive(Debug, Args)]
pub struct McpArgs {
    /// Measured calls on each side.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    calls: u32,
    /// Unmeasured calls on each side first.
    #[arg(long, default_value_t = 50, value_name = "N")]
    warmup: u32,
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

/// Longest one MCP call may take before the run fails.
const CALL_BOUND: Duration = Duration::from_secs(30);

/// A `gaia mcp` child and its pipes, initialized.
struct McpChild {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl McpChild {
    /// Starts `gaia --db URL mcp --agent bench-mcp` in `dir`, isolated from the caller's
    /// configuration (no gaia.toml, no env file, no GAIA_* variable), and does the handshake.
    async fn start(exe: &Path, dir: &Path, url: &str) -> Result<Self, BenchError> {
        let mut cmd = tokio::process::Command::new(exe);
        cmd.current_dir(dir)
            .args(["--db", url, "mcp", "--agent", "bench-mcp"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GAIA_") {
                cmd.env_remove(name);
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| bench_error("cannot start gaia mcp", e))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(bench_error("gaia mcp", "no pipes"));
        };
        let mut mcp = Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            next_id: 0,
        };
        let init = mcp
            .request(
                "initialize",
                json!({ "protocolVersion": "2025-11-25", "capabilities": {},
                        "clientInfo": { "name": "gaia-bench", "version": "1" } }),
            )
            .await?;
        if init.get("result").is_none() {
            return Err(bench_error("initialize", init));
        }
        mcp.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await?;
        Ok(mcp)
    }

    async fn send(&mut self, msg: &Value) -> Result<(), BenchError> {
        let mut line = serde_json::to_vec(msg).map_err(|e| bench_error("encoding", e))?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Sends a request and reads lines until its response (notifications are skipped).
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, BenchError> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await?;
        let read = async {
            while let Some(line) = self.lines.next_line().await? {
                let v: Value =
                    serde_json::from_str(&line).map_err(|e| bench_error("gaia mcp wrote", e))?;
                if v.get("id") == Some(&json!(id)) {
                    return Ok(v);
                }
            }
            Err(bench_error("gaia mcp", "closed its output"))
        };
        tokio::time::timeout(CALL_BOUND, read)
            .await
            .map_err(|_| bench_error(method, "no answer within 30 s"))?
    }

    /// `claim_acquire` on `story`; fails unless it acquired.
    async fn acquire(&mut self, story: &str) -> Result<(), BenchError> {
        let r = self
            .request(
                "tools/call",
                json!({ "name": "claim_acquire",
                        "arguments": { "story": story, "ttl": "15m" } }),
            )
            .await?;
        let result = &r["result"];
        if result["isError"] != json!(false) || result["structuredContent"]["outcome"] != "acquired"
        {
            return Err(bench_error("claim_acquire over MCP", r));
        }
        Ok(())
    }

    async fn close(mut self) -> Result<(), BenchError> {
        drop(self.stdin);
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(Ok(s)) if s.success() => Ok(()),
            Ok(Ok(s)) => Err(bench_error("gaia mcp exited", s)),
            Ok(Err(e)) => Err(bench_error("gaia mcp", e)),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(bench_error(
                    "gaia mcp",
                    "did not exit when its input closed",
                ))
            }
        }
    }
}

/// The same acquire in-process, as the tool makes it: the default todolist, a 15 min lease.
async fn acquire_in_process(gaia: &Gaia, story: &str) -> Result<(), BenchError> {
    let req = Request::acquire(
        ClaimKey::new(story, ClaimKey::DEFAULT_TODOLIST)?,
        "bench-in-process",
        None,
        None,
        Some(Duration::from_secs(15 * 60)),
    )?;
    match gaia.apply_claim(&req).await?.outcome {
        Outcome::Acquired => Ok(()),
        other => Err(bench_error("in-process acquire", format!("{other:?}"))),
    }
}

/// One backend's two samples: (mcp, in-process).
async fn measure(
    backend: &Backend,
    args: &McpArgs,
    settings: &Settings,
) -> Result<(Sample, Sample), BenchError> {
    let url = backend.url();
    // The service first: it migrates the database the child then opens.
    let store = open_store(&url, &settings.store_options()).await?;
    let gaia = Gaia::new(store.clone());
    let dir = tempfile::tempdir()?;
    let mut mcp = McpChild::start(&settings.gaia_binary()?, dir.path(), &url).await?;
    let res = alternate(&mut mcp, &gaia, args).await;
    let closed = mcp.close().await;
    store.close().await;
    let (over_mcp, in_process) = res?;
    closed?;
    Ok((sample_of(over_mcp), sample_of(in_process)))
}

/// The calls, one on each side in turn: the latencies (microseconds) of (mcp, in-process).
async fn alternate(
    mcp: &mut McpChild,
    gaia: &Gaia,
    args: &McpArgs,
) -> Result<(Vec<u32>, Vec<u32>), BenchError> {
    let (mut over_mcp, mut in_process) = (Vec::new(), Vec::new());
    for i in 0..args.warmup + args.calls {
        let t = Instant::now();
        mcp.acquire(&format!("mcp-{i}")).await?;
        let a = micros(t.elapsed());
        let t = Instant::now();
        acquire_in_process(gaia, &format!("inproc-{i}")).await?;
        let b = micros(t.elapsed());
        if i >= args.warmup {
            over_mcp.push(a);
            in_process.push(b);
        }
    }
    Ok((over_mcp, in_process))
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

pub async fn run(args: McpArgs, settings: &Settings) -> BenchResult {
    if args.calls == 0 {
        return Err(BenchError::bad_input("--calls must be at least 1"));
    }
    let mut backends = Vec::new();
    if !args.no_sqlite {
        backends.push(Backend::sqlite()?);
    }
    if let Some(server) = &args.postgres {
        backends.push(Backend::postgres(server).await?);
    }
    if backends.is_empty() {
        return Err(BenchError::bad_input(
            "--no-sqlite without --postgres measures nothing",
        ));
    }
    let mut rows = Vec::new();
    for backend in backends {
        let name = backend.name();
        let measured = measure(&backend, &args, settings).await;
        let finished = backend.finish().await;
        let (m, p) = measured?;
        finished?;
        rows.push((name, m, p));
    }
    if args.json {
        let out: Vec<Value> = rows
            .iter()
            .map(|(name, m, p)| {
                json!({
                    "backend": name,
                    "calls": args.calls,
                    "mcp_stdio": { "p50_us": m.percentile(50), "p99_us": m.percentile(99) },
                    "in_process": { "p50_us": p.percentile(50), "p99_us": p.percentile(99) },
                    "p50_ratio": ratio(m.percentile(50), p.percentile(50)),
                    "p99_ratio": ratio(m.percentile(99), p.percentile(99)),
                })
            })
            .collect();
        println!("{}", json!({ "mcp": out }));
        return Ok(exit::OK);
    }
    println!(
        "claim_acquire, {} sequential calls a side, alternating",
        args.calls
    );
    println!(
        "{:<9} {:<11} {:>9} {:>9} {:>10} {:>10}",
        "backend", "side", "p50 ms", "p99 ms", "p50 ratio", "p99 ratio"
    );
    for (name, m, p) in &rows {
        println!(
            "{:<9} {:<11} {:>9} {:>9} {:>10} {:>10}",
            name,
            "in-process",
            ms(p.percentile(50)),
            ms(p.percentile(99)),
            "1.00",
            "1.00"
        );
        println!(
            "{:<9} {:<11} {:>9} {:>9} {:>10.2} {:>10.2}",
            name,
            "mcp stdio",
            ms(m.percentile(50)),
            ms(m.percentile(99)),
            ratio(m.percentile(50), p.percentile(50)),
            ratio(m.percentile(99), p.percentile(99)),
        );
    }
    Ok(exit::OK)
}
