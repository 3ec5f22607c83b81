//! `gaia-bench`: Gaia measured beside baselines doing the same work in the same run (raw SQL
//! for claims, a raw HTTP loop for the outbox), and its HTTP API, event stream and approvals
//! measured end to end. Not shipped with `gaia`: it carries the raw-SQL baselines and the test
//! support (the fake Telegram server) that the shipped binary must not.
//!
//! No benchmark writes into a database of the caller's: SQLite runs in a fresh temporary file,
//! PostgreSQL in a scratch database created on the `--postgres` server and dropped afterwards.
//! `process`, `sse`, `mcp` and `nodes` start the `gaia` binary (see
//! [`settings::Settings::gaia_binary`]).

mod api;
mod approvals;
mod backlog;
mod baseline;
mod claims;
mod cleanup;
mod etcd;
mod exit;
mod github;
mod harness;
mod mcp;
mod nodes;
mod outbox;
mod process;
mod sample;
mod scratch;
mod settings;
mod sse;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::BenchResult;
use crate::settings::{Settings, SettingsArgs};

#[derive(Debug, Parser)]
#[command(
    name = "gaia-bench",
    version,
    about = "Benchmarks of Gaia beside baselines"
)]
struct Cli {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Claims per second and latency, Gaia against a raw-SQL baseline, in-process.
    Claims(claims::ClaimsArgs),
    /// Wall time of one `gaia claim acquire` process beside sqlite3 doing the same write.
    Process(process::ProcessArgs),
    /// Claims over HTTP against an in-process server, beside in-process and raw-SQL baselines.
    Api(api::ApiArgs),
    /// Event stream fan-out: append-to-delivery latency and server memory per subscriber.
    Sse(sse::SseArgs),
    /// Approval round trips over HTTP with an automated approver following the stream.
    Approvals(approvals::ApprovalsArgs),
    /// Ready work on a large backlog: `ready` latency and `ready --take` throughput with
    /// concurrent agents, beside raw SQL doing the same reads and claim-and-update writes.
    Backlog(backlog::BacklogArgs),
    /// A `claim_acquire` through MCP over stdio (`gaia mcp`) beside the same call in-process.
    Mcp(mcp::McpArgs),
    /// Scale-out: 1, 2 and 4 `gaia serve` nodes on one PostgreSQL database, claims over HTTP
    /// and stream delivery on every node, beside pgbench running the same transactions.
    Nodes(nodes::NodesArgs),
    /// Outbox delivery to a fake Telegram: throughput beside a raw HTTP loop, and the sustained
    /// rate under Telegram's limits.
    Outbox(outbox::OutboxArgs),
    /// Cleanup of a large store: rows archived and pruned per second, and concurrent claims'
    /// p99 with cleanup running beside the same claims without it.
    Cleanup(cleanup::CleanupArgs),
    /// GitHub sync against a fake GitHub through `gh`: the rate of new items under the
    /// secondary limits (clock scaled), and the API calls of a re-sync with nothing changed.
    Github(github::GithubArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gaia-bench: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("gaia-bench: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

async fn run(cli: Cli) -> BenchResult {
    let settings = Settings::from_args(cli.settings)?;
    match cli.command {
        BenchCommand::Claims(args) => claims::run(args, &settings).await,
        BenchCommand::Process(args) => process::run(args, &settings).await,
        BenchCommand::Api(args) => api::run(args, &settings).await,
        BenchCommand::Sse(args) => sse::run(args, &settings).await,
        BenchCommand::Approvals(args) => approvals::run(args, &settings).await,
        BenchCommand::Outbox(args) => outbox::run(args, &settings).await,
        BenchCommand::Backlog(args) => backlog::run(args, &settings).await,
        BenchCommand::Mcp(args) => mcp::run(args, &settings).await,
        BenchCommand::Cleanup(args) => cleanup::run(args, &settings).await,
        BenchCommand::Github(args) => github::run(args, &settings).await,
        BenchCommand::Nodes(args) => nodes::run(args, &settings).await,
    }
}
