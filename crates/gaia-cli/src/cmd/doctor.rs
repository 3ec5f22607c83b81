//! `gaia doctor [--json]`: checks what a deployment depends on, each check `ok`, `warn` or
//! `fail` with the fix: the configuration (values, unknown variables, secrets only the owner
//! can read), the store (reachable, schema current, the clock against PostgreSQL's, free disk
//! for SQLite), Telegram (`getMe`, webhook state) when configured, `gh auth status` when the
//! backlog is synced to GitHub or the scheduled sync is enabled, and the server's `/readyz` when a server URL is configured.
//! Exit 1 on any failure. Nothing is printed that could be a secret.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gaia_core::StoreError;
use gaia_core::store::Store;
use serde::Serialize;
use serde_json::json;

use crate::cli::DoctorArgs;
use crate::config::{Config, Source};
use crate::exit::{self, CliResult};

/// How long a network check may take.
const NET_TIMEOUT: Duration = Duration::from_secs(10);
/// Clock skew between this host and PostgreSQL beyond which a check warns, and fails.
const SKEW_WARN: Duration = Duration::from_secs(1);
const SKEW_FAIL: Duration = Duration::from_secs(5);
/// Free space next to a SQLite database below which a check warns, and fails.
const DISK_WARN: u64 = 1 << 30;
const DISK_FAIL: u64 = 100 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

/// One check's answer.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, Status::Ok, detail, None::<String>);
    }

    fn warn(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(name, Status::Warn, detail, Some(fix));
    }

    fn fail(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(name, Status::Fail, detail, Some(fix));
    }

    fn push(
        &mut self,
        name: &'static str,
        status: Status,
        detail: impl Into<String>,
        fix: Option<impl Into<String>>,
    ) {
        self.0.push(Check {
            name,
            status,
            detail: detail.into().replace(['\n', '\r'], " "),
            fix: fix.map(Into::into),
        });
    }

    /// Prints the checks; exit 1 when any failed.
    fn finish(self, json_out: bool) -> CliResult {
        let failed = self.0.iter().any(|c| c.status == Status::Fail);
        if json_out {
            super::out(&json!({ "ok": !failed, "checks": self.0 }).to_string())?;
        } else {
            for c in &self.0 {
                let word = match c.status {
                    Status::Ok => "ok  ",
                    Status::Warn => "warn",
                    Status::Fail => "FAIL",
                };
                super::out(&format!("{word} {}: {}", c.name, c.detail))?;
                if let Some(fix) = &c.fix {
                    super::out(&format!("     fix: {fix}"))?;
                }
            }
        }
        Ok(if failed { exit::FAILURE } else { exit::OK })
    }
}

/// The configuration could not be loaded: that is the one check that can run.
pub fn config_failed(args: &DoctorArgs, message: &str) -> CliResult {
    let mut r = Report::default();
    r.fail(
        "config",
        message,
        "correct the setting named (see `gaia config show` and gaia.toml)",
    );
    r.finish(args.json)
}

pub async fn run(args: DoctorArgs, config: &Config) -> CliResult {
    let mut r = Report::default();
    r.ok("config", "every setting parsed");
    for w in &config.warnings {
        r.warn("config", w.clone(), "remove or correct the variable");
    }
    secret_files(&mut r, config);
    let synced = store(&mut r, config).await;
    if config.telegram.bot_token.is_some() {
        telegram(&mut r, config).await;
    }
    let token_set = ["GH_TOKEN", "GITHUB_TOKEN"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|t| !t.is_empty()));
    // The scheduled sync (`github.enabled`) runs `gh` as the server's user.
    if synced || token_set || config.github.is_some() {
        github(&mut r).await;
    }
    if let Some((url, _)) = &config.remote {
        server(&mut r, url).await;
    }
    r.finish(args.json)
}

/// Files that hold a secret setting must be readable by their owner only.
fn secret_files(r: &mut Report, config: &Config) {
    let mut seen: Vec<(PathBuf, &'static str)> = Vec::new();
    for (name, source) in config.secret_sources() {
        for path in secret_paths(&source) {
            if !seen.iter().any(|(p, _)| *p == path) {
                seen.push((path, name));
            }
        }
    }
    for (path, name) in seen {
        match std::fs::metadata(&path) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => r.fail(
                "secrets",
                format!(
                    "{} holds {name} and other users can read it (mode {:o})",
                    path.display(),
                    m.permissions().mode() & 0o777
                ),
                format!("chmod 600 {}", path.display()),
            ),
            Ok(_) => r.ok(
                "secrets",
                format!("{} ({name}) is readable by its owner only", path.display()),
            ),
            Err(e) => r.fail(
                "secrets",
                format!("cannot read {}: {e}", path.display()),
                "check the path and its permissions",
            ),
        }
    }
}

