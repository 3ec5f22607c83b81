//! What can go wrong calling `gh api`, classified from its exit code, the HTTP status it
//! printed and its message on stderr.

use std::time::Duration;

/// A failed `gh api` call.
#[derive(Debug, thiserror::Error)]
pub enum GhError {
    /// `gh` exited 4: no login for the host.
    #[error("gh is not logged in: run `gh auth login` (or set GH_TOKEN)")]
    NotLoggedIn,
    /// `gh` could not be started.
    #[error("cannot run gh ({0}): install the GitHub CLI (Debian package `gh`)")]
    Spawn(std::io::Error),
    /// 404 or 410: the repository does not exist, is not visible, or has issues disabled.
    #[error("{status}: repository or issue not found, or issues disabled ({message})")]
    NotFound { status: u16, message: String },
    /// 422: GitHub refused the content.
    #[error("422 validation failed: {0}")]
    Validation(String),
    /// A secondary rate limit (403), a 429, or (status 200) a primary budget too small to
    /// start with: wait at least `retry_after`.
    #[error("rate limited ({status}): retry after {}s", retry_after.as_secs())]
    RateLimited { status: u16, retry_after: Duration },
    /// 5xx: the request may or may not have taken effect.
    #[error("server error {status}")]
    Server { status: u16 },
    /// No answer in time; `gh` was killed. The request may or may not have taken effect.
    #[error("gh api timed out after {}s", .0.as_secs())]
    Timeout(Duration),
    /// Any other failure (other 4xx, connection errors, unreadable output).
    #[error("gh api failed (exit {code:?}, status {status:?}): {message}")]
    Other {
        code: Option<i32>,
        status: Option<u16>,
        message: String,
    },
}

impl GhError {
    /// Whether a mutating request that failed so may still have taken effect: the caller
    /// must look before trying again.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Self::Server { .. } | Self::Timeout(_) => true,
            // No HTTP status: the connection may have dropped after the request was sent.
            Self::Other { status, .. } => status.is_none(),
            _ => false,
        }
    }

    /// Classifies a finished call: `status` as printed with `-i` (if any), the response body
    /// and `gh`'s stderr.
    pub fn classify(
        code: Option<i32>,
        status: Option<u16>,
        retry_after: Option<Duration>,
        body: &str,
        stderr: &str,
        min_wait: Duration,
    ) -> Self {
        if code == Some(4) {
            return Self::NotLoggedIn;
        }
        let message = message_of(body, stderr);
        let lower = message.to_ascii_lowercase();
        match status {
            Some(404 | 410) => Self::NotFound {
                status: status.unwrap_or(404),
                message,
            },
            Some(422) => Self::Validation(message),
            Some(s @ 429) => Self::RateLimited {
                status: s,
                retry_after: retry_after.unwrap_or(min_wait).max(min_wait),
            },
            Some(s @ 403) if lower.contains("rate limit") || retry_after.is_some() => {
                Self::RateLimited {
                    status: s,
                    retry_after: retry_after.unwrap_or(min_wait).max(min_wait),
                }
            }
            Some(s) if s >= 500 => Self::Server { status: s },
            status => Self::Other {
                code,
                status,
                message,
            },
        }
    }
}

/// GitHub's `message` from a JSON error body, else the first line `gh` printed on stderr.
fn message_of(body: &str, stderr: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| stderr.lines().next().unwrap_or("").trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn classifies_gh_failures() {
        assert!(matches!(
            GhError::classify(Some(4), None, None, "", "", MIN),
            GhError::NotLoggedIn
        ));
        assert!(
            GhError::classify(Some(4), None, None, "", "", MIN)
                .to_string()
                .contains("gh auth login")
        );
        assert!(matches!(
            GhError::classify(
                Some(1),
                Some(410),
                None,
                r#"{"message":"Issues are disabled"}"#,
                "",
                MIN
            ),
            GhError::NotFound { status: 410, .. }
        ));
        assert!(matches!(
            GhError::classify(Some(1), Some(422), None, "", "gh: Validation Failed (HTTP 422)", MIN),
            GhError::Validation(m) if m.contains("Validation")
        ));
        match GhError::classify(
            Some(1),
            Some(403),
            Some(Duration::from_secs(5)),
            r#"{"message":"You have exceeded a secondary rate limit"}"#,
            "",
            MIN,
        ) {
            GhError::RateLimited { retry_after, .. } => assert_eq!(retry_after, MIN),
            other => panic!("{other:?}"),
        }
        match GhError::classify(
            Some(1),
            Some(429),
            Some(Duration::from_secs(90)),
            "",
            "",
            MIN,
        ) {
            GhError::RateLimited { retry_after, .. } => assert_eq!(retry_after.as_secs(), 90),
            other => panic!("{other:?}"),
        }
        let forbidden = GhError::classify(
            Some(1),
            Some(403),
            None,
            r#"{"message":"Resource not accessible"}"#,
            "",
            MIN,
        );
        assert!(matches!(
            forbidden,
            GhError::Other {
                status: Some(403),
                ..
            }
        ));
        assert!(!forbidden.is_ambiguous());
        assert!(GhError::classify(Some(1), Some(502), None, "<html>", "", MIN).is_ambiguous());
        assert!(GhError::classify(Some(1), None, None, "", "error connecting", MIN).is_ambiguous());
        assert!(!GhError::classify(Some(1), Some(422), None, "", "", MIN).is_ambiguous());
    }
}
