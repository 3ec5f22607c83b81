//! End-to-end tests of the live event stream over real HTTP, on both backends: resuming with
//! `Last-Event-ID` under concurrent writers (one node and two nodes on one database), events
//! written elsewhere reaching stream clients, streams ending on graceful shutdown, and the
//! claim reaper reporting each expiry exactly once.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Rng, Server, SseReader, options};
use gaia_core::Gaia;
use gaia_core::store::StoreOptions;
use gaia_server::ServerOptions;
use gaia_testkit::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Events appended by the writers of a resume test.
const N: i64 = 10_000;
/// Concurrent writer tasks; the last emits over HTTP, the others through the service.
const WRITERS: i64 = 4;
/// Longest a stream may stay silent while events are still due.
const STALL: Duration = Duration::from_secs(10);

gaia_testkit::backend_tests!(
    resume_one_node,
    other_writers_reach_stream_clients,
    shutdown_ends_open_streams,
    reaper_reports_each_expiry_once,
);

async fn resume_one_node(db: &TestDb) {
    resume_exactly_once(db, 1).await;
}

/// Two server nodes on one PostgreSQL database, writers on both, the client alternating.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_resume_two_nodes() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    resume_exactly_once(&db, 2).await;
}

/// `WRITERS` tasks append `N` events across `nodes` servers while one client reads the stream,
/// drops the connection at random points and resumes with the last id it saw, alternating
/// between nodes: it must see exactly seqs 1..=N, in order, each once.
async fn resume_exactly_once(db: &TestDb, nodes: usize) {
    let started = Instant::now();
    let mut servers = Vec::new();
    for _ in 0..nodes {
        servers.push(Server::start(db, options(db)).await);
    }
    let mut rng = Rng::from_env(&format!("resume on {nodes} node(s)"));

    let per_writer = N / WRITERS;
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let node = &servers[usize::try_from(w).unwrap() % nodes];
        let gaia = node.gaia().clone();
        let client = node.client.clone();
        let url = node.url("/api/v1/events");
        writers.spawn(async move {
            for i in 0..per_writer {
                let data = json!({ "w": w, "i": i });
                if w < WRITERS - 1 {
                    gaia.emit_event("test.resume", "writer", &format!("w/{w}"), data)
                        .await
                        .unwrap();
                } else {
                    let res = client
                        .post(&url)
                        .bearer_auth(common::ADMIN)
                        .json(&json!({ "type": "test.resume", "subject": format!("w/{w}"), "data": data }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), StatusCode::CREATED);
                }
            }
        });
    }

    let mut last: i64 = 0;
    let mut seen = BTreeSet::new();
    let mut connections = 0u32;
    while last < N {
        let node = &servers[connections as usize % nodes];
        connections += 1;
        let res = node
            .admin(Method::GET, "/api/v1/events/stream")
            .header("Last-Event-ID", last.to_string())
            .send()
            .await
            .unwrap();
        let mut sse = SseReader::new(res);
        // Mostly a few hundred frames, sometimes none at all, before hanging up.
        let budget = match rng.range(0, 9) {
            0 => 0,
            1 => rng.range(1, 5),
            _ => rng.range(1, 800),
        };
        let mut taken = 0;
        while taken < budget && last < N {
            let frame = tokio::time::timeout(STALL, sse.next())
                .await
                .unwrap_or_else(|_| panic!("stream stalled after seq {last}"))
                .expect("stream stays open");
            assert_ne!(frame.event.as_deref(), Some("reset"), "unexpected reset");
            let Some(seq) = frame.seq() else { continue };
            assert_eq!(
                seq,
                last + 1,
                "connection {connections} resumed after {last} but got {seq}"
            );
            let e = frame.json();
            assert_eq!(e["seq"], seq);
            assert_eq!(e["type"], "test.resume");
            let pair = (
                e["data"]["w"].as_i64().unwrap(),
                e["data"]["i"].as_i64().unwrap(),
            );
            assert!(seen.insert(pair), "event {pair:?} delivered twice");
            last = seq;
            taken += 1;
        }
        drop(sse);
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    assert_eq!(servers[0].head().await, N, "no events beyond the writers'");
    assert_eq!(seen.len(), usize::try_from(N).unwrap());
    let want: BTreeSet<_> = (0..WRITERS)
        .flat_map(|w| (0..per_writer).map(move |i| (w, i)))
        .collect();
    assert_eq!(seen, want, "every written event delivered once");
    println!(
        "resume: {N} events on {nodes} node(s), {connections} connections, {:.1?}",
        started.elapsed()
    );
    for s in servers {
        s.stop().await;
    }
}

