//! The command line: every command, flag and its help text (the backlog's in [`backlog`]).

mod backlog;
mod deferred;
mod ops;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub(crate) use self::deferred::expanded;
use self::deferred::top_level_commands;

pub use self::backlog::{
    BacklogCommand, FollowupsCommand, GithubSyncArgs, ReadyArgs, StoryCommand, SyncCommand,
    TodoCommand,
};
pub use self::ops::{BackupArgs, DoctorArgs, EnvRunArgs, RestoreArgs, StoreCommand};

/// Gaia: the control plane for a team of AI coding agents with a human in the loop.
///
/// Agents claim work so that no two take the same task, report what they do, and ask before
/// running risky commands; people approve, watch the live stream, and read the audit trail.
#[derive(Debug, Parser)]
#[command(name = "gaia", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Database URL: sqlite://PATH (default sqlite://.gaia/gaia.db) or postgres://USER@HOST/DB.
    #[arg(long, global = true, value_name = "URL")]
    pub db: Option<String>,

    /// Configuration file (default: gaia.toml when present). Also $GAIA_CONFIG.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Env file with the prototype's variables (default: .tmp/telegram.env when present).
    #[arg(long, global = true, value_name = "PATH")]
    pub env_file: Option<PathBuf>,

    /// Log level or filter for diagnostics on stderr (e.g. info, debug). Also $GAIA_LOG.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,

    /// Talk to this Gaia server instead of the database (remote mode). Also $GAIA_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,

    /// The API token for remote mode. Prefer $GAIA_TOKEN: arguments are visible to other users.
    /// For `todo start|done|block|unblock|move` and `backlog import`, the fencing token of the
    /// agent's claim instead (the API token then comes from $GAIA_TOKEN).
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses this process's arguments, as `Cli::try_parse` does, with two differences that
    /// make a short command like `gaia claim acquire` start faster. The tree holds only the
    /// top-level command the arguments name, when they plainly name one
    /// ([`deferred::for_args`]). And the tree is left allocated when parsing is done: freeing
    /// its flags and help texts one by one cost about 7% of such a command's instructions,
    /// and the process exits soon after (a server keeps one tree for its life).
    pub fn from_env() -> Result<Self, clap::Error> {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let cmd: &'static mut clap::Command = Box::leak(Box::new(deferred::for_args(
            &args,
            <Self as clap::CommandFactory>::command,
        )));
        let mut matches = cmd.try_get_matches_from_mut(args)?;
        <Self as clap::FromArgMatches>::from_arg_matches_mut(&mut matches)
            .map_err(|e| e.format(cmd))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

top_level_commands! {
    #[derive(Debug)]
    pub enum Command {
        /// Run the server: HTTP API, live event stream, workers.
        "serve" => Serve(ServeArgs): args,
        /// Manage API tokens (agent, operator, admin).
        "token" => Token(TokenCommand): subcommands,
        /// Claim a story's todolist so no other agent works on it (leases with fencing tokens).
        "claim" => Claim(ClaimCommand): subcommands,
        /// Ask before running a command; list, decide and execute requests.
        "cmd" => Cmd(CmdCommand): subcommands,
        /// Run a command here once a person approves it (sudo-style); exits with its exit code.
        "run" => Run(RunArgs): args,
        /// The notification outbox: list, requeue dead messages, auto-requeue.
        "queue" => Queue(QueueCommand): subcommands,
        /// Print the metrics (the prototype's metrics.json shape with --json).
        "metrics" => Metrics(MetricsArgs): args,
        /// Threshold alerts on the metrics.
        "alert" => Alert(AlertCommand): subcommands,
        /// Telegram without the HTTP server.
        "telegram" => Telegram(TelegramCommand): subcommands,
        /// Show what the policy (`[policy]` in gaia.toml) decides for a command.
        "policy" => Policy(PolicyCommand): subcommands,
        /// Hooks for coding agents (reads the hook input on stdin, answers on stdout).
        "hook" => Hook(HookCommand): subcommands,
        /// The MCP server on stdin/stdout: Gaia's tools for any MCP-capable agent.
        "mcp" => Mcp(McpArgs): args,
        /// Register Gaia with a coding agent (hooks and MCP server), merging into its settings.
        "setup" => Setup(SetupCommand): subcommands,
        /// Stories: units of work, each with one current todolist of tasks.
        "story" => Story(StoryCommand): subcommands,
        /// The tasks of a story's todolist: add, work, validate the final-task rule, archive,
        /// finalize.
        "todo" => Todo(TodoCommand): subcommands,
        /// Ready work (todo tasks whose blockers are done, on lists nobody holds); --take takes
        /// one with its claim.
        "ready" => Ready(ReadyArgs): args,
        /// Follow-up child docs (`doc/<Story>.<Agent>.<Task>.extra.md`): collect and triage them.
        "followups" => Followups(FollowupsCommand): subcommands,
        /// Stories as markdown files: export them, and import the edits.
        "backlog" => Backlog(BacklogCommand): subcommands,
        /// Sync the backlog to other systems: `gaia sync github`.
        "sync" => Sync(SyncCommand): subcommands,
        /// Emit, follow and export events.
        "events" => Events(EventsCommand): subcommands,
        /// Read and verify the hash-chained audit trail.
        "audit" => Audit(AuditCommand): subcommands,
        /// Archive and prune records older than the retention settings (retention.* in gaia.toml);
        /// a dry run printing the plan unless --apply.
        "cleanup" => Cleanup(CleanupArgs): args,
        /// Inspect configuration.
        "config" => Config(ConfigCommand): subcommands,
        /// Run a command (argv, no shell) with the env file's variables; exits as it exits.
        "env-run" => EnvRun(EnvRunArgs): args,
        /// Write a consistent backup of the store while it runs.
        "backup" => Backup(BackupArgs): args,
        /// Restore a backup into the configured, empty store.
        "restore" => Restore(RestoreArgs): args,
        /// Whole-store operations: `gaia store copy`.
        "store" => Store(StoreCommand): subcommands,
        /// Check configuration, store, clocks, disk, Telegram, gh and the server; exit 1 on a failure.
        "doctor" => Doctor(DoctorArgs): args,
        /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
        "completions" => Completions(CompletionsArgs): args,
    }
}

