//! `gaia serve`: opens the store, makes sure an admin token exists, binds, and serves until
//! SIGINT or SIGTERM.

use std::path::Path;

use gaia_core::Gaia;
use gaia_core::backlog::{NewFollowup, NewStory, NewTask, Taken, Template};
use gaia_core::claims::{Holder, Request};
use gaia_core::names::ClaimKey;
use gaia_core::tokens::Role;
use gaia_core::usecase::backlog::{Fenced, TaskAction};
use gaia_server::{AppState, ServerOptions};
use serde_json::json;
use tokio::net::TcpListener;

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

pub async fn run(args: ServeArgs, config: &Config) -> CliResult {
    let open_files = raise_open_file_limit();
    let listener = TcpListener::bind(&args.bind)
        .await
        .map_err(|e| CliError::bad_input(format!("cannot listen on {}: {e}", args.bind)))?;
    let gaia = crate::open::gaia(config).await?;
    let admin = config.admin_token.as_deref();
    if admin.is_none() {
        ensure_admin_token(&gaia).await?;
    }
    if args.demo {
        load_demo(&gaia).await?;
    }
    let opts = ServerOptions {
        schema_version: crate::open::schema_version(&config.database_url),
        default_ttl: config.default_ttl,
        mcp_waits: config.mcp_waits,
        mcp_allowed_origins: config.mcp_allowed_origins.clone(),
        runtime: runtime_options(config),
        backlog_template: config.backlog_template.clone(),
        ..ServerOptions::default()
    };
    let opts = fit_connections(opts, open_files);
    let telegram = match config.telegram.bot_token.as_deref() {
        Some(token) => Some(
            gaia_telegram::BotClient::new(&config.telegram.api_url, token)
                .map_err(|e| CliError::bad_input(format!("telegram: {e}")))?,
        ),
        None => None,
    };
    let mut senders =
        gaia_runtime::senders::Senders::new(telegram.clone(), config.webhook_secret.clone());
    config.outbox_senders(&mut senders);
    let mut state = AppState::new(gaia, opts, admin)
        .await?
        .with_senders(senders);
    if let Some(bot) = telegram {
        let approvers = config.telegram.approver_ids.clone();
        if approvers.is_empty() {
            tracing::warn!("TELEGRAM_APPROVER_IDS is empty: nobody can decide from Telegram");
        }
        let node = format!("{}-{}", hostname(), std::process::id());
        state = state.with_telegram(bot, approvers, node);
        if let Some(hook) = &config.telegram.webhook {
            state = state.with_telegram_webhook(gaia_runtime::telegram::Webhook {
                url: hook.url.clone(),
                path: hook.path.clone(),
                secret: hook.secret.clone(),
            });
        }
    }
    if let Some(gh) = &config.github {
        let node = format!("{}-{}", hostname(), std::process::id());
        let sync = gaia_runtime::github::GithubSync {
            gaia: state.gaia.clone(),
            gh: gaia_github::Gh::default(),
            opts: gaia_github::SyncOptions::new(&gh.repo, "gaia-github"),
            tasks: gh.tasks,
            pull: gh.pull,
            interval: gh.interval,
            node,
        };
        state = state.with_github(sync);
    }
    let _pid = match &args.pid_file {
        Some(path) => Some(PidFile::write(path)?),
        None => None,
    };
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal();
    super::out(&format!(
        "gaia serving on http://{addr} (database {})",
        gaia_store_postgres::redact_url(&config.database_url)
    ))?;
    gaia_server::serve(listener, state, shutdown).await?;
    tracing::info!("stopped");
    Ok(exit::OK)
}

/// Raises the soft limit on open files to the hard limit: every connection is a descriptor,
/// and the usual soft limit of 1024 is far below what the server is meant to hold. Returns the
/// limit in force (`None` when it cannot be read).
fn raise_open_file_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            tracing::warn!(error = %e, soft, hard, "cannot raise the open file limit");
            return Some(soft);
        }
    }
    Some(hard.max(soft))
}

/// Descriptors kept for the database, the listener, logs and outgoing requests.
const SPARE_FILES: u64 = 256;

/// Lowers `max_connections` so that it, the health-check reserve and [`SPARE_FILES`] fit the
/// open file limit: past it, accepting fails and even health checks could not be answered.
fn fit_connections(mut opts: ServerOptions, open_files: Option<u64>) -> ServerOptions {
    let Some(limit) = open_files else {
        return opts;
    };
    let room = limit
        .saturating_sub(SPARE_FILES)
        .saturating_sub(opts.connection_reserve as u64);
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    if opts.max_connections > room {
        tracing::warn!(
            open_files = limit,
            max_connections = room,
            "the open file limit holds fewer connections than the default"
        );
        opts.max_connections = room;
    }
    opts
}

