//! Layered configuration: defaults → `gaia.toml` → env file → process environment → flags.
//!
//! Every setting has one dotted name (`database.url`), the environment variables that set it
//! (Gaia's `GAIA_*` names and the prototype's names such as `TELEGRAM_BOT_TOKEN`), and whether
//! it is a secret. `NAME_FILE` reads a variable's value from a file. The effective value of each
//! setting remembers where it came from, for `gaia config show`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gaia_core::policy::Policy;
use gaia_core::store::{SqliteSync, StoreOptions};
use gaia_core::time::parse_duration;

use crate::envfile;

/// The env file loaded when present and none is named.
pub const DEFAULT_ENV_FILE: &str = ".tmp/telegram.env";
/// The config file read when present and none is named.
pub const DEFAULT_CONFIG_FILE: &str = "gaia.toml";
/// The database when none is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://.gaia/gaia.db";

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

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    values: BTreeMap<&'static str, (String, Source)>,
    pub database_url: String,
    pub store: StoreOptionsConfig,
    pub ndjson_path: Option<PathBuf>,
    pub default_ttl: Duration,
    pub warnings: Vec<String>,
    /// Remote mode: the server URL and token.
    pub remote: Option<(String, String)>,
    /// The `[policy]` rules of gaia.toml.
    pub policy: Policy,
}

/// The store settings, as [`StoreOptions`] wants them.
#[derive(Debug, Clone)]
pub struct StoreOptionsConfig {
    pub lock_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_connections: u32,
    pub sqlite_synchronous: SqliteSync,
}

