//! Probes an attacker or an unlucky client would try, over real HTTP on both backends: bounds
//! on reported executions and on every text field, NUL characters, reads that survive a bad
//! stored row, identities taken from the token rather than the body, and credentials that end
//! when they are changed or revoked.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Server, SseReader, expect_problem, options};
use gaia_core::tokens::Role;
use gaia_testkit::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

gaia_testkit::backend_tests!(
    reported_durations_are_bounded,
    reads_survive_an_unreadable_execution,
    nul_and_overlong_text_are_refused_alike,
    identity_is_the_token,
    admin_sessions_end_when_the_admin_token_changes,
    revocation_ends_streams_sessions_and_tickets,
    refusal_floods_do_not_grow_the_audit_trail,
    resume_past_the_head_is_reset,
);

/// A bearer request with `token`.
fn as_token(s: &Server, token: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    s.anon(method, path).bearer_auth(token)
}

/// Files a request as `token` and returns its id.
async fn file_request(s: &Server, token: &str) -> String {
    let res = as_token(s, token, Method::POST, "/api/v1/commands")
        .json(&json!({ "command": { "argv": ["true"] }, "reason": "probe" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An agent files, the admin approves, the agent takes the single run: ready for `/ran`.
async fn running_request(s: &Server, agent: &str) -> String {
    let id = file_request(s, agent).await;
    let res = s
        .admin(Method::POST, &format!("/api/v1/commands/{id}/approve"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = as_token(
        s,
        agent,
        Method::POST,
        &format!("/api/v1/commands/{id}/run"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    id
}

/// Every read that once failed on one bad row answers 200.
async fn reads_answer(s: &Server, id: &str) {
    for path in [
        "/api/v1/commands".to_owned(),
        format!("/api/v1/commands/{id}"),
        "/api/v1/metrics".to_owned(),
        "/metrics".to_owned(),
    ] {
        let res = s.admin(Method::GET, &path).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
    }
    s.gaia().get_metrics().await.unwrap();
}

/// A requester's report of a run cannot carry a duration that puts its start before year 0
/// (it was stored, and broke every read after it) or overflows the clock (it panicked).
async fn reported_durations_are_bounded(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let (_, agent) = s
        .gaia()
        .create_token("agent-x", Role::Agent, "test")
        .await
        .unwrap();
    let id = running_request(&s, &agent).await;
    let ran = format!("/api/v1/commands/{id}/ran");
    for ms in [70_000_000_000_000_u64, 10_000_000_000_000_000, u64::MAX] {
        let res = as_token(&s, &agent, Method::POST, &ran)
            .json(&json!({ "exit_code": 0, "duration_ms": ms }))
            .send()
            .await
            .unwrap();
        let p = expect_problem(res, 400, "duration out of range").await;
        assert!(p["detail"].as_str().unwrap().contains("duration_ms"), "{p}");
    }
    reads_answer(&s, &id).await;
    let still = s.get_json(&format!("/api/v1/commands/{id}")).await;
    assert_eq!(
        still["status"], "executing",
        "a refused report changes nothing"
    );
    // The longest accepted duration reads back as an exact integer.
    let max = 315_360_000_000_u64;
    let res = as_token(&s, &agent, Method::POST, &ran)
        .json(&json!({ "exit_code": 0, "duration_ms": max }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = s
        .admin(Method::GET, &format!("/api/v1/commands/{id}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(&format!("\"duration_ms\":{max}")), "{text}");
    reads_answer(&s, &id).await;
}

/// A stored execution that no longer parses (written before the bounds) is read as missing:
/// listings, the request itself, metrics and the CLI's reads keep working.
async fn reads_survive_an_unreadable_execution(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let (_, agent) = s
        .gaia()
        .create_token("agent-x", Role::Agent, "test")
        .await
        .unwrap();
    let id = running_request(&s, &agent).await;
    let bad = r#"{"executor":"agent-x","dry_run":false,"started_at":"-2217-01-01T00:00:00.000000Z","exit_code":0,"timed_out":false,"duration_ms":70000000000000,"stdout":"","stderr":"","stdout_truncated":false,"stderr_truncated":false,"error":null}"#;
    db.execute(&format!(
        "UPDATE commands SET status = 'executed', execution = '{bad}' WHERE id = '{id}'"
    ))
    .await;
    reads_answer(&s, &id).await;
    let list = s.get_json("/api/v1/commands").await;
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap();
    assert_eq!(row["status"], "executed");
    assert!(row["execution"].is_null(), "{row}");
}

/// NUL in any text field is a 400 on both backends (PostgreSQL cannot store it; SQLite could),
/// and every documented limit holds; nothing is written.
async fn nul_and_overlong_text_are_refused_alike(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let (_, agent) = s
        .gaia()
        .create_token("agent-x", Role::Agent, "test")
        .await
        .unwrap();
    let pending = file_request(&s, &agent).await;
    let running = running_request(&s, &agent).await;
    let head = s.head().await;
    let audit = s.gaia().list_audit_tail(1).await.unwrap()[0].id;
    let long = "x".repeat(2001);
    let cases: Vec<(&str, Method, String, Value, bool)> = vec![
        (
            "request reason NUL",
            Method::POST,
            "/api/v1/commands".into(),
            json!({ "command": { "argv": ["true"] }, "reason": "a\u{0}b" }),
            false,
        ),
        (
            "request cwd NUL",
            Method::POST,
            "/api/v1/commands".into(),
            json!({ "command": { "argv": ["true"] }, "cwd": "/tmp\u{0}" }),
            false,
        ),
        (
            "request argv NUL",
            Method::POST,
            "/api/v1/commands".into(),
            json!({ "command": { "argv": ["tr\u{0}ue"] } }),
            false,
        ),
        (
            "request reason too long",
            Method::POST,
            "/api/v1/commands".into(),
            json!({ "command": { "argv": ["true"] }, "reason": long }),
            false,
        ),
        (
            "approve reason NUL",
            Method::POST,
            format!("/api/v1/commands/{pending}/approve"),
            json!({ "reason": "ok\u{0}" }),
            true,
        ),
        (
            "deny reason NUL",
            Method::POST,
            format!("/api/v1/commands/{pending}/deny"),
            json!({ "reason": "\u{0}" }),
            true,
        ),
        (
            "approve reason too long",
            Method::POST,
            format!("/api/v1/commands/{pending}/approve"),
            json!({ "reason": "y".repeat(100_000) }),
            true,
        ),
        (
            "deny reason too long",
            Method::POST,
            format!("/api/v1/commands/{pending}/deny"),
            json!({ "reason": long }),
            true,
        ),
        (
            "ran error NUL",
            Method::POST,
            format!("/api/v1/commands/{running}/ran"),
            json!({ "exit_code": 1, "error": "boom\u{0}" }),
            false,
        ),
        (
            "ran error too long",
            Method::POST,
            format!("/api/v1/commands/{running}/ran"),
            json!({ "exit_code": 1, "error": "e".repeat(900_000) }),
            false,
        ),
        (
            "event data NUL",
            Method::POST,
            "/api/v1/events".into(),
            json!({ "type": "chat.message", "data": { "text": "a\u{0}" } }),
            false,
        ),
        (
            "event data key NUL",
            Method::POST,
            "/api/v1/events".into(),
            json!({ "type": "chat.message", "data": { "k\u{0}": 1 } }),
            false,
        ),
        (
            "event subject NUL",
            Method::POST,
            "/api/v1/events".into(),
            json!({ "type": "chat.message", "subject": "s\u{0}" }),
            false,
        ),
        (
            "claim fingerprint NUL",
            Method::POST,
            "/api/v1/claims/acquire".into(),
            json!({ "story": "s", "fingerprint": "f\u{0}" }),
            false,
        ),
    ];
    // NUL where a path or query parameter is compared with stored text.
    for (what, path) in [
        ("events subject filter", "/api/v1/events?subject=a%00b"),
        ("stream subject filter", "/api/v1/events/stream?subject=%00"),
        ("token name", "/api/v1/tokens/a%00b"),
        ("claim story", "/api/v1/claims/a%00/default"),
        ("command id", "/api/v1/commands/ab%00cd"),
    ] {
        let method = if what == "token name" {
            Method::DELETE
        } else {
            Method::GET
        };
        let res = s.admin(method, path).send().await.unwrap();
        expect_problem(res, 400, what).await;
    }
    for (what, method, path, body, as_admin) in cases {
        let req = if as_admin {
            s.admin(method, &path)
        } else {
            as_token(&s, &agent, method, &path)
        };
        let res = req.json(&body).send().await.unwrap();
        expect_problem(res, 400, what).await;
    }
    assert_eq!(s.head().await, head, "no event was written");
    assert_eq!(
        s.gaia().list_audit_tail(1).await.unwrap()[0].id,
        audit,
        "no audit record was written"
    );
    let p = s.get_json(&format!("/api/v1/commands/{pending}")).await;
    assert_eq!(p["status"], "pending");
    let r = s.get_json(&format!("/api/v1/commands/{running}")).await;
    assert_eq!(r["status"], "executing");
    // The limits themselves are accepted.
    let res = s
        .admin(Method::POST, &format!("/api/v1/commands/{pending}/deny"))
        .json(&json!({ "reason": "z".repeat(2000) }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// What the rules check and what the audit records is the authenticated token, never a name
/// in the body: an operator cannot approve its own request filed "as" an agent, a token cannot
/// release or refresh a claim another token holds by naming its agent, and an event "by admin"
/// from an agent token is recorded as the agent token's.
async fn identity_is_the_token(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let (_, operator) = s
        .gaia()
        .create_token("ops-1", Role::Operator, "test")
        .await
        .unwrap();
    let (_, agent_a) = s
        .gaia()
        .create_token("token-a", Role::Agent, "test")
        .await
        .unwrap();
    let (_, agent_b) = s
        .gaia()
        .create_token("token-b", Role::Agent, "test")
        .await
        .unwrap();

    // An operator files a request naming an agent, then tries to decide and run it itself.
    let res = as_token(&s, &operator, Method::POST, "/api/v1/commands")
        .json(&json!({ "command": { "argv": ["true"] }, "agent": "agent-x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let filed: Value = res.json().await.unwrap();
    assert_eq!(filed["requester"], "ops-1", "{filed}");
    let id = filed["id"].as_str().unwrap();
    let res = as_token(
        &s,
        &operator,
        Method::POST,
        &format!("/api/v1/commands/{id}/approve"),
    )
    .send()
    .await
    .unwrap();
    let p = expect_problem(res, 409, "requester approves its own request").await;
    assert!(p["detail"].as_str().unwrap().contains("requester"), "{p}");
    let requested = s
        .gaia()
        .list_audit_tail(50)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.action == "command.request" && r.subject == format!("command/{id}"))
        .unwrap();
    assert_eq!(requested.actor, "ops-1");
    assert!(
        requested.details.contains("\"agent\":\"agent-x\""),
        "{}",
        requested.details
    );

    // Token A takes a claim for agent-1; token B names agent-1 and fingerprint to drop it.
    let claim = |token: &str, op: &str, body: Value| {
        as_token(&s, token, Method::POST, &format!("/api/v1/claims/{op}")).json(&body)
    };
    let body = json!({ "story": "checkout", "agent": "agent-1", "fingerprint": "run-1" });
    let got: Value = claim(&agent_a, "acquire", body.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["outcome"], "acquired", "{got}");
    assert_eq!(got["holder"]["principal"], "token-a", "{got}");
    for op in ["release", "refresh"] {
        let res: Value = claim(&agent_b, op, body.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(res["outcome"], "not_held", "{op} by another token: {res}");
    }
    let res: Value = claim(&agent_b, "acquire", body.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["outcome"], "held_by_other", "{res}");
    let state = s.get_json("/api/v1/claims/checkout/default").await;
    assert_eq!(state["outcome"], "held", "{state}");
    assert_eq!(state["token"], 1, "{state}");
    let res: Value = claim(&agent_a, "release", body.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["outcome"], "released", "{res}");
    let released = s.gaia().list_audit_tail(1).await.unwrap().remove(0);
    assert_eq!(released.action, "claim.release");
    assert_eq!(released.actor, "token-a");

    // An agent token emits an event "as admin".
    let res = as_token(&s, &agent_b, Method::POST, "/api/v1/events")
        .json(&json!({ "type": "chat.message", "actor": "admin", "data": { "text": "hi" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let e: Value = res.json().await.unwrap();
    assert_eq!(e["actor"], "token-b", "{e}");
    let audit = s.gaia().list_audit_tail(1).await.unwrap().remove(0);
    assert_eq!(audit.action, "event.emit");
    assert_eq!(audit.actor, "token-b");
    assert!(
        audit.details.contains("\"agent\":\"admin\""),
        "{}",
        audit.details
    );
}

/// A request authenticated by a dashboard session, as the page sends it.
fn with_session(
    s: &Server,
    (cookie, csrf): &(String, String),
    method: Method,
    path: &str,
) -> reqwest::RequestBuilder {
    s.anon(method, path)
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .header("origin", &s.base)
}

/// A stream ticket traded for `req`'s credential.
async fn ticket(req: reqwest::RequestBuilder) -> String {
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A dashboard session (and a stream ticket) opened with the configured admin token stop
/// working once the server runs with another admin token; a session of a stored token does not.
async fn admin_sessions_end_when_the_admin_token_changes(db: &TestDb) {
    let store = db.open(&gaia_core::store::StoreOptions::default()).await;
    let s = Server::with_admin(store.clone(), options(db), "first-admin-token").await;
    let (_, operator) = s
        .gaia()
        .create_token("ops-1", Role::Operator, "test")
        .await
        .unwrap();
    let admin = s.login("first-admin-token").await;
    let ops = s.login(&operator).await;
    let admin_ticket = ticket(with_session(
        &s,
        &admin,
        Method::POST,
        "/api/v1/events/stream/ticket",
    ))
    .await;
    let res = with_session(&s, &admin, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the session works at first");
    s.stop().await;

    let s = Server::with_admin(store, options(db), "second-admin-token").await;
    let res = with_session(&s, &admin, Method::POST, "/api/v1/tokens")
        .json(&json!({ "name": "sneaky", "role": "admin" }))
        .send()
        .await
        .unwrap();
    expect_problem(res, 401, "old admin session creates a token").await;
    let res = with_session(&s, &admin, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    expect_problem(res, 401, "old admin session reads").await;
    let res = s
        .anon(
            Method::GET,
            &format!("/api/v1/events/stream?ticket={admin_ticket}"),
        )
        .send()
        .await
        .unwrap();
    expect_problem(res, 401, "old admin ticket").await;
    assert!(
        !s.gaia()
            .list_tokens()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "sneaky")
    );
    // The operator's session outlives the change, and the new admin token logs in.
    let res = with_session(&s, &ops, Method::GET, "/api/v1/commands")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let admin = s.login("second-admin-token").await;
    let res = with_session(&s, &admin, Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// Reads frames until the stream ends; returns the names of the named events it carried.
async fn drain(mut r: SseReader) -> Vec<String> {
    let mut named = vec![];
    while let Some(f) = r.next_within(Duration::from_secs(20)).await {
        if let Some(e) = f.event {
            named.push(e);
        }
    }
    named
}

/// Revoking a token ends the streams it opened (bearer, session cookie, ticket) and makes a
/// ticket it was traded for useless; other streams go on.
async fn revocation_ends_streams_sessions_and_tickets(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let (_, doomed) = s
        .gaia()
        .create_token("ops-doomed", Role::Operator, "test")
        .await
        .unwrap();
    let (_, other) = s
        .gaia()
        .create_token("ops-other", Role::Operator, "test")
        .await
        .unwrap();
    let open = |req: reqwest::RequestBuilder| async move {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let mut r = SseReader::new(res);
        // The hello comment: the producer is running.
        r.next_within(Duration::from_secs(10)).await.unwrap();
        r
    };
    let path = "/api/v1/events/stream";
    let bearer = open(as_token(&s, &doomed, Method::GET, path)).await;
    let session = s.login(&doomed).await;
    let cookie = open(with_session(&s, &session, Method::GET, path)).await;
    let used = ticket(as_token(
        &s,
        &doomed,
        Method::POST,
        "/api/v1/events/stream/ticket",
    ))
    .await;
    let by_ticket = open(s.anon(Method::GET, &format!("{path}?ticket={used}"))).await;
    let unused = ticket(as_token(
        &s,
        &doomed,
        Method::POST,
        "/api/v1/events/stream/ticket",
    ))
    .await;
    let mut survivor = open(as_token(&s, &other, Method::GET, path)).await;

    let res = s
        .admin(Method::DELETE, "/api/v1/tokens/ops-doomed")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());

    for (what, r) in [
        ("bearer", bearer),
        ("cookie", cookie),
        ("ticket", by_ticket),
    ] {
        let named = drain(r).await;
        assert_eq!(named, vec!["revoked".to_owned()], "{what} stream");
    }
    let res = s
        .anon(Method::GET, &format!("{path}?ticket={unused}"))
        .send()
        .await
        .unwrap();
    expect_problem(res, 401, "ticket of a revoked token").await;
    let res = with_session(&s, &session, Method::GET, "/api/v1/commands")
        .send()
        .await
        .unwrap();
    expect_problem(res, 401, "session of a revoked token").await;
    // The other token's stream saw the revocation like any event and is still open.
    let f = survivor.next_event(Duration::from_secs(10)).await;
    assert_eq!(f.json()["type"], "token.revoked");
    s.gaia()
        .emit_event("chat.message", "tester", "", json!({}))
        .await
        .unwrap();
    let f = survivor.next_event(Duration::from_secs(10)).await;
    assert_eq!(f.json()["type"], "chat.message");
}

/// A flood of requests with a bad token and long paths writes a bounded number of short audit
/// records and one summary of the rest, instead of one 8 KB record per request.
async fn refusal_floods_do_not_grow_the_audit_trail(db: &TestDb) {
    let store = db.open(&gaia_core::store::StoreOptions::default()).await;
    let mut state = gaia_server::AppState::new(
        gaia_core::Gaia::new(store.clone()),
        options(db),
        Some(common::ADMIN),
    )
    .await
    .unwrap();
    let window = Duration::from_millis(1500);
    state.refusals = std::sync::Arc::new(gaia_server::refusals::RefusalGate::with_window(window));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let gaia = state.gaia.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let server = tokio::spawn(gaia_server::serve(listener, state, async move {
        stopped.cancelled().await;
    }));
    let before = gaia
        .list_audit_tail(1)
        .await
        .unwrap()
        .first()
        .map_or(0, |r| r.id);
    let client = reqwest::Client::new();
    let long = "a".repeat(8_000);
    let flood = 200;
    for i in 0..flood {
        let res = client
            .get(format!("{base}/api/v1/commands/{long}{i}"))
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let written: Vec<_> = gaia
        .list_audit_tail(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.id > before)
        .collect();
    let per_source = gaia_server::refusals::PER_SOURCE_PER_WINDOW as usize;
    assert!(!written.is_empty(), "single refusals are still audited");
    assert!(written.len() <= per_source, "{} records", written.len());
    for r in &written {
        assert_eq!(r.action, "auth");
        assert!(r.subject.chars().count() <= gaia_server::refusals::MAX_SUBJECT_CHARS + 1);
    }
    // Another source has a share of its own: the flood did not use it up.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let res = other
        .get(format!("{base}/api/v1/claims"))
        .bearer_auth("another-bad-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let last = gaia.list_audit_tail(1).await.unwrap().remove(0);
    assert_eq!(
        (last.action.as_str(), last.subject.as_str()),
        ("auth", "/api/v1/claims"),
        "a refusal from another address is recorded"
    );
    // Once the window ends, one summary counts what was not recorded one by one.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let summary = loop {
        let found = gaia
            .list_audit_tail(5)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.action == "auth.refusals_suppressed");
        if let Some(r) = found {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "no summary record");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let details: Value = serde_json::from_str(&summary.details).unwrap();
    assert_eq!(
        details["suppressed"].as_u64().unwrap() + written.len() as u64,
        flood,
        "{details}"
    );
    // The next window audits single refusals again.
    let res = client
        .get(format!("{base}/api/v1/commands"))
        .bearer_auth("still-not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let last = gaia.list_audit_tail(1).await.unwrap().remove(0);
    assert_eq!(last.action, "auth");
    assert_eq!(last.subject, "/api/v1/commands");
    stop.cancel();
    server.await.unwrap().unwrap();
}

/// A `Last-Event-ID` past the newest event gets a `reset` naming the head, and the stream
/// then delivers new events (it used to wait for seqs that would mean other events).
async fn resume_past_the_head_is_reset(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    s.gaia()
        .emit_event("chat.message", "tester", "", json!({ "n": 1 }))
        .await
        .unwrap();
    let head = s.head().await;
    let res = s
        .admin(Method::GET, "/api/v1/events/stream")
        .header("last-event-id", (head + 1000).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut r = SseReader::new(res);
    let reset = r.next_event(Duration::from_secs(10)).await;
    assert_eq!(reset.event.as_deref(), Some("reset"));
    assert_eq!(reset.json()["last_seq"], head);
    s.gaia()
        .emit_event("chat.message", "tester", "", json!({ "n": 2 }))
        .await
        .unwrap();
    let next = r.next_event(Duration::from_secs(10)).await;
    assert_eq!(next.seq(), Some(head + 1));
    assert_eq!(next.json()["data"]["n"], 2);
}
