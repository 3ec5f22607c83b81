//! The approval tools of `gaia mcp`: a request decided while the call waits (with progress
//! notifications), one decided after the call returned `pending` (then read with
//! `approval_wait`), a cancelled call that frees the session while its request stays, and
//! `permission_prompt` answering Claude Code's way, never allowing without a decision.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use gaia_testkit::{TestDb, backend_tests};
use serde_json::{Value, json};
use support::mcp::{Mcp, cli};

backend_tests!(
    a_decision_reaches_the_waiting_call,
    pending_then_approval_wait,
    cancelling_a_call_keeps_its_request,
    permission_prompt_allows_only_on_approval
);

/// The first pending request's id, waiting (bounded) for it to be filed.
fn pending_id(db: &TestDb) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let list = cli(db, &["cmd", "list", "--status", "pending", "--json"]);
        if let Some(id) = list.get(0).and_then(|r| r["id"].as_str()) {
            return id.to_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no request was filed");
}

fn decide(db: &TestDb, verb: &str, id: &str, reason: &str) {
    cli(db, &["cmd", verb, id, "--as", "olga", "--reason", reason]);
}

fn tool_call(name: &str, arguments: Value, progress: Option<&str>) -> Value {
    let mut p = json!({ "name": name, "arguments": arguments });
    if let Some(token) = progress {
        p["_meta"] = json!({ "progressToken": token });
    }
    p
}

fn structured(r: &Value) -> Value {
    assert_eq!(r["result"]["isError"], false, "{r}");
    r["result"]["structuredContent"].clone()
}

async fn a_decision_reaches_the_waiting_call(db: &TestDb) {
    let mut mcp = Mcp::start_with(
        db,
        "alice",
        &["--approval-wait", "30s", "--progress-every", "1s"],
    );
    let call = tool_call(
        "approval_request",
        json!({ "command": "make deploy", "reason": "ship it" }),
        Some("p1"),
    );
    let id = mcp.start_request("tools/call", call);
    let req = pending_id(db);
    std::thread::sleep(Duration::from_millis(2500));
    decide(db, "approve", &req, "fine");
    let r = mcp.response(id, Duration::from_secs(60)).unwrap();
    let v = structured(&r);
    assert_eq!(v["id"], req.as_str());
    assert_eq!(v["status"], "approved");
    assert_eq!(v["decided_by"], "olga");
    let progress: Vec<&Value> = mcp
        .notifications
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .collect();
    assert!(!progress.is_empty(), "no progress while waiting");
    assert!(
        progress
            .iter()
            .all(|n| n["params"]["progressToken"] == "p1")
    );
    mcp.close();
}

async fn pending_then_approval_wait(db: &TestDb) {
    let mut mcp = Mcp::start_with(db, "alice", &["--approval-wait", "1s"]);
    let r = mcp.request(
        "tools/call",
        tool_call("approval_request", json!({ "argv": ["ls", "-l"] }), None),
    );
    let v = structured(&r);
    assert_eq!(v["status"], "pending");
    let req = v["id"].as_str().unwrap().to_owned();
    assert!(v["next"].as_str().unwrap().contains("approval_wait"));
    assert!(mcp.notifications.is_empty(), "no progress without a token");
    decide(db, "deny", &req, "not today");
    let r = mcp.request(
        "tools/call",
        tool_call("approval_wait", json!({ "id": req }), None),
    );
    let v = structured(&r);
    assert_eq!(v["status"], "denied");
    assert_eq!(v["decision_reason"], "not today");
    let r = mcp.request(
        "tools/call",
        tool_call("approval_wait", json!({ "id": "zzzzzz" }), None),
    );
    assert_eq!(r["result"]["isError"], true, "{r}");
    let r = mcp.request(
        "tools/call",
        tool_call(
            "approval_request",
            json!({ "command": "a", "argv": ["b"] }),
            None,
        ),
    );
    assert_eq!(r["result"]["isError"], true, "{r}");
    mcp.close();
}

async fn cancelling_a_call_keeps_its_request(db: &TestDb) {
    let mut mcp = Mcp::start_with(db, "alice", &["--approval-wait", "50s"]);
    let id = mcp.start_request(
        "tools/call",
        tool_call(
            "approval_request",
            json!({ "command": "sleep 1" }),
            Some("c"),
        ),
    );
    let req = pending_id(db);
    mcp.send(&json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": { "requestId": id, "reason": "user pressed escape" },
    }));
    let started = Instant::now();
    let ping = mcp.request("ping", json!({}));
    assert_eq!(ping["result"], json!({}));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        mcp.response(id, Duration::from_secs(1)).is_none(),
        "a cancelled call is not answered"
    );
    let shown = cli(db, &["cmd", "show", &req, "--json"]);
    assert_eq!(
        shown["status"], "pending",
        "the request stays for whoever decides it"
    );
    // The process ends promptly: nothing is left waiting.
    let started = Instant::now();
    mcp.close();
    assert!(started.elapsed() < Duration::from_secs(20));
}

async fn permission_prompt_allows_only_on_approval(db: &TestDb) {
    let mut mcp = Mcp::start_with(db, "claude", &["--approval-wait", "20s"]);
    let input = json!({ "command": "rm -rf build", "description": "Remove the build directory" });
    let prompt = |input: &Value| {
        tool_call(
            "permission_prompt",
            json!({ "tool_name": "Bash", "input": input, "tool_use_id": "toolu_1" }),
            None,
        )
    };
    let answer = |r: &Value| -> Value {
        assert_eq!(r["result"]["isError"], false, "{r}");
        serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap()
    };

    let id = mcp.start_request("tools/call", prompt(&input));
    let req = pending_id(db);
    let shown = cli(db, &["cmd", "show", &req, "--json"]);
    assert_eq!(shown["reason"], "Remove the build directory");
    decide(db, "approve", &req, "ok");
    let a = answer(&mcp.response(id, Duration::from_secs(60)).unwrap());
    assert_eq!(a["behavior"], "allow", "{a}");
    assert_eq!(a["updatedInput"], input);

    let id = mcp.start_request("tools/call", prompt(&input));
    let req = pending_id(db);
    decide(db, "deny", &req, "not on main");
    let a = answer(&mcp.response(id, Duration::from_secs(60)).unwrap());
    assert_eq!(a["behavior"], "deny");
    assert!(
        a["message"].as_str().unwrap().contains("not on main"),
        "{a}"
    );

    // Bad input: deny, not allow and not a crash.
    let r = mcp.request(
        "tools/call",
        tool_call("permission_prompt", json!({ "input": {} }), None),
    );
    assert_eq!(answer(&r)["behavior"], "deny");
    mcp.close();

    // Nobody decides: deny, and the request is withdrawn.
    let mut mcp = Mcp::start_with(db, "claude", &["--approval-wait", "1s"]);
    let r = mcp.request("tools/call", prompt(&json!({ "command": "sleep 1" })));
    let a = answer(&r);
    assert_eq!(a["behavior"], "deny");
    assert!(
        a["message"].as_str().unwrap().contains("no decision"),
        "{a}"
    );
    let pending = cli(db, &["cmd", "list", "--status", "pending", "--json"]);
    assert_eq!(pending, json!([]));
    mcp.close();
}
