//! The `gaia` binary: parses the command line, loads configuration, opens the store, and runs
//! one command. Exit codes are in [`exit`].

mod cli;
mod client;
mod cmd;
mod config;
mod envfile;
mod exit;
mod open;
mod progress;
mod remote;

use std::collections::BTreeMap;
use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::{Config, Overrides};
use crate::exit::{CliError, CliResult};

fn main() -> ExitCode {
    let cli = match Cli::from_env() {
        Ok(cli) => cli,
        Err(e) => return clap_error(&e),
    };
    // Before the async runtime starts: the command replaces this process.
    if let Command::EnvRun(args) = cli.command {
        let e = cmd::env_run::run(args, cli.env_file);
        eprintln!("gaia: {}", e.message);
        return ExitCode::from(e.code);
    }
    init_logging(cli.log.as_deref(), cli.log_format);
    let one_shot = !serves(&cli.command);
    // A one-shot command does one thing at a time: the thread it starts on runs it. Worker
    // threads would only be started, woken between its steps and joined at exit.
    let mut builder = if one_shot {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gaia: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let done = runtime.block_on(run(cli, one_shot));
    if one_shot {
        // Not shut down: that would drop the tasks still queued, among them the one handing
        // a SQLite store's connection back to its pool, and so close the connection, which
        // checkpoints the database (see `SqliteStore::open_one_shot`). The process exits now.
        std::mem::forget(runtime);
    }
    match done {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("gaia: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Help and version go to stdout with exit 0; usage errors print one line and exit 2.
fn clap_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(
                if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    exit::BAD_INPUT
                } else {
                    exit::OK
                },
            )
        }
        _ => {
            // The first paragraph, on one line: for a missing argument clap names it on the
            // line after "the following required arguments were not provided:".
            let rendered = e.render().to_string();
            let first: Vec<&str> = rendered
                .lines()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let first = match first.join(" ") {
                s if s.is_empty() => "invalid command line".to_owned(),
                s => s.trim_start_matches("error: ").to_owned(),
            };
            eprintln!("gaia: {first} (see --help)");
            ExitCode::from(exit::BAD_INPUT)
        }
    }
}

fn init_logging(flag: Option<&str>, format: cli::LogFormat) {
    use tracing_subscriber::EnvFilter;
    // The server logs requests at info; other commands keep stderr for errors.
    let default = if std::env::args().nth(1).as_deref() == Some("serve") {
        "info"
    } else {
        "warn"
    };
    let filter = flag
        .map(str::to_owned)
        .or_else(|| std::env::var("GAIA_LOG").ok())
        .unwrap_or_else(|| default.into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match format {
        cli::LogFormat::Json => builder.json().try_init(),
        cli::LogFormat::Text => builder.try_init(),
    };
}

/// The commands that serve until stopped; every other command runs once and exits.
fn serves(command: &Command) -> bool {
    matches!(
        command,
        Command::Serve(_) | Command::Mcp(_) | Command::Telegram(_)
    )
}

async fn run(mut cli: Cli, one_shot: bool) -> CliResult {
    if let Command::Completions(cli::CompletionsArgs { shell }) = cli.command {
        let mut cmd = cli::expanded(<Cli as clap::CommandFactory>::command);
        clap_complete::generate(shell, &mut cmd, "gaia", &mut std::io::stdout());
        return Ok(exit::OK);
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    // For the task commands that act under a claim, --token is the claim's fencing token.
    let fencing_token = match &cli.command {
        Command::Todo(c) if c.takes_fencing_token() => cli.token.take(),
        Command::Backlog(c) if c.takes_fencing_token() => cli.token.take(),
        _ => None,
    };
    let overrides = Overrides {
        config: cli.config,
        env_file: cli.env_file,
        db: cli.db,
        url: cli.url,
        token: cli.token,
    };
    let mut config = match Config::load(&overrides, &env) {
        Ok(c) => c,
        // A hook must still answer, and never with allow.
        Err(e) if matches!(cli.command, Command::Hook(_)) => {
            cmd::hook::config_error(&e.to_string())?;
            return Ok(exit::OK);
        }
        Err(e) => {
            if let Command::Doctor(args) = &cli.command {
                return cmd::doctor::config_failed(args, &e.to_string());
            }
            return Err(CliError::bad_input(e));
        }
    };
    config.one_shot = one_shot;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    match cli.command {
        Command::Config(c) => cmd::config::run(c, &config),
        Command::Serve(args) => cmd::serve::run(args, &config).await,
        Command::Token(c) => cmd::token::run(c, &config).await,
        Command::Claim(c) => cmd::claim::run(c, &config).await,
        Command::Cmd(c) => cmd::command::run(c, &config).await,
        Command::Run(args) => cmd::command::run_approved(args, &config).await,
        Command::Policy(c) => cmd::policy::run(c, &config),
        Command::Queue(c) => cmd::queue::run(c, &config).await,
        Command::Metrics(cli::MetricsArgs { json }) => cmd::metrics::metrics(json, &config).await,
        Command::Telegram(cli::TelegramCommand::Listen) => {
            cmd::serve::telegram_listen(&config).await
        }
        Command::Alert(c) => cmd::metrics::alert(c, &config).await,
        Command::Hook(c) => cmd::hook::run(c, &config).await,
        Command::Mcp(args) => cmd::mcp::run(args, &config).await,
        Command::Setup(c) => cmd::setup::run(c).await,
        Command::Story(c) => cmd::story::run(c, &config).await,
        Command::Todo(c) => cmd::todo::run(c, &config, fencing_token).await,
        Command::Ready(args) => cmd::ready::run(args, &config).await,
        Command::Followups(c) => cmd::followups::run(c, &config).await,
        Command::Backlog(c) => cmd::backlog::run(c, &config, fencing_token).await,
        Command::Sync(cli::SyncCommand::Github(args)) => cmd::sync::github(args, &config).await,
        Command::Events(c) => cmd::events::run(c, &config).await,
        Command::Audit(c) => cmd::audit::run(c, &config).await,
        Command::Backup(args) => cmd::backup::backup(args, &config).await,
        Command::Restore(args) => cmd::backup::restore(args, &config).await,
        Command::Store(cli::StoreCommand::Copy { from, to }) => {
            cmd::store_copy::run(&from, &to, &config).await
        }
        Command::Doctor(args) => cmd::doctor::run(args, &config).await,
        Command::Cleanup(args) => cmd::cleanup::run(args, &config).await,
        Command::Completions(_) | Command::EnvRun(_) => Ok(exit::OK),
    }
}
