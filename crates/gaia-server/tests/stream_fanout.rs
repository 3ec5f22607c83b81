//! The event stream's fan-out over real HTTP, on both backends: many subscribers at once each
//! receive every event in order without a gap (a filtered one exactly its matches), and a
//! subscriber that stops reading until it has fallen far behind the hub's memory window
//! catches up from the store without a gap.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Server, SseReader, options};
use gaia_testkit::TestDb;
use reqwest::Method;
use serde_json::json;

/// Subscribers connected at once in the fan-out test.
const SUBSCRIBERS: usize = 64;
/// Events appended while they are connected.
const EVENTS: i64 = 600;
/// Concurrent writers; the last writes over HTTP, the others through the service.
const WRITERS: i64 = 3;
/// Longest a stream may stay silent while events are still due.
const STALL: Duration = Duration::from_secs(20);

gaia_testkit::backend_tests!(
    many_subscribers_get_every_event_in_order,
    a_slow_subscriber_catches_up_from_the_store,
);

/// Opens a stream after `after` (optionally filtered) and waits for the `connected` comment.
/// Its own client: the server's has a request timeout, and a stream may outlive it.
async fn open(server: &Server, after: i64, query: &str) -> SseReader {
    let res = reqwest::Client::new()
        .request(
            Method::GET,
            server.url(&format!("/api/v1/events/stream{query}")),
        )
        .bearer_auth(&server.admin_token)
        .header("Last-Event-ID", after.to_string())
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(res);
    let hello = sse.next_within(STALL).await.unwrap();
    assert!(hello.comments.iter().any(|c| c == "connected"), "{hello:?}");
    sse
}

/// Reads event frames until `until` is reached; returns their seqs, checking that each
/// frame's id is its body's seq.
async fn read_until(sse: &mut SseReader, until: i64) -> Vec<i64> {
    let mut seqs = Vec::new();
    while seqs.last().copied().unwrap_or(0) < until {
        let frame = sse.next_event(STALL).await;
        assert_ne!(frame.event.as_deref(), Some("reset"), "unexpected reset");
        let seq = frame.seq().unwrap();
        assert_eq!(frame.json()["seq"], seq);
        seqs.push(seq);
    }
    seqs
}

/// Appends `per_writer` events from each of `WRITERS` tasks on `server`, with `pad` bytes of
/// data each; writer `w` uses type `test.fan.w{w}`.
async fn write(server: &Server, per_writer: i64, pad: usize) {
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let gaia = server.gaia().clone();
        let client = server.client.clone();
        let url = server.url("/api/v1/events");
        let kind = format!("test.fan.w{w}");
        let padding = "x".repeat(pad);
        writers.spawn(async move {
            for i in 0..per_writer {
                let data = json!({ "i": i, "pad": padding });
                if w < WRITERS - 1 {
                    gaia.emit_event(&kind, "writer", "fan", data).await.unwrap();
                } else {
                    let res = client
                        .post(&url)
                        .bearer_auth(common::ADMIN)
                        .json(&json!({ "type": kind, "subject": "fan", "data": data }))
                        .send()
                        .await
                        .unwrap();
                    assert!(res.status().is_success(), "{}", res.status());
                }
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
}

/// `SUBSCRIBERS` streams opened at the head, plus one filtered to one writer's type, while
/// `WRITERS` append concurrently: each unfiltered stream sees exactly every seq after its
/// start, in order; the filtered one sees exactly that writer's events, in order.
async fn many_subscribers_get_every_event_in_order(db: &TestDb) {
    let server = Server::start(db, options(db)).await;
    let start = server.head().await;
    let mut streams = Vec::new();
    for _ in 0..SUBSCRIBERS {
        streams.push(open(&server, start, "").await);
    }
    let filtered = open(&server, start, "?type=test.fan.w0").await;

    let per_writer = EVENTS / WRITERS;
    write(&server, per_writer, 0).await;
    let head = server.head().await;
    assert_eq!(head, start + per_writer * WRITERS, "only the writers wrote");

    let mut readers = tokio::task::JoinSet::new();
    for mut sse in streams {
        readers.spawn(async move { read_until(&mut sse, head).await });
    }
    while let Some(seqs) = readers.join_next().await {
        let seqs = seqs.unwrap();
        let want: Vec<i64> = (start + 1..=head).collect();
        assert_eq!(seqs, want, "every event, in order, once");
    }

    let mut filtered = filtered;
    let mut last = start;
    for i in 0..per_writer {
        let frame = filtered.next_event(STALL).await;
        let e = frame.json();
        assert_eq!(e["type"], "test.fan.w0");
        assert_eq!(e["data"]["i"], i, "the writer's events in its order");
        let seq = frame.seq().unwrap();
        assert!(seq > last, "seqs rise: {seq} after {last}");
        last = seq;
    }
    server.stop().await;
}

/// One stream stops reading while 8,000 events of 4 KiB are appended (far more than the
/// socket buffers and the hub's 4,096-event memory window hold), and a second stream reads
/// along so that the window moves on. The slow stream then reads: every seq, in order.
async fn a_slow_subscriber_catches_up_from_the_store(db: &TestDb) {
    const PER_WRITER: i64 = 8_000 / WRITERS;
    let server = Server::start(db, options(db)).await;
    let start = server.head().await;
    let mut slow = open(&server, start, "").await;
    let mut fast = open(&server, start, "").await;
    let head = start + PER_WRITER * WRITERS;
    let following = tokio::spawn(async move { read_until(&mut fast, head).await });
    write(&server, PER_WRITER, 4096).await;
    assert_eq!(server.head().await, head, "only the writers wrote");
    let want: Vec<i64> = (start + 1..=head).collect();
    assert_eq!(following.await.unwrap(), want, "the reading stream");
    assert_eq!(read_until(&mut slow, head).await, want, "the slow stream");
    server.stop().await;
}
