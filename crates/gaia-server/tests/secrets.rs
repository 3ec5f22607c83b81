//! A token passed as `?token=` (valid or not), and a stream ticket passed as `?ticket=`, never
//! show up anywhere: not in the logs at TRACE level, not in any response body, stream frame,
//! stored event or audit record.
//!
//! This file is its own test binary because it installs a process-wide tracing subscriber
//! that captures every log line into memory.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Server, SseReader, options};
use gaia_core::tokens::Role;
use gaia_testkit::TestDb;
use reqwest::Method;
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;

gaia_testkit::backend_tests!(query_tokens_never_leak);

/// Everything logged by this process.
#[derive(Debug, Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs the capturing subscriber once for the whole binary, at TRACE for every target.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(captured.clone())
            .init();
        captured
    })
}

/// A secret no test data could contain by accident.
fn secret(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("SECRET{label}{nanos:x}")
}

async fn query_tokens_never_leak(db: &TestDb) {
    let logs = logs();
    let admin = secret("ADMIN");
    let invalid = secret("INVALID");
    let store = db.open(&gaia_core::store::StoreOptions::default()).await;
    let s = Server::with_admin(store, options(db), &admin).await;
    let (_, agent) = s
        .gaia()
        .create_token("agent-q", Role::Agent, "test")
        .await
        .unwrap();
    let secrets = [admin.as_str(), agent.as_str(), invalid.as_str()];
    tracing::info!("canary: the capture works");

    // (method, path before the token, JSON body, status expected for each secret).
    let calls: [(Method, &str, Option<serde_json::Value>, [u16; 3]); 10] = [
        (Method::GET, "/api/v1/tokens?", None, [200, 403, 401]),
        (
            Method::GET,
            "/api/v1/events?since=0&",
            None,
            [200, 200, 401],
        ),
        (
            Method::GET,
            "/api/v1/events?limit=abc&",
            None,
            [400, 400, 401],
        ),
        (
            Method::GET,
            "/api/v1/audit?limit=1000&",
            None,
            [200, 200, 401],
        ),
        (Method::GET, "/api/v1/claims?", None, [200, 200, 401]),
        (
            Method::POST,
            "/api/v1/events?",
            Some(json!({ "type": "chat.message", "data": { "text": "hello" } })),
            [201, 201, 401],
        ),
        (
            Method::POST,
            "/api/v1/claims/acquire?",
            Some(json!({ "story": "leak-check", "ttl": "1h" })),
            [200, 200, 401],
        ),
        (
            Method::DELETE,
            "/api/v1/tokens/nobody?",
            None,
            [404, 403, 401],
        ),
        (Method::GET, "/api/v1/no-such-route?", None, [404, 404, 404]),
        (Method::PUT, "/api/v1/events?", None, [405, 405, 405]),
    ];
    let mut bodies = Vec::new();
    for (method, path, body, statuses) in &calls {
        for (token, status) in secrets.iter().zip(statuses) {
            let mut req = s.anon(method.clone(), &format!("{path}token={token}"));
            if let Some(b) = body {
                req = req.json(b);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status().as_u16(), *status, "{method} {path}");
            bodies.push(format!("{method} {path}: {}", res.text().await.unwrap()));
        }
    }
    // The stream, opened with each valid secret in the query, replays everything.
    for token in [&admin, &agent] {
        let res = s
            .anon(
                Method::GET,
                &format!("/api/v1/events/stream?since=0&token={token}"),
            )
            .send()
            .await
            .unwrap();
        let mut sse = SseReader::new(res);
        let head = s.head().await;
        loop {
            let frame = sse.next_event(Duration::from_secs(5)).await;
            bodies.push(format!("stream frame: {frame:?}"));
            if frame.seq() == Some(head) {
                break;
            }
        }
    }
    let res = s
        .anon(
            Method::GET,
            &format!("/api/v1/events/stream?token={invalid}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    bodies.push(res.text().await.unwrap());

    // A stream ticket is a credential in a URL too: it must not be logged or stored either.
    let res = s
        .admin(Method::POST, "/api/v1/events/stream/ticket")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let ticket = res.json::<serde_json::Value>().await.unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = s
        .anon(
            Method::GET,
            &format!("/api/v1/events/stream?since=0&ticket={ticket}"),
        )
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(res);
    let frame = sse.next_event(Duration::from_secs(5)).await;
    bodies.push(format!("stream frame: {frame:?}"));
    drop(sse);
    let forged = secret("TICKET");
    let res = s
        .anon(
            Method::GET,
            &format!("/api/v1/events/stream?ticket={forged}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    bodies.push(res.text().await.unwrap());

    let events = s.get_json("/api/v1/events?since=0&limit=1000").await;
    let audit = s.gaia().list_audit_tail(1000).await.unwrap();
    s.stop().await;

    let logged = logs.text();
    assert!(
        logged.contains("canary: the capture works"),
        "nothing captured"
    );
    assert!(
        logged.contains("/api/v1/events"),
        "requests were not logged: {logged}"
    );
    assert!(
        logged.contains("TRACE") || logged.contains("DEBUG"),
        "verbose levels captured"
    );
    let stored = format!("{events}\n{audit:?}");
    assert!(
        audit.iter().any(|r| r.outcome == "unauthorized") && stored.contains("agent-q"),
        "the calls were recorded: {stored}"
    );
    for secret in secrets
        .into_iter()
        .chain([ticket.as_str(), forged.as_str()])
    {
        for line in logged.lines() {
            assert!(!line.contains(secret), "a token was logged: {line}");
        }
        for body in &bodies {
            assert!(!body.contains(secret), "a token was answered: {body}");
        }
        assert!(!stored.contains(secret), "a token was stored: {stored}");
    }
    println!(
        "secrets: {} bytes of logs, {} responses, {} events, {} audit records checked",
        logged.len(),
        bodies.len(),
        events.as_array().unwrap().len(),
        audit.len()
    );
}
