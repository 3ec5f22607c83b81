//! The backlog's commands and flags: stories, their todolists and tasks, ready work,
//! follow-up child docs, and stories as markdown files.
//!
//! The task commands that act under an agent's claim take its fencing token as `--token`:
//! for them the global `--token` is that number, and remote mode reads the API token from
//! `$GAIA_TOKEN` only.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum StoryCommand {
    /// Create a story; its todolist `default` starts from the template (backlog.template).
    /// Exit 3 when the slug is taken.
    Create {
        /// Letters, digits, '-', '_' and '.'.
        slug: String,
        #[arg(long, value_name = "T", allow_hyphen_values = true)]
        title: String,
        #[arg(long, default_value = "", value_name = "D", allow_hyphen_values = true)]
        description: String,
        /// A label (repeatable).
        #[arg(long = "label", value_name = "L")]
        labels: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List stories.
    List {
        #[arg(long, value_parser = ["open", "closed"])]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a story, its current todolist's tasks and its archived lists.
    Show {
        slug: String,
        #[arg(long)]
        json: bool,
    },
    /// Close a story: its tasks are no longer ready work.
    Close {
        slug: String,
        #[arg(long)]
        json: bool,
    },
    /// Reopen a closed story.
    Reopen {
        slug: String,
        #[arg(long)]
        json: bool,
    },
}

/// The agent changing a task under its claim; the fencing token is the global `--token`.
#[derive(Debug, Args)]
pub struct AgentArg {
    /// The agent holding the todolist's claim (with --token, its fencing token). Operators
    /// may block, unblock and move without either.
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TodoCommand {
    /// Add a task to a story's current todolist (before its final task). Exit 3 when the
    /// list is finalized or the story closed.
    Add {
        story: String,
        #[arg(long, value_name = "T", allow_hyphen_values = true)]
        title: String,
        /// The acceptance criteria.
        #[arg(
            long,
            value_name = "B",
            conflicts_with = "body_file",
            allow_hyphen_values = true
        )]
        body: Option<String>,
        /// Read the body from this file.
        #[arg(long, value_name = "PATH")]
        body_file: Option<PathBuf>,
        /// A task of the same story this one waits for (repeatable).
        #[arg(long = "after", value_name = "ID")]
        after: Vec<i64>,
        #[arg(long)]
        json: bool,
    },
    /// List the tasks of a story's todolist (its current one by default).
    List {
        story: String,
        #[arg(long, value_name = "NAME")]
        todolist: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one task.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Start a task: needs --agent and --token, the live claim on its todolist.
    Start {
        id: i64,
        /// The agent holding the claim. Also $GAIA_AGENT.
        #[arg(long, env = "GAIA_AGENT", value_name = "ID")]
        agent: String,
        #[arg(long)]
        json: bool,
    },
    /// Mark a task done: needs --agent and --token. Exit 3 with a stale token.
    Done {
        id: i64,
        /// The agent holding the claim. Also $GAIA_AGENT.
        #[arg(long, env = "GAIA_AGENT", value_name = "ID")]
        agent: String,
        #[arg(long)]
        json: bool,
    },
    /// Block a task, saying why.
    Block {
        id: i64,
        #[arg(long, value_name = "R", allow_hyphen_values = true)]
        reason: String,
        #[command(flatten)]
        agent: AgentArg,
        #[arg(long)]
        json: bool,
    },
    /// Unblock a blocked task.
    Unblock {
        id: i64,
        #[command(flatten)]
        agent: AgentArg,
        #[arg(long)]
        json: bool,
    },
    /// Move a task to a position (1-based) in its list; the final task stays last.
    Move {
        id: i64,
        #[arg(long = "to", value_name = "POS")]
        to: i64,
        #[command(flatten)]
        agent: AgentArg,
        #[arg(long)]
        json: bool,
    },
    /// Archive the current todolist and start a new one named NAME from the template.
    New {
        story: String,
        #[arg(long, value_name = "NAME")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Archive the current todolist (kept under a timestamped name) and start it afresh from
    /// the template.
    Archive {
        story: String,
        #[arg(long)]
        json: bool,
    },
    /// Check the final-task rule: exit 1 naming every open story's current todolist whose
    /// last task is not marked MANDATORY, FINAL or FINALIZATION.
    Validate {
        #[arg(long, value_name = "S")]
        story: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Finalize a story's current todolist: nothing more is appended to it.
    Finalize {
        story: String,
        #[arg(long)]
        json: bool,
    },
}

impl TodoCommand {
    /// Whether the global `--token` is this command's fencing token.
    pub fn takes_fencing_token(&self) -> bool {
        matches!(
            self,
            Self::Start { .. }
                | Self::Done { .. }
                | Self::Block { .. }
                | Self::Unblock { .. }
                | Self::Move { .. }
        )
    }
}

/// `gaia ready`: list ready work, or take one task with its claim.
#[derive(Debug, Args)]
pub struct ReadyArgs {
    /// Only this story.
    #[arg(long, value_name = "S")]
    pub story: Option<String>,
    /// List at most this many.
    #[arg(long, default_value_t = 50, value_name = "N", conflicts_with = "take")]
    pub limit: u32,
    /// Take the first ready task: acquire its todolist's claim and start it. Prints the task
    /// and the fencing token; exit 1 when nothing is ready.
    #[arg(long)]
    pub take: bool,
    /// With --take: the agent. Also $GAIA_AGENT.
    #[arg(long, env = "GAIA_AGENT", value_name = "ID")]
    pub agent: Option<String>,
    /// With --take: lease length (default claims.default_ttl, 15m).
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// With --take: the person the agent works for. Also $GAIA_OPERATOR.
    #[arg(long, env = "GAIA_OPERATOR", value_name = "NAME")]
    pub operator: Option<String>,
    /// With --take: identifies this run of the agent.
    #[arg(long, value_name = "FP")]
    pub fingerprint: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FollowupsCommand {
    /// Add every child doc (`DIR/**/<Story>.<Agent>.<Task>.extra.md`) to its story's triage
    /// list, once; an edited doc updates its entry. Malformed docs are listed as FILE:LINE:
    /// MESSAGE on stderr and make the exit code 2; the others are still collected.
    Collect {
        #[arg(long, default_value = "doc", value_name = "DIR")]
        dir: PathBuf,
        /// Only report what would be added or updated.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// List follow-ups.
    List {
        #[arg(long, value_parser = ["pending", "accepted", "rejected"])]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Accept a follow-up: it becomes a task of its story's current todolist.
    Accept {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Reject a follow-up, saying why.
    Reject {
        id: i64,
        #[arg(long, value_name = "R", allow_hyphen_values = true)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BacklogCommand {
    /// Write each story with its current todolist to `DIR/<slug>.md`.
    Export {
        dir: PathBuf,
        /// Only this story.
        #[arg(long, value_name = "S")]
        story: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Apply edited DIR/*.md story files: changed titles, descriptions, labels and task
    /// bodies, new tasks (lines without #id), and tasks checked done (which needs --agent and
    /// --token, the claim on the list). Nothing is deleted; every file is checked before
    /// anything is changed.
    Import {
        dir: PathBuf,
        #[command(flatten)]
        agent: AgentArg,
        /// Only print what would change.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

impl BacklogCommand {
    /// Whether the global `--token` is this command's fencing token.
    pub fn takes_fencing_token(&self) -> bool {
        matches!(self, Self::Import { .. })
    }
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Each story becomes one GitHub issue (its description and todolist as a checklist), with
    /// --tasks each task too; labels show status, a closed story or done task closes its
    /// issue, and an issue is patched only when its content changed. Every call goes through
    /// `gh api` with the user's `gh` login. Exit 1 when an item failed.
    Github(GithubSyncArgs),
}

#[derive(Debug, Args)]
pub struct GithubSyncArgs {
    /// The repository, OWNER/NAME.
    #[arg(long, value_name = "OWNER/REPO")]
    pub repo: String,
    /// Only this story (and, with --tasks, its tasks).
    #[arg(long, value_name = "S")]
    pub story: Option<String>,
    /// Also make each task of the stories' current todolists an issue, linked from its
    /// story's issue.
    #[arg(long)]
    pub tasks: bool,
    /// Show what would be created and updated; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// First bring issue state back: an issue closed on GitHub closes its story (an event); a
    /// task's closed issue is reported, since finishing a task needs its list's claim. Not with
    /// --dry-run.
    #[arg(long, conflicts_with = "dry_run")]
    pub pull: bool,
    #[arg(long)]
    pub json: bool,
    /// Seconds one `gh api` call may take before it is killed.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub gh_timeout: u64,
    /// Seconds after an unanswered create before its item may be created again (when no
    /// issue carrying its marker has been found by then).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub settle: u64,
    /// Milliseconds between mutating requests (GitHub asks for at least 1000).
    #[arg(long, default_value_t = 1000, value_name = "MS", hide = true)]
    pub spacing_ms: u64,
    /// Items worked on at once (against a fake server only: with more than one, arrivals of
    /// paced requests may come closer than the spacing).
    #[arg(long, default_value_t = 1, value_name = "N", hide = true, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub parallel: u16,
    /// Shrinks the rate limits' minute and hour by this factor (against a fake server only).
    #[arg(long, default_value_t = 1, value_name = "N", hide = true, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub limit_scale: u32,
    /// The shortest wait, in seconds, after a rate limit answer (GitHub: 60).
    #[arg(long, default_value_t = 60, value_name = "SECS", hide = true)]
    pub min_retry_wait: u64,
}
