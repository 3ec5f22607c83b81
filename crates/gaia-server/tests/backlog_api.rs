//! The backlog API over real HTTP, on both backends: a story's life from creation to close,
//! who may do what, ready work taken and finished under the claim's fencing token (a stale
//! token refused), follow-ups collected once and triaged, and bad input refused as problem
//! documents without changing anything.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN, Server, expect_problem, options};
use gaia_core::tokens::Role;
use gaia_testkit::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

gaia_testkit::backend_tests!(
    a_story_lives_through_http,
    roles_decide_who_changes_the_backlog,
    ready_work_is_taken_and_finished_under_its_token,
    followups_are_collected_once_and_triaged,
    bad_backlog_input_is_refused_without_effect,
);

/// Sends `method path` with `token` (and `body` as JSON); the status and the JSON body (null
/// when there is none).
async fn call(
    s: &Server,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = s.anon(method.clone(), path).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    };
    (status, v)
}

/// Like [`call`], and asserts the status.
async fn ok(
    s: &Server,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    want: StatusCode,
) -> Value {
    let (status, v) = call(s, token, method.clone(), path, body).await;
    assert_eq!(status, want, "{method} {path}: {v}");
    v
}

/// A new token of `role` named `name`; its secret.
async fn token(s: &Server, name: &str, role: Role) -> String {
    s.gaia().create_token(name, role, "test").await.unwrap().1
}

