//! End-to-end tests of the REST API over real HTTP, on both backends: roles and credentials,
//! refusal of bad input as problem documents without side effects, the OpenAPI document
//! against the routes actually served, and the health endpoints.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{ADMIN, Server, expect_problem, options};
use gaia_core::commands::{CommandSpec, NewCommand};
use gaia_core::tokens::Role;
use gaia_server::ServerOptions;
use gaia_testkit::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

gaia_testkit::backend_tests!(
    roles_and_credentials,
    bad_input_is_refused_without_effect,
    openapi_lists_every_served_route,
    health_and_readiness,
    schema_and_behaviour_agree,
    waits_answer_their_own_decision,
);

/// The newest audit record's id (0 when there is none).
async fn audit_mark(s: &Server) -> i64 {
    s.gaia()
        .list_audit_tail(1)
        .await
        .unwrap()
        .last()
        .map_or(0, |r| r.id)
}

/// An operator or admin action: (method, documented path, concrete path, body, audited
/// action, role needed).
type Privileged = (
    Method,
    &'static str,
    &'static str,
    Option<Value>,
    &'static str,
    Role,
);

/// Every operator and admin action. Those a build does not serve (per its OpenAPI document)
/// are skipped.
fn privileged_actions() -> Vec<Privileged> {
    let decision = Some(json!({ "reason": "probe" }));
    vec![
        (
            Method::GET,
            "/api/v1/tokens",
            "/api/v1/tokens",
            None,
            "token.list",
            Role::Admin,
        ),
        (
            Method::POST,
            "/api/v1/tokens",
            "/api/v1/tokens",
            Some(json!({ "name": "sneaky", "role": "admin" })),
            "token.create",
            Role::Admin,
        ),
        (
            Method::DELETE,
            "/api/v1/tokens/{name}",
            "/api/v1/tokens/victim",
            None,
            "token.revoke",
            Role::Admin,
        ),
        (
            Method::POST,
            "/api/v1/commands/{id}/approve",
            "/api/v1/commands/c-probe/approve",
            decision.clone(),
            "command.approve",
            Role::Operator,
        ),
        (
            Method::POST,
            "/api/v1/commands/{id}/deny",
            "/api/v1/commands/c-probe/deny",
            decision,
            "command.deny",
            Role::Operator,
        ),
        (
            Method::POST,
            "/api/v1/commands/{id}/allow-test",
            "/api/v1/commands/c-probe/allow-test",
            None,
            "command.allow_test",
            Role::Operator,
        ),
        (
            Method::POST,
            "/api/v1/commands/{id}/execute",
            "/api/v1/commands/c-probe/execute",
            Some(json!({ "execute": false })),
            "command.execute",
            Role::Operator,
        ),
    ]
}