/// The files a secret's value was read from: the config or env file, and a `NAME_FILE`.
fn secret_paths(source: &Source) -> Vec<PathBuf> {
    match source {
        Source::ConfigFile(p) => vec![p.clone()],
        Source::EnvFile(p, var) => {
            let mut out = vec![p.clone()];
            if var.ends_with("_FILE") {
                if let Some(named) = crate::envfile::load(p)
                    .ok()
                    .and_then(|v| v.get(var).cloned())
                {
                    out.push(PathBuf::from(named));
                }
            }
            out
        }
        Source::Env(var) if var.ends_with("_FILE") => std::env::var_os(var)
            .map(PathBuf::from)
            .into_iter()
            .collect(),
        Source::Env(_) | Source::Default | Source::Flag(_) => Vec::new(),
    }
}

/// Reachable, schema current, clock (PostgreSQL) and free disk (SQLite). True when the store
/// holds GitHub sync records (so `gh` must work).
async fn store(r: &mut Report, config: &Config) -> bool {
    let url = &config.database_url;
    let shown = gaia_store_postgres::redact_url(url);
    let sqlite_path = if url.starts_with("sqlite:") {
        gaia_store_sqlite::path_from_url(url).ok()
    } else {
        None
    };
    if let Some(path) = &sqlite_path {
        disk(r, path);
        if !path.exists() {
            r.warn(
                "store",
                format!("no database at {} yet", path.display()),
                "it is created on first use (e.g. `gaia serve`); \
                 check database.url if it should exist",
            );
            return false;
        }
    }
    let store = match crate::open::open_store(url, config).await {
        Ok(s) => s,
        Err(e) => {
            let fix = match &e {
                StoreError::SchemaTooNew { .. } => "upgrade gaia to the version that migrated it",
                StoreError::Unavailable(_) | StoreError::LockTimeout => {
                    "start the database, or correct database.url (host, port, credentials)"
                }
                _ => "correct database.url",
            };
            r.fail("store", format!("{shown}: {e}"), fix);
            return false;
        }
    };
    r.ok("store", format!("{shown} is reachable"));
    let want = crate::open::schema_version(url);
    match store.schema_version().await {
        Ok(v) if v == want => r.ok("migrations", format!("schema version {v} is current")),
        Ok(v) => r.fail(
            "migrations",
            format!("schema version {v}, this gaia writes {want}"),
            "run any gaia command against the store to migrate it, or upgrade gaia",
        ),
        Err(e) => r.fail("migrations", e.to_string(), "check the database"),
    }
    if sqlite_path.is_none() {
        clock(r, store.as_ref()).await;
    }
    let synced = match store.dump() {
        Some(d) => d
            .dump_counts()
            .await
            .is_ok_and(|c| c.iter().any(|(t, n)| *t == "github_sync" && *n > 0)),
        None => false,
    };
    store.close().await;
    synced
}

/// Claims expire by the database's clock; a host whose clock disagrees misjudges leases in
/// what it shows and in the TTLs people pick.
async fn clock(r: &mut Report, store: &dyn Store) {
    let before = chrono::Utc::now();
    let db = match store.now().await {
        Ok(t) => t,
        Err(e) => {
            return r.fail(
                "clock",
                format!("cannot read the database's clock: {e}"),
                "check the database",
            );
        }
    };
    let after = chrono::Utc::now();
    let here = before + (after - before) / 2;
    let skew = (db - here).abs().to_std().unwrap_or_default();
    let detail = format!("this host and PostgreSQL differ by {} ms", skew.as_millis());
    let fix = "synchronise both clocks with NTP (chrony or systemd-timesyncd)";
    if skew >= SKEW_FAIL {
        r.fail("clock", detail, fix);
    } else if skew >= SKEW_WARN {
        r.warn("clock", detail, fix);
    } else {
        r.ok("clock", detail);
    }
}

/// Free space on the file system of a SQLite database (or of its nearest existing folder).
fn disk(r: &mut Report, db: &Path) {
    let dir = db
        .ancestors()
        .skip(1)
        .find(|a| a.as_os_str().is_empty() || a.is_dir())
        .map_or_else(
            || PathBuf::from("."),
            |a| {
                if a.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    a.to_owned()
                }
            },
        );
    let stat = match nix::sys::statvfs::statvfs(&dir) {
        Ok(s) => s,
        Err(e) => {
            return r.warn(
                "disk",
                format!("cannot read free space of {}: {e}", dir.display()),
                "check the path",
            );
        }
    };
    let free = stat.blocks_available().saturating_mul(stat.fragment_size());
    let detail = format!("{} MiB free for {}", free >> 20, dir.display());
    let fix = "free space, or move the database (`gaia store copy`) to a larger disk";
    if free < DISK_FAIL {
        r.fail("disk", detail, fix);
    } else if free < DISK_WARN {
        r.warn("disk", detail, fix);
    } else {
        r.ok("disk", detail);
    }
}

