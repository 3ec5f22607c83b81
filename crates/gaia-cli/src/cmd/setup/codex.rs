//! Codex: the MCP server in Codex's `config.toml` (`$CODEX_HOME/config.toml`, by default
//! `~/.codex/config.toml`), appended as a table of its own so that the rest of the file, with
//! its comments, stays as it was.

use std::path::{Path, PathBuf};

use super::{Change, read};
use crate::exit::CliError;

/// Codex's per-call limit for Gaia's tools: approval_request waits up to 50 s for a decision.
pub const TOOL_TIMEOUT_S: u64 = 120;

/// Where Codex reads its configuration: `--file`, else `$CODEX_HOME/config.toml`, else
/// `~/.codex/config.toml`.
pub fn config_path(given: Option<PathBuf>) -> Result<PathBuf, CliError> {
    if let Some(p) = given {
        return Ok(p);
    }
    if let Some(home) = std::env::var_os("CODEX_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home).join("config.toml"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".codex").join("config.toml"))
        .ok_or_else(|| CliError::bad_input("neither CODEX_HOME nor HOME is set; pass --file"))
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The change that adds `[mcp_servers.gaia]` to the file at `path`, unless it is there.
pub fn plan(path: &Path, command: &str) -> Result<Vec<Change>, CliError> {
    let old = read(path)?;
    let text = old.clone().unwrap_or_default();
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        CliError::bad_input(format!(
            "{} is not valid TOML ({e}); fix it first",
            path.display()
        ))
    })?;
    let present = table
        .get("mcp_servers")
        .and_then(|s| s.get("gaia"))
        .is_some();
    let new = if present {
        text
    } else {
        let mut new = text;
        if !new.is_empty() && !new.ends_with('\n') {
            new.push('\n');
        }
        if !new.is_empty() {
            new.push('\n');
        }
        new.push_str(&format!(
            "[mcp_servers.gaia]\ncommand = {}\nargs = [\"mcp\"]\ntool_timeout_sec = {TOOL_TIMEOUT_S}\n",
            quoted(command)
        ));
        // What was appended must read back as the server Codex expects.
        let check: toml::Table = toml::from_str(&new)
            .map_err(|e| CliError::bad_input(format!("{}: {e}", path.display())))?;
        if check
            .get("mcp_servers")
            .and_then(|s| s.get("gaia"))
            .is_none()
        {
            return Err(CliError::bad_input(format!(
                "{}: the gaia server could not be added",
                path.display()
            )));
        }
        new
    };
    Ok(vec![Change {
        path: path.to_owned(),
        old,
        new,
    }])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn appends_once_and_keeps_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "# mine\nmodel = \"o3\"\n").unwrap();
        let c = plan(&path, "gaia").unwrap().remove(0);
        assert!(
            c.new
                .starts_with("# mine\nmodel = \"o3\"\n\n[mcp_servers.gaia]\n")
        );
        assert!(c.new.contains("tool_timeout_sec = 120"));
        std::fs::write(&path, &c.new).unwrap();
        let again = plan(&path, "gaia").unwrap().remove(0);
        assert_eq!(again.new, c.new);
    }

    #[test]
    fn a_table_already_holding_mcp_servers_gets_gaia_beside_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[mcp_servers.other]\ncommand = \"x\"\n").unwrap();
        let c = plan(&path, "/opt/gaia").unwrap().remove(0);
        let t: toml::Table = toml::from_str(&c.new).unwrap();
        assert_eq!(
            t["mcp_servers"]["gaia"]["command"].as_str(),
            Some("/opt/gaia")
        );
        assert!(t["mcp_servers"].get("other").is_some());
    }
}
