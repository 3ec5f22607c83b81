//! `gh api` as a subprocess: the method and path as arguments, a JSON body on stdin
//! (`--input -`, never `-F` fields, so a value starting with `@` is never read as a file),
//! `-i` to read the status and headers, and a timeout after which `gh` is killed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::error::GhError;

/// How to run `gh`.
#[derive(Debug, Clone)]
pub struct Gh {
    /// The program (`gh`, found on `PATH`, unless set).
    pub program: PathBuf,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// How long one call may take before `gh` is killed.
    pub timeout: Duration,
    /// The shortest wait after a rate limit answer, whatever `Retry-After` says.
    pub min_retry_wait: Duration,
}

impl Default for Gh {
    fn default() -> Self {
        Self {
            program: PathBuf::from("gh"),
            env: Vec::new(),
            timeout: Duration::from_secs(30),
            min_retry_wait: Duration::from_secs(60),
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Headers,
    /// The JSON body (`Null` when empty).
    pub body: Value,
}

impl Response {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `rel="next"` URL of a `Link` header, as a path `gh api` takes.
    pub fn next_page(&self) -> Option<String> {
        next_link(self.header("link")?)
    }
}

/// How many times a read is tried again after a timeout or a 5xx.
const READ_RETRIES: u32 = 2;

impl Gh {
    /// `GET path`, tried again (up to `READ_RETRIES` times) after a timeout or a 5xx: a
    /// read changes nothing, so trying it again is always safe, and one slow answer does not
    /// stop a sync.
    pub async fn get(&self, path: &str) -> Result<Response, GhError> {
        let mut tries = 0;
        loop {
            match self.api("GET", path, None).await {
                Err(e) if e.is_ambiguous() && tries < READ_RETRIES => tries += 1,
                other => return other,
            }
        }
    }

    /// Runs `gh api -i --method METHOD PATH`, with `body` as JSON on stdin.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, GhError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(["api", "-i", "--method", method, path])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("GH_PROMPT_DISABLED", "1")
            .env("GH_NO_UPDATE_NOTIFIER", "1")
            .env("NO_COLOR", "1")
            .stdin(if body.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if body.is_some() {
            cmd.args(["--input", "-"]);
        }
        let mut child = cmd.spawn().map_err(GhError::Spawn)?;
        let run = async {
            if let (Some(body), Some(mut stdin)) = (body, child.stdin.take()) {
                let text = body.to_string();
                // A gh that exits early closes its end; its exit status tells why.
                let _ = stdin.write_all(text.as_bytes()).await;
                drop(stdin);
            }
            child.wait_with_output().await
        };
        let out = match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(GhError::Spawn(e)),
            Err(_) => return Err(GhError::Timeout(self.timeout)),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let parsed = parse_included(&stdout);
        let code = out.status.code();
        match parsed {
            Some((status, headers, text)) if out.status.success() && status < 300 => {
                let body = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(text).map_err(|e| GhError::Other {
                        code,
                        status: Some(status),
                        message: format!("unreadable JSON answer: {e}"),
                    })?
                };
                Ok(Response {
                    status,
                    headers,
                    body,
                })
            }
            Some((status, headers, text)) => {
                let retry_after = headers
                    .iter()
                    .find(|(k, _)| k == "retry-after")
                    .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Err(GhError::classify(
                    code,
                    Some(status),
                    retry_after,
                    text,
                    &stderr,
                    self.min_retry_wait,
                ))
            }
            None => Err(GhError::classify(
                code,
                None,
                None,
                "",
                &stderr,
                self.min_retry_wait,
            )),
        }
    }
}

/// Header names (lower case) and values.
type Headers = Vec<(String, String)>;

/// Splits `gh api -i` output into status, headers (names lower-cased) and body.
fn parse_included(out: &str) -> Option<(u16, Headers, &str)> {
    let (status_line, rest) = out.split_once('\n')?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let mut headers = Vec::new();
    let mut rest = rest;
    loop {
        let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
        rest = after;
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        if after.is_empty() {
            break;
        }
    }
    Some((status, headers, rest))
}

/// The `rel="next"` target of a `Link` header, as a path relative to the API root.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        if !params.split(';').any(|p| p.trim() == "rel=\"next\"") {
            return None;
        }
        let url = url.trim().trim_start_matches('<').trim_end_matches('>');
        // `gh api` takes a full URL too, but a path keeps it on the configured host.
        let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
        let path = after_scheme.split_once('/').map_or("", |(_, p)| p);
        // GitHub Enterprise serves the API under `/api/v3/`.
        let path = path.strip_prefix("api/v3/").unwrap_or(path);
        Some(path.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_included_output() {
        let out = "HTTP/1.1 200 OK\nContent-Type: application/json\r\nLink: <http://api.x/y?page=2>; rel=\"next\"\r\n\r\n[1]";
        let (status, headers, body) = parse_included(out).expect("parsed");
        assert_eq!(status, 200);
        assert_eq!(headers[1].0, "link");
        assert_eq!(body, "[1]");
        assert!(parse_included("gh: not json").is_none());
        let (s, h, b) = parse_included("HTTP/2.0 204 No Content\n\n").expect("parsed");
        assert_eq!((s, h.len(), b), (204, 0, ""));
    }

    #[test]
    fn follows_next_links() {
        let link = "<https://api.github.com/repositories/1/issues?page=2&per_page=100>; rel=\"next\", <https://api.github.com/repositories/1/issues?page=9>; rel=\"last\"";
        assert_eq!(
            next_link(link).as_deref(),
            Some("repositories/1/issues?page=2&per_page=100")
        );
        assert_eq!(
            next_link("<https://ghe.example/api/v3/repos/a/b/issues?page=3>; rel=\"next\"")
                .as_deref(),
            Some("repos/a/b/issues?page=3")
        );
        assert_eq!(next_link("<https://x/y?page=1>; rel=\"prev\""), None);
    }
}
