//! Layered configuration: defaults → `gaia.toml` → env file → process environment → flags.
//!
//! Every setting has one dotted name (`database.url`), the environment variables that set it
//! (Gaia's `GAIA_*` names and the prototype's names such as `TELEGRAM_BOT_TOKEN`), and whether
//! it is a secret. `NAME_FILE` reads a variable's value from a file.
//!
//! Every layer is text, so [`layers`] first merges them as text with where each value came
//! from; [`Config::load`] then parses every setting once into typed fields. A value that does
//! not parse is a [`ConfigError`] naming the setting, its source and what was expected, so the
//! rest of the program never re-parses and nothing is dropped.

mod layers;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gaia_core::backlog::Template;
use gaia_core::metrics::Threshold;
use gaia_core::outbox::AutoRequeuePolicy;
use gaia_core::policy::Policy;
use gaia_core::store::{SqliteSync, StoreOptions};
use gaia_core::time::parse_duration;

use self::layers::{Entry, Layers};

/// The env file loaded when present and none is named.
pub const DEFAULT_ENV_FILE: &str = ".tmp/telegram.env";
/// The config file read when present and none is named.
pub const DEFAULT_CONFIG_FILE: &str = "gaia.toml";
/// The database when none is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://.gaia/gaia.db";
/// The Bot API when none is configured.
const DEFAULT_TELEGRAM_API_URL: &str = "https://api.telegram.org";

/// One known setting.
struct Key {
    name: &'static str,
    env: &'static [&'static str],
    default: Option<&'static str>,
    secret: bool,
    help: &'static str,
}