/// Lower roles get 403 problems for every admin action, each refusal audited; bad, missing and
/// revoked tokens get 401; the admin token works in all three places it may be presented.
async fn roles_and_credentials(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let (_, agent) = s
        .gaia()
        .create_token("agent-1", Role::Agent, "test")
        .await
        .unwrap();
    let (_, operator) = s
        .gaia()
        .create_token("operator-1", Role::Operator, "test")
        .await
        .unwrap();
    let (_, victim) = s
        .gaia()
        .create_token("victim", Role::Agent, "test")
        .await
        .unwrap();
    let head = s.head().await;
    let tokens_before = s.get_json("/api/v1/tokens").await;

    // Every operator or admin action that the server documents is refused to lower roles.
    let doc = s.get_json("/api/v1/openapi.json").await;
    let mut checked = 0;
    for (method, template, path, body, action, needed) in privileged_actions() {
        let m = method.as_str().to_ascii_lowercase();
        if doc["paths"][template][&m].is_null() {
            println!("roles: {method} {template} is not served by this build; not checked");
            continue;
        }
        let lower = [
            ("agent-1", &agent, Role::Agent),
            ("operator-1", &operator, Role::Operator),
        ];
        for (who, secret, role) in lower.into_iter().filter(|(_, _, r)| !r.allows(needed)) {
            let mark = audit_mark(&s).await;
            let mut req = s.anon(method.clone(), path).bearer_auth(secret);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let what = format!("{who} ({role}): {method} {path}");
            let problem = expect_problem(req.send().await.unwrap(), 403, &what).await;
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains(needed.as_str()),
                "{what}: {problem}"
            );
            let refusals: Vec<_> = s
                .gaia()
                .list_audit_tail(10)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.id > mark)
                .collect();
            assert!(
                refusals
                    .iter()
                    .any(|r| r.actor == who && r.action == action && r.outcome == "forbidden"),
                "{what}: no forbidden audit record in {refusals:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} refusals checked");
    assert_eq!(s.head().await, head, "refused calls emitted no events");
    assert_eq!(
        s.get_json("/api/v1/tokens").await,
        tokens_before,
        "refused calls changed no token"
    );

    // What an agent may do, it can.
    let res = s
        .anon(Method::POST, "/api/v1/events")
        .bearer_auth(&agent)
        .json(&json!({ "type": "chat.message", "data": { "text": "hi" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let e: Value = res.json().await.unwrap();
    assert_eq!(e["actor"], "agent-1");
    let res = s
        .anon(Method::POST, "/api/v1/claims/acquire")
        .bearer_auth(&agent)
        .json(&json!({ "story": "roles" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Revoke the victim's token as admin; it stops working at once.
    let res = s
        .admin(Method::DELETE, "/api/v1/tokens/victim")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    let unauthorized: [(&str, Option<&str>); 4] = [
        ("wrong token", Some("not-a-real-token")),
        ("empty token", Some("")),
        ("no token", None),
        ("revoked token", Some(victim.as_str())),
    ];
    for (what, token) in unauthorized {
        for path in [
            "/api/v1/events/head",
            "/api/v1/tokens",
            "/api/v1/events/stream",
        ] {
            let mut req = s.anon(Method::GET, path);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let res = req.send().await.unwrap();
            assert_eq!(
                res.headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok()),
                Some("Bearer"),
                "{what}: {path}"
            );
            expect_problem(res, 401, &format!("{what}: GET {path}")).await;
        }
    }
    let tail = s.gaia().list_audit_tail(50).await.unwrap();
    assert!(
        tail.iter()
            .any(|r| r.outcome == "unauthorized" && r.action == "auth"),
        "bad tokens are audited: {tail:?}"
    );

    // The admin token in each place it may be presented.
    let places = [
        (
            "Authorization: Bearer",
            s.anon(Method::GET, "/api/v1/tokens").bearer_auth(ADMIN),
        ),
        (
            "X-Admin-Token",
            s.anon(Method::GET, "/api/v1/tokens")
                .header("X-Admin-Token", ADMIN),
        ),
        (
            "?token=",
            s.anon(Method::GET, &format!("/api/v1/tokens?token={ADMIN}")),
        ),
    ];
    for (place, req) in places {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "admin token via {place}");
        let list: Value = res.json().await.unwrap();
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "victim"),
            "{place}: {list}"
        );
    }
    s.stop().await;
}

/// One bad request: what it is, how to send it, the status it must get.
struct Bad {
    what: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    headers: Vec<(&'static str, &'static str)>,
    status: u16,
}

fn get(what: &'static str, path: &str, status: u16) -> Bad {
    Bad {
        what,
        method: Method::GET,
        path: path.to_owned(),
        content_type: None,
        body: None,
        headers: vec![],
        status,
    }
}

fn post(what: &'static str, path: &str, body: &Value, status: u16) -> Bad {
    Bad {
        what,
        method: Method::POST,
        path: path.to_owned(),
        content_type: Some("application/json"),
        body: Some(body.to_string().into_bytes()),
        headers: vec![],
        status,
    }
}

fn post_raw(
    what: &'static str,
    path: &str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
) -> Bad {
    Bad {
        what,
        method: Method::POST,
        path: path.to_owned(),
        content_type,
        body: Some(body),
        headers: vec![],
        status,
    }
}

fn stream_with_last_id(what: &'static str, id: &'static str) -> Bad {
    Bad {
        headers: vec![("Last-Event-ID", id)],
        ..get(what, "/api/v1/events/stream", 400)
    }
}

fn bad_requests() -> Vec<Bad> {
    const EVENTS: &str = "/api/v1/events";
    const ACQUIRE: &str = "/api/v1/claims/acquire";
    const REFRESH: &str = "/api/v1/claims/refresh";
    const TOKENS: &str = "/api/v1/tokens";
    let over_64k = "B".repeat(70 * 1024);
    let long_name = "n".repeat(129);
    vec![
        // Bodies.
        post_raw(
            "malformed JSON",
            EVENTS,
            Some("application/json"),
            br#"{"type": "a.b","#.to_vec(),
            400,
        ),
        post_raw(
            "not UTF-8",
            EVENTS,
            Some("application/json"),
            b"{\"type\": \"a.\xff\"}".to_vec(),
            400,
        ),
        post_raw(
            "wrong content type",
            EVENTS,
            Some("text/plain"),
            br#"{"type":"a.b"}"#.to_vec(),
            415,
        ),
        post_raw(
            "no content type",
            EVENTS,
            None,
            br#"{"type":"a.b"}"#.to_vec(),
            415,
        ),
        post("JSON array body", EVENTS, &json!([]), 422),
        post("wrong JSON type", EVENTS, &json!({ "type": 5 }), 422),
        post(
            "unknown field (event)",
            EVENTS,
            &json!({ "type": "a.b", "colour": "red" }),
            422,
        ),
        post(
            "unknown field (claim)",
            ACQUIRE,
            &json!({ "story": "s", "colour": 1 }),
            422,
        ),
        post(
            "unknown field (token)",
            TOKENS,
            &json!({ "name": "t", "role": "agent", "admin": true }),
            422,
        ),
        post(
            "unknown role",
            TOKENS,
            &json!({ "name": "t", "role": "root" }),
            422,
        ),
        post(
            "role in capitals",
            TOKENS,
            &json!({ "name": "t", "role": "ADMIN" }),
            422,
        ),
        post_raw(
            "out-of-range number",
            EVENTS,
            Some("application/json"),
            br#"{"type":"a.b","data":{"n":1e999}}"#.to_vec(),
            400,
        ),
        // Event content.
        post(
            "bad event type",
            EVENTS,
            &json!({ "type": "Bad.Type" }),
            400,
        ),
        post("empty event type", EVENTS, &json!({ "type": "" }), 400),
        post(
            "control character in subject",
            EVENTS,
            &json!({ "type": "a.b", "subject": "x\u{7}y" }),
            400,
        ),
        post(
            "actor with '/'",
            EVENTS,
            &json!({ "type": "a.b", "actor": "a/b" }),
            400,
        ),
        post(
            "event data over 64 KiB",
            EVENTS,
            &json!({ "type": "a.b", "data": { "x": over_64k } }),
            400,
        ),
        // Claim names and durations.
        post("story with '/'", ACQUIRE, &json!({ "story": "a/b" }), 400),
        post(
            "story with a control character",
            ACQUIRE,
            &json!({ "story": "a\u{1}b" }),
            400,
        ),
        post(
            "story with a newline",
            ACQUIRE,
            &json!({ "story": "a\nb" }),
            400,
        ),
        post("empty story", ACQUIRE, &json!({ "story": "" }), 400),
        post(
            "story with surrounding spaces",
            ACQUIRE,
            &json!({ "story": " s " }),
            400,
        ),
        post(
            "story too long",
            ACQUIRE,
            &json!({ "story": long_name }),
            400,
        ),
        post(
            "todolist with '/'",
            ACQUIRE,
            &json!({ "story": "s", "todolist": "x/y" }),
            400,
        ),
        post(
            "agent with '/'",
            ACQUIRE,
            &json!({ "story": "s", "agent": "a/b" }),
            400,
        ),
        post(
            "duration 15x",
            ACQUIRE,
            &json!({ "story": "s", "ttl": "15x" }),
            400,
        ),
        post(
            "duration without unit",
            ACQUIRE,
            &json!({ "story": "s", "ttl": "15" }),
            400,
        ),
        post(
            "zero duration",
            ACQUIRE,
            &json!({ "story": "s", "ttl": "0s" }),
            400,
        ),
        post(
            "negative duration",
            ACQUIRE,
            &json!({ "story": "s", "ttl": "-5m" }),
            400,
        ),
        post(
            "absurd duration",
            ACQUIRE,
            &json!({ "story": "s", "ttl": "99999999d" }),
            400,
        ),
        post(
            "refresh with a bad duration",
            REFRESH,
            &json!({ "story": "s", "ttl": "1h5" }),
            400,
        ),
        get(
            "story with '/' in the path",
            "/api/v1/claims/a%2Fb/default",
            400,
        ),
        get(
            "control character in the path",
            "/api/v1/claims/a%01b/default",
            400,
        ),
        get("newline in the path", "/api/v1/claims/s/x%0Ay", 400),
        // Tokens.
        post(
            "token name with '/'",
            TOKENS,
            &json!({ "name": "a/b", "role": "agent" }),
            400,
        ),
        post(
            "token name with a NUL",
            TOKENS,
            &json!({ "name": "a\u{0}b", "role": "agent" }),
            400,
        ),
        post(
            "empty token name",
            TOKENS,
            &json!({ "name": "", "role": "agent" }),
            400,
        ),
        Bad {
            method: Method::DELETE,
            ..get("revoke an unknown token", "/api/v1/tokens/nobody", 404)
        },
        // Query numbers.
        get("limit=0", "/api/v1/events?limit=0", 400),
        get("limit=1001", "/api/v1/events?limit=1001", 400),
        get("limit=99999999999", "/api/v1/events?limit=99999999999", 400),
        get("limit=-1", "/api/v1/events?limit=-1", 400),
        get("limit=abc", "/api/v1/events?limit=abc", 400),
        get("since=-1", "/api/v1/events?since=-1", 400),
        get(
            "since beyond i64",
            "/api/v1/events?since=99999999999999999999999",
            400,
        ),
        get("before=0", "/api/v1/events?before=0", 400),
        get("bad type filter", "/api/v1/events?type=Not%20A%20Type", 400),
        get("audit limit=0", "/api/v1/audit?limit=0", 400),
        get(
            "audit limit=99999999999",
            "/api/v1/audit?limit=99999999999",
            400,
        ),
        get("claims all=maybe", "/api/v1/claims?all=maybe", 400),
        // The stream.
        get("stream since=-1", "/api/v1/events/stream?since=-1", 400),
        get("stream since=abc", "/api/v1/events/stream?since=abc", 400),
        get(
            "stream bad type filter",
            "/api/v1/events/stream?type=UPPER",
            400,
        ),
        stream_with_last_id("Last-Event-ID abc", "abc"),
        stream_with_last_id("Last-Event-ID -5", "-5"),
        stream_with_last_id("Last-Event-ID 1.5", "1.5"),
        stream_with_last_id("empty Last-Event-ID", ""),
        // Routing.
        get("unknown route", "/api/v1/nope", 404),
        Bad {
            method: Method::PUT,
            ..get("unsupported method", "/api/v1/events", 405)
        },
    ]
}

/// What bad requests must not change: the log head, the tokens, the claims.
async fn snapshot(s: &Server) -> (Value, Value, Value) {
    (
        s.get_json("/api/v1/events/head").await,
        s.get_json("/api/v1/tokens").await,
        s.get_json("/api/v1/claims?all=true").await,
    )
}

/// Every bad request gets the expected 4xx as a problem document, changes nothing, and the
/// server keeps answering.
async fn bad_input_is_refused_without_effect(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    s.gaia()
        .emit_event("test.seed", "t", "", json!({}))
        .await
        .unwrap();
    let before = snapshot(&s).await;
    for case in bad_requests() {
        let mut req = s.admin(case.method.clone(), &case.path);
        if let Some(ct) = case.content_type {
            req = req.header("content-type", ct);
        }
        if let Some(body) = case.body {
            req = req.body(body);
        }
        for (k, v) in &case.headers {
            req = req.header(*k, *v);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.what));
        expect_problem(res, case.status, case.what).await;
    }
    // Release takes no ttl: refused either by the handler (400) or as an unknown field (422).
    let res = s
        .admin(Method::POST, "/api/v1/claims/release")
        .json(&json!({ "story": "s", "ttl": "5m" }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    assert!(matches!(status, 400 | 422), "release with a ttl: {status}");
    expect_problem(res, status, "release with a ttl").await;

    // A 5 MiB body, over a raw connection: the server answers before reading all of it.
    for path in ["/api/v1/events", "/api/v1/tokens", "/api/v1/claims/acquire"] {
        let mut body = br#"{"type":"big.body","name":"n","data":{"x":""#.to_vec();
        body.extend(std::iter::repeat_n(b'A', 5 * 1024 * 1024));
        body.extend(br#""}}"#);
        let head = format!(
            "POST {path} HTTP/1.1\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json"
        );
        let res = common::raw_request(&s.base, &head, body).await;
        let text = String::from_utf8_lossy(&res.body);
        assert_eq!(res.status, 413, "5 MiB body to {path}: {text}");
        assert_eq!(
            res.header("content-type"),
            Some("application/problem+json"),
            "5 MiB body to {path}"
        );
        let p: Value = serde_json::from_slice(&res.body).unwrap();
        assert_eq!(p["status"], 413, "{p}");
        for field in ["type", "title", "detail"] {
            assert!(p[field].as_str().is_some_and(|v| !v.is_empty()), "{p}");
        }
    }
    assert_eq!(snapshot(&s).await, before, "bad requests changed nothing");
    let res = s.anon(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    s.stop().await;
}

/// The routes `gaia_server::router` registers (from `api()` in lib.rs), plus the document.
const KNOWN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/v1/claims"),
    ("POST", "/api/v1/claims/acquire"),
    ("POST", "/api/v1/claims/refresh"),
    ("POST", "/api/v1/claims/release"),
    ("GET", "/api/v1/claims/{story}/{todolist}"),
    ("GET", "/api/v1/events"),
    ("POST", "/api/v1/events"),
    ("GET", "/api/v1/events/head"),
    ("GET", "/api/v1/events/stream"),
    ("POST", "/api/v1/events/stream/ticket"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/audit/verify"),
    ("GET", "/api/v1/tokens"),
    ("POST", "/api/v1/tokens"),
    ("DELETE", "/api/v1/tokens/{name}"),
    ("GET", "/api/v1/stories"),
    ("POST", "/api/v1/stories"),
    ("GET", "/api/v1/stories/{slug}"),
    ("PUT", "/api/v1/stories/{slug}"),
    ("POST", "/api/v1/stories/{slug}/close"),
    ("POST", "/api/v1/stories/{slug}/reopen"),
    ("GET", "/api/v1/stories/{slug}/tasks"),
    ("POST", "/api/v1/stories/{slug}/tasks"),
    ("POST", "/api/v1/stories/{slug}/todolist/archive"),
    ("POST", "/api/v1/stories/{slug}/todolist/new"),
    ("POST", "/api/v1/stories/{slug}/todolist/finalize"),
    ("GET", "/api/v1/tasks/{id}"),
    ("PUT", "/api/v1/tasks/{id}"),
    ("POST", "/api/v1/tasks/{id}/start"),
    ("POST", "/api/v1/tasks/{id}/done"),
    ("POST", "/api/v1/tasks/{id}/block"),
    ("POST", "/api/v1/tasks/{id}/unblock"),
    ("POST", "/api/v1/tasks/{id}/move"),
    ("GET", "/api/v1/backlog/validate"),
    ("GET", "/api/v1/ready"),
    ("POST", "/api/v1/ready/take"),
    ("GET", "/api/v1/followups"),
    ("POST", "/api/v1/followups"),
    ("POST", "/api/v1/followups/{id}/accept"),
    ("POST", "/api/v1/followups/{id}/reject"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/mcp"),
    ("GET", "/mcp"),
    ("DELETE", "/mcp"),
];

/// `path` with each `{param}` replaced by a plausible value (`default` for a todolist).
fn concrete_path(path: &str) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some("todolist") => "default".to_owned(),
                Some(param) => format!("probe-{param}"),
                None => seg.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// The OpenAPI document lists every known route, and every operation it lists is served.
async fn openapi_lists_every_served_route(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let res = s
        .anon(Method::GET, "/api/v1/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    let mut listed = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_some() {
                listed.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    for (method, path) in KNOWN_ROUTES {
        assert!(
            listed.contains(&((*method).to_owned(), (*path).to_owned())),
            "{method} {path} is served but not in the OpenAPI document"
        );
    }

    // The oracle: what an unserved route and a wrong method look like.
    let res = s
        .admin(Method::GET, "/api/v1/no-such-route")
        .send()
        .await
        .unwrap();
    let p = expect_problem(res, 404, "unserved route").await;
    let no_such = p["detail"].as_str().unwrap().to_owned();
    let res = s
        .admin(Method::PATCH, "/api/v1/events")
        .send()
        .await
        .unwrap();
    expect_problem(res, 405, "wrong method").await;

    for (method, path) in &listed {
        let concrete = concrete_path(path);
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = s.admin(m.clone(), &concrete);
        if matches!(m, Method::POST | Method::PUT | Method::PATCH) {
            req = req.json(&json!({}));
        }
        let res = tokio::time::timeout(Duration::from_secs(10), req.send())
            .await
            .unwrap_or_else(|_| panic!("{method} {path} hung"))
            .unwrap();
        let status = res.status();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if status == StatusCode::NOT_FOUND {
            let body: Value = res.json().await.unwrap();
            assert_ne!(
                body["detail"].as_str(),
                Some(no_such.as_str()),
                "{method} {path} is documented but not served"
            );
        }
    }
    println!("openapi: {} operations probed", listed.len());
    s.stop().await;
}

/// /healthz and /readyz answer 200; /readyz answers 503 when the schema version is not the
/// expected one or when the store is closed, while /healthz still answers 200.
async fn health_and_readiness(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    for path in ["/healthz", "/readyz"] {
        let res = s.anon(Method::GET, path).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    let stale = Server::start(
        db,
        ServerOptions {
            schema_version: common::schema_version(&db.url) + 1,
            ..options(db)
        },
    )
    .await;
    let res = stale.anon(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("schema version"),
        "{body}"
    );
    stale.stop().await;

    s.store.close().await;
    let res = s.anon(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "not ready", "{body}");
    let res = s.anon(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    s.stop().await;
}

/// The probes schemathesis found: what the document allows is accepted, and what is refused is
/// outside the document.
async fn schema_and_behaviour_agree(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let doc = s.get_json("/api/v1/openapi.json").await;

    // The queue's status filter is an enum of the values the server takes; others get 400.
    let params = doc["paths"]["/api/v1/queue"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let status = params.iter().find(|p| p["name"] == "status").unwrap();
    let schema = resolve(&doc, &status["schema"]);
    let values = schema["enum"].as_array().expect("status is an enum");
    assert!(!values.is_empty());
    for v in values {
        let v = v.as_str().unwrap();
        s.get_json(&format!("/api/v1/queue?status={v}")).await;
    }
    for bad in ["", "Dead", "nope"] {
        assert!(!values.contains(&json!(bad)));
        let res = s
            .admin(Method::GET, &format!("/api/v1/queue?status={bad}"))
            .send()
            .await
            .unwrap();
        expect_problem(res, 400, &format!("queue status={bad:?}")).await;
    }

    // Requeue: ids start at 1 in the document; 0 is refused, an unknown id is not found.
    let body = &doc["paths"]["/admin/requeue"]["post"]["requestBody"];
    let requeue = resolve(&doc, &body["content"]["application/json"]["schema"]);
    let text = requeue.to_string();
    let by_id = requeue["oneOf"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["required"] == json!(["id"])))
        .unwrap_or_else(|| panic!("requeue by id is documented: {text}"));
    assert_eq!(by_id["properties"]["id"]["minimum"], 1, "{text}");
    let res = s
        .admin(Method::POST, "/admin/requeue")
        .json(&json!({ "id": 0 }))
        .send()
        .await
        .unwrap();
    expect_problem(res, 400, "requeue id 0").await;
    // An integer-valued float is an integer (JSON Schema): read as one, not refused as 422.
    for body in [json!({ "id": 4_194_304.0 }), json!({ "index": 7.0 })] {
        let res = s
            .admin(Method::POST, "/admin/requeue")
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_problem(res, 404, &format!("requeue {body}")).await;
    }
    let res = s
        .admin(Method::POST, "/admin/requeue")
        .json(&json!({ "id": 1.5 }))
        .send()
        .await
        .unwrap();
    expect_problem(res, 422, "requeue id 1.5").await;

    // Every operation that answers 2xx without a body documents its body as optional. A real
    // pending request stands in for `{id}` so that decisions on it succeed.
    let new = gaia_core::commands::NewCommand::new(
        gaia_core::commands::CommandSpec::Argv(vec!["true".into()]),
        Some("/tmp".into()),
        None,
        None,
        None,
        "agent-1",
        false,
        None,
    )
    .unwrap();
    let id = s.gaia().request_command(&new).await.unwrap().id;
    let mut probed = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(op) = item.get("post") else { continue };
        let Some(body) = op.get("requestBody") else {
            continue;
        };
        let concrete = concrete_path(path).replace("probe-id", &id);
        let res = s.admin(Method::POST, &concrete).send().await.unwrap();
        let status = res.status();
        if status.is_success() {
            probed += 1;
            assert_ne!(
                body["required"], true,
                "POST {path} answers {status} without a body, but documents it as required"
            );
        }
    }
    assert!(probed >= 2, "{probed} operations took an empty body");
    s.stop().await;
}

/// `schema`, or the component it refers to.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    }
}

/// A long-poll on a request answers with that request's own decision, however many other
/// requests are filed and decided while it waits, and not before.
async fn waits_answer_their_own_decision(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let file = || async {
        let new = NewCommand::new(
            CommandSpec::Argv(vec!["true".into()]),
            None,
            None,
            None,
            Some("wait test".into()),
            "agent-1",
            false,
            Some(Duration::from_secs(3600)),
        )
        .unwrap();
        s.gaia().request_command(&new).await.unwrap().id
    };
    let decide = |id: String, how: &'static str| {
        s.admin(Method::POST, &format!("/api/v1/commands/{id}/{how}"))
            .send()
    };
    let wait = |id: &str| {
        tokio::spawn(
            s.admin(
                Method::GET,
                &format!("/api/v1/commands/{id}/wait?timeout=30s"),
            )
            .send(),
        )
    };
    let (a, b) = (file().await, file().await);
    let (wa, wb) = (wait(&a), wait(&b));
    for _ in 0..20 {
        let other = file().await;
        let res = decide(other, "deny").await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert!(
        !wa.is_finished() && !wb.is_finished(),
        "nothing decided them"
    );
    assert_eq!(decide(a, "approve").await.unwrap().status(), StatusCode::OK);
    let got: Value = wa.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(got["status"], "approved", "{got}");
    assert!(!wb.is_finished(), "the other request is still pending");
    assert_eq!(decide(b, "deny").await.unwrap().status(), StatusCode::OK);
    let got: Value = wb.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(got["status"], "denied", "{got}");
    s.stop().await;
}
