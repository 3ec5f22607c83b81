//! What the HTTP benchmarks share: the database a run uses (a temporary SQLite file or a
//! scratch PostgreSQL database), an in-process server on an ephemeral port, a minimal
//! Server-Sent Events reader, and timing helpers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gaia_server::{AppState, ServerOptions};
use tokio::net::TcpListener;

use super::{Sample, Scratch, bench_error};
use crate::exit::CliError;

/// Where one backend's run keeps its data; dropped (or the database dropped) afterwards.
#[derive(Debug)]
pub(super) enum Backend {
    Sqlite {
        dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres(Scratch),
}

impl Backend {
    pub(super) fn sqlite() -> Result<Self, CliError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bench.db");
        Ok(Self::Sqlite { dir, path })
    }

    pub(super) async fn postgres(server: &str) -> Result<Self, CliError> {
        if !(server.starts_with("postgres://") || server.starts_with("postgresql://")) {
            return Err(CliError::bad_input(
                "--postgres takes a postgres://USER@HOST/DB URL",
            ));
        }
        Ok(Self::Postgres(Scratch::create(server).await?))
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    pub(super) fn url(&self) -> String {
        match self {
            Self::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Self::Postgres(s) => s.url.clone(),
        }
    }

    /// Removes what the run left: the temporary directory or the scratch database.
    pub(super) async fn finish(self) -> Result<(), CliError> {
        match self {
            Self::Sqlite { dir, .. } => {
                drop(dir);
                Ok(())
            }
            Self::Postgres(s) => s.drop_database().await,
        }
    }
}

/// A server running in this process on 127.0.0.1 and an ephemeral port.
#[derive(Debug)]
pub(super) struct InProcess {
    /// `http://127.0.0.1:PORT`
    pub(super) base: String,
    pub(super) state: AppState,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl InProcess {
    pub(super) async fn start(state: AppState) -> Result<Self, CliError> {
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
    pub(super) async fn stop(self) -> Result<(), CliError> {
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
pub(super) fn server_options(url: &str) -> ServerOptions {
    ServerOptions {
        schema_version: crate::open::schema_version(url),
        drain_timeout: Duration::from_secs(2),
        ..ServerOptions::default()
    }
}

/// Reads an event stream frame by frame (frames end with a blank line).
#[derive(Debug)]
pub(super) struct SseReader {
    res: reqwest::Response,
    buf: Vec<u8>,
}

impl SseReader {
    /// Opens `url` with `token`; anything but 200 is an error.
    pub(super) async fn open(
        client: &reqwest::Client,
        url: &str,
        token: &str,
    ) -> Result<Self, CliError> {
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
    pub(super) async fn next_frame(&mut self) -> Result<Option<String>, CliError> {
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
    pub(super) async fn next_data(&mut self) -> Result<Option<serde_json::Value>, CliError> {
        while let Some(frame) = self.next_frame().await? {
            if let Some(v) = frame_data(&frame) {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

/// The JSON in a frame's `data:` line.
pub(super) fn frame_data(frame: &str) -> Option<serde_json::Value> {
    let line = frame.lines().find_map(|l| l.strip_prefix("data:"))?;
    serde_json::from_str(line.trim_start()).ok()
}

/// Microseconds since `start`, saturating.
pub(super) fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Microseconds from `from` to `to`, 0 when `to` came first.
pub(super) fn between(from: Instant, to: Instant) -> u32 {
    micros(to.saturating_duration_since(from))
}

/// A sample holding `latencies`, sorted.
pub(super) fn sample_of(mut latencies: Vec<u32>) -> Sample {
    latencies.sort_unstable();
    Sample {
        ops: latencies.len() as u64,
        latencies,
        ..Sample::default()
    }
}

/// `ms` with two decimals from microseconds.
pub(super) fn ms(us: u32) -> String {
    format!("{:.2}", f64::from(us) / 1000.0)
}

/// Fails with the response's status and body unless it succeeded.
pub(super) async fn checked(
    res: Result<reqwest::Response, reqwest::Error>,
    what: &str,
) -> Result<reqwest::Response, CliError> {
    let res = res.map_err(|e| bench_error(what, e))?;
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    Err(bench_error(&format!("{what}: {status}"), text.trim()))
}
