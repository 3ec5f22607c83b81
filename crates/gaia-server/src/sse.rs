//! `GET /api/v1/events/stream`: Server-Sent Events. Each event's `id:` is its seq; a client
//! resumes with `Last-Event-ID` (or `?since=`) and never misses or repeats an event.
//!
//! Every subscriber has a small producer task that pulls the events after the last seq it sent
//! from the [`crate::hub::EventHub`] (from memory, shared with every other subscriber, or from
//! the store when it fell behind) and waits on the hub when caught up. Each event is rendered
//! into its SSE frame once and the same bytes are sent to every subscriber. The channel to
//! the client is bounded, so a slow client only slows its own producer: server memory per
//! subscriber stays constant, and nothing is skipped.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use gaia_core::event::{Event, EventFilter, kinds};
use gaia_core::store::Store;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::Caller;
use crate::doc::{BadRequest, EventType, NotFound, ServerErrors, StreamEvent, Unauthorized};
use crate::extract::ApiQuery;
use crate::hub::SharedEvent;
use crate::problem::{ApiError, ApiResult};
use crate::routes::events::filter;
use crate::wire::EventBody;

/// Where the stream is served.
pub const STREAM_PATH: &str = "/api/v1/events/stream";

/// Events read from the store per query.
const PAGE: u32 = 200;
/// Frames buffered per subscriber before its producer waits.
const BUFFER: usize = 16;
/// How long a client waits before reconnecting.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// A stream ticket (from POST /api/v1/events/stream/ticket) instead of a token header.
    pub ticket: Option<String>,
    /// Resume after this seq (the Last-Event-ID header wins). Default: only new events.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub since: Option<i64>,
    /// Only types equal to or under this dotted prefix.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<EventType>)]
    pub type_prefix: Option<String>,
    /// Only events about exactly this subject.
    pub subject: Option<String>,
}

/// The live event stream (text/event-stream). Frames: `id: SEQ` + `data: EVENT JSON`;
/// `event: reset` when the resume point is older than the stored log or past its newest event;
/// `event: revoked` just before the stream ends because its token was revoked; comments as
/// heartbeats.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events", params(StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, nullable = false,
            description = "resume after this seq",
            minimum = 0, maximum = 9223372036854775807_i64)),
    responses((status = 200, content_type = "text/event-stream", body = StreamEvent),
        BadRequest, Unauthorized, ServerErrors))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Response> {
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "Last-Event-ID must be an event seq (a whole number >= 0)",
                    )
                })?,
        ),
    };
    if q.since.is_some_and(|s| s < 0) {
        return Err(ApiError::bad_request("since must be >= 0"));
    }
    let f = filter(q.type_prefix, q.subject)?;
    let start = match last_event_id.or(q.since) {
        Some(s) => s,
        None => state.gaia.store().last_seq().await?,
    };
    let (tx, rx) = mpsc::channel(BUFFER);
    // A stream lives no longer than its credential: it ends when its stored token is revoked
    // (on any node: the revocation is an event in the log every stream reads).
    let revoked = match caller.source {
        crate::auth::Source::Stored => Some(format!("token/{}", caller.name)),
        crate::auth::Source::Configured => None,
    };
    tokio::spawn(produce(state.clone(), f, start, revoked, tx));
    let mut res = Body::from_stream(ReceiverStream::new(rx)).into_response();
    res.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    // Proxies such as nginx must not buffer the stream.
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    res.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    Ok(res)
}

/// One SSE frame, ready for the wire (ends with its blank line).
type Frame = Result<Bytes, Infallible>;