/// This machine's name, to tell nodes apart in leases (the Telegram poller's, cleanup's).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gaia".into())
}

/// `gaia telegram listen`: the Telegram listener and the outbox worker, no HTTP.
pub async fn telegram_listen(config: &Config) -> CliResult {
    let Some(token) = config.telegram.bot_token.as_deref() else {
        return Err(CliError::bad_input(
            "set TELEGRAM_BOT_TOKEN (and TELEGRAM_NOTIFY_CHAT, TELEGRAM_APPROVER_IDS)",
        ));
    };
    if config.telegram.webhook.is_some() {
        return Err(CliError::bad_input(
            "telegram.mode is webhook: updates arrive at gaia serve (or set telegram.mode = polling)",
        ));
    }
    let bot = gaia_telegram::BotClient::new(&config.telegram.api_url, token)
        .map_err(|e| CliError::bad_input(format!("telegram: {e}")))?;
    let gaia = crate::open::gaia(config).await?;
    let mut senders =
        gaia_runtime::senders::Senders::new(Some(bot.clone()), config.webhook_secret.clone());
    config.outbox_senders(&mut senders);
    let node = format!("{}-{}", hostname(), std::process::id());
    // The runtime alone: no HTTP transport.
    let state = gaia_runtime::Runtime::new(gaia, runtime_options(config))
        .await?
        .with_senders(senders)
        .with_telegram(bot, config.telegram.approver_ids.clone(), node);
    let shutdown = shutdown_signal();
    let workers = gaia_runtime::workers::spawn(&state);
    super::out("gaia listening to Telegram (Ctrl-C to stop)")?;
    shutdown.await;
    state.shutdown.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), workers.join()).await;
    Ok(exit::OK)
}

/// On first start, creates the admin token and prints it once; afterwards only its hash exists.
async fn ensure_admin_token(gaia: &Gaia) -> CliResult<()> {
    let tokens = gaia.list_tokens().await?;
    if tokens
        .iter()
        .any(|t| t.role == Role::Admin && t.revoked_at.is_none())
    {
        return Ok(());
    }
    let name = if tokens.iter().any(|t| t.name == "admin") {
        format!("admin-{}", tokens.len() + 1)
    } else {
        "admin".to_owned()
    };
    let (_, secret) = gaia.create_token(&name, Role::Admin, "gaia serve").await?;
    super::out(&format!(
        "created admin token '{name}' (shown once; set MONITOR_ADMIN_TOKEN or keep it safe):"
    ))?;
    super::out(&secret)?;
    Ok(())
}

/// A backlog, claims, events, pending approvals (one a test item) and a dead notification, so
/// that a new user sees every dashboard panel at work.
/// How the runtime's workers behave, from the configuration: the same for `gaia serve` and
/// `gaia telegram listen`.
fn runtime_options(config: &Config) -> gaia_runtime::RuntimeOptions {
    gaia_runtime::RuntimeOptions {
        allow_execution: config.execution_allowed,
        continue_on_approve: config.continue_on_approve,
        auto_requeue: config.auto_requeue,
        auto_requeue_every: config.auto_requeue_every,
        thresholds: config.thresholds.clone(),
        ..gaia_runtime::RuntimeOptions::default()
    }
}

async fn load_demo(gaia: &Gaia) -> CliResult<()> {
    let ttl = Some(std::time::Duration::from_secs(3600));
    demo_backlog(gaia).await?;
    // The backlog took these lists with the same holders; this renews them when the server is
    // started again with `--demo` after they expired.
    for (story, agent) in [
        ("checkout-flow", "agent-claude-1"),
        ("search-index", "agent-codex-2"),
    ] {
        let key = ClaimKey::new(story, "default")?;
        let req = Request::acquire(key, agent, Some("demo"), Some("demo-run"), ttl)?;
        gaia.apply_claim(&req).await?;
    }
    gaia.emit_event(
        "chat.message",
        "agent-claude-1",
        "story/checkout-flow",
        json!({"text": "Claimed checkout-flow; starting with the payment form."}),
    )
    .await?;
    demo_approvals(gaia).await?;
    demo_dead_message(gaia).await?;
    gaia.emit_event(
        "chat.message",
        "agent-codex-2",
        "story/search-index",
        json!({"text": "Reindexing needs a migration; asked for approval."}),
    )
    .await?;
    Ok(())
}

/// The holder the demo's agents take their lists with (the same one `load_demo` claims with).
fn demo_holder(agent: &str) -> Holder {
    Holder {
        agent: agent.into(),
        operator: "demo".into(),
        fingerprint: "demo-run".into(),
        principal: None,
    }
}

