//! `gaia hook claude-code` with the payloads Claude Code sends: PreToolUse answers from the
//! policy, PermissionRequest becomes an approval decided from another channel, and every
//! failure (garbage input, unreachable store, bad configuration, no decision) answers without
//! ever allowing.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use gaia_testkit::{TestDb, backend_tests};
use serde_json::{Value, json};

backend_tests!(
    pre_tool_use_answers_from_the_policy,
    permission_request_waits_for_another_channel
);

const POLICY: &str = r#"
[policy]
default = "ask"

[[policy.rules]]
name = "no force push"
action = "deny"
command = "git push *--force*"

[[policy.rules]]
name = "listing"
action = "allow"
program = "ls"
"#;

fn gaia(dir: &Path, db: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut cmd = support::gaia();
    cmd.current_dir(dir);
    if let Some(db) = db {
        cmd.arg("--db").arg(db);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn answer(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn pre_tool_use(command: &str) -> String {
    json!({
        "session_id": "abc123",
        "transcript_path": "/home/user/.claude/projects/x/abc123.jsonl",
        "cwd": "/home/user/project",
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": { "command": command, "description": "run it" },
        "tool_use_id": "toolu_01ABC"
    })
    .to_string()
}

fn permission_request(command: &str) -> String {
    json!({
        "session_id": "abc123",
        "transcript_path": "/home/user/.claude/projects/x/abc123.jsonl",
        "cwd": "/tmp",
        "permission_mode": "default",
        "hook_event_name": "PermissionRequest",
        "tool_name": "Bash",
        "tool_input": { "command": command, "description": "Remove the build directory" }
    })
    .to_string()
}

async fn pre_tool_use_answers_from_the_policy(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gaia.toml"), POLICY).unwrap();
    let cases = [
        ("ls -la", "allow", "listing"),
        ("git push origin main --force", "deny", "no force push"),
        ("ls; rm -rf /", "ask", "chains or substitutes"),
        ("curl http://example.invalid", "ask", "default ask"),
    ];
    for (command, verdict, reason) in cases {
        let a = answer(&gaia(
            dir.path(),
            Some(&db.url),
            &["hook", "claude-code"],
            &pre_tool_use(command),
        ));
        let out = &a["hookSpecificOutput"];
        assert_eq!(out["hookEventName"], "PreToolUse", "{command}");
        assert_eq!(out["permissionDecision"], verdict, "{command}: {a}");
        assert!(
            out["permissionDecisionReason"]
                .as_str()
                .unwrap()
                .contains(reason),
            "{command}: {a}"
        );
    }
    // Each decision is in the log.
    let log = gaia(
        dir.path(),
        Some(&db.url),
        &["events", "export", "--ndjson"],
        "",
    );
    let decided = String::from_utf8_lossy(&log.stdout)
        .lines()
        .filter(|l| l.contains("\"policy.decided\""))
        .count();
    assert_eq!(decided, cases.len());

    // Failures never allow.
    for (input, why) in [
        ("garbage", "not valid JSON"),
        ("", "not valid JSON"),
        ("{\"tool_name\": \"Bash\"}", "no hook_event_name"),
        (
            r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{}}"#,
            "without a command",
        ),
    ] {
        let a = answer(&gaia(
            dir.path(),
            Some(&db.url),
            &["hook", "claude-code"],
            input,
        ));
        assert_eq!(
            a["hookSpecificOutput"]["permissionDecision"], "ask",
            "{input:?}"
        );
        assert!(
            a["hookSpecificOutput"]["permissionDecisionReason"]
                .as_str()
                .unwrap()
                .contains(why),
            "{a}"
        );
    }
    let unreachable = gaia(
        dir.path(),
        Some("postgres://postgres@127.0.0.1:1/none"),
        &["hook", "claude-code"],
        &pre_tool_use("ls"),
    );
    let a = answer(&unreachable);
    assert_eq!(
        a["hookSpecificOutput"]["permissionDecision"], "ask",
        "an allow it cannot record becomes ask"
    );
    std::fs::write(dir.path().join("gaia.toml"), "[policy\nbroken").unwrap();
    let a = answer(&gaia(
        dir.path(),
        Some(&db.url),
        &["hook", "claude-code"],
        &pre_tool_use("ls"),
    ));
    assert_eq!(a["hookSpecificOutput"]["permissionDecision"], "ask");
    // Tools other than Bash: no opinion, Claude Code's own flow decides.
    std::fs::remove_file(dir.path().join("gaia.toml")).unwrap();
    let read = json!({"hook_event_name": "PreToolUse", "tool_name": "Read", "tool_input": {"file_path": "/x"}});
    let out = gaia(
        dir.path(),
        Some(&db.url),
        &["hook", "claude-code"],
        &read.to_string(),
    );
    assert_eq!((out.status.code(), out.stdout.is_empty()), (Some(0), true));
}

/// Starts the hook in the background and returns its handle.
fn spawn_hook(dir: &Path, db: &str, input: String, wait: &str) -> std::thread::JoinHandle<Output> {
    let dir = dir.to_owned();
    let db = db.to_owned();
    let wait = wait.to_owned();
    std::thread::spawn(move || {
        gaia(
            &dir,
            Some(&db),
            &["hook", "claude-code", "--wait", &wait],
            &input,
        )
    })
}

/// Waits for the hook's request to appear and returns its id.
fn pending_id(dir: &Path, db: &str) -> String {
    // A generous bound: on a loaded machine each `gaia` process here takes a while to start.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let out = gaia(
            dir,
            Some(db),
            &["cmd", "list", "--status", "pending", "--json"],
            "",
        );
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(id) = list.get(0).and_then(|r| r["id"].as_str()) {
            return id.to_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the hook never filed its request");
}

async fn permission_request_waits_for_another_channel(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let decide = |verb: &str, reason: &str| {
        let hook = spawn_hook(
            dir.path(),
            &db.url,
            permission_request("rm -rf build"),
            "20s",
        );
        let id = pending_id(dir.path(), &db.url);
        let shown = gaia(
            dir.path(),
            Some(&db.url),
            &["cmd", "show", &id, "--json"],
            "",
        );
        let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
        assert_eq!(shown["reason"], "Remove the build directory");
        assert_eq!(shown["cwd"], "/tmp");
        let out = gaia(
            dir.path(),
            Some(&db.url),
            &["cmd", verb, &id, "--as", "alice", "--reason", reason],
            "",
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        answer(&hook.join().unwrap())
    };
    let a = decide("approve", "fine");
    assert_eq!(
        a["hookSpecificOutput"]["hookEventName"],
        "PermissionRequest"
    );
    assert_eq!(
        a["hookSpecificOutput"]["decision"]["behavior"], "allow",
        "{a}"
    );
    assert!(
        a["hookSpecificOutput"]["decision"]["message"]
            .as_str()
            .unwrap()
            .contains("alice")
    );
    let a = decide("deny", "not on main");
    assert_eq!(a["hookSpecificOutput"]["decision"]["behavior"], "deny");
    assert!(
        a["hookSpecificOutput"]["decision"]["message"]
            .as_str()
            .unwrap()
            .contains("not on main"),
        "{a}"
    );

    // Nobody decides: deny, and the request is withdrawn.
    let a = answer(&gaia(
        dir.path(),
        Some(&db.url),
        &["hook", "claude-code", "--wait", "1s"],
        &permission_request("sleep 1"),
    ));
    assert_eq!(a["hookSpecificOutput"]["decision"]["behavior"], "deny");
    assert!(
        a["hookSpecificOutput"]["decision"]["message"]
            .as_str()
            .unwrap()
            .contains("no decision"),
        "{a}"
    );
    let pending = gaia(
        dir.path(),
        Some(&db.url),
        &["cmd", "list", "--status", "pending", "--json"],
        "",
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&pending.stdout).unwrap(),
        json!([])
    );

    // Gaia unreachable: deny with the reason.
    let a = answer(&gaia(
        dir.path(),
        Some("postgres://postgres@127.0.0.1:1/none"),
        &["hook", "claude-code", "--wait", "1s"],
        &permission_request("ls"),
    ));
    assert_eq!(a["hookSpecificOutput"]["decision"]["behavior"], "deny");
    assert!(
        a["hookSpecificOutput"]["decision"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be reached")
    );
}
