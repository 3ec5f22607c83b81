//! The server's time and connection limits, over real connections: a long-poll may wait its
//! documented maximum even when that is longer than the general request timeout; a client
//! that sends half a request, or keeps a connection idle, is disconnected; with every ordinary
//! connection taken, health checks still answer; requests hyper refuses by itself (a URI too
//! long, headers too large) are answered with problem documents.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{ADMIN, Server, options};
use gaia_core::commands::{CommandSpec, NewCommand};
use gaia_server::ServerOptions;
use gaia_testkit::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

gaia_testkit::backend_tests!(
    long_poll_outlives_the_request_timeout,
    half_sent_request_is_closed_after_the_header_timeout,
    idle_connections_are_closed_after_the_idle_timeout,
    health_checks_answer_with_every_connection_taken,
    oversized_heads_get_problem_documents,
);

/// Long enough never to be the reason a test passes; short enough that a hang fails it.
const HANG: Duration = Duration::from_secs(30);

async fn connect(s: &Server) -> TcpStream {
    TcpStream::connect(s.base.strip_prefix("http://").unwrap())
        .await
        .unwrap()
}

/// Reads until the peer closes the connection; panics if it stays open past [`HANG`].
async fn closed_by_server(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 1024];
    let outcome = tokio::time::timeout(HANG, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "{what}: the server kept the connection open"
    );
}

/// Sends `GET path` on `stream` (kept alive) and reads one response: (status, body).
async fn get_on(stream: &mut TcpStream, path: &str, extra: &str) -> (u16, String) {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ADMIN}\r\n{extra}\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    tokio::time::timeout(HANG, read_response(stream))
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no answer"))
}

async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head[9..12].parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return (status, body);
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed before a whole response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Headers that never end are cut off after the header timeout; other clients are served.
async fn half_sent_request_is_closed_after_the_header_timeout(db: &TestDb) {
    let s = Server::start(
        db,
        ServerOptions {
            header_read_timeout: Duration::from_secs(1),
            ..options(db)
        },
    )
    .await;
    let mut slow = connect(&s).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: 1")
        .await
        .unwrap();
    // A connection that sends nothing at all is cut off the same way.
    let mut silent = connect(&s).await;
    closed_by_server(&mut slow, "half-sent request").await;
    closed_by_server(&mut silent, "silent connection").await;
    let res = s.anon(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    s.stop().await;
}

/// A keep-alive connection is closed after sitting idle; one with a request in progress (a
/// long-poll longer than the idle timeout) is not.
async fn idle_connections_are_closed_after_the_idle_timeout(db: &TestDb) {
    let s = Server::start(
        db,
        ServerOptions {
            idle_timeout: Duration::from_secs(1),
            header_read_timeout: Duration::from_secs(120),
            ..options(db)
        },
    )
    .await;
    let id = pending(&s).await;
    let mut busy = connect(&s).await;
    let (status, body) = get_on(
        &mut busy,
        &format!("/api/v1/commands/{id}/wait?timeout=3s"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut idle = connect(&s).await;
    let (status, _) = get_on(&mut idle, "/healthz", "").await;
    assert_eq!(status, 200);
    closed_by_server(&mut idle, "idle keep-alive connection").await;
    s.stop().await;
}

/// With a cap of N connections, N idle connections open: `/healthz` and `/readyz` still answer
/// on the reserve, anything else there is a 503 problem; once a place frees up, requests are
/// served again.
async fn health_checks_answer_with_every_connection_taken(db: &TestDb) {
    const CAP: usize = 4;
    let s = Server::start(
        db,
        ServerOptions {
            max_connections: CAP,
            connection_reserve: 2,
            header_read_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(120),
            ..options(db)
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut c = connect(&s).await;
        // Answered, so the server holds it as one of its connections.
        let (status, _) = get_on(&mut c, "/healthz", "").await;
        assert_eq!(status, 200);
        held.push(c);
    }
    for path in ["/healthz", "/readyz"] {
        let mut c = connect(&s).await;
        let (status, body) = get_on(&mut c, path, "").await;
        assert_eq!(status, 200, "{path} with every connection taken: {body}");
    }
    let mut c = connect(&s).await;
    let (status, body) = get_on(&mut c, "/api/v1/events/head", "").await;
    assert_eq!(status, 503, "{body}");
    let p: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(p["status"], 503, "{body}");
    closed_by_server(&mut c, "a reserve connection after its answer").await;

    // Once the server has seen a held connection close, its place serves requests again.
    drop(held.pop());
    let mut served = false;
    for _ in 0..100 {
        let mut c = connect(&s).await;
        let (status, _) = get_on(&mut c, "/api/v1/events/head", "").await;
        if status == 200 {
            served = true;
            break;
        }
        assert_eq!(status, 503);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "a freed place was never used again");
    s.stop().await;
}

/// A URI or headers too large for hyper get a problem document, not an empty body.
async fn oversized_heads_get_problem_documents(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let long_uri = format!("/api/v1/events?type={}", "a".repeat(70 * 1024));
    let mut c = connect(&s).await;
    let (status, body) = get_on(&mut c, &long_uri, "").await;
    assert_eq!(status, 414, "{body}");
    let p: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(p["status"], 414, "{body}");
    assert!(
        p["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );

    let many: String = (0..200).map(|i| format!("X-Header-{i}: v\r\n")).collect();
    let mut c = connect(&s).await;
    let (status, body) = get_on(&mut c, "/healthz", &many).await;
    assert_eq!(status, 431, "{body}");
    let p: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(p["status"], 431, "{body}");
    // The server goes on answering.
    let res = s.anon(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    s.stop().await;
}

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
