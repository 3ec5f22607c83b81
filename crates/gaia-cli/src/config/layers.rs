//! Reading the layers: defaults, `gaia.toml`, the env file, the process environment and the
//! command line, merged as text with where each value came from. Parsing the merged text into
//! types is [`super::Config`]'s job; this module only finds values and refuses names it does
//! not know.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gaia_core::policy::Policy;

use super::{
    ConfigError, DEFAULT_CONFIG_FILE, DEFAULT_ENV_FILE, KEYS, OTHER_GAIA_VARS, Overrides, Source,
};
use crate::envfile;

/// One setting's effective text and its source.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: String,
    pub source: Source,
}

/// Every layer merged: the winning text of each setting, the `[policy]` table and warnings.
#[derive(Debug, Default)]
pub struct Layers {
    pub values: BTreeMap<&'static str, Entry>,
    pub policy: Option<Policy>,
    pub warnings: Vec<String>,
}

impl Layers {
    fn set(&mut self, name: &'static str, value: String, source: Source) {
        self.values.insert(name, Entry { value, source });
    }
}

/// Reads every layer, lowest first, so that each one overrides the ones before it.
pub fn collect(ov: &Overrides, env: &BTreeMap<String, String>) -> Result<Layers, ConfigError> {
    let mut layers = Layers::default();
    for k in KEYS {
        if let Some(d) = k.default {
            layers.set(k.name, d.to_owned(), Source::Default);
        }
    }
    if let Some(path) = config_file(ov, env) {
        apply_toml(&mut layers, &path)?;
    }
    if let Some(path) = env_file(ov, env) {
        let vars = envfile::load(&path).map_err(ConfigError::EnvFile)?;
        apply_env(&mut layers, &vars, |var| {
            Source::EnvFile(path.clone(), var.to_owned())
        })?;
    }
    apply_env(&mut layers, env, |var| Source::Env(var.to_owned()))?;
    if let Some(db) = &ov.db {
        layers.set("database.url", db.clone(), Source::Flag("--db"));
    }
    layers.warnings = unknown_vars(env);
    Ok(layers)
}

/// `--config`, else `$GAIA_CONFIG`, else `gaia.toml` when it exists. A named file must exist.
fn config_file(ov: &Overrides, env: &BTreeMap<String, String>) -> Option<PathBuf> {
    ov.config
        .clone()
        .or_else(|| env.get("GAIA_CONFIG").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()))
}

/// `--env-file`, else `$GAIA_ENV_FILE`, else the prototype's file when it exists.
fn env_file(ov: &Overrides, env: &BTreeMap<String, String>) -> Option<PathBuf> {
    ov.env_file
        .clone()
        .or_else(|| env.get("GAIA_ENV_FILE").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from(DEFAULT_ENV_FILE)).filter(|p| p.exists()))
}

/// `GAIA_*` variables that no setting reads: a typo would otherwise go unnoticed.
fn unknown_vars(env: &BTreeMap<String, String>) -> Vec<String> {
    env.keys()
        .filter(|v| v.starts_with("GAIA_"))
        .filter(|var| {
            let base = var.strip_suffix("_FILE").unwrap_or(var);
            !(KEYS.iter().any(|k| k.env.contains(&base)) || OTHER_GAIA_VARS.contains(&var.as_str()))
        })
        .map(|var| format!("unknown environment variable {var} is ignored"))
        .collect()
}

/// Applies environment-style variables: for each setting, the first of its variables that is
/// set wins; `VAR_FILE` reads the value from a file.
fn apply_env(
    layers: &mut Layers,
    vars: &BTreeMap<String, String>,
    source: impl Fn(&str) -> Source,
) -> Result<(), ConfigError> {
    for k in KEYS {
        for var in k.env {
            if let Some(v) = vars.get(*var) {
                layers.set(k.name, v.clone(), source(var));
                break;
            }
            let file_var = format!("{var}_FILE");
            if let Some(path) = vars.get(&file_var) {
                let v = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                    what: file_var.clone(),
                    path: PathBuf::from(path),
                    error,
                })?;
                let v = v.trim_end_matches(['\n', '\r']).to_owned();
                layers.set(k.name, v, source(&file_var));
                break;
            }
        }
    }
    Ok(())
}

/// Reads `gaia.toml`: `[policy]` parsed as a policy, everything else as settings by dotted name.
fn apply_toml(layers: &mut Layers, path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        what: "config file".into(),
        path: path.to_owned(),
        error,
    })?;
    let toml_error = |message: String| ConfigError::Toml {
        path: path.to_owned(),
        message,
    };
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| toml_error(e.message().to_owned()))?;
    if let Some(v) = table.remove("policy") {
        let p: Policy = v
            .try_into()
            .map_err(|e: toml::de::Error| toml_error(format!("[policy]: {}", e.message())))?;
        p.validate().map_err(|e| toml_error(e.to_string()))?;
        layers.policy = Some(p);
    }
    let mut settings = Vec::new();
    flatten("", &toml::Value::Table(table), &mut settings, path)?;
    for (name, value) in settings {
        let key =
            KEYS.iter()
                .find(|k| k.name == name)
                .ok_or_else(|| ConfigError::UnknownSetting {
                    path: path.to_owned(),
                    name,
                })?;
        layers.set(key.name, value, Source::ConfigFile(path.to_owned()));
    }
    Ok(())
}

/// Flattens TOML tables into dotted names with values as text (arrays comma-joined, as the
/// environment variables write lists).
fn flatten(
    prefix: &str,
    v: &toml::Value,
    out: &mut Vec<(String, String)>,
    path: &Path,
) -> Result<(), ConfigError> {
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
            return Err(ConfigError::UnsupportedValue {
                path: path.to_owned(),
                name: prefix.to_owned(),
                value: other.to_string(),
            });
        }
    }
    Ok(())
}
