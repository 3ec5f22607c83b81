//! Claude Code: the hook for both permission events in `.claude/settings.json`, and the MCP
//! server in `.mcp.json`, both in the project directory.

use std::path::Path;

use serde_json::json;

use super::json::Json;
use super::{Change, read};
use crate::exit::CliError;

/// Seconds Claude Code gives the PermissionRequest hook: more than the hook's own 50 s wait.
const PERMISSION_TIMEOUT_S: u64 = 60;

/// The changes that register Gaia in the project at `dir`, running `command` (`gaia`).
pub fn plan(dir: &Path, command: &str) -> Result<Vec<Change>, CliError> {
    let settings = dir.join(".claude").join("settings.json");
    let mcp = dir.join(".mcp.json");
    Ok(vec![
        merged(&settings, |doc| add_hooks(doc, command))?,
        merged(&mcp, |doc| add_server(doc, command))?,
    ])
}

/// Reads a JSON object file (an absent file is `{}`), merges, and renders it.
fn merged(
    path: &Path,
    merge: impl FnOnce(&mut Json) -> Result<(), String>,
) -> Result<Change, CliError> {
    let old = read(path)?;
    let mut doc = match old.as_deref() {
        None => Json::object(),
        Some(text) if text.trim().is_empty() => Json::object(),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            CliError::bad_input(format!(
                "{} is not valid JSON ({e}); fix it first",
                path.display()
            ))
        })?,
    };
    merge(&mut doc).map_err(|e| CliError::bad_input(format!("{}: {e}", path.display())))?;
    let mut new = serde_json::to_string_pretty(&doc).unwrap_or_default();
    new.push('\n');
    // A file whose content already holds everything keeps its own formatting.
    let new = match &old {
        Some(o) => {
            let before: Result<Json, _> = serde_json::from_str(o);
            if before.is_ok_and(|b| b == doc) {
                o.clone()
            } else {
                new
            }
        }
        None => new,
    };
    Ok(Change {
        path: path.to_owned(),
        old,
        new,
    })
}

/// The hook command line.
fn hook_command(command: &str) -> String {
    format!("{command} hook claude-code")
}

/// Adds Gaia's hook to PreToolUse (Bash calls, where the policy answers) and to
/// PermissionRequest (every tool), unless a hook running `gaia hook claude-code` is there.
fn add_hooks(doc: &mut Json, command: &str) -> Result<(), String> {
    let hook = hook_command(command);
    let hooks = doc
        .entry("hooks", Json::object())
        .ok_or("the file is not a JSON object")?;
    for (event, matcher, timeout) in [
        ("PreToolUse", "Bash", None),
        ("PermissionRequest", "*", Some(PERMISSION_TIMEOUT_S)),
    ] {
        let list = hooks
            .entry(event, Json::Array(vec![]))
            .ok_or("\"hooks\" is not an object")?;
        let Json::Array(groups) = list else {
            return Err(format!("hooks.{event} is not an array"));
        };
        let present = groups.iter().any(|g| {
            g.get("hooks").and_then(Json::as_array).is_some_and(|hs| {
                hs.iter().any(|h| {
                    h.get("command")
                        .and_then(Json::as_str)
                        .is_some_and(|c| c.contains("hook claude-code"))
                })
            })
        });
        if present {
            continue;
        }
        let mut entry = json!({ "type": "command", "command": hook });
        if let Some(t) = timeout {
            entry["timeout"] = json!(t);
        }
        groups.push(Json::from(json!({ "matcher": matcher, "hooks": [entry] })));
    }
    Ok(())
}

/// Adds the `gaia` MCP server (stdio, `gaia mcp`) unless one by that name is there.
fn add_server(doc: &mut Json, command: &str) -> Result<(), String> {
    let servers = doc
        .entry("mcpServers", Json::object())
        .ok_or("the file is not a JSON object")?;
    if !matches!(servers, Json::Object(_)) {
        return Err("\"mcpServers\" is not an object".into());
    }
    if servers.get("gaia").is_none() {
        servers.entry(
            "gaia",
            Json::from(json!({ "type": "stdio", "command": command, "args": ["mcp"] })),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn merge(text: &str) -> String {
        let mut doc: Json = serde_json::from_str(text).unwrap();
        add_hooks(&mut doc, "gaia").unwrap();
        add_server(&mut doc, "gaia").unwrap();
        serde_json::to_string(&doc).unwrap()
    }

    #[test]
    fn adds_once_and_keeps_what_is_there() {
        let user = r#"{"permissions":{"allow":["Bash(ls)"]},"hooks":{"PreToolUse":[{"matcher":"Edit","hooks":[{"type":"command","command":"lint"}]}]}}"#;
        let once = merge(user);
        assert!(once.starts_with(
            r#"{"permissions":{"allow":["Bash(ls)"]},"hooks":{"PreToolUse":[{"matcher":"Edit""#
        ));
        assert!(once.contains(r#""command":"gaia hook claude-code""#));
        assert_eq!(merge(&once), once);
    }

    #[test]
    fn refuses_shapes_it_cannot_merge_into() {
        let mut doc: Json = serde_json::from_str(r#"{"hooks":[]}"#).unwrap();
        assert!(add_hooks(&mut doc, "gaia").is_err());
        let mut doc: Json = serde_json::from_str("[]").unwrap();
        assert!(add_server(&mut doc, "gaia").is_err());
    }
}