const KEYS: &[Key] = &[
    Key {
        name: "database.url",
        env: &["GAIA_DATABASE_URL"],
        default: Some(DEFAULT_DATABASE_URL),
        secret: false,
        help: "sqlite://PATH or postgres://USER@HOST/DB",
    },
    Key {
        name: "database.lock_timeout",
        env: &["GAIA_LOCK_TIMEOUT"],
        default: Some("5s"),
        secret: false,
        help: "how long a write waits for a lock",
    },
    Key {
        name: "database.connect_timeout",
        env: &["GAIA_CONNECT_TIMEOUT"],
        default: Some("5s"),
        secret: false,
        help: "how long opening the database may take",
    },
    Key {
        name: "database.max_connections",
        env: &["GAIA_MAX_CONNECTIONS"],
        default: Some("8"),
        secret: false,
        help: "connection pool size",
    },
    Key {
        name: "database.sqlite_synchronous",
        env: &["GAIA_SQLITE_SYNCHRONOUS"],
        default: Some("normal"),
        secret: false,
        help: "off | normal | full | extra",
    },
    Key {
        name: "events.ndjson_path",
        env: &["GAIA_EVENTS_NDJSON_PATH"],
        default: None,
        secret: false,
        help: "append every committed event to this NDJSON file",
    },
    Key {
        name: "claims.default_ttl",
        env: &["GAIA_CLAIM_TTL"],
        default: Some("15m"),
        secret: false,
        help: "lease length when --ttl is not given",
    },
    Key {
        name: "mcp.approval_wait",
        env: &["GAIA_MCP_APPROVAL_WAIT"],
        default: Some("50s"),
        secret: false,
        help: "how long MCP approval tools wait for a decision before answering pending",
    },
    Key {
        name: "mcp.progress_every",
        env: &["GAIA_MCP_PROGRESS_EVERY"],
        default: Some("10s"),
        secret: false,
        help: "how often a waiting MCP call sends a progress notification",
    },
    Key {
        name: "mcp.allowed_origins",
        env: &["GAIA_MCP_ALLOWED_ORIGINS"],
        default: None,
        secret: false,
        help: "origins /mcp accepts besides the server's own, e.g. https://gaia.example.com (comma-separated)",
    },
    Key {
        name: "telegram.bot_token",
        env: &["GAIA_TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_TOKEN"],
        default: None,
        secret: true,
        help: "Bot API token",
    },
    Key {
        name: "telegram.notify_chat",
        env: &[
            "GAIA_TELEGRAM_NOTIFY_CHAT",
            "TELEGRAM_NOTIFY_CHAT",
            "CHAT_ID",
        ],
        default: None,
        secret: false,
        help: "chat id that receives approvals and alerts",
    },
    Key {
        name: "telegram.approver_ids",
        env: &["GAIA_TELEGRAM_APPROVER_IDS", "TELEGRAM_APPROVER_IDS"],
        default: None,
        secret: false,
        help: "comma-separated numeric Telegram user ids",
    },
    Key {
        name: "telegram.api_url",
        env: &["GAIA_TELEGRAM_API_URL", "TELEGRAM_API_URL"],
        default: Some("https://api.telegram.org"),
        secret: false,
        help: "Bot API base URL",
    },
    Key {
        name: "telegram.mode",
        env: &["GAIA_TELEGRAM_MODE"],
        default: Some("polling"),
        secret: false,
        help: "how updates arrive: polling (getUpdates) or webhook (Telegram POSTs them to gaia serve)",
    },
    Key {
        name: "telegram.public_url",
        env: &["GAIA_TELEGRAM_PUBLIC_URL"],
        default: None,
        secret: false,
        help: "webhook mode: the public https:// address of gaia serve, as Telegram reaches it",
    },
    Key {
        name: "telegram.webhook_path",
        env: &["GAIA_TELEGRAM_WEBHOOK_PATH"],
        default: Some("/telegram/webhook"),
        secret: false,
        help: "webhook mode: the path gaia serve receives updates on",
    },
    Key {
        name: "telegram.webhook_secret",
        env: &["GAIA_TELEGRAM_WEBHOOK_SECRET"],
        default: None,
        secret: true,
        help: "webhook mode: the secret Telegram sends in X-Telegram-Bot-Api-Secret-Token (1-256 of A-Z a-z 0-9 _ -)",
    },
    Key {
        name: "webhook.url",
        env: &["GAIA_WEBHOOK_URL"],
        default: None,
        secret: false,
        help: "also POST every notification to this URL",
    },
    Key {
        name: "webhook.secret",
        env: &["GAIA_WEBHOOK_SECRET"],
        default: None,
        secret: true,
        help: "HMAC-SHA256 key for the X-Gaia-Signature header",
    },
    Key {
        name: "auto_requeue.every",
        env: &["AUTO_REQUEUE_EVERY"],
        default: Some("1h"),
        secret: false,
        help: "how often gaia serve runs the automatic requeue (\"off\" to disable)",
    },
    Key {
        name: "outbox.retry_base_delay",
        env: &["GAIA_OUTBOX_RETRY_BASE_DELAY"],
        default: Some("2s"),
        secret: false,
        help: "delay before a failed notification is retried; doubles after each failure",
    },
    Key {
        name: "outbox.lease",
        env: &["GAIA_OUTBOX_LEASE"],
        default: Some("60s"),
        secret: false,
        help: "how long a sender reserves the messages it is sending (resent after a crash)",
    },
    Key {
        name: "alerts.thresholds",
        env: &["GAIA_ALERT_THRESHOLDS"],
        default: Some("telegram.retry.moved_permanent=5,telegram.retry.attempt.error=50"),
        secret: false,
        help: "NAME=VALUE pairs, comma-separated: alert when a metric reaches its value",
    },
    Key {
        name: "execution.allow",
        env: &["GAIA_ALLOW_COMMAND_EXECUTION", "ALLOW_COMMAND_EXECUTION"],
        default: Some("false"),
        secret: false,
        help: "really run approved commands (otherwise dry runs)",
    },
    Key {
        name: "execution.continue_on_approve",
        env: &["GAIA_CONTINUE_ON_APPROVE"],
        default: Some("false"),
        secret: false,
        help: "the server runs approved argv commands itself",
    },
    Key {
        name: "admin.token",
        env: &["GAIA_ADMIN_TOKEN", "MONITOR_ADMIN_TOKEN"],
        default: None,
        secret: true,
        help: "admin token for the server",
    },
    Key {
        name: "backlog.template",
        env: &["GAIA_BACKLOG_TEMPLATE"],
        default: None,
        secret: false,
        help: "markdown file whose '- [ ] title' lines (bodies indented under them) start every new todolist; relative to gaia.toml when set there",
    },
    Key {
        name: "auto_requeue.max_retries",
        env: &["AUTO_REQUEUE_MAX_RETRIES"],
        default: Some("3"),
        secret: false,
        help: "dead items requeued this many times are left alone",
    },
    Key {
        name: "auto_requeue.max_age_hours",
        env: &["AUTO_REQUEUE_MAX_AGE_HOURS"],
        default: Some("72"),
        secret: false,
        help: "only dead items younger than this",
    },
    Key {
        name: "auto_requeue.max_per_run",
        env: &["AUTO_REQUEUE_MAX_PER_RUN"],
        default: Some("10"),
        secret: false,
        help: "at most this many per run",
    },
    Key {
        name: "retention.events",
        env: &["GAIA_RETENTION_EVENTS"],
        default: None,
        secret: false,
        help: "gaia cleanup archives and prunes events older than this (e.g. 90d; unset or \"off\" keeps them)",
    },
    Key {
        name: "retention.audit",
        env: &["GAIA_RETENTION_AUDIT"],
        default: None,
        secret: false,
        help: "audit records older than this are archived and pruned; the chain verifies from the last pruned one",
    },
    Key {
        name: "retention.outbox",
        env: &["GAIA_RETENTION_OUTBOX"],
        default: None,
        secret: false,
        help: "delivered notifications older than this are archived and pruned",
    },
    Key {
        name: "retention.commands",
        env: &["GAIA_RETENTION_COMMANDS"],
        default: None,
        secret: false,
        help: "approval requests that ended (denied, expired, cancelled, executed, failed) longer ago are archived and pruned",
    },
    Key {
        name: "retention.archive_dir",
        env: &["GAIA_RETENTION_ARCHIVE_DIR"],
        default: Some(".gaia/archive"),
        secret: false,
        help: "where gaia cleanup writes its archives (relative to gaia.toml when set there)",
    },
    Key {
        name: "retention.batch",
        env: &["GAIA_RETENTION_BATCH"],
        default: Some("1000"),
        secret: false,
        help: "rows per delete transaction while pruning (1 to 100000)",
    },
    Key {
        name: "github.enabled",
        env: &["GAIA_GITHUB_ENABLED"],
        default: Some("false"),
        secret: false,
        help: "gaia serve syncs the backlog to github.repo on a schedule (one node at a time)",
    },
    Key {
        name: "github.repo",
        env: &["GAIA_GITHUB_REPO"],
        default: None,
        secret: false,
        help: "OWNER/NAME the scheduled sync writes issues to (through the server user's gh login)",
    },
    Key {
        name: "github.interval",
        env: &["GAIA_GITHUB_INTERVAL"],
        default: Some("15m"),
        secret: false,
        help: "how often the scheduled sync runs",
    },
    Key {
        name: "github.tasks",
        env: &["GAIA_GITHUB_TASKS"],
        default: Some("false"),
        secret: false,
        help: "the scheduled sync makes each task an issue too",
    },
    Key {
        name: "github.pull",
        env: &["GAIA_GITHUB_PULL"],
        default: Some("false"),
        secret: false,
        help: "the scheduled sync first brings closed issues back (stories closed, tasks done)",
    },
];

/// `GAIA_*` variables that are not settings but are read elsewhere; no warning for these.
const OTHER_GAIA_VARS: &[&str] = &[
    "GAIA_CONFIG",
    "GAIA_ENV_FILE",
    "GAIA_LOG",
    "GAIA_URL",
    "GAIA_TOKEN",
    "GAIA_AGENT",
    "GAIA_OPERATOR",
    "GAIA_TEST_POSTGRES_URL",
    "GAIA_REQUIRE_POSTGRES",
    "GAIA_REQUIRE_BROWSER",
];

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    ConfigFile(PathBuf),
    EnvFile(PathBuf, String),
    Env(String),
    Flag(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::ConfigFile(p) => write!(f, "{}", p.display()),
            Self::EnvFile(p, var) => write!(f, "{var} in {}", p.display()),
            Self::Env(var) => write!(f, "${var}"),
            Self::Flag(flag) => write!(f, "{flag}"),
        }
    }
}

