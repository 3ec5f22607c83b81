//! `gaia mcp` over stdio, driven as a client would: the handshake and its version
//! negotiation, the tool list, every tool called, unknown methods answered with -32601 at
//! once, bad arguments as tool errors that change nothing, and a conflict between agents.

#![allow(clippy::unwrap_used)]

mod support;

use gaia_testkit::{TestDb, backend_tests};
use serde_json::{Value, json};
use support::mcp::Mcp;

backend_tests!(
    every_tool_answers_over_stdio,
    agents_conflict_and_bad_input_changes_nothing
);

fn cli(db: &TestDb, args: &[&str]) -> Value {
    let out = support::gaia()
        .args(["--db", &db.url])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

async fn every_tool_answers_over_stdio(db: &TestDb) {
    cli(db, &["story", "create", "auth", "--title", "Auth"]);
    cli(db, &["todo", "add", "auth", "--title", "Login form"]);
    let mut mcp = Mcp::start(db, "alice");

    let list = mcp.request("tools/list", json!({}));
    let tools = list["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for name in [
        "status",
        "backlog_ready",
        "backlog_followup",
        "claim_acquire",
        "claim_refresh",
        "claim_release",
        "event_append",
        "events_recent",
        "approval_request",
        "approval_wait",
        "approval_decide",
        "permission_prompt",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(tools.len() <= 12, "a small tool set");
    let bytes = serde_json::to_string(&list["result"]).unwrap().len();
    assert!(
        bytes / 4 <= 3000,
        "tools/list is about {} tokens",
        bytes / 4
    );
    for t in tools {
        assert!(t["description"].as_str().unwrap().len() <= 120, "{t}");
        assert_eq!(t["inputSchema"]["type"], "object");
        let read_only =
            ["status", "events_recent", "approval_wait"].contains(&t["name"].as_str().unwrap());
        assert_eq!(t["annotations"]["readOnlyHint"], json!(read_only), "{t}");
    }

    let missing = mcp.request("resources/list", json!({}));
    assert_eq!(missing["error"]["code"], -32601);
    let ping = mcp.request("ping", json!({}));
    assert_eq!(ping["result"], json!({}));

    let (status, err) = mcp.call("status", json!({}));
    assert!(!err);
    assert_eq!(status["caller"], "alice");
    assert_eq!(status["ready_tasks"], 1);

    let (ready, _) = mcp.call("backlog_ready", json!({}));
    assert_eq!(ready["tasks"][0]["title"], "Login form");
    let (took, err) = mcp.call("backlog_ready", json!({ "take": true, "ttl": "10m" }));
    assert!(!err, "{took}");
    assert_eq!(took["taken"], true);
    assert_eq!(took["claim"]["key"], "auth/default");
    let (nothing, _) = mcp.call("backlog_ready", json!({ "take": true }));
    assert_eq!(nothing["taken"], false);

    let (f, err) = mcp.call(
        "backlog_followup",
        json!({ "story": "auth", "path": "doc/auth.alice.1.extra.md", "task": "1",
                "title": "Rate limit logins", "body": "Five tries a minute." }),
    );
    assert!(!err, "{f}");
    assert_eq!(f["outcome"], "added");
    let (again, _) = mcp.call(
        "backlog_followup",
        json!({ "story": "auth", "path": "doc/auth.alice.1.extra.md", "task": "1",
                "title": "Rate limit logins", "body": "Five tries a minute." }),
    );
    assert_eq!(again["outcome"], "unchanged");

    let (acq, _) = mcp.call("claim_acquire", json!({ "story": "billing", "ttl": "5m" }));
    assert_eq!(acq["outcome"], "acquired");
    assert_eq!(acq["holder"]["agent"], "alice");
    let (refr, _) = mcp.call("claim_refresh", json!({ "story": "billing", "ttl": "10m" }));
    assert_eq!(refr["outcome"], "refreshed");
    let (rel, _) = mcp.call("claim_release", json!({ "story": "billing" }));
    assert_eq!(rel["outcome"], "released");

    let (ev, err) = mcp.call(
        "event_append",
        json!({ "type": "chat.message", "subject": "auth", "data": { "text": "hello" } }),
    );
    assert!(!err, "{ev}");
    assert_eq!(ev["event"]["actor"], "alice");
    let seq = ev["event"]["seq"].as_i64().unwrap();
    let (recent, _) = mcp.call("events_recent", json!({ "limit": 3 }));
    let events = recent["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events.last().unwrap()["seq"], seq);
    let (after, _) = mcp.call("events_recent", json!({ "since": seq - 1, "type": "chat" }));
    assert_eq!(after["events"].as_array().unwrap().len(), 1);
    mcp.close();
}

async fn agents_conflict_and_bad_input_changes_nothing(db: &TestDb) {
    let mut alice = Mcp::start(db, "alice");
    let mut bob = Mcp::start(db, "bob");
    let (a, _) = alice.call("claim_acquire", json!({ "story": "s1" }));
    assert_eq!(a["outcome"], "acquired");
    let (b, err) = bob.call("claim_acquire", json!({ "story": "s1" }));
    assert!(!err, "a conflict is an outcome, not an error");
    assert_eq!(b["outcome"], "held_by_other");
    let (r, _) = bob.call("claim_release", json!({ "story": "s1" }));
    assert_eq!(r["outcome"], "not_held");

    let (status, _) = alice.call("status", json!({}));
    let before = status["last_event_seq"].clone();
    for (tool, args) in [
        ("claim_acquire", json!({})),
        ("claim_acquire", json!({ "story": "s2", "ttl": "forever" })),
        ("claim_acquire", json!({ "story": "s2", "colour": "red" })),
        (
            "event_append",
            json!({ "type": "Not A Type", "subject": "x" }),
        ),
        ("events_recent", json!({ "limit": 100000 })),
        ("backlog_ready", json!({ "agent": "x" })),
        ("backlog_followup", json!({ "story": "nope" })),
        ("approval_decide", json!({ "id": "1", "decision": "maybe" })),
        // Operator only: alice is an agent.
        (
            "approval_decide",
            json!({ "id": "1", "decision": "approve" }),
        ),
    ] {
        let (msg, err) = alice.call(tool, args.clone());
        assert!(err, "{tool} {args} should fail: {msg}");
        assert!(!msg.as_str().unwrap().is_empty());
    }
    let mut olga = Mcp::start_with(db, "olga", &["--role", "operator"]);
    for args in [
        json!({ "id": "not an id", "decision": "approve" }),
        json!({ "id": "zzzzzz", "decision": "deny" }),
    ] {
        let (msg, err) = olga.call("approval_decide", args.clone());
        assert!(err, "approval_decide {args} should fail: {msg}");
    }
    olga.close();
    let unknown = alice.request("tools/call", json!({ "name": "rm_rf", "arguments": {} }));
    assert_eq!(unknown["error"]["code"], -32602);
    let (status, _) = alice.call("status", json!({}));
    assert_eq!(
        status["last_event_seq"], before,
        "a refused call appended nothing"
    );
    alice.close();
    bob.close();
}
