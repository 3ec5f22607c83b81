//! The scheduled GitHub sync's state as the servers show it, on both backends: nothing while
//! no node has run it, then what the lease holder recorded, alike through the API (any
//! token) and the dashboard's Backlog snapshot (the session), and never without a login.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{Server, options};
use gaia_core::github::WorkerState;
use gaia_core::tokens::Role;
use gaia_testkit::{TestDb, backend_tests};
use reqwest::Method;
use serde_json::Value;

backend_tests!(the_sync_state_is_shown_by_the_api_and_the_backlog_snapshot);

/// The Backlog snapshot, read with a dashboard session of `token`.
async fn snapshot(server: &Server, token: &str) -> Value {
    let (cookie, _) = server.login(token).await;
    let res = server
        .anon(Method::GET, "/dashboard/backlog")
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn api_state(server: &Server, token: &str) -> Value {
    let res = server
        .anon(Method::GET, "/api/v1/github/sync")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["state"].clone()
}

async fn the_sync_state_is_shown_by_the_api_and_the_backlog_snapshot(db: &TestDb) {
    let server = Server::start(db, options(db)).await;
    let g = server.gaia().clone();
    let (_, agent) = g
        .create_token("agent.github", Role::Agent, "test")
        .await
        .unwrap();
    assert_eq!(api_state(&server, &agent).await, Value::Null);
    assert_eq!(snapshot(&server, &agent).await["github"], Value::Null);

    let state = WorkerState {
        repo: "acme/widgets".into(),
        holder: "node-a-41".into(),
        tasks: true,
        last_started: Some("2026-01-02T03:04:05Z".into()),
        last_finished: Some("2026-01-02T03:04:09Z".into()),
        counts: BTreeMap::from([("created".to_owned(), 7), ("failed".to_owned(), 1)]),
        last_error: Some("task 9: validation failed".into()),
        next_run: Some("2026-01-02T03:19:09Z".into()),
        runs: 3,
        updated_at: "2026-01-02T03:04:09Z".into(),
    };
    g.github_worker_record(&state).await.unwrap();
    let shown = api_state(&server, &agent).await;
    assert_eq!(serde_json::from_value::<WorkerState>(shown).unwrap(), state);
    let snap = snapshot(&server, &agent).await;
    assert_eq!(
        serde_json::from_value::<WorkerState>(snap["github"].clone()).unwrap(),
        state
    );

    let res = server
        .anon(Method::GET, "/api/v1/github/sync")
        .send()
        .await
        .unwrap();
    common::expect_problem(res, 401, "the sync state without a token").await;
    server.stop().await;
}