/// Why the configuration could not be loaded. Each prints as one line that says where to look.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting's value does not parse. `value` is already redacted when the setting is secret.
    #[error("{key} = {value:?} (from {from}): expected {expected}")]
    Invalid {
        key: &'static str,
        value: String,
        from: Source,
        expected: String,
    },
    #[error("{}: unknown setting '{name}'", path.display())]
    UnknownSetting { path: PathBuf, name: String },
    #[error("{}: unsupported value for '{name}': {value}", path.display())]
    UnsupportedValue {
        path: PathBuf,
        name: String,
        value: String,
    },
    #[error("cannot read {what} ({}): {error}", path.display())]
    Read {
        what: String,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Toml { path: PathBuf, message: String },
    /// The env file cannot be read or does not parse (the message names the file and line).
    #[error("{0}")]
    EnvFile(String),
}

/// What the command line says about configuration.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub env_file: Option<PathBuf>,
    pub db: Option<String>,
    /// A server to talk to instead of the store (`--url`/`GAIA_URL`) and its token.
    pub url: Option<String>,
    pub token: Option<String>,
}

/// The effective configuration, every setting parsed.
#[derive(Debug, Clone)]
pub struct Config {
    /// Each setting's text and source, for `gaia config show` and the secret list.
    entries: BTreeMap<&'static str, Entry>,
    pub database_url: String,
    pub store: StoreOptionsConfig,
    pub ndjson_path: Option<PathBuf>,
    pub default_ttl: Duration,
    /// How long the MCP approval tools wait, and how often they report progress meanwhile.
    pub mcp_waits: gaia_mcp::Waits,
    /// Origins `/mcp` accepts besides the server's own, each `scheme://host[:port]`.
    pub mcp_allowed_origins: Vec<String>,
    pub telegram: TelegramConfig,
    /// Also POST every notification here, signed with the secret when one is set.
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub outbox: OutboxConfig,
    /// How often `gaia serve` runs the automatic requeue; `None` when "off".
    pub auto_requeue_every: Option<Duration>,
    pub auto_requeue: AutoRequeuePolicy,
    pub thresholds: Vec<Threshold>,
    /// Whether approved commands may really run (`ALLOW_COMMAND_EXECUTION=1`).
    pub execution_allowed: bool,
    /// Whether the server runs approved argv commands itself.
    pub continue_on_approve: bool,
    /// The admin token from configuration (`MONITOR_ADMIN_TOKEN`), if set.
    pub admin_token: Option<String>,
    pub warnings: Vec<String>,
    /// Remote mode: the server URL and token.
    pub remote: Option<(String, String)>,
    /// The `[policy]` rules of gaia.toml.
    pub policy: Policy,
    /// The tasks every new todolist starts with (`backlog.template`).
    pub backlog_template: Template,
    /// What `gaia cleanup` keeps, where it archives, and its batch size (`retention.*`).
    pub retention: RetentionConfig,
    /// The scheduled GitHub sync of `gaia serve`; `None` unless `github.enabled`.
    pub github: Option<GithubConfig>,
    /// Whether this process runs one command and exits (every command but the servers), so
    /// the store is opened for that: see `open::open_store`. Not a setting: `main` sets it.
    pub one_shot: bool,
}

/// The `retention.*` settings.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    pub keep: gaia_core::retention::Retention,
    pub archive_dir: PathBuf,
    pub batch: u32,
}

/// The scheduled GitHub sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubConfig {
    /// `owner/name`.
    pub repo: String,
    pub interval: Duration,
    pub tasks: bool,
    pub pull: bool,
}

/// The store settings, as [`StoreOptions`] wants them.
#[derive(Debug, Clone)]
pub struct StoreOptionsConfig {
    pub lock_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_connections: u32,
    pub sqlite_synchronous: SqliteSync,
}

/// The Telegram bot.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    pub bot_token: Option<String>,
    pub notify_chat: Option<String>,
    /// Telegram user ids allowed to decide.
    pub approver_ids: Vec<i64>,
    pub api_url: String,
    /// Webhook mode (`telegram.mode = "webhook"`): where Telegram POSTs updates.
    pub webhook: Option<TelegramWebhookConfig>,
}

/// Telegram's webhook: the full public URL, the path `gaia serve` receives it on, the secret.
#[derive(Clone)]
pub struct TelegramWebhookConfig {
    pub url: String,
    pub path: String,
    pub secret: String,
}

impl std::fmt::Debug for TelegramWebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramWebhookConfig")
            .field("url", &self.url)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// How the outbox worker retries and leases.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    pub retry_base_delay: Duration,
    pub lease: Duration,
}

impl Config {
    /// Loads every layer and parses every setting. `env` is the process environment (passed
    /// in, so tests need not touch the real one).
    pub fn load(ov: &Overrides, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let layers = layers::collect(ov, env)?;
        let mut config = Self::parse(&layers)?;
        config.policy = layers.policy.unwrap_or_default();
        config.warnings = layers.warnings;
        config.remote = remote(ov, env);
        Ok(config)
    }

