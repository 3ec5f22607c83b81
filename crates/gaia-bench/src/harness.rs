//! What the HTTP benchmarks share: an in-process server on an ephemeral port, a minimal
//! Server-Sent Events reader, and timing helpers.

use std::time::{Duration, Instant};

use gaia_server::{AppState, ServerOptions};
use tokio::net::TcpListener;

use crate::exit::{BenchError, bench_error};
use crate::sample::Sample;
use crate::settings::schema_version;

/// A server running in this process on 127.0.0.1 and an ephemeral port.
#[derive(Debug)]
pub struct InProcess {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub state: AppState,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl InProcess {
    pub async fn start(state: AppState) -> Result<Self, BenchError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| bench_error("cannot listen on 127.0.0.1:0", e))?;
        let base = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(gaia_server::serve(
            listener,
            state.clone(),
            std::future::pending(),
        ));
        Ok(Self { base, state, task })
    }

    /// Ends streams and workers and waits for the server to stop.
    pub async fn stop(self) -> Result<(), BenchError> {
        self.state.shutdown.cancel();
        let drain = self.state.opts.drain_timeout + Duration::from_secs(1);
        match tokio::time::timeout(drain, self.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(bench_error("the server failed", e)),
            Ok(Err(e)) => Err(bench_error("the server task failed", e)),
            Err(_) => Err(bench_error("the server did not stop", format!("{drain:?}"))),
        }
    }
}

/// Server settings for an in-process benchmark server: the defaults, with a short drain.
pub fn server_options(url: &str) -> ServerOptions {
    ServerOptions {
        schema_version: schema_version(url),
        drain_timeout: Duration::from_secs(2),
        ..ServerOptions::default()
    }
}

/// Reads an event stream frame by frame (frames end with a blank line).
#[derive(Debug)]
pub struct SseReader {
    res: reqwest::Response,
    buf: Vec<u8>,
}

impl SseReader {
    /// Opens `url` with `token`; anything but 200 is an error.
    pub async fn open(
        client: &reqwest::Client,
        url: &str,
        token: &str,
    ) -> Result<Self, BenchError> {
        let res = client
            .get(url)
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| bench_error("opening the event stream", e))?;
        if !res.status().is_success() {
            let status = res.status();
            let text = res.text().await.unwrap_or_default();
            return Err(bench_error(
                &format!("opening the event stream: {status}"),
                text.trim(),
            ));
        }
        Ok(Self {
            res,
            buf: Vec::new(),
        })
    }

    /// The next frame's text, or `None` when the server closed the stream.
    pub async fn next_frame(&mut self) -> Result<Option<String>, BenchError> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let frame = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(Some(frame));
            }
            match self
                .res
                .chunk()
                .await
                .map_err(|e| bench_error("reading the event stream", e))?
            {
                Some(bytes) => self.buf.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }

    /// The next frame that carries data, parsed as JSON (comments and heartbeats skipped).
    pub async fn next_data(&mut self) -> Result<Option<serde_json::Value>, BenchError> {
        while let Some(frame) = self.next_frame().await? {
            if let Some(v) = frame_data(&frame) {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

/// The JSON in a frame's `data:` line.
pub fn frame_data(frame: &str) -> Option<serde_json::Value> {
    let line = frame.lines().find_map(|l| l.strip_prefix("data:"))?;
    serde_json::from_str(line.trim_start()).ok()
}

/// Microseconds since `start`, saturating.
pub fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Microseconds from `from` to `to`, 0 when `to` came first.
pub fn between(from: Instant, to: Instant) -> u32 {
    micros(to.saturating_duration_since(from))
}

/// A sample holding `latencies`, sorted.
pub fn sample_of(mut latencies: Vec<u32>) -> Sample {
    latencies.sort_unstable();
    Sample {
        ops: latencies.len() as u64,
        latencies,
        ..Sample::default()
    }
}

/// `ms` with two decimals from microseconds.
pub fn ms(us: u32) -> String {
    format!("{:.2}", f64::from(us) / 1000.0)
}

/// Fails with the response's status and body unless it succeeded.
pub async fn checked(
    res: Result<reqwest::Response, reqwest::Error>,
    what: &str,
) -> Result<reqwest::Response, BenchError> {
    let res = res.map_err(|e| bench_error(what, e))?;
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    Err(bench_error(&format!("{what}: {status}"), text.trim()))
}