// The options of `gaia metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    #[arg(long)]
    pub json: bool,
}

// The argument of `gaia completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Which claim: a story and one of its todolists.
#[derive(Debug, Args)]
pub struct ClaimTarget {
    /// The story.
    pub story: String,
    /// The todolist within the story.
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub todolist: String,
}

#[derive(Debug, Subcommand)]
pub enum ClaimCommand {
    /// Acquire a claim. Exit 0 acquired/already_held/taken_over, 3 held_by_other, 4 lock_timeout.
    Acquire {
        #[command(flatten)]
        target: ClaimTarget,
        /// The agent taking the claim. Also $GAIA_AGENT.
        #[arg(long, env = "GAIA_AGENT", value_name = "ID")]
        agent: String,
        /// The person the agent works for. Also $GAIA_OPERATOR.
        #[arg(long, env = "GAIA_OPERATOR", value_name = "NAME")]
        operator: Option<String>,
        /// Identifies this run of the agent; the same agent with another fingerprint is
        /// refused while the claim is live.
        #[arg(long, value_name = "FP")]
        fingerprint: Option<String>,
        /// Lease length, e.g. 90s, 15m, 2h (default claims.default_ttl, 15m).
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Extend a live claim (heartbeat). Exit 3 not_held when it expired or was taken over.
    Refresh {
        #[command(flatten)]
        target: ClaimTarget,
        #[arg(long, env = "GAIA_AGENT", value_name = "ID")]
        agent: String,
        /// Only refresh when held with this fingerprint.
        #[arg(long, value_name = "FP")]
        fingerprint: Option<String>,
        /// New lease length from now (default: the claim's own TTL).
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Release a claim. Exit 3 not_held when this agent does not hold it.
    Release {
        #[command(flatten)]
        target: ClaimTarget,
        #[arg(long, env = "GAIA_AGENT", value_name = "ID")]
        agent: String,
        /// Only release when held with this fingerprint.
        #[arg(long, value_name = "FP")]
        fingerprint: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show who holds a claim (outcome held, expired or free).
    Inspect {
        #[command(flatten)]
        target: ClaimTarget,
        #[arg(long)]
        json: bool,
    },
    /// List live claims.
    List {
        /// Also list claims whose TTL passed without a release.
        #[arg(long)]
        all: bool,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Append an event of your own (e.g. chat.message), audited like every change.
    Emit {
        /// Dotted lowercase type, e.g. chat.message, story.updated.
        #[arg(value_name = "TYPE")]
        kind: String,
        /// What the event is about, e.g. story/checkout.
        #[arg(long, default_value = "", value_name = "S")]
        subject: String,
        /// A JSON value (usually an object).
        #[arg(long, default_value = "{}", value_name = "JSON")]
        data: String,
        /// Who emits it (default $GAIA_AGENT, else "cli").
        #[arg(long, value_name = "A")]
        actor: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print recent events, or those after a seq, and optionally follow new ones.
    Tail {
        /// Start after this seq (default: the newest 10 events).
        #[arg(long, value_name = "SEQ")]
        since: Option<i64>,
        /// Keep printing events as they are committed (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
        /// Only types equal to PREFIX or under it (claim matches claim.acquired).
        #[arg(long = "type", value_name = "PREFIX")]
        type_prefix: Option<String>,
        /// Only this subject.
        #[arg(long, value_name = "S")]
        subject: Option<String>,
        /// Stop after printing this many events.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// One JSON object per line.
        #[arg(long, conflicts_with = "json")]
        ndjson: bool,
        /// A JSON array (not with --follow).
        #[arg(long, conflicts_with = "follow")]
        json: bool,
    },
    /// Write every event (after --since) as NDJSON, the interchange format.
    Export {
        /// NDJSON output (the only format; accepted for clarity).
        #[arg(long)]
        ndjson: bool,
        #[arg(long, default_value_t = 0, value_name = "SEQ")]
        since: i64,
        /// Write to this file instead of stdout.
        #[arg(long, short, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Read what `events export` wrote into an empty store, keeping every seq.
    Import {
        /// The NDJSON file (`-` for stdin).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `gaia cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Archive, verify the archive, then prune (without it: print the plan only).
    #[arg(long)]
    pub apply: bool,
    #[arg(long)]
    pub json: bool,
    /// Rows per delete transaction (default: retention.batch).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the newest audit records.
    Tail {
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: u32,
        /// One JSON object per line.
        #[arg(long)]
        ndjson: bool,
    },
    /// Check the hash chain (from the anchor cleanup left). Exit 0 intact, 1 naming the first
    /// broken record.
    Verify {
        #[arg(long)]
        json: bool,
        /// Verify a cleanup archive instead: its digest, its rows, its audit chain on its own,
        /// and that the live chain continues from its last record.
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every setting's effective value (secrets redacted) and where it came from.
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub bind: String,
    /// Also load a small demo backlog so every panel has something to show.
    #[arg(long)]
    pub demo: bool,
    /// Write the server's process id to this file (removed on exit).
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        #[arg(long, value_parser = ["agent", "operator", "admin"])]
        role: String,
        #[arg(long)]
        name: String,
        /// Print {"name","role","token"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by name.
    Revoke { name: String },
}

/// Where a command request belongs and why.
#[derive(Debug, Args)]
pub struct RequestContext {
    /// The story the command is for.
    #[arg(long, value_name = "S")]
    pub story: Option<String>,
    #[arg(long, value_name = "T")]
    pub todolist: Option<String>,
    /// Why the command is needed; shown to the approver.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CmdCommand {
    /// Ask for approval of a command. Prints the request id; with --wait, exits 0 approved,
    /// 10 denied, 11 expired or timed out, 12 cancelled.
    Request(RequestArgs),
    /// List requests, newest first.
    List {
        /// Only this status: pending, approved, denied, expired, cancelled, executing, executed,
        /// failed, dryrun.
        #[arg(long, value_name = "S")]
        status: Option<String>,
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show one request, its decision and its execution.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request. Exit 3 when refused (already decided, expired, own request).
    Approve {
        id: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Who decides (default $GAIA_OPERATOR). In remote mode the token's name decides: a
        /// different NAME is refused.
        #[arg(long = "as", value_name = "NAME")]
        decider: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Deny a pending request. Exit 3 when refused.
    Deny {
        id: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Who decides (default $GAIA_OPERATOR); in remote mode, the token's name.
        #[arg(long = "as", value_name = "NAME")]
        decider: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Let a test request proceed to a decision.
    AllowTest {
        id: String,
        /// Who decides (default $GAIA_OPERATOR); in remote mode, the token's name.
        #[arg(long = "as", value_name = "NAME")]
        decider: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Withdraw a pending request.
    Cancel {
        id: String,
        /// Who cancels (default $GAIA_AGENT, else $GAIA_OPERATOR); in remote mode, the token's
        /// name.
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Execute an approved request. Without --execute, or unless ALLOW_COMMAND_EXECUTION=1,
    /// records a dry run. Runs at most once.
    Execute(ExecuteArgs),
}

// The arguments of `gaia cmd request` (the help text is the variant's).
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The agent asking. Also $GAIA_AGENT.
    #[arg(long, env = "GAIA_AGENT", value_name = "ID")]
    pub agent: String,
    #[command(flatten)]
    pub context: RequestContext,
    /// Directory the command is to run in (default: here).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// A test request: shown as a test everywhere; it cannot proceed until allow-test.
    #[arg(long)]
    pub test: bool,
    /// How long the request waits for a decision (default 1h).
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// Wait for the decision.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (exit 11).
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub timeout: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "ARGV")]
    pub argv: Vec<String>,
}

// The arguments of `gaia cmd execute` (the help text is the variant's).
#[derive(Debug, Args)]
pub struct ExecuteArgs {
    pub id: String,
    /// Really run it (also needs ALLOW_COMMAND_EXECUTION=1).
    #[arg(long)]
    pub execute: bool,
    /// Kill the command's whole process group after this long (default 10m).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Who executes (default $GAIA_OPERATOR, else cli); in remote mode, the token's name.
    #[arg(long = "as", value_name = "NAME")]
    pub executor: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Ask for approval first (required: `gaia run` always asks).
    #[arg(long, required = true)]
    pub approve: bool,
    /// The agent asking. Also $GAIA_AGENT (default: run:$USER).
    #[arg(long, env = "GAIA_AGENT", value_name = "ID")]
    pub agent: Option<String>,
    #[command(flatten)]
    pub context: RequestContext,
    /// Give up waiting for a decision after this long (exit 11).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "ARGV")]
    pub argv: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the verdict (allow, deny, ask) and the rule that matches. Records nothing.
    Check {
        /// Check shell text instead of an argv.
        #[arg(long, value_name = "TEXT", conflicts_with = "argv")]
        shell: Option<String>,
        #[arg(long)]
        json: bool,
        /// The program and its arguments, after `--`.
        #[arg(last = true, value_name = "ARGV")]
        argv: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SetupCommand {
    /// Writes the hook (PreToolUse and PermissionRequest, to `gaia hook claude-code`) into
    /// `.claude/settings.json` and the MCP server into `.mcp.json`, keeping what is there.
    ClaudeCode {
        /// The project directory (default: the current one).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// How Claude Code runs Gaia (a name on PATH or an absolute path).
        #[arg(long, default_value = "gaia", value_name = "CMD")]
        command: String,
        /// Show the changes as a diff; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Adds the MCP server to Codex's config.toml, with a tool timeout that fits
    /// approval_request.
    Codex {
        /// Codex's configuration file (default: $CODEX_HOME/config.toml, else
        /// ~/.codex/config.toml).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// How Codex runs Gaia (a name on PATH or an absolute path).
        #[arg(long, default_value = "gaia", value_name = "CMD")]
        command: String,
        /// Show the changes as a diff; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `gaia mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// The agent the tools act as (events, audit records and claims name it).
    #[arg(
        long,
        env = "GAIA_AGENT",
        default_value = "mcp-agent",
        value_name = "NAME"
    )]
    pub agent: String,
    /// The role the tools are checked against: agent or operator.
    #[arg(long, default_value = "agent", value_name = "ROLE")]
    pub role: String,
    /// How long approval_request, approval_wait and permission_prompt wait for a decision
    /// (keep it below the client's tool timeout, or let progress reset it); default
    /// `mcp.approval_wait` (50s).
    #[arg(long, value_name = "DURATION")]
    pub approval_wait: Option<String>,
    /// How often a waiting call sends a progress notification; default `mcp.progress_every`
    /// (10s).
    #[arg(long, value_name = "DURATION")]
    pub progress_every: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Claude Code's PreToolUse and PermissionRequest hooks: PreToolUse applies Gaia's policy
    /// to Bash calls; PermissionRequest becomes a Gaia approval anyone can decide. Never
    /// answers allow when Gaia cannot be reached.
    ClaudeCode {
        /// How long PermissionRequest waits for a decision (keep it below the hook's timeout).
        #[arg(long, default_value = "50s", value_name = "DURATION")]
        wait: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List messages, newest first; with --dead, the dead set numbered oldest first (the
    /// numbers work with `requeue #N`).
    List {
        /// Only the dead set.
        #[arg(long, conflicts_with = "status")]
        dead: bool,
        /// Only this status: pending, sent, dead.
        #[arg(long, value_name = "S")]
        status: Option<String>,
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Put a dead message back in the queue: by id, or by its number in `list --dead` (#N).
    Requeue {
        #[arg(value_name = "ID|#N")]
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// Requeue eligible dead messages: requeued fewer than AUTO_REQUEUE_MAX_RETRIES times,
    /// younger than AUTO_REQUEUE_MAX_AGE_HOURS, at most AUTO_REQUEUE_MAX_PER_RUN.
    AutoRequeue {
        /// Only list what would be requeued.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Check thresholds; exit 1 when any is breached. Without --dry-run, a newly breached
    /// threshold fires once (Telegram first, console fallback) and a cleared one resolves.
    Check {
        /// NAME=VALUE, repeatable (default: alerts.thresholds from the configuration).
        #[arg(long = "threshold", value_name = "NAME=VALUE")]
        thresholds: Vec<String>,
        /// Only report; send nothing and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TelegramCommand {
    /// Listen for decisions and deliver notifications (the Telegram and outbox workers of
    /// `gaia serve`, without HTTP). One poller per deployment, whichever runs.
    Listen,
}