    /// Parses the merged text of every setting.
    fn parse(layers: &Layers) -> Result<Self, ConfigError> {
        let p = Parser(&layers.values);
        Ok(Self {
            entries: layers.values.clone(),
            database_url: p.required("database.url", database_url)?,
            store: p.store()?,
            ndjson_path: p.optional("events.ndjson_path", |v| Ok(PathBuf::from(v)))?,
            default_ttl: p.required("claims.default_ttl", duration)?,
            mcp_waits: gaia_mcp::Waits {
                wait: p.required("mcp.approval_wait", duration)?,
                progress_every: p.required("mcp.progress_every", duration)?,
            },
            mcp_allowed_origins: p
                .optional("mcp.allowed_origins", origins)?
                .unwrap_or_default(),
            telegram: p.telegram()?,
            webhook_url: p.optional("webhook.url", http_url)?,
            webhook_secret: p.optional("webhook.secret", text)?,
            outbox: OutboxConfig {
                retry_base_delay: p.required("outbox.retry_base_delay", duration)?,
                lease: p.required("outbox.lease", duration)?,
            },
            auto_requeue_every: p.required("auto_requeue.every", duration_or_off)?,
            auto_requeue: p.auto_requeue()?,
            thresholds: p.required("alerts.thresholds", thresholds)?,
            execution_allowed: p.required("execution.allow", boolean)?,
            continue_on_approve: p.required("execution.continue_on_approve", boolean)?,
            admin_token: p.optional("admin.token", text)?,
            warnings: Vec::new(),
            remote: None,
            policy: Policy::default(),
            backlog_template: p.template()?,
            retention: p.retention()?,
            github: p.github()?,
            one_shot: false,
        })
    }

    /// The options to open the store with.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            clock: None,
            lock_timeout: self.store.lock_timeout,
            connect_timeout: self.store.connect_timeout,
            max_connections: self.store.max_connections,
            sqlite_synchronous: self.store.sqlite_synchronous,
        }
    }

    /// The values of every secret setting, to keep them out of events and logs.
    pub fn secret_values(&self) -> Vec<String> {
        KEYS.iter()
            .filter(|k| k.secret)
            .filter_map(|k| self.entries.get(k.name).map(|e| e.value.clone()))
            .chain(self.remote.as_ref().map(|(_, token)| token.clone()))
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// Where each secret setting that is set came from, for `gaia doctor`'s check that only
    /// the owner can read them.
    pub fn secret_sources(&self) -> Vec<(&'static str, Source)> {
        KEYS.iter()
            .filter(|k| k.secret)
            .filter_map(|k| self.entries.get(k.name).map(|e| (k.name, e.source.clone())))
            .collect()
    }

    /// Applies the outbox settings to the worker's senders.
    pub fn outbox_senders(&self, senders: &mut gaia_runtime::senders::Senders) {
        senders.retry.base_delay = self.outbox.retry_base_delay;
        senders.lease = self.outbox.lease;
    }

    /// Where approvals and decisions are announced: the Telegram chat when Telegram is
    /// configured, else the console; plus the webhook when one is set.
    pub fn notify_targets(&self) -> Vec<gaia_core::outbox::Target> {
        use gaia_core::outbox::{Channel, Target};
        let mut targets = Vec::new();
        match (&self.telegram.bot_token, &self.telegram.notify_chat) {
            (Some(_), Some(chat)) => targets.push(Target {
                channel: Channel::Telegram,
                target: chat.clone(),
            }),
            _ => targets.push(Target {
                channel: Channel::Console,
                target: "console".into(),
            }),
        }
        if let Some(url) = &self.webhook_url {
            targets.push(Target {
                channel: Channel::Webhook,
                target: url.clone(),
            });
        }
        targets
    }

    /// Every setting with its effective value (secrets redacted), its source and its help.
    pub fn show(&self) -> Vec<ShownSetting> {
        KEYS.iter()
            .map(|k| {
                let (value, source) = match self.entries.get(k.name) {
                    Some(e) => (Some(shown_value(k, &e.value)), e.source.to_string()),
                    None => (None, "unset".to_owned()),
                };
                ShownSetting {
                    name: k.name,
                    value,
                    source,
                    env: k.env,
                    help: k.help,
                }
            })
            .collect()
    }
}

/// A value as it may be shown: secrets redacted, a database URL without its password.
fn shown_value(k: &Key, v: &str) -> String {
    if k.secret && !v.is_empty() {
        "[redacted]".to_owned()
    } else if k.name == "database.url" {
        gaia_store_postgres::redact_url(v)
    } else {
        v.to_owned()
    }
}

/// Remote mode: `--url`/`GAIA_URL` (an empty one means direct mode) and its token. The URL and
/// token are checked when the client is made, so that a missing token names `GAIA_TOKEN`.
fn remote(ov: &Overrides, env: &BTreeMap<String, String>) -> Option<(String, String)> {
    let url = ov
        .url
        .clone()
        .or_else(|| env.get("GAIA_URL").cloned())
        .filter(|u| !u.is_empty())?;
    let token = ov
        .token
        .clone()
        .or_else(|| env.get("GAIA_TOKEN").cloned())
        .unwrap_or_default();
    Some((url, token))
}

/// One row of `gaia config show`.
#[derive(Debug, serde::Serialize)]
pub struct ShownSetting {
    pub name: &'static str,
    pub value: Option<String>,
    pub source: String,
    pub env: &'static [&'static str],
    pub help: &'static str,
}

/// Parses the merged settings; each error names the setting and where its value came from.
struct Parser<'a>(&'a BTreeMap<&'static str, Entry>);

/// Parses one value, or says what was expected.
type Parse<T> = fn(&str) -> Result<T, String>;

