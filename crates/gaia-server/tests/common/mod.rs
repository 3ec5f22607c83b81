//! Shared support for the server's end-to-end tests: a real server on an ephemeral port, an
//! HTTP client that speaks to it, and a small Server-Sent Events reader.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gaia_core::Gaia;
use gaia_core::store::{Store, StoreOptions};
use gaia_server::{AppState, ServerOptions};
use gaia_testkit::TestDb;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod telegram;

/// The admin token every test server is configured with.
pub const ADMIN: &str = "admin-e2e-token";

/// The schema version this build writes for the database `url` names.
pub fn schema_version(url: &str) -> i64 {
    if url.starts_with("sqlite:") {
        gaia_store_sqlite::SCHEMA_VERSION
    } else {
        gaia_store_postgres::SCHEMA_VERSION
    }
}

/// Server options for tests: the backend's schema version, short polls so tests are quick.
pub fn options(db: &TestDb) -> ServerOptions {
    ServerOptions {
        schema_version: schema_version(&db.url),
        runtime: gaia_runtime::RuntimeOptions {
            poll_interval: Duration::from_millis(100),
            ..gaia_runtime::RuntimeOptions::default()
        },
        drain_timeout: Duration::from_secs(3),
        ..ServerOptions::default()
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The configured admin token.
    pub admin_token: String,
    pub state: AppState,
    pub store: Arc<dyn Store>,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Logs into the dashboard with `token`: the session cookie (`name=value`) and its CSRF
    /// token.
    pub async fn login(&self, token: &str) -> (String, String) {
        let res = self
            .anon(Method::POST, "/dashboard/login")
            .json(&serde_json::json!({ "token": token }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let cookie = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap()
            .to_owned();
        let body: Value = res.json().await.unwrap();
        (cookie, body["csrf"].as_str().unwrap().to_owned())
    }

    /// Opens its own store on `db` and serves it with `opts`.
    pub async fn start(db: &TestDb, opts: ServerOptions) -> Self {
        let store = db.open(&StoreOptions::default()).await;
        Self::on_store(store, opts).await
    }

    /// Serves `store` with `opts`.
    pub async fn on_store(store: Arc<dyn Store>, opts: ServerOptions) -> Self {
        Self::with_admin(store, opts, ADMIN).await
    }

    /// Serves `store` with `opts` and `admin` as the configured admin token.
    pub async fn with_admin(store: Arc<dyn Store>, opts: ServerOptions, admin: &str) -> Self {
        let state = AppState::new(Gaia::new(store.clone()), opts, Some(admin))
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gaia_server::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self {
            base,
            admin_token: admin.to_owned(),
            state,
            store,
            client,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn gaia(&self) -> &Gaia {
        &self.state.gaia
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request without credentials.
    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request with the admin token as a bearer token.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.anon(method, path).bearer_auth(&self.admin_token)
    }

    /// `GET path` as admin; panics unless 200; the JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let res = self.admin(Method::GET, path).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        res.json().await.unwrap()
    }

    /// The newest committed seq, as the API reports it.
    pub async fn head(&self) -> i64 {
        self.get_json("/api/v1/events/head").await["last_seq"]
            .as_i64()
            .unwrap()
    }

    /// Triggers shutdown and waits for `serve` to return; returns how long that took.
    pub async fn stop(mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
        started.elapsed()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One Server-Sent Events frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub comments: Vec<String>,
    pub retry: Option<u64>,
}

impl Frame {
    /// The event seq this frame carries, when it is an event frame.
    pub fn seq(&self) -> Option<i64> {
        self.id.as_deref().map(|id| id.parse().unwrap())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// Reads frames from a `text/event-stream` response body. Only complete frames (ended by a
/// blank line) are returned: a frame cut off by a disconnect is never seen.
pub struct SseReader {
    body: BodyStream,
    buf: Vec<u8>,
}

type BodyStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>;

impl std::fmt::Debug for SseReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseReader")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl SseReader {
    pub fn new(res: reqwest::Response) -> Self {
        assert_eq!(res.status(), StatusCode::OK, "stream answered");
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(ct.starts_with("text/event-stream"), "content type {ct}");
        Self {
            body: Box::pin(res.bytes_stream()),
            buf: Vec::new(),
        }
    }

    /// The next frame; `None` when the body ended.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.take_frame() {
                return Some(frame);
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => panic!("stream body failed: {e}"),
                None => return None,
            }
        }
    }

    /// The next frame, or a panic after `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Frame> {
        tokio::time::timeout(limit, self.next())
            .await
            .expect("a frame within the limit")
    }

    /// The next frame that carries an event (skipping comments and heartbeats).
    pub async fn next_event(&mut self, limit: Duration) -> Frame {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, self.next())
                .await
                .expect("an event within the limit")
                .expect("the stream is open");
            if frame.id.is_some() || frame.event.is_some() {
                return frame;
            }
        }
    }

    fn take_frame(&mut self) -> Option<Frame> {
        loop {
            let end = find_blank_line(&self.buf)?;
            let raw: Vec<u8> = self.buf.drain(..end.1).collect();
            let text = String::from_utf8(raw[..end.0].to_vec()).expect("utf-8 frame");
            let frame = parse_frame(&text);
            if frame != Frame::default() {
                return Some(frame);
            }
        }
    }
}

