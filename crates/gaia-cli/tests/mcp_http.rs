//! `/mcp` on `gaia serve`: the token is required and taken from a header only, a missing or
//! foreign `Origin` is refused (and audited) unless configured, GET answers 405, plain requests are answered as JSON and tool calls as
//! an SSE stream carrying progress, and a cancellation posted for a waiting call frees it
//! while its request stays. Refusals change nothing.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use gaia_testkit::TestDb;
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use support::mcp::{audit, backends, cli};

struct Mcp {
    http: Client,
    url: String,
    token: String,
    /// This server's own origin, which every request sends unless a test says otherwise.
    origin: String,
}

impl Mcp {
    /// POSTs `body` with the token, this server's Origin unless `extra` names another, and
    /// `extra`'s headers.
    fn post(&self, body: &Value, extra: &[(&str, &str)]) -> Response {
        let mut req = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .json(body);
        if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("origin")) {
            req = req.header("origin", &self.origin);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.send().unwrap()
    }
}

fn rpc(id: i64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// The `data:` payloads of an SSE body, in order.
fn sse_messages(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect()
}

fn start(db: &TestDb) -> (support::Server, Mcp) {
    start_with(db, &[])
}

fn start_with(db: &TestDb, env: &[(&str, &str)]) -> (support::Server, Mcp) {
    let token = cli(
        db,
        &[
            "token",
            "create",
            "--role",
            "agent",
            "--name",
            "web-agent",
            "--json",
        ],
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut all = vec![
        ("GAIA_MCP_APPROVAL_WAIT", "3s"),
        ("GAIA_MCP_PROGRESS_EVERY", "1s"),
    ];
    all.extend_from_slice(env);
    let server = support::Server::start(db, &all);
    let mcp = Mcp {
        origin: server.url.clone(),
        http: Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        url: format!("{}/mcp", server.url),
        token,
    };
    (server, mcp)
}

/// The newest event's seq.
fn last_seq(db: &TestDb) -> Value {
    let events = cli(db, &["events", "tail", "--limit", "1000", "--json"]);
    events
        .as_array()
        .and_then(|a| a.last())
        .map_or(json!(0), |e| e["seq"].clone())
}

#[test]
fn refusals_change_nothing() {
    for db in backends() {
        refusals_change_nothing_on(&db);
    }
}

fn refusals_change_nothing_on(db: &TestDb) {
    let (_server, mcp) = start(db);
    let acquire = rpc(
        1,
        "tools/call",
        json!({ "name": "claim_acquire", "arguments": { "story": "s1" } }),
    );
    let before = last_seq(db);
    let origin = mcp.origin.as_str();

    let no_token = mcp
        .http
        .post(&mcp.url)
        .header("origin", origin)
        .json(&acquire)
        .send()
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    let query_token = mcp
        .http
        .post(format!("{}?token={}", mcp.url, mcp.token))
        .header("origin", origin)
        .json(&acquire)
        .send()
        .unwrap();
    assert_eq!(query_token.status(), StatusCode::UNAUTHORIZED);
    let bad_token = mcp
        .http
        .post(&mcp.url)
        .header("origin", origin)
        .bearer_auth("nope")
        .json(&acquire)
        .send()
        .unwrap();
    assert_eq!(bad_token.status(), StatusCode::UNAUTHORIZED);
    let audited_before = audit(db).last().map_or(0, |r| r["id"].as_i64().unwrap());
    let no_origin = mcp
        .http
        .post(&mcp.url)
        .bearer_auth(&mcp.token)
        .json(&acquire)
        .send()
        .unwrap();
    assert_eq!(no_origin.status(), StatusCode::FORBIDDEN);
    let problem: Value = no_origin.json().unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("no Origin"),
        "{problem}"
    );
    let foreign = mcp.post(&acquire, &[("origin", "https://evil.example")]);
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    // Another port of the same host is another origin.
    let port = mcp.post(&acquire, &[("origin", "http://127.0.0.1:1")]);
    assert_eq!(port.status(), StatusCode::FORBIDDEN);
    let refused: Vec<Value> = audit(db)
        .into_iter()
        .filter(|r| r["id"].as_i64().unwrap() > audited_before && r["action"] == "mcp.origin")
        .collect();
    assert_eq!(
        refused.len(),
        3,
        "each Origin refusal is audited: {refused:?}"
    );
    assert!(refused.iter().all(|r| r["outcome"] == "forbidden"));
    let origin_of = |r: &Value| {
        serde_json::from_str::<Value>(r["details"].as_str().unwrap()).unwrap()["origin"].clone()
    };
    assert_eq!(origin_of(&refused[0]), Value::Null);
    assert_eq!(origin_of(&refused[1]), "https://evil.example");
    let version = mcp.post(&acquire, &[("mcp-protocol-version", "1999-01-01")]);
    assert_eq!(version.status(), StatusCode::BAD_REQUEST);
    let get = mcp
        .http
        .get(&mcp.url)
        .header("origin", origin)
        .bearer_auth(&mcp.token)
        .send()
        .unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.headers()["allow"], "POST");
    assert!(
        get.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    let junk = mcp
        .http
        .post(&mcp.url)
        .header("origin", origin)
        .bearer_auth(&mcp.token)
        .body("{")
        .send()
        .unwrap();
    assert_eq!(junk.status(), StatusCode::BAD_REQUEST);
    assert_eq!(junk.json::<Value>().unwrap()["error"]["code"], -32700);
    assert_eq!(last_seq(db), before, "no refusal appended an event");
    assert!(
        cli(db, &["claim", "inspect", "s1", "--json"])["outcome"] == "free",
        "no refusal took the claim"
    );

    // The same call, as it should be sent, from this server's own origin.
    let ok = mcp.post(&acquire, &[]);
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let msgs = sse_messages(&ok.text().unwrap());
    let claim = &msgs.last().unwrap()["result"]["structuredContent"];
    assert_eq!(claim["outcome"], "acquired");
    assert_eq!(claim["holder"]["agent"], "web-agent");
}

/// A server reached by a name takes the origins it is configured with; a name that is not
/// configured is refused even when Host and Origin agree (a rebound name looks just so).
#[test]
fn configured_origins_are_accepted() {
    let db = TestDb::sqlite();
    let (_server, mcp) = start_with(
        &db,
        &[(
            "GAIA_MCP_ALLOWED_ORIGINS",
            "https://gaia.example.com, http://ci.example:8080",
        )],
    );
    let ping = rpc(1, "ping", json!({}));
    for origin in ["https://gaia.example.com", "http://ci.example:8080"] {
        let r = mcp.post(&ping, &[("origin", origin)]);
        assert_eq!(r.status(), StatusCode::OK, "{origin}");
    }
    let rebound = mcp.post(
        &ping,
        &[
            ("origin", "http://rebound.example"),
            ("host", "rebound.example"),
        ],
    );
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);

    // A value that is not an origin stops the server at start, naming the setting.
    let out = support::gaia()
        .env("GAIA_MCP_ALLOWED_ORIGINS", "gaia.example.com/path")
        .args(["--db", &db.url, "serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mcp.allowed_origins"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn json_answers_sse_progress_and_cancellation() {
    for db in backends() {
        json_answers_sse_progress_and_cancellation_on(&db);
    }
}

fn json_answers_sse_progress_and_cancellation_on(db: &TestDb) {
    let (_server, mcp) = start(db);
    let init = mcp.post(
        &rpc(
            1,
            "initialize",
            json!({ "protocolVersion": "2025-03-26", "capabilities": {},
                    "clientInfo": { "name": "t", "version": "1" } }),
        ),
        &[],
    );
    assert_eq!(init.status(), StatusCode::OK);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let init: Value = init.json().unwrap();
    assert_eq!(init["result"]["protocolVersion"], "2025-03-26");
    let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    assert_eq!(mcp.post(&note, &[]).status(), StatusCode::ACCEPTED);
    let missing: Value = mcp
        .post(&rpc(2, "prompts/list", json!({})), &[])
        .json()
        .unwrap();
    assert_eq!(missing["error"]["code"], -32601);

    // A waiting call streams progress, then answers pending.
    let call = rpc(
        3,
        "tools/call",
        json!({ "name": "approval_request", "arguments": { "command": "make deploy" },
                "_meta": { "progressToken": 7 } }),
    );
    let msgs = sse_messages(&mcp.post(&call, &[]).text().unwrap());
    let (progress, rest) = msgs.split_at(msgs.len() - 1);
    assert!(!progress.is_empty(), "{msgs:?}");
    assert!(
        progress
            .iter()
            .all(|m| m["method"] == "notifications/progress" && m["params"]["progressToken"] == 7)
    );
    assert_eq!(rest[0]["id"], 3);
    assert_eq!(rest[0]["result"]["structuredContent"]["status"], "pending");

    // A cancellation posted for a waiting call ends its stream early; the request stays.
    let slow = rpc(
        4,
        "tools/call",
        json!({ "name": "approval_request", "arguments": { "command": "sleep 9" } }),
    );
    let started = Instant::now();
    let waiting = {
        let (http, url, token, session, origin) = (
            mcp.http.clone(),
            mcp.url.clone(),
            mcp.token.clone(),
            session.clone(),
            mcp.origin.clone(),
        );
        std::thread::spawn(move || {
            http.post(url)
                .header("origin", origin)
                .bearer_auth(token)
                .header("mcp-session-id", session)
                .json(&slow)
                .send()
                .unwrap()
                .text()
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
                         "params": { "requestId": 4 } });
    let cancelled = mcp.post(&cancel, &[("mcp-session-id", &session)]);
    assert_eq!(cancelled.status(), StatusCode::ACCEPTED);
    let body = waiting.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "the cancelled call still waited"
    );
    assert!(
        sse_messages(&body).iter().all(|m| m.get("id").is_none()),
        "a cancelled call is not answered: {body}"
    );
    let pending = cli(db, &["cmd", "list", "--status", "pending", "--json"]);
    assert!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["display"] == "sleep 9"),
        "the request stays: {pending}"
    );
}
