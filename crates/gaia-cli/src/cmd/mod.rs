//! One module per command family; each turns parsed arguments into calls on [`gaia_core::Gaia`]
//! and prints the result.

pub mod audit;
pub mod backlog;
pub mod backup;
pub mod claim;
pub mod cleanup;
pub mod command;
pub mod config;
pub mod doctor;
pub mod env_run;
pub mod events;
pub mod followups;
pub mod hook;
pub mod mcp;
pub mod metrics;
pub mod policy;
pub mod queue;
pub mod ready;
pub mod serve;
pub mod setup;
pub mod store_copy;
pub mod story;
pub mod sync;
pub mod todo;
pub mod token;

use std::io::Write;

/// Writes a line to stdout; a closed pipe (`gaia events tail | head`) ends quietly.
pub fn out(line: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(line.as_bytes())?;
    stdout.write_all(b"\n")
}

/// Pretty JSON to stdout.
pub fn out_json(v: &serde_json::Value) -> std::io::Result<()> {
    out(&serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into()))
}

/// Any serializable value as pretty JSON to stdout.
pub fn out_serde<T: serde::Serialize>(v: &T) -> std::io::Result<()> {
    out_json(&serde_json::to_value(v).unwrap_or_default())
}