/// The bot token works, and no webhook keeps `getUpdates` from working.
async fn telegram(r: &mut Report, config: &Config) {
    let token = config.telegram.bot_token.clone().unwrap_or_default();
    let client = match gaia_telegram::BotClient::new(config.telegram.api_url.clone(), token) {
        Ok(c) => c.with_request_timeout(NET_TIMEOUT),
        Err(e) => {
            return r.fail(
                "telegram",
                e.to_string(),
                "correct telegram.bot_token / telegram.api_url",
            );
        }
    };
    match client.get_me().await {
        Ok(me) => r.ok(
            "telegram",
            format!(
                "getMe: the bot {} answers",
                me.username
                    .as_deref()
                    .map_or_else(|| me.id.to_string(), |u| format!("@{u}"))
            ),
        ),
        Err(e) => {
            return r.fail(
                "telegram",
                format!("getMe failed: {e}"),
                "check TELEGRAM_BOT_TOKEN (ask @BotFather) and that this host reaches the Bot API",
            );
        }
    }
    let expected = config.telegram.webhook.as_ref().map(|w| w.url.as_str());
    match client.get_webhook_info().await {
        Ok(w) if expected.is_some() => match w.last_error_message {
            _ if Some(w.url.as_str()) != expected => r.warn(
                "telegram.webhook",
                "webhook mode is configured but Telegram has another webhook (or none) set",
                "restart gaia serve, which calls setWebhook with telegram.public_url",
            ),
            Some(m) if !m.is_empty() => r.warn(
                "telegram.webhook",
                format!("the webhook is set; Telegram's last delivery error: {m}"),
                "check that telegram.public_url reaches gaia serve through the proxy",
            ),
            _ => r.ok(
                "telegram.webhook",
                format!(
                    "the webhook is set; {} updates pending",
                    w.pending_update_count
                ),
            ),
        },
        Ok(w) if !w.url.is_empty() => r.warn(
            "telegram.webhook",
            "a webhook is set, so Telegram refuses getUpdates (the approval buttons)",
            "start gaia serve (polling mode deletes it first), or set telegram.mode = \"webhook\"",
        ),
        Ok(w) => match w.last_error_message {
            Some(m) if !m.is_empty() => r.warn(
                "telegram.webhook",
                format!("no webhook; Telegram's last error: {m}"),
                "see the message; it clears once updates flow",
            ),
            _ => r.ok(
                "telegram.webhook",
                format!("no webhook; {} updates pending", w.pending_update_count),
            ),
        },
        Err(e) => r.fail(
            "telegram.webhook",
            format!("getWebhookInfo failed: {e}"),
            "check the Bot API URL",
        ),
    }
}

/// `gh auth status`, when the backlog is synced to GitHub, the scheduled sync is enabled or a
/// GitHub token is set.
async fn github(r: &mut Report) {
    let mut cmd = tokio::process::Command::new("gh");
    cmd.args(["auth", "status"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(NET_TIMEOUT * 2, cmd.status()).await {
        Err(_) => r.warn(
            "github",
            "`gh auth status` did not answer in time",
            "check the network and `gh auth status`",
        ),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => r.fail(
            "github",
            "gh is not installed, and `gaia sync github` needs it",
            "install the GitHub CLI (https://cli.github.com) and run `gh auth login`",
        ),
        Ok(Err(e)) => r.warn("github", format!("cannot run gh: {e}"), "reinstall gh"),
        Ok(Ok(s)) if s.success() => r.ok("github", "gh is logged in"),
        Ok(Ok(_)) => r.fail("github", "gh is not logged in", "gh auth login"),
    }
}

/// The server's `/readyz`.
async fn server(r: &mut Report, url: &str) {
    let ready = format!("{}/readyz", url.trim_end_matches('/'));
    let client = match reqwest::Client::builder().timeout(NET_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => return r.fail("server", e.to_string(), "check GAIA_URL"),
    };
    match client.get(&ready).send().await {
        Ok(res) if res.status().is_success() => r.ok("server", format!("{ready} is ready")),
        Ok(res) => {
            let status = res.status();
            let body = res.text().await.unwrap_or_default();
            let first = body
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect::<String>();
            r.fail(
                "server",
                format!("{ready} answered {status}: {first}"),
                "read the server's log; /readyz fails while the store is unreachable or migrating",
            );
        }
        Err(e) => r.fail(
            "server",
            format!("{ready} is not reachable: {e}"),
            "start `gaia serve`, or correct GAIA_URL",
        ),
    }
}
