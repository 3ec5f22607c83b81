//! The server's time and connection limits, over real connections: a long-poll may wait its
//! documented maximum even when that is longer than the general request timeout.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Server, options};
use gaia_core::commands::{CommandSpec, NewCommand};
use gaia_server::ServerOptions;
use gaia_testkit::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::Value;

gaia_testkit::backend_tests!(long_poll_outlives_the_request_timeout,);

/// A pending request to wait on.
async fn pending(s: &Server) -> String {
    let new = NewCommand::new(
        CommandSpec::Argv(vec!["true".into()]),
        Some("/tmp".into()),
        None,
        None,
        Some("limits test".into()),
        "agent-1",
        false,
        Some(Duration::from_secs(3600)),
    )
    .unwrap();
    s.gaia().request_command(&new).await.unwrap().id
}

/// `GET /commands/{id}/wait?timeout=3s` with a 1 s general request timeout answers 200 with
/// the request still pending after its own timeout, not 503 after the general one.
async fn long_poll_outlives_the_request_timeout(db: &TestDb) {
    let s = Server::start(
        db,
        ServerOptions {
            request_timeout: Duration::from_secs(1),
            ..options(db)
        },
    )
    .await;
    let id = pending(&s).await;
    let res = s
        .admin(
            Method::GET,
            &format!("/api/v1/commands/{id}/wait?timeout=3s"),
        )
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "pending", "{body}");
    // Ordinary requests keep the general timeout: the bound is per route, not lifted.
    let res = s.anon(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    s.stop().await;
}