/// The comment sent while a stream is idle, so that proxies and clients keep it open.
const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// A frame with an `event:` name and JSON data (resets and the end of a revoked stream).
fn named(name: &str, data: &serde_json::Value) -> Frame {
    Ok(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
}

/// The wire form of an event: its seq as `id:` and its JSON on one `data:` line (compact JSON
/// holds no newline).
fn render(e: &Event) -> Bytes {
    let data = serde_json::to_string(&EventBody::from(e)).unwrap_or_default();
    Bytes::from(format!("id: {}\ndata: {data}\n\n", e.seq))
}

async fn produce(
    state: AppState,
    f: EventFilter,
    start: i64,
    revoked: Option<String>,
    tx: mpsc::Sender<Frame>,
) {
    let hello = format!(": connected\nretry: {}\n\n", RETRY.as_millis());
    if tx.send(Ok(Bytes::from(hello))).await.is_err() {
        return;
    }
    let store = state.gaia.store().clone();
    let Some(mut last) = resume_point(&store, start, &tx).await else {
        return;
    };
    let mut wake = state.hub.subscribe();
    loop {
        // Everything up to `known` is committed and, seqs being visible in order, readable.
        let known = *wake.borrow_and_update();
        if last < known {
            // Read every event in order (shared with other subscribers through the hub) and
            // send the ones that match; `last` is the last seq scanned, sent or not.
            let page = match state.hub.read_after(&store, last, PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "stream could not read the log");
                    return;
                }
            };
            for e in &page {
                last = e.event.seq;
                if !send_event(e, &f, revoked.as_deref(), &tx).await {
                    return;
                }
            }
            if !page.is_empty() {
                continue;
            }
        }
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tx.closed() => return,
            changed = wake.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(state.opts.heartbeat) => {
                // A full channel already keeps the connection busy.
                let _ = tx.try_send(Ok(Bytes::from_static(HEARTBEAT)));
            }
        }
    }
}

/// Where the stream resumes: after `start`, unless the log cannot serve it gap-free (a
/// `reset` frame then says why). `None` when the stream ends (the log cannot be read, the
/// client left).
async fn resume_point(store: &Arc<dyn Store>, start: i64, tx: &mpsc::Sender<Frame>) -> Option<i64> {
    let read_failed = |e: gaia_core::StoreError| {
        tracing::warn!(error = %e, "stream could not read the log");
    };
    let mut last = start;
    // A resume point past the newest event (the log was restored from an older backup, or
    // the client made the id up) would wait for seqs that mean something else by the time
    // they come: say so and carry on from the head.
    let head = store.last_seq().await.map_err(read_failed).ok()?;
    if start > head {
        let reset = named(
            "reset",
            &json!({ "reason": "resume point is past the newest event", "last_seq": head }),
        );
        tx.send(reset).await.ok()?;
        last = head;
    }
    // A resume point older than what is stored (archived or pruned) cannot be served
    // gap-free: say so instead of silently skipping.
    if last > 0 {
        let first = store
            .events_after(last, &EventFilter::default(), 1)
            .await
            .map_err(read_failed)
            .ok()?;
        if let Some(oldest) = first.first().map(|e| e.seq).filter(|s| *s > last + 1) {
            let reset = named(
                "reset",
                &json!({ "reason": "resume point is older than the stored log", "oldest_seq": oldest }),
            );
            let _ = tx.send(reset).await;
            last = oldest - 1;
        }
    }
    Some(last)
}

/// Sends `shared` when it matches the filter, as the frame every subscriber shares. `false`
/// when the stream ends: the client left, or the event revokes the token the stream was
/// opened with (a `revoked` frame then says so).
async fn send_event(
    shared: &SharedEvent,
    f: &EventFilter,
    revoked: Option<&str>,
    tx: &mpsc::Sender<Frame>,
) -> bool {
    let e = &shared.event;
    if e.kind == kinds::TOKEN_REVOKED && revoked == Some(e.subject.as_str()) {
        let end = named(
            "revoked",
            &json!({ "reason": "the token of this stream was revoked" }),
        );
        let _ = tx.send(end).await;
        return false;
    }
    if !f.matches(e) {
        return true;
    }
    tx.send(Ok(shared.frame(render))).await.is_ok()
}

/// A stream ticket.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TicketBody {
    /// Pass as `?ticket=` to the stream; valid for one minute, on any node.
    pub ticket: String,
    pub expires_at: String,
}

/// Trade the caller's token for a one-minute ticket that opens the event stream, for clients
/// such as browsers that cannot send an Authorization header.
#[utoipa::path(post, path = "/api/v1/events/stream/ticket", tag = "events",
    responses((status = 200, body = TicketBody), Unauthorized, NotFound, ServerErrors))]
pub async fn ticket(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<TicketBody>> {
    let key = state
        .tickets
        .as_ref()
        .ok_or_else(|| ApiError::not_found("stream tickets are not available"))?;
    let now = state.gaia.store().now().await?;
    let fingerprint = match caller.source {
        crate::auth::Source::Configured => crate::auth::admin_fingerprint(&state),
        crate::auth::Source::Stored => None,
    };
    let (ticket, expires) = key.issue(&caller, fingerprint.as_deref(), now);
    Ok(axum::Json(TicketBody {
        ticket,
        expires_at: gaia_core::time::rfc3339(expires),
    }))
}