impl Config {
    /// Loads every layer. `env` is the process environment (passed in, so tests need not
    /// touch the real one).
    pub fn load(ov: &Overrides, env: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut values: BTreeMap<&'static str, (String, Source)> = BTreeMap::new();
        for k in KEYS {
            if let Some(d) = k.default {
                values.insert(k.name, (d.to_owned(), Source::Default));
            }
        }

        // gaia.toml
        let named = ov
            .config
            .clone()
            .or_else(|| env.get("GAIA_CONFIG").map(PathBuf::from));
        let config_path = match named {
            Some(p) => Some(p),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        let mut policy = None;
        if let Some(path) = &config_path {
            let (settings, p) = read_toml(path)?;
            policy = p;
            for (name, value) in settings {
                let key = KEYS
                    .iter()
                    .find(|k| k.name == name)
                    .ok_or_else(|| format!("{}: unknown setting '{name}'", path.display()))?;
                values.insert(key.name, (value, Source::ConfigFile(path.clone())));
            }
        }

        // The env file, then the process environment: the environment wins.
        let named = ov
            .env_file
            .clone()
            .or_else(|| env.get("GAIA_ENV_FILE").map(PathBuf::from));
        let env_file = match named {
            Some(p) => Some((envfile::load(&p)?, p)),
            None => {
                let p = PathBuf::from(DEFAULT_ENV_FILE);
                if p.exists() {
                    Some((envfile::load(&p)?, p))
                } else {
                    None
                }
            }
        };
        if let Some((file_env, path)) = &env_file {
            apply_env(&mut values, file_env, |var| {
                Source::EnvFile(path.clone(), var.to_owned())
            })?;
        }
        apply_env(&mut values, env, |var| Source::Env(var.to_owned()))?;

        if let Some(db) = &ov.db {
            values.insert("database.url", (db.clone(), Source::Flag("--db")));
        }

        let mut warnings = Vec::new();
        for var in env.keys().filter(|v| v.starts_with("GAIA_")) {
            let base = var.strip_suffix("_FILE").unwrap_or(var);
            let known = KEYS.iter().any(|k| k.env.contains(&base))
                || OTHER_GAIA_VARS.contains(&var.as_str());
            if !known {
                warnings.push(format!("unknown environment variable {var} is ignored"));
            }
        }
        let mut config = Self::build(values, warnings)?;
        config.policy = policy.unwrap_or_default();
        let url = ov
            .url
            .clone()
            .or_else(|| env.get("GAIA_URL").cloned())
            .filter(|u| !u.is_empty());
        let token = ov
            .token
            .clone()
            .or_else(|| env.get("GAIA_TOKEN").cloned())
            .unwrap_or_default();
        config.remote = url.map(|u| (u, token));
        Ok(config)
    }

    fn build(
        values: BTreeMap<&'static str, (String, Source)>,
        warnings: Vec<String>,
    ) -> Result<Self, String> {
        let get = |name: &str| values.get(name).map(|(v, _)| v.as_str());
        let invalid = |name: &str, why: String| {
            let source = values
                .get(name)
                .map(|(_, s)| s.to_string())
                .unwrap_or_default();
            format!("invalid {name} (from {source}): {why}")
        };
        let duration = |name: &str| -> Result<Duration, String> {
            parse_duration(get(name).unwrap_or_default()).map_err(|e| invalid(name, e.to_string()))
        };
        let number = |name: &str| -> Result<u32, String> {
            get(name)
                .unwrap_or_default()
                .trim()
                .parse::<u32>()
                .map_err(|_| invalid(name, "expected a whole number".into()))
        };
        let database_url = get("database.url")
            .unwrap_or(DEFAULT_DATABASE_URL)
            .to_owned();
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                "use sqlite://PATH or postgres://USER@HOST/DATABASE".into(),
            ));
        }
        let max_connections = number("database.max_connections")?;
        if !(1..=1000).contains(&max_connections) {
            return Err(invalid(
                "database.max_connections",
                "must be 1 to 1000".into(),
            ));
        }
        let store = StoreOptionsConfig {
            lock_timeout: duration("database.lock_timeout")?,
            connect_timeout: duration("database.connect_timeout")?,
            max_connections,
            sqlite_synchronous: get("database.sqlite_synchronous")
                .unwrap_or("normal")
                .parse()
                .map_err(|e: gaia_core::ValidationError| {
                    invalid("database.sqlite_synchronous", e.0)
                })?,
        };
        let default_ttl = duration("claims.default_ttl")?;
        duration("outbox.retry_base_delay")?;
        duration("outbox.lease")?;
        parse_bool(get("execution.allow").unwrap_or("false"))
            .ok_or_else(|| invalid("execution.allow", "use 1/0, true/false, yes/no".into()))?;
        for name in [
            "auto_requeue.max_retries",
            "auto_requeue.max_age_hours",
            "auto_requeue.max_per_run",
        ] {
            number(name)?;
        }
        if let Some(ids) = get("telegram.approver_ids") {
            for id in ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                id.parse::<i64>().map_err(|_| {
                    invalid(
                        "telegram.approver_ids",
                        format!("'{id}' is not a numeric Telegram user id"),
                    )
                })?;
            }
        }
        if let Some(every) = get("auto_requeue.every").filter(|v| *v != "off") {
            parse_duration(every).map_err(|e| invalid("auto_requeue.every", e.to_string()))?;
        }
        if let Some(list) = get("alerts.thresholds") {
            for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                t.parse::<gaia_core::metrics::Threshold>()
                    .map_err(|e| invalid("alerts.thresholds", e.0))?;
            }
        }
        parse_bool(get("execution.continue_on_approve").unwrap_or("false")).ok_or_else(|| {
            invalid(
                "execution.continue_on_approve",
                "use 1/0, true/false, yes/no".into(),
            )
        })?;
        let ndjson_path = get("events.ndjson_path")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        Ok(Self {
            values,
            database_url,
            store,
            ndjson_path,
            default_ttl,
            warnings,
            remote: None,
            policy: Policy::default(),
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
            .filter_map(|k| self.values.get(k.name).map(|(v, _)| v.clone()))
            .chain(self.remote.as_ref().map(|(_, token)| token.clone()))
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// Whether approved commands may really run (`ALLOW_COMMAND_EXECUTION=1`).
    pub fn execution_allowed(&self) -> bool {
        self.value("execution.allow")
            .and_then(parse_bool)
            .unwrap_or(false)
    }

    /// The automatic requeue policy (`AUTO_REQUEUE_*`).
    pub fn auto_requeue(&self) -> gaia_core::outbox::AutoRequeuePolicy {
        let n = |name: &str, default: u32| {
            self.values
                .get(name)
                .and_then(|(v, _)| v.trim().parse::<u32>().ok())
                .unwrap_or(default)
        };
        gaia_core::outbox::AutoRequeuePolicy {
            max_retries: n("auto_requeue.max_retries", 3),
            max_age: std::time::Duration::from_secs(
                u64::from(n("auto_requeue.max_age_hours", 72)) * 3600,
            ),
            max_per_run: n("auto_requeue.max_per_run", 10),
        }
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(|(v, _)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The Telegram bot token, when configured.
    pub fn telegram_token(&self) -> Option<&str> {
        self.value("telegram.bot_token")
    }

    pub fn telegram_api_url(&self) -> &str {
        self.value("telegram.api_url")
            .unwrap_or("https://api.telegram.org")
    }

    /// Telegram user ids allowed to decide (validated when the configuration loads).
    pub fn approver_ids(&self) -> Vec<i64> {
        self.value("telegram.approver_ids")
            .map(|ids| {
                ids.split(',')
                    .filter_map(|id| id.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How often the server runs the automatic requeue; `None` when "off".
    pub fn auto_requeue_every(&self) -> Option<std::time::Duration> {
        self.value("auto_requeue.every")
            .filter(|v| *v != "off")
            .and_then(|v| parse_duration(v).ok())
    }

    /// How the outbox worker retries and leases (`outbox.retry_base_delay`, `outbox.lease`,
    /// validated when the configuration loads).
    pub fn outbox_senders(&self, senders: &mut gaia_server::senders::Senders) {
        if let Some(d) = self
            .value("outbox.retry_base_delay")
            .and_then(|v| parse_duration(v).ok())
        {
            senders.retry.base_delay = d;
        }
        if let Some(d) = self
            .value("outbox.lease")
            .and_then(|v| parse_duration(v).ok())
        {
            senders.lease = d;
        }
    }

    /// The alert thresholds (validated when the configuration loads).
    pub fn thresholds(&self) -> Vec<gaia_core::metrics::Threshold> {
        self.value("alerts.thresholds")
            .map(|t| t.split(',').filter_map(|x| x.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    pub fn webhook_secret(&self) -> Option<&str> {
        self.value("webhook.secret")
    }

    /// Where approvals and decisions are announced: the Telegram chat when Telegram is
    /// configured, else the console; plus the webhook when one is set.
    pub fn notify_targets(&self) -> Vec<gaia_core::outbox::Target> {
        use gaia_core::outbox::{Channel, Target};
        let mut targets = Vec::new();
        match (self.telegram_token(), self.value("telegram.notify_chat")) {
            (Some(_), Some(chat)) => targets.push(Target {
                channel: Channel::Telegram,
                target: chat.trim().to_owned(),
            }),
            _ => targets.push(Target {
                channel: Channel::Console,
                target: "console".into(),
            }),
        }
        if let Some(url) = self.value("webhook.url") {
            targets.push(Target {
                channel: Channel::Webhook,
                target: url.to_owned(),
            });
        }
        targets
    }

    /// Whether the server runs approved argv commands itself.
    pub fn continue_on_approve(&self) -> bool {
        self.value("execution.continue_on_approve")
            .and_then(parse_bool)
            .unwrap_or(false)
    }

    /// The admin token from configuration (`MONITOR_ADMIN_TOKEN`), if set.
    pub fn admin_token(&self) -> Option<&str> {
        self.value("admin.token")
    }

    /// Every setting with its effective value (secrets redacted), its source and its help.
    pub fn show(&self) -> Vec<ShownSetting> {
        KEYS.iter()
            .map(|k| {
                let (value, source) = match self.values.get(k.name) {
                    Some((v, s)) => (Some(v.clone()), s.to_string()),
                    None => (None, "unset".to_owned()),
                };
                let value = match value {
                    Some(v) if k.secret && !v.is_empty() => Some("[redacted]".to_owned()),
                    Some(v) if k.name == "database.url" => {
                        Some(gaia_store_postgres::redact_url(&v))
                    }
                    other => other,
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

/// One row of `gaia config show`.
#[derive(Debug, serde::Serialize)]
pub struct ShownSetting {
    pub name: &'static str,
    pub value: Option<String>,
    pub source: String,
    pub env: &'static [&'static str],
    pub help: &'static str,
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Applies environment-style variables: for each setting, the first of its variables that is
/// set wins; `VAR_FILE` reads the value from a file.
fn apply_env(
    values: &mut BTreeMap<&'static str, (String, Source)>,
    vars: &BTreeMap<String, String>,
    source: impl Fn(&str) -> Source,
) -> Result<(), String> {
    for k in KEYS {
        for var in k.env {
            if let Some(v) = vars.get(*var) {
                values.insert(k.name, (v.clone(), source(var)));
                break;
            }
            let file_var = format!("{var}_FILE");
            if let Some(path) = vars.get(&file_var) {
                let v = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {file_var} ({path}): {e}"))?;
                values.insert(
                    k.name,
                    (
                        v.trim_end_matches(['\n', '\r']).to_owned(),
                        source(&file_var),
                    ),
                );
                break;
            }
        }
    }
    Ok(())
}

/// Dotted setting names with their values as text.
type Settings = Vec<(String, String)>;

/// Flattens a TOML file into dotted names with string values, except the `[policy]` table,
/// which is returned parsed.
fn read_toml(path: &Path) -> Result<(Settings, Option<Policy>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("{}: {}", path.display(), e.message()))?;
    let policy = match table.remove("policy") {
        Some(v) => {
            let p: Policy = v.try_into().map_err(|e: toml::de::Error| {
                format!("{}: [policy]: {}", path.display(), e.message())
            })?;
            p.validate()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Some(p)
        }
        None => None,
    };
    let mut out = Vec::new();
    flatten("", &toml::Value::Table(table), &mut out, path)?;
    Ok((out, policy))
}

fn flatten(
    prefix: &str,
    v: &toml::Value,
    out: &mut Vec<(String, String)>,
    path: &Path,
) -> Result<(), String> {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out, path)?;
            }
        }
        toml::Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        toml::Value::Integer(i) => out.push((prefix.to_owned(), i.to_string())),
        toml::Value::Boolean(b) => out.push((prefix.to_owned(), b.to_string())),
        toml::Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push((prefix.to_owned(), parts.join(",")));
        }
        other => {
            return Err(format!(
                "{}: unsupported value for '{prefix}': {other}",
                path.display()
            ));
        }
    }
    Ok(())
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
        let (v, s) = &c.values[name];
        (v.as_str(), s.to_string())
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
    fn bad_values_name_setting_and_source() {
        let cases = [
            (
                ("GAIA_LOCK_TIMEOUT", "15x"),
                "invalid database.lock_timeout (from $GAIA_LOCK_TIMEOUT)",
            ),
            (("GAIA_DATABASE_URL", "mysql://x"), "invalid database.url"),
            (
                ("TELEGRAM_APPROVER_IDS", "12,@bob"),
                "'@bob' is not a numeric Telegram user id",
            ),
            (
                ("ALLOW_COMMAND_EXECUTION", "maybe"),
                "invalid execution.allow",
            ),
            (
                ("GAIA_SQLITE_SYNCHRONOUS", "fast"),
                "invalid sqlite synchronous",
            ),
        ];
        for ((var, val), want) in cases {
            let err = Config::load(&Overrides::default(), &env(&[(var, val)])).unwrap_err();
            assert!(err.contains(want), "{var}={val}: {err}");
        }
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
                .contains("unknown setting 'database.urll'")
        );
    }
}