/// The event types appended after `seq`, oldest first.
async fn kinds_after(s: &Server, seq: i64) -> Vec<String> {
    let events = s.get_json(&format!("/api/v1/events?since={seq}")).await;
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

fn titles(tasks: &Value) -> Vec<&str> {
    tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect()
}

/// Create, read, edit, add tasks, work them, finalize, archive, start a new list, validate,
/// close and reopen: every step through the API, each with its event.
async fn a_story_lives_through_http(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let op = token(&s, "op-1", Role::Operator).await;
    let agent = token(&s, "agent-1", Role::Agent).await;
    let start = s.head().await;

    let story = ok(
        &s,
        &op,
        Method::POST,
        "/api/v1/stories",
        Some(json!({
            "slug": "checkout", "title": "Checkout flow",
            "description": "Customers pay", "labels": ["backend", "payments"],
        })),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(story["slug"], "checkout");
    assert_eq!(story["status"], "open");
    assert_eq!(story["todolist"], "default");
    assert_eq!(story["created_by"], "op-1");
    assert_eq!(story["labels"], json!(["backend", "payments"]));
    assert!(story["finalized_at"].is_null());

    // Any role reads; the new list starts from the template: one final task.
    let view = ok(
        &s,
        &agent,
        Method::GET,
        "/api/v1/stories/checkout",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(view["title"], "Checkout flow", "story fields are flattened");
    assert_eq!(view["tasks"].as_array().unwrap().len(), 1);
    assert!(
        view["tasks"][0]["title"]
            .as_str()
            .unwrap()
            .contains("FINAL")
    );
    assert_eq!(view["lists"][0]["name"], "default");
    let list = ok(
        &s,
        &agent,
        Method::GET,
        "/api/v1/stories?status=open",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let closed = s.get_json("/api/v1/stories?status=closed").await;
    assert!(closed.as_array().unwrap().is_empty());

    let edited = ok(
        &s,
        &op,
        Method::PUT,
        "/api/v1/stories/checkout",
        Some(json!({ "title": "Checkout", "description": "Customers pay by card", "labels": [] })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(edited["title"], "Checkout");
    assert_eq!(edited["labels"], json!([]));

    // Agents add tasks; each goes before the final one.
    let form = ok(
        &s,
        &agent,
        Method::POST,
        "/api/v1/stories/checkout/tasks",
        Some(json!({ "title": "Card form", "body": "- [ ] validates" })),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(form["status"], "todo");
    assert_eq!(form["created_by"], "agent-1");
    let form_id = form["id"].as_i64().unwrap();
    let charge = ok(
        &s,
        &agent,
        Method::POST,
        "/api/v1/stories/checkout/tasks",
        Some(json!({ "title": "Charge the card", "blocked_by": [form_id] })),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(charge["blocked_by"], json!([form_id]));
    let charge_id = charge["id"].as_i64().unwrap();
    let tasks = s.get_json("/api/v1/stories/checkout/tasks").await;
    let t = titles(&tasks);
    assert_eq!(t[..2], ["Card form", "Charge the card"]);
    assert!(t[2].contains("FINAL"));

    let one = s.get_json(&format!("/api/v1/tasks/{form_id}")).await;
    assert_eq!(one["title"], "Card form");
    let renamed = ok(
        &s,
        &op,
        Method::PUT,
        &format!("/api/v1/tasks/{form_id}"),
        Some(json!({ "title": "Card form with checks", "body": "- [ ] validates\n- [ ] masks" })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(renamed["title"], "Card form with checks");

    // Only the first task is ready: the second waits for it, the final one for both.
    let ready = s.get_json("/api/v1/ready?story=checkout").await;
    assert_eq!(titles(&ready), ["Card form with checks"]);

    // An operator blocks, moves and unblocks without holding the claim.
    let blocked = ok(
        &s,
        &op,
        Method::POST,
        &format!("/api/v1/tasks/{charge_id}/block"),
        Some(json!({ "reason": "waiting for the payment provider" })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(blocked["status"], "blocked");
    assert_eq!(blocked["reason"], "waiting for the payment provider");
    let moved = ok(
        &s,
        &op,
        Method::POST,
        &format!("/api/v1/tasks/{charge_id}/move"),
        Some(json!({ "position": 1 })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["position"], 1);
    // The final task stays last.
    let last = call(
        &s,
        &op,
        Method::POST,
        &format!("/api/v1/tasks/{charge_id}/move"),
        Some(json!({ "position": 3 })),
    )
    .await;
    assert_eq!(last.0, StatusCode::CONFLICT, "{}", last.1);
    let unblocked = ok(
        &s,
        &op,
        Method::POST,
        &format!("/api/v1/tasks/{charge_id}/unblock"),
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(unblocked["status"], "todo");

    // The agent takes the first ready task and finishes it under the returned token.
    let taken = ok(
        &s,
        &agent,
        Method::POST,
        "/api/v1/ready/take",
        Some(json!({ "agent": "agent-1", "story": "checkout", "ttl_s": 600 })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(taken["taken"], true);
    assert_eq!(taken["task"]["id"], form_id);
    assert_eq!(taken["task"]["status"], "in_progress");
    assert_eq!(taken["task"]["worker"], "agent-1");
    assert!(taken["expires_at"].as_str().is_some());
    let fence = taken["token"].as_i64().unwrap();
    let done = ok(
        &s,
        &agent,
        Method::POST,
        &format!("/api/v1/tasks/{form_id}/done"),
        Some(json!({ "agent": "agent-1", "token": fence })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["status"], "done");
    // Holding the claim, it starts, moves and blocks the next one itself.
    let started = ok(
        &s,
        &agent,
        Method::POST,
        &format!("/api/v1/tasks/{charge_id}/start"),
        Some(json!({ "agent": "agent-1", "token": fence })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(started["status"], "in_progress");
    ok(
        &s,
        &agent,
        Method::POST,
        &format!("/api/v1/tasks/{charge_id}/move"),
        Some(json!({ "position": 2, "agent": "agent-1", "token": fence })),
        StatusCode::OK,
    )
    .await;
    ok(
        &s,
        &agent,
        Method::POST,
        &format!("/api/v1/tasks/{charge_id}/block"),
        Some(json!({ "reason": "needs keys", "agent": "agent-1", "token": fence })),
        StatusCode::OK,
    )
    .await;
    ok(
        &s,
        &agent,
        Method::POST,
        &format!("/api/v1/tasks/{charge_id}/unblock"),
        Some(json!({ "agent": "agent-1", "token": fence })),
        StatusCode::OK,
    )
    .await;

    // Finalized: nothing more is appended; finalizing again changes nothing.
    let fin = ok(
        &s,
        &op,
        Method::POST,
        "/api/v1/stories/checkout/todolist/finalize",
        None,
        StatusCode::OK,
    )
    .await;
    assert!(fin["finalized_at"].as_str().is_some());
    let again = ok(
        &s,
        &op,
        Method::POST,
        "/api/v1/stories/checkout/todolist/finalize",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["finalized_at"], fin["finalized_at"]);
    let late = call(
        &s,
        &agent,
        Method::POST,
        "/api/v1/stories/checkout/tasks",
        Some(json!({ "title": "Late idea" })),
    )
    .await;
    assert_eq!(late.0, StatusCode::CONFLICT, "{}", late.1);

    // Archive: a fresh list from the template; the old one keeps its tasks.
    let archived = ok(
        &s,
        &op,
        Method::POST,
        "/api/v1/stories/checkout/todolist/archive",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(archived["todolist"], "default");
    assert!(archived["finalized_at"].is_null());
    let view = s.get_json("/api/v1/stories/checkout").await;
    assert_eq!(view["tasks"].as_array().unwrap().len(), 1);
    let old = view["lists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| !l["archived_at"].is_null())
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(old.starts_with("default@"), "{old}");
    let old_tasks = s
        .get_json(&format!("/api/v1/stories/checkout/tasks?todolist={old}"))
        .await;
    assert_eq!(old_tasks.as_array().unwrap().len(), 3);
    // A task of an archived list no longer changes.
    let frozen = call(
        &s,
        &op,
        Method::POST,
        &format!("/api/v1/tasks/{charge_id}/block"),
        Some(json!({ "reason": "too late" })),
    )
    .await;
    assert_eq!(frozen.0, StatusCode::CONFLICT, "{}", frozen.1);

    // A new named list; a name already used is a conflict.
    let named = ok(
        &s,
        &op,
        Method::POST,
        "/api/v1/stories/checkout/todolist/new",
        Some(json!({ "name": "round-2" })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(named["todolist"], "round-2");
    let tasks = s.get_json("/api/v1/stories/checkout/tasks").await;
    assert_eq!(tasks[0]["todolist"], "round-2");

    // Every current list ends with its final task until an operator empties one's tail.
    assert_eq!(s.get_json("/api/v1/backlog/validate").await, json!([]));
    let bare = ok(
        &s,
        &op,
        Method::POST,
        "/api/v1/stories",
        Some(json!({ "slug": "bare", "title": "Bare" })),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(bare["description"], "");
    let final_id = s.get_json("/api/v1/stories/bare/tasks").await[0]["id"]
        .as_i64()
        .unwrap();
    ok(
        &s,
        &op,
        Method::PUT,
        &format!("/api/v1/tasks/{final_id}"),
        Some(json!({ "title": "Just a task", "body": "" })),
        StatusCode::OK,
    )
    .await;
    let breaks = s.get_json("/api/v1/backlog/validate").await;
    assert_eq!(breaks.as_array().unwrap().len(), 1, "{breaks}");
    assert_eq!(breaks[0]["story"], "bare");
    assert_eq!(breaks[0]["last"]["title"], "Just a task");
    let only = s.get_json("/api/v1/backlog/validate?story=checkout").await;
    assert_eq!(only, json!([]));

    // Close and reopen; both are idempotent.
    for (path, status) in [
        ("close", "closed"),
        ("close", "closed"),
        ("reopen", "open"),
        ("reopen", "open"),
    ] {
        let v = ok(
            &s,
            &op,
            Method::POST,
            &format!("/api/v1/stories/checkout/{path}"),
            None,
            StatusCode::OK,
        )
        .await;
        assert_eq!(v["status"], status, "{path}");
    }

    let kinds = kinds_after(&s, start).await;
    for kind in [
        "story.created",
        "story.updated",
        "todo.added",
        "todo.edited",
        "todo.blocked",
        "todo.moved",
        "todo.unblocked",
        "todo.started",
        "todo.done",
        "todo.finalized",
        "todo.archived",
        "story.closed",
        "story.reopened",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    s.stop().await;
}

/// Agents may not create, edit, close, reopen, archive, replace, finalize, edit tasks, change
/// a task without the claim, accept or reject: 403 problems, each refusal audited, nothing
/// changed. Operators may.
async fn roles_decide_who_changes_the_backlog(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let op = token(&s, "op-1", Role::Operator).await;
    let agent = token(&s, "agent-1", Role::Agent).await;
    // Refusals are audited one by one up to a few per caller and minute: two agents share them.
    let agent2 = token(&s, "agent-2", Role::Agent).await;
    ok(
        &s,
        &op,
        Method::POST,
        "/api/v1/stories",
        Some(json!({ "slug": "roles", "title": "Roles" })),
        StatusCode::CREATED,
    )
    .await;
    let task = ok(
        &s,
        &agent,
        Method::POST,
        "/api/v1/stories/roles/tasks",
        Some(json!({ "title": "A task" })),
        StatusCode::CREATED,
    )
    .await;
    let id = task["id"].as_i64().unwrap();
    let collected = ok(
        &s,
        &agent,
        Method::POST,
        "/api/v1/followups",
        Some(json!({
            "path": "doc/roles.agent-1.T1.more.md", "hash": "h1", "story": "roles",
            "agent": "agent-1", "task": "T1", "title": "More", "body": "- [ ] more",
        })),
        StatusCode::OK,
    )
    .await;
    let fid = collected["followup"]["id"].as_i64().unwrap();

    let head = s.head().await;
    let story_before = s.get_json("/api/v1/stories/roles").await;
    let refused: Vec<(Method, String, Option<Value>, &str)> = vec![
        (
            Method::POST,
            "/api/v1/stories".into(),
            Some(json!({ "slug": "sneaky", "title": "Sneaky" })),
            "story.create",
        ),
        (
            Method::PUT,
            "/api/v1/stories/roles".into(),
            Some(json!({ "title": "Mine", "description": "", "labels": [] })),
            "story.edit",
        ),
        (
            Method::POST,
            "/api/v1/stories/roles/close".into(),
            None,
            "story.close",
        ),
        (
            Method::POST,
            "/api/v1/stories/roles/reopen".into(),
            None,
            "story.reopen",
        ),
        (
            Method::POST,
            "/api/v1/stories/roles/todolist/archive".into(),
            None,
            "todo.archive",
        ),
        (
            Method::POST,
            "/api/v1/stories/roles/todolist/new".into(),
            Some(json!({ "name": "mine" })),
            "todo.new_list",
        ),
        (
            Method::POST,
            "/api/v1/stories/roles/todolist/finalize".into(),
            None,
            "todo.finalize",
        ),
        (
            Method::PUT,
            format!("/api/v1/tasks/{id}"),
            Some(json!({ "title": "Renamed", "body": "" })),
            "todo.edit",
        ),
        (
            Method::POST,
            format!("/api/v1/tasks/{id}/block"),
            Some(json!({ "reason": "no claim" })),
            "todo.block",
        ),
        (
            Method::POST,
            format!("/api/v1/tasks/{id}/move"),
            Some(json!({ "position": 1 })),
            "todo.move",
        ),
        (
            Method::POST,
            format!("/api/v1/tasks/{id}/unblock"),
            None,
            "todo.unblock",
        ),
        (
            Method::POST,
            format!("/api/v1/followups/{fid}/accept"),
            None,
            "followup.accept",
        ),
        (
            Method::POST,
            format!("/api/v1/followups/{fid}/reject"),
            Some(json!({ "reason": "no" })),
            "followup.reject",
        ),
    ];
    for (i, (method, path, body, action)) in refused.iter().enumerate() {
        let (who, secret) = if i % 2 == 0 {
            ("agent-1", &agent)
        } else {
            ("agent-2", &agent2)
        };
        let mut req = s.anon(method.clone(), path).bearer_auth(secret);
        if let Some(b) = body {
            req = req.json(b);
        }
        let what = format!("{who}: {method} {path}");
        let p = expect_problem(req.send().await.unwrap(), 403, &what).await;
        assert!(
            p["detail"].as_str().unwrap().contains("operator"),
            "{what}: {p}"
        );
        let tail = s.gaia().list_audit_tail(5).await.unwrap();
        assert!(
            tail.iter()
                .any(|r| r.actor == who && r.action == *action && r.outcome == "forbidden"),
            "{what}: no forbidden audit record in {tail:?}"
        );
    }
    assert_eq!(s.head().await, head, "refused calls appended no event");
    assert_eq!(s.get_json("/api/v1/stories/roles").await, story_before);
    assert_eq!(
        s.get_json("/api/v1/followups?status=pending")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // What the agents may not, operators (and the admin) may: the task changes first, while
    // the task's list is still the current one.
    let order = [7, 8, 9, 10, 11, 0, 1, 2, 3, 6, 4, 5];
    for i in order {
        let (method, path, body, _) = &refused[i];
        let who = if path.ends_with("/finalize") {
            ADMIN
        } else {
            op.as_str()
        };
        let (status, v) = call(&s, who, method.clone(), path, body.clone()).await;
        assert!(
            status.is_success(),
            "operator: {method} {path}: {status} {v}"
        );
    }
    let story = s.get_json("/api/v1/stories/sneaky").await;
    assert_eq!(story["created_by"], "op-1");
    let accepted = s.get_json("/api/v1/followups?status=accepted").await;
    assert_eq!(accepted[0]["id"], fid);
    assert_eq!(accepted[0]["decided_by"], "op-1");
    s.stop().await;
}

/// An agent takes ready work and finishes it with the returned token. The claim belongs to the
/// token that took it; once the list was acquired again (by the same agent or another), the
/// old fencing token is stale: 409, and the task is left as it was.
async fn ready_work_is_taken_and_finished_under_its_token(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let op = token(&s, "op-1", Role::Operator).await;
    let a = token(&s, "agent-a", Role::Agent).await;
    let b = token(&s, "agent-b", Role::Agent).await;
    ok(
        &s,
        &op,
        Method::POST,
        "/api/v1/stories",
        Some(json!({ "slug": "pay", "title": "Pay" })),
        StatusCode::CREATED,
    )
    .await;
    let mut ids = Vec::new();
    for title in ["Charge", "Refund"] {
        let t = ok(
            &s,
            &op,
            Method::POST,
            "/api/v1/stories/pay/tasks",
            Some(json!({ "title": title })),
            StatusCode::CREATED,
        )
        .await;
        ids.push(t["id"].as_i64().unwrap());
    }
    let ready = s.get_json("/api/v1/ready?limit=10").await;
    assert_eq!(titles(&ready), ["Charge", "Refund"]);
    let task_path = |id: i64, action: &str| format!("/api/v1/tasks/{id}/{action}");

    // Start and done always need the fence, even from an operator.
    let p = call(
        &s,
        &op,
        Method::POST,
        &task_path(ids[0], "start"),
        Some(json!({ "agent": "agent-a", "token": 1 })),
    )
    .await;
    assert_eq!(p.0, StatusCode::CONFLICT, "{}", p.1);

    let taken = ok(
        &s,
        &a,
        Method::POST,
        "/api/v1/ready/take",
        Some(json!({ "agent": "agent-a", "ttl_s": 600 })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(taken["taken"], true, "{taken}");
    assert_eq!(taken["task"]["id"], ids[0]);
    let first = taken["token"].as_i64().unwrap();
    // The claim is held for agent-a by the token that took it.
    let claim = s.get_json("/api/v1/claims/pay/default").await;
    assert_eq!(claim["outcome"], "held", "{claim}");
    assert_eq!(claim["holder"]["agent"], "agent-a");
    assert_eq!(claim["holder"]["principal"], "agent-a");
    assert_eq!(claim["token"], first);
    // Nothing else is ready while the list is held.
    let nothing = ok(
        &s,
        &b,
        Method::POST,
        "/api/v1/ready/take",
        Some(json!({ "agent": "agent-b" })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(nothing, json!({ "taken": false }));

    // Another token cannot act under agent-a's claim, even with its name and token; a wrong
    // token is refused too.
    let head = s.head().await;
    for (secret, fence) in [(&b, first), (&a, first + 100)] {
        let p = call(
            &s,
            secret,
            Method::POST,
            &task_path(ids[0], "done"),
            Some(json!({ "agent": "agent-a", "token": fence })),
        )
        .await;
        assert_eq!(p.0, StatusCode::CONFLICT, "{}", p.1);
    }
    assert_eq!(s.head().await, head);

    // agent-a lets the list go and acquires it again: a newer token; the first is stale.
    let claim_call = |secret: &str, what: &str, agent: &str| {
        let req = s
            .anon(Method::POST, &format!("/api/v1/claims/{what}"))
            .bearer_auth(secret)
            .json(&json!({ "story": "pay", "agent": agent }));
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(
        claim_call(&a, "release", "agent-a").await["outcome"],
        "released"
    );
    let again = claim_call(&a, "acquire", "agent-a").await;
    assert_eq!(again["outcome"], "acquired", "{again}");
    let second = again["token"].as_i64().unwrap();
    assert!(second > first);
    let before = s.get_json(&format!("/api/v1/tasks/{}", ids[0])).await;
    let head = s.head().await;
    let res = s
        .anon(Method::POST, &task_path(ids[0], "done"))
        .bearer_auth(&a)
        .json(&json!({ "agent": "agent-a", "token": first }))
        .send()
        .await
        .unwrap();
    let p = expect_problem(res, 409, "stale token").await;
    assert!(p["detail"].as_str().unwrap().contains("stale"), "{p}");
    assert_eq!(s.head().await, head, "a stale token appended no event");

    // agent-b takes the list over: agent-a's token no longer fences anything.
    assert_eq!(
        claim_call(&a, "release", "agent-a").await["outcome"],
        "released"
    );
    let over = claim_call(&b, "acquire", "agent-b").await;
    let third = over["token"].as_i64().unwrap();
    assert!(third > second);
    let head = s.head().await;
    for (action, body) in [
        ("done", json!({ "agent": "agent-a", "token": second })),
        ("start", json!({ "agent": "agent-a", "token": second })),
        (
            "block",
            json!({ "reason": "stale", "agent": "agent-a", "token": second }),
        ),
    ] {
        let res = s
            .anon(Method::POST, &task_path(ids[0], action))
            .bearer_auth(&a)
            .json(&body)
            .send()
            .await
            .unwrap();
        let p = expect_problem(res, 409, &format!("{action} under another's claim")).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains("claimed by agent-b"), "{detail}");
    }
    assert_eq!(s.head().await, head, "refused calls appended no event");
    assert_eq!(
        s.get_json(&format!("/api/v1/tasks/{}", ids[0])).await,
        before,
        "refused calls left the task as it was"
    );

    // The new holder finishes it with its token, lets the list go, and takes the next task.
    let done = ok(
        &s,
        &b,
        Method::POST,
        &task_path(ids[0], "done"),
        Some(json!({ "agent": "agent-b", "token": third })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["status"], "done");
    assert_eq!(done["worker"], "agent-b");
    assert_eq!(
        claim_call(&b, "release", "agent-b").await["outcome"],
        "released"
    );
    let next = ok(
        &s,
        &b,
        Method::POST,
        "/api/v1/ready/take",
        Some(json!({ "agent": "agent-b", "story": "pay" })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(next["task"]["id"], ids[1], "{next}");
    let fence = next["token"].as_i64().unwrap();
    ok(
        &s,
        &b,
        Method::POST,
        &task_path(ids[1], "done"),
        Some(json!({ "agent": "agent-b", "token": fence })),
        StatusCode::OK,
    )
    .await;
    s.stop().await;
}

/// A follow-up posted twice is added, then unchanged; with new content it is updated. An
/// operator accepts one (it becomes a task before the final one) and rejects another, each
/// once.
async fn followups_are_collected_once_and_triaged(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let op = token(&s, "op-1", Role::Operator).await;
    let agent = token(&s, "agent-1", Role::Agent).await;
    ok(
        &s,
        &op,
        Method::POST,
        "/api/v1/stories",
        Some(json!({ "slug": "docs", "title": "Docs" })),
        StatusCode::CREATED,
    )
    .await;
    let doc = |path: &str, hash: &str, body: &str| {
        json!({
            "path": path, "hash": hash, "story": "docs", "agent": "agent-1",
            "task": "T3", "title": "Explain the setup", "body": body,
        })
    };
    let first = ok(
        &s,
        &agent,
        Method::POST,
        "/api/v1/followups",
        Some(doc("doc/docs.agent-1.T3.setup.md", "aaa", "- [ ] setup")),
        StatusCode::OK,
    )
    .await;
    assert_eq!(first["outcome"], "added");
    assert_eq!(first["followup"]["status"], "pending");
    let head = s.head().await;
    let second = ok(
        &s,
        &agent,
        Method::POST,
        "/api/v1/followups",
        Some(doc("doc/docs.agent-1.T3.setup.md", "aaa", "- [ ] setup")),
        StatusCode::OK,
    )
    .await;
    assert_eq!(second["outcome"], "unchanged");
    assert_eq!(second["followup"]["id"], first["followup"]["id"]);
    assert_eq!(s.head().await, head, "an unchanged doc appends nothing");
    let third = ok(
        &s,
        &agent,
        Method::POST,
        "/api/v1/followups",
        Some(doc(
            "doc/docs.agent-1.T3.setup.md",
            "bbb",
            "- [ ] setup, twice",
        )),
        StatusCode::OK,
    )
    .await;
    assert_eq!(third["outcome"], "updated");
    assert_eq!(third["followup"]["body"], "- [ ] setup, twice");
    let other = ok(
        &s,
        &agent,
        Method::POST,
        "/api/v1/followups",
        Some(doc("doc/docs.agent-1.T3.other.md", "ccc", "- [ ] other")),
        StatusCode::OK,
    )
    .await;
    assert_eq!(other["outcome"], "added");
    let pending = s.get_json("/api/v1/followups?status=pending").await;
    assert_eq!(pending.as_array().unwrap().len(), 2);

    let id = first["followup"]["id"].as_i64().unwrap();
    let accepted = ok(
        &s,
        &op,
        Method::POST,
        &format!("/api/v1/followups/{id}/accept"),
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(accepted["status"], "accepted");
    let task_id = accepted["task_id"].as_i64().unwrap();
    let tasks = s.get_json("/api/v1/stories/docs/tasks").await;
    assert_eq!(tasks[0]["id"], task_id);
    assert_eq!(tasks[0]["title"], "Explain the setup");
    assert!(tasks[1]["title"].as_str().unwrap().contains("FINAL"));
    let res = s
        .anon(Method::POST, &format!("/api/v1/followups/{id}/reject"))
        .bearer_auth(&op)
        .json(&json!({ "reason": "changed my mind" }))
        .send()
        .await
        .unwrap();
    expect_problem(res, 409, "triaged twice").await;

    let other_id = other["followup"]["id"].as_i64().unwrap();
    let res = s
        .anon(
            Method::POST,
            &format!("/api/v1/followups/{other_id}/reject"),
        )
        .bearer_auth(&op)
        .json(&json!({ "reason": " " }))
        .send()
        .await
        .unwrap();
    expect_problem(res, 400, "reject without a reason").await;
    let rejected = ok(
        &s,
        &op,
        Method::POST,
        &format!("/api/v1/followups/{other_id}/reject"),
        Some(json!({ "reason": "out of scope" })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["reason"], "out of scope");
    assert_eq!(rejected["decided_by"], "op-1");
    let all = s.get_json("/api/v1/followups").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(
        s.get_json("/api/v1/followups?status=pending").await,
        json!([])
    );
    s.stop().await;
}

/// What bad backlog input must not change: the log head, the stories and the tasks.
async fn backlog_snapshot(s: &Server) -> (i64, Value, Value, Value) {
    (
        s.head().await,
        s.get_json("/api/v1/stories").await,
        s.get_json("/api/v1/stories/one").await,
        s.get_json("/api/v1/followups").await,
    )
}

/// Unknown stories, oversized bodies, control characters, cross-story blockers, ids that are
/// not numbers, malformed filters: each a 4xx problem, and nothing changes.
async fn bad_backlog_input_is_refused_without_effect(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let op = token(&s, "op-1", Role::Operator).await;
    for slug in ["one", "two"] {
        ok(
            &s,
            &op,
            Method::POST,
            "/api/v1/stories",
            Some(json!({ "slug": slug, "title": slug })),
            StatusCode::CREATED,
        )
        .await;
    }
    let foreign = ok(
        &s,
        &op,
        Method::POST,
        "/api/v1/stories/two/tasks",
        Some(json!({ "title": "Theirs" })),
        StatusCode::CREATED,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let before = backlog_snapshot(&s).await;

    let cases: Vec<(&str, Method, String, Option<Value>, u16)> = vec![
        (
            "unknown story",
            Method::GET,
            "/api/v1/stories/nope".into(),
            None,
            404,
        ),
        (
            "task for an unknown story",
            Method::POST,
            "/api/v1/stories/nope/tasks".into(),
            Some(json!({ "title": "x" })),
            404,
        ),
        (
            "tasks of an unknown story",
            Method::GET,
            "/api/v1/stories/nope/tasks?todolist=default".into(),
            None,
            404,
        ),
        (
            "close an unknown story",
            Method::POST,
            "/api/v1/stories/nope/close".into(),
            None,
            404,
        ),
        (
            "archive an unknown story's list",
            Method::POST,
            "/api/v1/stories/nope/todolist/archive".into(),
            None,
            404,
        ),
        (
            "validate an unknown story",
            Method::GET,
            "/api/v1/backlog/validate?story=nope".into(),
            None,
            404,
        ),
        (
            "follow-up on an unknown story",
            Method::POST,
            "/api/v1/followups".into(),
            Some(json!({
                "path": "doc/x.md", "hash": "h", "story": "nope", "agent": "a",
                "task": "T1", "title": "x", "body": "",
            })),
            404,
        ),
        (
            "unknown task",
            Method::GET,
            "/api/v1/tasks/999999".into(),
            None,
            404,
        ),
        (
            "unblock an unknown task",
            Method::POST,
            "/api/v1/tasks/999999/unblock".into(),
            None,
            404,
        ),
        (
            "accept an unknown follow-up",
            Method::POST,
            "/api/v1/followups/999999/accept".into(),
            None,
            404,
        ),
        (
            "control character in a title",
            Method::POST,
            "/api/v1/stories/one/tasks".into(),
            Some(json!({ "title": "bell\u{7}" })),
            400,
        ),
        (
            "line break in a story title",
            Method::POST,
            "/api/v1/stories".into(),
            Some(json!({ "slug": "three", "title": "two\nlines" })),
            400,
        ),
        (
            "NUL in a description",
            Method::PUT,
            "/api/v1/stories/one".into(),
            Some(json!({ "title": "one", "description": "a\u{0}b", "labels": [] })),
            400,
        ),
        (
            "blank title",
            Method::POST,
            "/api/v1/stories/one/tasks".into(),
            Some(json!({ "title": "   " })),
            400,
        ),
        (
            "a blocker from another story",
            Method::POST,
            "/api/v1/stories/one/tasks".into(),
            Some(json!({ "title": "waits", "blocked_by": [foreign] })),
            400,
        ),
        (
            "a blocker that does not exist",
            Method::POST,
            "/api/v1/stories/one/tasks".into(),
            Some(json!({ "title": "waits", "blocked_by": [999_999] })),
            400,
        ),
        (
            "a slug with a space",
            Method::POST,
            "/api/v1/stories".into(),
            Some(json!({ "slug": "a b", "title": "x" })),
            400,
        ),
        (
            "a label with a comma",
            Method::POST,
            "/api/v1/stories".into(),
            Some(json!({ "slug": "three", "title": "x", "labels": ["a,b"] })),
            400,
        ),
        (
            "an existing slug",
            Method::POST,
            "/api/v1/stories".into(),
            Some(json!({ "slug": "one", "title": "again" })),
            409,
        ),
        (
            "a task id that is not a number",
            Method::GET,
            "/api/v1/tasks/abc".into(),
            None,
            400,
        ),
        (
            "done on a task id that is not a number",
            Method::POST,
            "/api/v1/tasks/abc/done".into(),
            Some(json!({ "agent": "a", "token": 1 })),
            400,
        ),
        (
            "a follow-up id that is not a number",
            Method::POST,
            "/api/v1/followups/1.5/accept".into(),
            None,
            400,
        ),
        (
            "NUL in a slug",
            Method::GET,
            "/api/v1/stories/a%00b".into(),
            None,
            400,
        ),
        (
            "control character in a todolist name",
            Method::GET,
            "/api/v1/stories/one/tasks?todolist=a%01".into(),
            None,
            400,
        ),
        (
            "an unknown status",
            Method::GET,
            "/api/v1/stories?status=done".into(),
            None,
            400,
        ),
        (
            "an unknown follow-up status",
            Method::GET,
            "/api/v1/followups?status=maybe".into(),
            None,
            400,
        ),
        (
            "limit 0",
            Method::GET,
            "/api/v1/ready?limit=0".into(),
            None,
            400,
        ),
        (
            "a slug filter with a slash",
            Method::GET,
            "/api/v1/ready?story=a/b".into(),
            None,
            400,
        ),
        (
            "ttl_s 0",
            Method::POST,
            "/api/v1/ready/take".into(),
            Some(json!({ "agent": "a", "ttl_s": 0 })),
            400,
        ),
        (
            "an agent with a control character",
            Method::POST,
            "/api/v1/ready/take".into(),
            Some(json!({ "agent": "a\u{1b}" })),
            400,
        ),
        (
            "an unknown field",
            Method::POST,
            "/api/v1/stories/one/tasks".into(),
            Some(json!({ "title": "x", "priority": 1 })),
            422,
        ),
        (
            "start without a token",
            Method::POST,
            format!("/api/v1/tasks/{foreign}/start"),
            Some(json!({ "agent": "a" })),
            422,
        ),
        (
            "an agent without a token",
            Method::POST,
            format!("/api/v1/tasks/{foreign}/block"),
            Some(json!({ "reason": "r", "agent": "a" })),
            400,
        ),
        (
            "position 0",
            Method::POST,
            format!("/api/v1/tasks/{foreign}/move"),
            Some(json!({ "position": 0 })),
            400,
        ),
        (
            "a todolist name with '@'",
            Method::POST,
            "/api/v1/stories/one/todolist/new".into(),
            Some(json!({ "name": "x@y" })),
            400,
        ),
        (
            "a follow-up path with a line break",
            Method::POST,
            "/api/v1/followups".into(),
            Some(json!({
                "path": "doc/\nx.md", "hash": "h", "story": "one", "agent": "a",
                "task": "T1", "title": "x", "body": "",
            })),
            400,
        ),
        (
            "a follow-up body with NUL",
            Method::POST,
            "/api/v1/followups".into(),
            Some(json!({
                "path": "doc/x.md", "hash": "h", "story": "one", "agent": "a",
                "task": "T1", "title": "x", "body": "a\u{0}",
            })),
            400,
        ),
    ];
    for (what, method, path, body, status) in cases {
        let mut req = s.admin(method.clone(), &path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        expect_problem(res, status, &format!("{what}: {method} {path}")).await;
    }

    // A 2 MiB body, over a raw connection: the server answers before reading all of it.
    for path in [
        "/api/v1/stories",
        "/api/v1/stories/one/tasks",
        "/api/v1/followups",
    ] {
        let mut body = br#"{"slug":"big","title":"big","body":""#.to_vec();
        body.extend(std::iter::repeat_n(b'A', 2 * 1024 * 1024));
        body.extend(br#""}"#);
        let head = format!(
            "POST {path} HTTP/1.1\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json"
        );
        let res = common::raw_request(&s.base, &head, body).await;
        assert!(
            matches!(res.status, 400 | 413),
            "2 MiB body to {path}: {}",
            res.status
        );
        assert_eq!(
            res.header("content-type"),
            Some("application/problem+json"),
            "2 MiB body to {path}"
        );
    }
    // A body under the server's limit but over the core's: refused as invalid.
    let res = s
        .admin(Method::POST, "/api/v1/stories/one/tasks")
        .json(&json!({ "title": "big", "body": "x".repeat(65 * 1024) }))
        .send()
        .await
        .unwrap();
    expect_problem(res, 400, "a 65 KiB task body").await;

    assert_eq!(
        backlog_snapshot(&s).await,
        before,
        "bad input changed nothing"
    );
    let res = s.anon(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    s.stop().await;
}