/// Events committed by another node (server A) or by a separate process over the same
/// database (a bare `Gaia`, as the CLI uses) reach a stream client of server B. The delay is
/// printed; the only bound is that delivery does not hang.
async fn other_writers_reach_stream_clients(db: &TestDb) {
    let backend = if db.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    // Default poll interval: the delay measured is the one a deployment sees.
    let opts = ServerOptions {
        schema_version: common::schema_version(&db.url),
        ..ServerOptions::default()
    };
    let a = Server::start(db, opts.clone()).await;
    let b = Server::start(db, opts).await;
    let cli = Gaia::new(db.open(&StoreOptions::default()).await);

    let res = b
        .admin(Method::GET, "/api/v1/events/stream")
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(res);
    let hello = sse.next_within(Duration::from_secs(5)).await.unwrap();
    assert!(hello.comments.iter().any(|c| c == "connected"), "{hello:?}");

    for writer in ["node A over HTTP", "separate process"] {
        let mut delays = Vec::new();
        for round in 0..5 {
            let t0 = Instant::now();
            if writer == "separate process" {
                cli.emit_event("test.cross", "cli", "", json!({ "round": round }))
                    .await
                    .unwrap();
            } else {
                let res = a
                    .admin(Method::POST, "/api/v1/events")
                    .json(&json!({ "type": "test.cross", "data": { "round": round } }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::CREATED);
            }
            let frame = sse.next_event(Duration::from_secs(10)).await;
            delays.push(t0.elapsed());
            let e = frame.json();
            assert_eq!(e["type"], "test.cross");
            assert_eq!(e["data"]["round"], round, "{writer}");
            // Spread the writes over the poll cycle.
            tokio::time::sleep(Duration::from_millis(37 * (round + 1))).await;
        }
        delays.sort();
        println!(
            "{backend}: {writer} -> stream client of node B: min {:.1?}, median {:.1?}, max {:.1?}",
            delays[0],
            delays[delays.len() / 2],
            delays[delays.len() - 1]
        );
    }
    drop(sse);
    a.stop().await;
    b.stop().await;
}

/// Shutdown ends open streams (their bodies finish) and `serve` returns within seconds.
async fn shutdown_ends_open_streams(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    s.gaia()
        .emit_event("test.before", "t", "", json!({}))
        .await
        .unwrap();
    // One stream caught up and idle, one replaying from the start.
    let mut idle = SseReader::new(
        s.admin(Method::GET, "/api/v1/events/stream")
            .send()
            .await
            .unwrap(),
    );
    let mut replay = SseReader::new(
        s.admin(Method::GET, "/api/v1/events/stream?since=0")
            .send()
            .await
            .unwrap(),
    );
    assert!(idle.next_within(Duration::from_secs(5)).await.is_some());
    assert_eq!(
        replay.next_event(Duration::from_secs(5)).await.seq(),
        Some(1)
    );
    let base = s.base.clone();

    let stopping = tokio::spawn(s.stop());
    for (name, sse) in [("idle", &mut idle), ("replaying", &mut replay)] {
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while sse.next().await.is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "the {name} stream did not end on shutdown");
    }
    let took = stopping.await.unwrap();
    assert!(
        took < Duration::from_secs(5),
        "serve took {took:?} to return"
    );
    println!("shutdown: serve returned after {took:.1?}");
    let after = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(after.is_err(), "still serving after shutdown: {after:?}");
}

/// With two nodes reaping every 100 ms, a claim acquired over the API with a 1 s TTL yields
/// exactly one `claim.expired` event.
async fn reaper_reports_each_expiry_once(db: &TestDb) {
    let opts = ServerOptions {
        runtime: gaia_runtime::RuntimeOptions {
            reap_interval: Duration::from_millis(100),
            ..options(db).runtime
        },
        ..options(db)
    };
    let a = Server::start(db, opts.clone()).await;
    let b = Server::start(db, opts).await;
    let res = a
        .admin(Method::POST, "/api/v1/claims/acquire")
        .json(&json!({ "story": "reap-me", "agent": "agent-1", "ttl": "1s" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let claim: serde_json::Value = res.json().await.unwrap();
    assert_eq!(claim["outcome"], "acquired", "{claim}");

    let expired = || async {
        let list = a
            .get_json("/api/v1/events?since=0&type=claim.expired")
            .await;
        list.as_array().unwrap().clone()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while expired().await.is_empty() {
        assert!(Instant::now() < deadline, "no claim.expired within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Many more rounds on both nodes: still one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = expired().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0]["subject"]
            .as_str()
            .unwrap()
            .contains("reap-me/default"),
        "{}",
        events[0]
    );
    let state = b.get_json("/api/v1/claims/reap-me/default").await;
    assert_eq!(state["outcome"], "expired", "{state}");
    a.stop().await;
    b.stop().await;
}
