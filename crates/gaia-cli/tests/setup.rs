//! `gaia setup claude-code` and `gaia setup codex`: merged into existing files without losing
//! the user's entries, a second run changes nothing, `--dry-run` writes nothing and shows the
//! diff, and the hook written answers when Claude Code's documented hook input is piped to it.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::{Value, json};

fn setup(dir: &Path, args: &[&str]) -> String {
    let out = support::gaia()
        .current_dir(dir)
        .env("HOME", dir)
        .arg("setup")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const USER_SETTINGS: &str = r#"{
  "permissions": { "allow": ["Bash(ls:*)"] },
  "hooks": {
    "PreToolUse": [
      { "matcher": "Edit", "hooks": [{ "type": "command", "command": "./lint.sh" }] }
    ]
  },
  "model": "opus"
}
"#;

const USER_MCP: &str = r#"{ "mcpServers": { "docs": { "command": "docs-server" } } }"#;

#[test]
fn claude_code_merges_once_and_keeps_user_entries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join(".claude")).unwrap();
    std::fs::write(d.join(".claude/settings.json"), USER_SETTINGS).unwrap();
    std::fs::write(d.join(".mcp.json"), USER_MCP).unwrap();

    let dry = setup(d, &["claude-code", "--dry-run"]);
    assert!(
        dry.lines()
            .any(|l| l.starts_with('+') && l.contains(r#""matcher": "Bash""#)),
        "{dry}"
    );
    assert!(dry.contains("+++"), "{dry}");
    assert_eq!(
        std::fs::read_to_string(d.join(".claude/settings.json")).unwrap(),
        USER_SETTINGS,
        "--dry-run wrote"
    );

    let first = setup(d, &["claude-code"]);
    assert!(first.contains("updated"), "{first}");
    let settings = read_json(&d.join(".claude/settings.json"));
    assert_eq!(settings["permissions"]["allow"][0], "Bash(ls:*)");
    assert_eq!(settings["model"], "opus");
    let pre = settings["hooks"]["PreToolUse"].as_array().unwrap();
    assert_eq!(pre[0]["matcher"], "Edit", "the user's hook stays first");
    assert_eq!(pre[1]["matcher"], "Bash");
    assert_eq!(pre[1]["hooks"][0]["command"], "gaia hook claude-code");
    let perm = &settings["hooks"]["PermissionRequest"][0];
    assert_eq!(perm["hooks"][0]["command"], "gaia hook claude-code");
    assert!(perm["hooks"][0]["timeout"].as_u64().unwrap() > 50);
    let text = std::fs::read_to_string(d.join(".claude/settings.json")).unwrap();
    let order: Vec<usize> = ["\"permissions\"", "\"hooks\"", "\"model\""]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "keys kept their order"
    );
    let mcp = read_json(&d.join(".mcp.json"));
    assert_eq!(mcp["mcpServers"]["docs"]["command"], "docs-server");
    assert_eq!(
        mcp["mcpServers"]["gaia"],
        json!({ "type": "stdio", "command": "gaia", "args": ["mcp"] })
    );

    let snapshot = |d: &Path| {
        (
            std::fs::read(d.join(".claude/settings.json")).unwrap(),
            std::fs::read(d.join(".mcp.json")).unwrap(),
        )
    };
    let before = snapshot(d);
    let second = setup(d, &["claude-code"]);
    assert_eq!(second.matches("unchanged").count(), 2, "{second}");
    assert_eq!(snapshot(d), before, "the second run changed a file");
}

#[test]
fn claude_code_creates_files_and_refuses_broken_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = setup(d, &["claude-code"]);
    assert_eq!(out.matches("created").count(), 2, "{out}");
    assert!(read_json(&d.join(".mcp.json"))["mcpServers"]["gaia"].is_object());

    std::fs::write(d.join(".mcp.json"), "{ not json").unwrap();
    let out = support::gaia()
        .current_dir(d)
        .args(["setup", "claude-code"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));
    assert_eq!(
        std::fs::read_to_string(d.join(".mcp.json")).unwrap(),
        "{ not json"
    );
}

fn run_hook(dir: &Path, command: &str, input: &Value) -> Output {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_hook_written_answers_claude_codes_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d, &["claude-code", "--command", support::GAIA]);
    let settings = read_json(&d.join(".claude/settings.json"));
    let command = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
        .as_str()
        .unwrap()
        .to_owned();
    // Claude Code's documented PreToolUse input.
    let input = json!({
        "session_id": "abc123",
        "transcript_path": "/home/user/.claude/projects/x/abc123.jsonl",
        "cwd": d,
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": { "command": "ls -la", "description": "List files" },
        "tool_use_id": "toolu_01ABC"
    });
    let out = run_hook(d, &command, &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let decision = &answer["hookSpecificOutput"];
    assert_eq!(decision["hookEventName"], "PreToolUse");
    assert!(
        ["allow", "deny", "ask"].contains(&decision["permissionDecision"].as_str().unwrap()),
        "{answer}"
    );
}

#[test]
fn codex_appends_the_server_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("codex/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let user = "# my settings\nmodel = \"o3\"\n\n[mcp_servers.docs]\ncommand = \"docs\"\n";
    std::fs::write(&config, user).unwrap();
    let path = config.to_str().unwrap();

    let dry = setup(d, &["codex", "--file", path, "--dry-run"]);
    assert!(dry.contains("+[mcp_servers.gaia]"), "{dry}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), user);

    setup(d, &["codex", "--file", path]);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with(user), "the user's file is kept as written");
    let t: toml::Table = toml::from_str(&text).unwrap();
    let gaia = &t["mcp_servers"]["gaia"];
    assert_eq!(gaia["command"].as_str(), Some("gaia"));
    assert!(gaia["tool_timeout_sec"].as_integer().unwrap() > 50);
    let second = setup(d, &["codex", "--file", path]);
    assert!(second.contains("unchanged"), "{second}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);

    // CODEX_HOME is where Codex looks by default.
    let home = d.join("codex-home");
    let out = support::gaia()
        .current_dir(d)
        .env("CODEX_HOME", &home)
        .args(["setup", "codex"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(home.join("config.toml").exists());
}