fn demo_task(title: &str, body: &str, blocked_by: Vec<i64>) -> NewTask {
    NewTask {
        title: title.into(),
        body: body.into(),
        blocked_by,
    }
}

/// Adds the tasks `titles` (with an acceptance line each) to story `slug`; their ids in order.
async fn demo_tasks(gaia: &Gaia, slug: &str, titles: &[&str]) -> CliResult<Vec<i64>> {
    let mut ids = Vec::with_capacity(titles.len());
    for title in titles {
        let new = demo_task(title, &format!("- [ ] {}", title.to_lowercase()), vec![]);
        ids.push(gaia.add_task(slug, &new, "demo").await?.id);
    }
    Ok(ids)
}

/// `agent` takes the first ready task of `slug` (and the claim on its list), finishes it, and
/// starts the next one, `next`, under the same claim.
async fn demo_work(gaia: &Gaia, slug: &str, agent: &str, next: i64) -> CliResult<()> {
    let ttl = std::time::Duration::from_secs(3600);
    let taken = gaia
        .take_ready(Some(slug), &demo_holder(agent), ttl, agent)
        .await?;
    let Taken::Took { task, claim } = taken else {
        return Err(CliError::bad_input(format!(
            "demo: nothing ready in story '{slug}'"
        )));
    };
    let fenced = Fenced {
        agent: agent.into(),
        token: claim.token,
        principal: None,
    };
    gaia.act_on_task(task.id, &TaskAction::Done, Some(&fenced), agent)
        .await?;
    gaia.act_on_task(next, &TaskAction::Start, Some(&fenced), agent)
        .await?;
    Ok(())
}

/// A follow-up doc filed by `agent` while working on `task` of `story`.
fn demo_followup(
    story: &str,
    agent: &str,
    task: &str,
    name: &str,
    title: &str,
    body: &str,
) -> NewFollowup {
    NewFollowup {
        path: format!("doc/{story}.{agent}.{task}.{name}.md"),
        hash: gaia_core::tokens::hash(body),
        story: story.into(),
        agent: agent.into(),
        task: task.into(),
        title: title.into(),
        body: body.into(),
    }
}