/// Where the first frame ends: (end of its text, end including the blank line).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    (0..buf.len()).find_map(|i| {
        [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"]
            .into_iter()
            .find(|sep| buf[i..].starts_with(sep))
            .map(|sep| (i, i + sep.len()))
    })
}

fn parse_frame(text: &str) -> Frame {
    let mut f = Frame::default();
    let mut data: Vec<&str> = Vec::new();
    for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        if let Some(c) = line.strip_prefix(':') {
            f.comments.push(c.trim_start().to_owned());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => f.id = Some(value.to_owned()),
            "event" => f.event = Some(value.to_owned()),
            "data" => data.push(value),
            "retry" => f.retry = value.parse().ok(),
            _ => {}
        }
    }
    f.data = data.join("\n");
    f
}

/// A small deterministic generator (xorshift64*), seeded from the clock unless
/// `GAIA_TEST_SEED` is set; the seed is printed so a failure can be replayed.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn from_env(what: &str) -> Self {
        let seed = std::env::var("GAIA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("{what}: GAIA_TEST_SEED={seed}");
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Asserts `res` is a problem document with the expected status; returns the body.
pub async fn expect_problem(res: reqwest::Response, status: u16, what: &str) -> Value {
    let got = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = res.text().await.unwrap();
    assert_eq!(got, status, "{what}: status (body {body})");
    assert_eq!(ct, "application/problem+json", "{what}: content type");
    let v: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{what}: problem body is not JSON ({e}): {body}"));
    assert!(
        v["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: type in {body}"
    );
    assert!(
        v["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: title in {body}"
    );
    assert_eq!(
        v["status"].as_u64(),
        Some(u64::from(status)),
        "{what}: {body}"
    );
    assert!(
        v["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: detail in {body}"
    );
    v
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request over a plain TCP connection, reading the response while the
/// body is still being written. A server may answer an oversized body before reading all of
/// it and then close the connection; an HTTP client that finishes writing first would report
/// only the failed write, never the answer.
pub async fn raw_request(base: &str, head: &str, body: Vec<u8>) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.strip_prefix("http://").unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let request = format!(
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        // The server may stop reading: a failed write is expected then.
        let _ = wr.write_all(request.as_bytes()).await;
        let _ = wr.write_all(&body).await;
        let _ = wr.flush().await;
        wr
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let response = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(r) = parse_raw(&buf) {
                return r;
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    return parse_raw(&buf).unwrap_or_else(|| {
                        panic!(
                            "connection ended before a whole response: {:?}",
                            String::from_utf8_lossy(&buf)
                        )
                    });
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("a response within 10 s");
    writer.abort();
    response
}

/// A whole response with a Content-Length body, once `buf` holds one.
fn parse_raw(buf: &[u8]) -> Option<RawResponse> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let body = buf.get(end + 4..end + 4 + len)?.to_vec();
    Some(RawResponse {
        status,
        headers,
        body,
    })
}