impl Parser<'_> {
    /// A setting that is unset, or set to the empty string, is `None`.
    fn optional<T>(&self, key: &'static str, parse: Parse<T>) -> Result<Option<T>, ConfigError> {
        match self.0.get(key) {
            Some(e) if !e.value.is_empty() => parse(&e.value)
                .map(Some)
                .map_err(|expected| invalid(key, e, expected)),
            _ => Ok(None),
        }
    }

    /// A setting with a default: always set, so an empty value is parsed (and usually refused)
    /// rather than taken for the default.
    fn required<T>(&self, key: &'static str, parse: Parse<T>) -> Result<T, ConfigError> {
        let fallback;
        let e = match self.0.get(key) {
            Some(e) => e,
            // Only reached for a key without a default in KEYS: parse what "unset" means.
            None => {
                fallback = Entry {
                    value: String::new(),
                    source: Source::Default,
                };
                &fallback
            }
        };
        parse(&e.value).map_err(|expected| invalid(key, e, expected))
    }

    fn store(&self) -> Result<StoreOptionsConfig, ConfigError> {
        Ok(StoreOptionsConfig {
            lock_timeout: self.required("database.lock_timeout", duration)?,
            connect_timeout: self.required("database.connect_timeout", duration)?,
            max_connections: self.required("database.max_connections", connections)?,
            sqlite_synchronous: self.required("database.sqlite_synchronous", |v| {
                v.trim()
                    .parse()
                    .map_err(|_| "off, normal, full or extra".to_owned())
            })?,
        })
    }

    fn telegram(&self) -> Result<TelegramConfig, ConfigError> {
        Ok(TelegramConfig {
            bot_token: self.optional("telegram.bot_token", text)?,
            notify_chat: self.optional("telegram.notify_chat", chat)?,
            approver_ids: self
                .optional("telegram.approver_ids", approver_ids)?
                .unwrap_or_default(),
            // The prototype's env files carry an empty TELEGRAM_API_URL= line: the default.
            api_url: self
                .optional("telegram.api_url", http_url)?
                .unwrap_or_else(|| DEFAULT_TELEGRAM_API_URL.to_owned()),
            webhook: self.telegram_webhook()?,
        })
    }

    /// The webhook, in webhook mode: it needs the public URL and the secret.
    fn telegram_webhook(&self) -> Result<Option<TelegramWebhookConfig>, ConfigError> {
        const MODE: &str = "telegram.mode";
        if !self.required(MODE, telegram_mode)? {
            return Ok(None);
        }
        let path = self.required("telegram.webhook_path", webhook_path)?;
        let base = self.optional("telegram.public_url", http_url)?;
        let secret = self.optional("telegram.webhook_secret", webhook_secret)?;
        match (base, secret, self.0.get(MODE)) {
            (Some(base), Some(secret), _) => Ok(Some(TelegramWebhookConfig {
                url: format!("{}{path}", base.trim_end_matches('/')),
                path,
                secret,
            })),
            (_, _, Some(e)) => Err(invalid(
                MODE,
                e,
                "polling, or webhook with telegram.public_url and telegram.webhook_secret set"
                    .to_owned(),
            )),
            (_, _, None) => Ok(None),
        }
    }

    /// The todolist template: the default one unless `backlog.template` names a file, which
    /// is read now (relative to the config file when set there) so that a bad one stops every
    /// command at start.
    fn template(&self) -> Result<Template, ConfigError> {
        const KEY: &str = "backlog.template";
        let Some(e) = self.0.get(KEY).filter(|e| !e.value.trim().is_empty()) else {
            return Ok(Template::default());
        };
        let mut path = PathBuf::from(e.value.trim());
        if let (Source::ConfigFile(file), true) = (&e.source, path.is_relative()) {
            if let Some(dir) = file.parent() {
                path = dir.join(path);
            }
        }
        let text = std::fs::read_to_string(&path).map_err(|err| {
            invalid(
                KEY,
                e,
                format!("a readable markdown file ({}: {err})", path.display()),
            )
        })?;
        gaia_core::backlog_md::parse_template(&text).map_err(|err| {
            invalid(
                KEY,
                e,
                format!(
                    "a todolist template of '- [ ] title' lines ({} {err})",
                    path.display()
                ),
            )
        })
    }

    fn retention(&self) -> Result<RetentionConfig, ConfigError> {
        const DIR: &str = "retention.archive_dir";
        let mut archive_dir = PathBuf::from(".gaia/archive");
        if let Some(e) = self.0.get(DIR).filter(|e| !e.value.trim().is_empty()) {
            archive_dir = PathBuf::from(e.value.trim());
            if let (Source::ConfigFile(file), true) = (&e.source, archive_dir.is_relative()) {
                if let Some(dir) = file.parent() {
                    archive_dir = dir.join(archive_dir);
                }
            }
        }
        Ok(RetentionConfig {
            keep: gaia_core::retention::Retention {
                events: self
                    .optional("retention.events", duration_or_off)?
                    .flatten(),
                audit: self.optional("retention.audit", duration_or_off)?.flatten(),
                outbox: self
                    .optional("retention.outbox", duration_or_off)?
                    .flatten(),
                commands: self
                    .optional("retention.commands", duration_or_off)?
                    .flatten(),
            },
            archive_dir,
            batch: self.required("retention.batch", |v| match v.trim().parse() {
                Ok(n) if (1..=100_000).contains(&n) => Ok(n),
                _ => Err("a whole number from 1 to 100000".to_owned()),
            })?,
        })
    }

    /// The scheduled sync when `github.enabled`: then `github.repo` must be set.
    fn github(&self) -> Result<Option<GithubConfig>, ConfigError> {
        let interval = self.required("github.interval", duration)?;
        let tasks = self.required("github.tasks", boolean)?;
        let pull = self.required("github.pull", boolean)?;
        let repo = self.optional("github.repo", github_repo)?;
        if !self.required("github.enabled", boolean)? {
            return Ok(None);
        }
        let Some(repo) = repo else {
            let e = self.0.get("github.enabled").cloned().unwrap_or(Entry {
                value: String::new(),
                source: Source::Default,
            });
            return Err(invalid(
                "github.enabled",
                &e,
                "github.repo to be set as well (OWNER/NAME)".to_owned(),
            ));
        };
        Ok(Some(GithubConfig {
            repo,
            interval,
            tasks,
            pull,
        }))
    }

    fn auto_requeue(&self) -> Result<AutoRequeuePolicy, ConfigError> {
        let hours = self.required("auto_requeue.max_age_hours", whole_number)?;
        Ok(AutoRequeuePolicy {
            max_retries: self.required("auto_requeue.max_retries", whole_number)?,
            max_age: Duration::from_secs(u64::from(hours) * 3600),
            max_per_run: self.required("auto_requeue.max_per_run", whole_number)?,
        })
    }
}