/// Four stories with tasks in every status: work done and in progress under a held claim, a
/// finalized list with a task waiting for another, a task blocked with a reason, ready work
/// nobody holds, and two follow-ups waiting for triage. Loaded once: left alone when its first
/// story exists.
async fn demo_backlog(gaia: &Gaia) -> CliResult<()> {
    match gaia.get_story("checkout-flow").await {
        Ok(_) => return Ok(()),
        Err(gaia_core::error::Error::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let template = Template::default();
    let story = |slug: &str, title: &str, description: &str, labels: &[&str]| NewStory {
        slug: slug.into(),
        title: title.into(),
        description: description.into(),
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
    };

    // Checkout: agent-claude-1 holds the list, one task done, one in progress, one blocked.
    gaia.create_story(
        &story(
            "checkout-flow",
            "Checkout flow: pay by card",
            "Customers pay by card without leaving the shop.",
            &["web", "payments"],
        ),
        &template,
        "demo",
    )
    .await?;
    let ids = demo_tasks(
        gaia,
        "checkout-flow",
        &[
            "Build the payment form",
            "Validate card numbers before submitting",
            "Handle 3-D Secure redirects",
            "Show a receipt page after payment",
        ],
    )
    .await?;
    demo_work(gaia, "checkout-flow", "agent-claude-1", ids[1]).await?;
    gaia.act_on_task(
        ids[2],
        &TaskAction::Block("waiting for the payment provider's sandbox keys".into()),
        None,
        "agent-claude-1",
    )
    .await?;

    // Search: agent-codex-2 holds the list; it is finalized, and the switch waits for the backfill.
    gaia.create_story(
        &story(
            "search-index",
            "Search index: move to the new schema",
            "Reindex products under the new schema without downtime.",
            &["search"],
        ),
        &template,
        "demo",
    )
    .await?;
    let ids = demo_tasks(
        gaia,
        "search-index",
        &["Write the schema migration", "Backfill the new columns"],
    )
    .await?;
    gaia.add_task(
        "search-index",
        &demo_task(
            "Switch reads to the new index",
            "- [ ] reads use the new index\n- [ ] the old index is dropped",
            vec![ids[1]],
        ),
        "demo",
    )
    .await?;
    demo_work(gaia, "search-index", "agent-codex-2", ids[1]).await?;
    gaia.finalize_list("search-index", "demo").await?;

    // Docs: nobody holds it, its tasks are ready.
    gaia.create_story(
        &story(
            "onboarding-docs",
            "Onboarding docs for new contributors",
            "A new contributor runs the tests on day one.",
            &["docs"],
        ),
        &template,
        "demo",
    )
    .await?;
    demo_tasks(
        gaia,
        "onboarding-docs",
        &[
            "Describe the local setup",
            "Write down the release checklist",
        ],
    )
    .await?;

    // Rate limits: blocked on a decision, with a task that is ready meanwhile.
    gaia.create_story(
        &story(
            "api-rate-limits",
            "Rate limits on the public API",
            "Protect the API from bursts; limits depend on the plan.",
            &["api"],
        ),
        &template,
        "demo",
    )
    .await?;
    let ids = demo_tasks(
        gaia,
        "api-rate-limits",
        &["Pick the limits per plan", "Answer 429 with Retry-After"],
    )
    .await?;
    gaia.act_on_task(
        ids[0],
        &TaskAction::Block("product has not decided the limits per plan yet".into()),
        None,
        "demo",
    )
    .await?;

    for doc in [
        demo_followup(
            "checkout-flow",
            "agent-claude-1",
            "T2",
            "webhook-retries",
            "Retry payment webhooks that time out",
            "The provider gives up after one attempt when our endpoint is slow.\n\n- [ ] retry with backoff\n- [ ] alert after the third failure",
        ),
        demo_followup(
            "onboarding-docs",
            "agent-codex-2",
            "T1",
            "test-database",
            "Explain how to start the test database",
            "New contributors do not know the tests need PostgreSQL.\n\n- [ ] document the container command\n- [ ] mention GAIA_TEST_POSTGRES_URL",
        ),
    ] {
        gaia.collect_followup(&doc, "demo").await?;
    }
    Ok(())
}

/// Two pending approvals, one of them a test item like the prototype's
/// `FAKE_ONREPLY_TEST_2026`; not filed again while they are still pending.
async fn demo_approvals(gaia: &Gaia) -> CliResult<()> {
    use gaia_core::commands::{CommandSpec, NewCommand, Status};
    let pending = gaia.list_commands(Some(Status::Pending), 1000).await?;
    let demos = [
        (
            CommandSpec::Shell("echo FAKE_ONREPLY_TEST_2026".into()),
            "/srv/demo",
            "checkout-flow",
            "FAKE_ONREPLY_TEST_2026",
            "agent-claude-1",
            true,
        ),
        (
            CommandSpec::Argv(vec![
                "cargo".into(),
                "run".into(),
                "--bin".into(),
                "migrate".into(),
                "--".into(),
                "--apply".into(),
            ]),
            "/srv/search-index",
            "search-index",
            "demo: apply the search index migration",
            "agent-codex-2",
            false,
        ),
    ];
    for (spec, cwd, story, reason, requester, is_test) in demos {
        if pending.iter().any(|c| c.reason.as_deref() == Some(reason)) {
            continue;
        }
        let new = NewCommand::new(
            spec,
            Some(cwd.into()),
            Some(story.into()),
            Some("default".into()),
            Some(reason.into()),
            requester,
            is_test,
            Some(std::time::Duration::from_secs(12 * 3600)),
        )?;
        gaia.request_command(&new).await?;
    }
    Ok(())
}

/// A notification in the dead set, so the outbox panel has something to requeue.
async fn demo_dead_message(gaia: &Gaia) -> CliResult<()> {
    use gaia_core::outbox::{Attempt, Channel, NewMessage, RetryPolicy};
    const KEY: &str = "demo-dead-webhook";
    if gaia.store().outbox_by_key(KEY).await?.is_some() {
        return Ok(());
    }
    let ids = gaia
        .enqueue_messages(&[NewMessage {
            channel: Channel::Webhook,
            target: "http://127.0.0.1:9/unreachable".into(),
            kind: "alert".into(),
            payload: json!({"text": "demo: a webhook nobody listens to"}),
            dedupe_key: Some(KEY.into()),
        }])
        .await?;
    for id in ids {
        gaia.store()
            .outbox_record(
                id,
                &Attempt::Fatal("demo: connection refused (127.0.0.1:9)".into()),
                &RetryPolicy::default(),
                0.5,
            )
            .await?;
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when the
/// future is first polled: a supervisor may send SIGTERM as soon as the server answers
/// `/readyz`, and a signal that came before the handlers would end the process without its
/// clean stop (the pid file left behind, workers cut off).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    async move {
        #[cfg(unix)]
        match signals {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Ok(mut term), Err(_)) => {
                term.recv().await;
            }
            (Err(_), _) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

/// A pid file that is removed when the server stops.
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn write(path: &Path) -> CliResult<Self> {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| {
            CliError::bad_input(format!("cannot write pid file {}: {e}", path.display()))
        })?;
        Ok(Self(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