/// The error for `key`'s value `e`; a secret's value is not repeated.
fn invalid(key: &'static str, e: &Entry, expected: String) -> ConfigError {
    let value = KEYS
        .iter()
        .find(|k| k.name == key)
        .map_or_else(|| e.value.clone(), |k| shown_value(k, &e.value));
    ConfigError::Invalid {
        key,
        value,
        from: e.source.clone(),
        expected,
    }
}

fn text(v: &str) -> Result<String, String> {
    Ok(v.to_owned())
}

fn duration(v: &str) -> Result<Duration, String> {
    parse_duration(v).map_err(|_| {
        "a positive duration like 90s, 15m, 2h or 1h30m (units ms, s, m, h, d; at most 3650d)"
            .to_owned()
    })
}

fn duration_or_off(v: &str) -> Result<Option<Duration>, String> {
    if v.trim() == "off" {
        return Ok(None);
    }
    duration(v).map(Some).map_err(|e| format!("\"off\" or {e}"))
}

fn whole_number(v: &str) -> Result<u32, String> {
    v.trim()
        .parse()
        .map_err(|_| "a whole number (0 or more)".to_owned())
}

fn connections(v: &str) -> Result<u32, String> {
    match v.trim().parse() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err("a whole number from 1 to 1000".to_owned()),
    }
}

fn boolean(v: &str) -> Result<bool, String> {
    parse_bool(v).ok_or_else(|| "1/0, true/false, yes/no or on/off".to_owned())
}

fn database_url(v: &str) -> Result<String, String> {
    let v = v.trim();
    if ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|p| v.starts_with(p))
    {
        Ok(v.to_owned())
    } else {
        Err("sqlite://PATH or postgres://USER@HOST/DATABASE".to_owned())
    }
}

fn github_repo(v: &str) -> Result<String, String> {
    let v = v.trim();
    gaia_core::github::check_repo(v)
        .map(|()| v.to_owned())
        .map_err(|_| "a repository as OWNER/NAME".to_owned())
}

fn http_url(v: &str) -> Result<String, String> {
    let v = v.trim();
    match v.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(v.to_owned()),
        _ => Err("an http:// or https:// URL".to_owned()),
    }
}

/// `telegram.mode`: whether it is `webhook` (else `polling`).
fn telegram_mode(v: &str) -> Result<bool, String> {
    match v.trim() {
        "polling" => Ok(false),
        "webhook" => Ok(true),
        _ => Err("polling or webhook".to_owned()),
    }
}

/// Where `gaia serve` receives Telegram's updates: an absolute path of plain segments, clear of
/// Gaia's own routes.
fn webhook_path(v: &str) -> Result<String, String> {
    let v = v.trim();
    let first = v.trim_start_matches('/').split('/').next().unwrap_or("");
    let plain = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'));
    if v.starts_with('/')
        && plain
        && !first.is_empty()
        && !v.contains("//")
        && !["api", "mcp", "dashboard", "assets"].contains(&first)
    {
        Ok(v.to_owned())
    } else {
        Err("an absolute path such as /telegram/webhook (letters, digits, / _ - .), not under /api, /mcp, /dashboard or /assets".to_owned())
    }
}

/// Telegram's rule for a webhook's secret token.
fn webhook_secret(v: &str) -> Result<String, String> {
    if (1..=256).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(v.to_owned())
    } else {
        Err("1 to 256 characters of A-Z, a-z, 0-9, _ and -".to_owned())
    }
}

/// A Telegram chat: a numeric id (negative for groups) or a public `@channelname`.
fn chat(v: &str) -> Result<String, String> {
    let v = v.trim();
    let numeric = v.strip_prefix('-').unwrap_or(v);
    let name = v.strip_prefix('@').unwrap_or_default();
    let ok = (!numeric.is_empty() && numeric.bytes().all(|b| b.is_ascii_digit()))
        || (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if ok {
        Ok(v.to_owned())
    } else {
        Err("a numeric chat id such as -100123456 or an @channelname".to_owned())
    }
}

fn approver_ids(v: &str) -> Result<Vec<i64>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|id| {
            id.parse().map_err(|_| {
                format!("comma-separated numeric Telegram user ids ('{id}' is not one)")
            })
        })
        .collect()
}

/// Comma-separated origins, each `http(s)://host[:port]` with no path.
fn origins(v: &str) -> Result<Vec<String>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            gaia_server::mcp_origin::parse_origin(o)
                .map_err(|e| format!("comma-separated origins like https://HOST[:PORT] ({e})"))
        })
        .collect()
}

fn thresholds(v: &str) -> Result<Vec<Threshold>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse()
                .map_err(|_| format!("comma-separated NAME=NUMBER pairs ('{t}' is not one)"))
        })
        .collect()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn value<'a>(c: &'a Config, name: &str) -> (&'a str, String) {
        let e = &c.entries[name];
        (e.value.as_str(), e.source.to_string())
    }

    #[test]
    fn the_github_sync_is_off_by_default_and_checked_when_on() {
        let c = Config::load(&Overrides::default(), &BTreeMap::new()).unwrap();
        assert_eq!(c.github, None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gaia.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let ov = Overrides {
                config: Some(path.clone()),
                ..Overrides::default()
            };
            Config::load(&ov, &BTreeMap::new())
        };
        let c = load(
            "[github]\nenabled = true\nrepo = \"acme/widgets\"\ninterval = \"90s\"\ntasks = true\n",
        )
        .unwrap();
        assert_eq!(
            c.github,
            Some(GithubConfig {
                repo: "acme/widgets".into(),
                interval: Duration::from_secs(90),
                tasks: true,
                pull: false,
            })
        );
        // A repository but not enabled: off.
        assert_eq!(
            load("[github]\nrepo = \"acme/widgets\"\n").unwrap().github,
            None
        );
        let e = load("[github]\nenabled = true\n").unwrap_err().to_string();
        assert!(
            e.contains("github.enabled") && e.contains("github.repo"),
            "{e}"
        );
        assert!(e.contains("gaia.toml"), "names the source: {e}");
        let e = load("[github]\nenabled = true\nrepo = \"acme\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("github.repo = \"acme\"") && e.contains("OWNER/NAME"),
            "{e}"
        );
        let e = load("[github]\ninterval = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("github.interval"), "{e}");
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("gaia.toml");
        std::fs::write(
            &toml_path,
            "[database]\nurl = \"sqlite://from-toml.db\"\nlock_timeout = \"2s\"\n[claims]\ndefault_ttl = \"1h\"\n",
        )
        .unwrap();
        let env_path = dir.path().join("telegram.env");
        std::fs::write(
            &env_path,
            "TELEGRAM_BOT_TOKEN=file-token-123\nGAIA_LOCK_TIMEOUT=3s\nCHAT_ID=42\n",
        )
        .unwrap();
        let ov = Overrides {
            config: Some(toml_path),
            env_file: Some(env_path),
            ..Overrides::default()
        };
        let c = Config::load(&ov, &env(&[("GAIA_LOCK_TIMEOUT", "4s")])).unwrap();
        assert_eq!(value(&c, "database.url").0, "sqlite://from-toml.db");
        assert_eq!(
            value(&c, "database.lock_timeout"),
            ("4s", "$GAIA_LOCK_TIMEOUT".into())
        );
        assert_eq!(value(&c, "claims.default_ttl").0, "1h");
        assert_eq!(value(&c, "telegram.notify_chat").0, "42");
        assert_eq!(c.default_ttl, Duration::from_secs(3600));
        assert_eq!(c.secret_values(), vec!["file-token-123".to_owned()]);
        let shown = c.show();
        let token = shown
            .iter()
            .find(|s| s.name == "telegram.bot_token")
            .unwrap();
        assert_eq!(token.value.as_deref(), Some("[redacted]"));

        let ov = Overrides {
            db: Some("sqlite://flag.db".into()),
            ..ov
        };
        let c = Config::load(&ov, &BTreeMap::new()).unwrap();
        assert_eq!(
            value(&c, "database.url"),
            ("sqlite://flag.db", "--db".into())
        );
        assert_eq!(value(&c, "database.lock_timeout").0, "3s");
    }

    #[test]
    fn file_secrets_and_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("token");
        std::fs::write(&secret, "admin-secret-1\n").unwrap();
        let e = env(&[
            ("MONITOR_ADMIN_TOKEN_FILE", secret.to_str().unwrap()),
            ("GAIA_TYPO", "1"),
        ]);
        let ov = Overrides {
            env_file: Some(dir.path().join("missing.env")),
            ..Overrides::default()
        };
        assert!(
            Config::load(&ov, &e)
                .unwrap_err()
                .to_string()
                .contains("cannot read env file")
        );
        let c = Config::load(&Overrides::default(), &e).unwrap();
        assert_eq!(c.secret_values(), vec!["admin-secret-1".to_owned()]);
        assert_eq!(
            c.warnings,
            vec!["unknown environment variable GAIA_TYPO is ignored".to_owned()]
        );
    }

    #[test]
    fn telegram_webhook_mode_needs_its_url_and_secret() {
        let load = |pairs: &[(&str, &str)]| Config::load(&Overrides::default(), &env(pairs));
        assert!(
            load(&[]).unwrap().telegram.webhook.is_none(),
            "polling by default"
        );
        let c = load(&[
            ("GAIA_TELEGRAM_MODE", "webhook"),
            ("GAIA_TELEGRAM_PUBLIC_URL", "https://gaia.example.com/"),
            ("GAIA_TELEGRAM_WEBHOOK_SECRET", "s3cret_-X"),
        ])
        .unwrap();
        let hook = c.telegram.webhook.unwrap();
        assert_eq!(hook.url, "https://gaia.example.com/telegram/webhook");
        assert_eq!(hook.path, "/telegram/webhook");
        assert_eq!(hook.secret, "s3cret_-X");
        let refused = [
            (
                vec![("GAIA_TELEGRAM_MODE", "webhook")],
                "expected polling, or webhook with telegram.public_url",
            ),
            (
                vec![("GAIA_TELEGRAM_MODE", "push")],
                "expected polling or webhook",
            ),
            (
                vec![
                    ("GAIA_TELEGRAM_MODE", "webhook"),
                    ("GAIA_TELEGRAM_PUBLIC_URL", "https://gaia.example.com"),
                    ("GAIA_TELEGRAM_WEBHOOK_SECRET", "has space"),
                ],
                "telegram.webhook_secret = \"[redacted]\"",
            ),
            (
                vec![
                    ("GAIA_TELEGRAM_MODE", "webhook"),
                    ("GAIA_TELEGRAM_PUBLIC_URL", "https://gaia.example.com"),
                    ("GAIA_TELEGRAM_WEBHOOK_SECRET", "ok"),
                    ("GAIA_TELEGRAM_WEBHOOK_PATH", "/api/v1/telegram"),
                ],
                "not under /api",
            ),
            (
                vec![
                    ("GAIA_TELEGRAM_MODE", "webhook"),
                    ("GAIA_TELEGRAM_PUBLIC_URL", "https://gaia.example.com"),
                    ("GAIA_TELEGRAM_WEBHOOK_SECRET", "ok"),
                    ("GAIA_TELEGRAM_WEBHOOK_PATH", "/hook/{id}"),
                ],
                "an absolute path",
            ),
        ];
        for (pairs, want) in refused {
            let err = load(&pairs).unwrap_err().to_string();
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn bad_values_name_setting_and_source() {
        let cases = [
            (
                ("GAIA_LOCK_TIMEOUT", "15x"),
                "database.lock_timeout = \"15x\" (from $GAIA_LOCK_TIMEOUT): expected a positive duration",
            ),
            (
                ("GAIA_DATABASE_URL", "mysql://x"),
                "database.url = \"mysql://x\" (from $GAIA_DATABASE_URL): expected sqlite://PATH",
            ),
            (("TELEGRAM_APPROVER_IDS", "12,@bob"), "('@bob' is not one)"),
            (
                ("ALLOW_COMMAND_EXECUTION", "maybe"),
                "execution.allow = \"maybe\" (from $ALLOW_COMMAND_EXECUTION)",
            ),
            (
                ("GAIA_SQLITE_SYNCHRONOUS", "fast"),
                "expected off, normal, full or extra",
            ),
            (
                ("AUTO_REQUEUE_EVERY", "soon"),
                "expected \"off\" or a positive",
            ),
            (
                ("GAIA_WEBHOOK_URL", "example.com/hook"),
                "expected an http://",
            ),
            (
                ("CHAT_ID", "general"),
                "telegram.notify_chat = \"general\" (from $CHAT_ID)",
            ),
            (("GAIA_ALERT_THRESHOLDS", "x"), "('x' is not one)"),
            (
                ("AUTO_REQUEUE_MAX_PER_RUN", "-1"),
                "expected a whole number",
            ),
        ];
        for ((var, val), want) in cases {
            let err = Config::load(&Overrides::default(), &env(&[(var, val)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{var}={val}: {err}");
        }
        // Were a secret refused, its value would not be repeated.
        let entry = Entry {
            value: "hunter2-secret".into(),
            source: Source::Env("MONITOR_ADMIN_TOKEN".into()),
        };
        let err = invalid("admin.token", &entry, "x".into()).to_string();
        assert!(err.starts_with("admin.token = \"[redacted]\""), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gaia.toml");
        std::fs::write(&p, "[database]\nurll = \"x\"\n").unwrap();
        let ov = Overrides {
            config: Some(p),
            ..Overrides::default()
        };
        assert!(
            Config::load(&ov, &BTreeMap::new())
                .unwrap_err()
                .to_string()
                .contains("unknown setting 'database.urll'")
        );
    }

    #[test]
    fn retention_is_read_per_kind_as_ages() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&Overrides::default(), &BTreeMap::new()).unwrap();
        assert_eq!(c.retention.keep, gaia_core::retention::Retention::default());
        assert_eq!(c.retention.batch, 1000);
        let toml_path = dir.path().join("gaia.toml");
        std::fs::write(
            &toml_path,
            "[retention]\nevents = \"90d\"\naudit = \"365d\"\noutbox = \"off\"\narchive_dir = \"arch\"\nbatch = 50\n",
        )
        .unwrap();
        let ov = Overrides {
            config: Some(toml_path),
            ..Overrides::default()
        };
        let c = Config::load(&ov, &env(&[("GAIA_RETENTION_COMMANDS", "30d")])).unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(c.retention.keep.events, Some(day * 90));
        assert_eq!(c.retention.keep.audit, Some(day * 365));
        assert_eq!(c.retention.keep.outbox, None);
        assert_eq!(c.retention.keep.commands, Some(day * 30));
        assert_eq!(c.retention.archive_dir, dir.path().join("arch"));
        assert_eq!(c.retention.batch, 50);
        let err = Config::load(&ov, &env(&[("GAIA_RETENTION_EVENTS", "ninety days")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("retention.events = \"ninety days\""),
            "{err}"
        );
        let err = Config::load(&ov, &env(&[("GAIA_RETENTION_BATCH", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("from 1 to 100000"), "{err}");
    }

    #[test]
    fn the_backlog_template_is_read_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&Overrides::default(), &BTreeMap::new()).unwrap();
        assert_eq!(c.backlog_template, Template::default());
        std::fs::write(
            dir.path().join("tpl.md"),
            "# Template\n- [ ] Plan\n    - [ ] outline\n- [ ] FINAL: check\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.md"), "- [ ] Plan\n- [ ] Build\n").unwrap();
        let toml_path = dir.path().join("gaia.toml");
        std::fs::write(&toml_path, "[backlog]\ntemplate = \"tpl.md\"\n").unwrap();
        let ov = Overrides {
            config: Some(toml_path.clone()),
            ..Overrides::default()
        };
        let c = Config::load(&ov, &BTreeMap::new()).unwrap();
        assert_eq!(c.backlog_template.0.len(), 2);
        assert_eq!(c.backlog_template.0[0].body, "- [ ] outline");
        let bad = dir.path().join("bad.md");
        let e = env(&[("GAIA_BACKLOG_TEMPLATE", bad.to_str().unwrap())]);
        let err = Config::load(&ov, &e).unwrap_err().to_string();
        assert!(
            err.starts_with("backlog.template = ") && err.contains("(from $GAIA_BACKLOG_TEMPLATE)"),
            "{err}"
        );
        assert!(
            err.contains("line 2: the last task must be marked"),
            "{err}"
        );
        std::fs::write(&toml_path, "[backlog]\ntemplate = \"missing.md\"\n").unwrap();
        let err = Config::load(&ov, &BTreeMap::new()).unwrap_err().to_string();
        assert!(
            err.contains("gaia.toml): expected a readable markdown file"),
            "{err}"
        );
    }

    #[test]
    fn typed_values_are_parsed_once() {
        let e = env(&[
            ("TELEGRAM_APPROVER_IDS", "1, 2,,3"),
            ("AUTO_REQUEUE_EVERY", "off"),
            ("AUTO_REQUEUE_MAX_AGE_HOURS", "2"),
            ("TELEGRAM_API_URL", ""),
            ("ALLOW_COMMAND_EXECUTION", "yes"),
        ]);
        let c = Config::load(&Overrides::default(), &e).unwrap();
        assert_eq!(c.telegram.approver_ids, vec![1, 2, 3]);
        assert_eq!(c.auto_requeue_every, None);
        assert_eq!(c.auto_requeue.max_age, Duration::from_secs(7200));
        assert_eq!(c.telegram.api_url, DEFAULT_TELEGRAM_API_URL);
        assert!(c.execution_allowed);
        assert_eq!(c.thresholds.len(), 2);
        assert_eq!(c.outbox.lease, Duration::from_secs(60));
    }
}
