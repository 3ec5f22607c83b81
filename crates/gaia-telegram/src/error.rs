//! Typed Bot API errors, classified so that a caller can decide whether to wait, retry, stop
//! polling or give up. No error message ever contains the bot token.

use std::time::Duration;

use serde::Deserialize;

/// What went wrong with a Bot API call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelegramError {
    /// Flood control (429 with `parameters.retry_after`): send nothing to this bot until the
    /// delay has passed, then retry.
    #[error("telegram: too many requests, retry after {}s", retry_after.as_secs())]
    RetryAfter { retry_after: Duration },
    /// A transient failure: a 5xx answer, a network error or a timeout. Retry with backoff.
    /// `status` is `None` when no HTTP answer arrived. A send that timed out may still have
    /// been delivered.
    #[error("telegram: transient failure{}: {description}", status_suffix(*status))]
    Retryable {
        status: Option<u16>,
        description: String,
    },
    /// 409: another `getUpdates` poller is running for this bot, or a webhook is set.
    #[error("telegram: conflict: {description}")]
    Conflict { description: String },
    /// Telegram refused the request (400 bad request, 401 bad token, 403 bot blocked, chat
    /// not found, ...). Retrying cannot help.
    #[error("telegram: refused ({status}): {description}")]
    Fatal { status: u16, description: String },
    /// Telegram answered success but with a body this client cannot read. The request may
    /// have taken effect; not retried.
    #[error("telegram: cannot decode the answer: {description}")]
    Decode { description: String },
    /// Refused before anything was sent: bad configuration or arguments.
    #[error("telegram: invalid request: {description}")]
    InvalidRequest { description: String },
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(" ({s})")).unwrap_or_default()
}

impl TelegramError {
    /// True for errors a retry may cure: [`RetryAfter`](Self::RetryAfter) (after its delay)
    /// and [`Retryable`](Self::Retryable). A [`Conflict`](Self::Conflict) is not: a poller
    /// should back off and report it, a sender should never see it.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RetryAfter { .. } | Self::Retryable { .. })
    }

    /// The delay Telegram asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RetryAfter { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// True for the 400 "message is not modified" answer to an edit that changes nothing,
    /// which callers usually treat as success.
    pub fn is_message_not_modified(&self) -> bool {
        matches!(self, Self::Fatal { status: 400, description }
            if description.contains("message is not modified"))
    }

    /// Classifies a non-success answer from its HTTP status and body. The body is read as a
    /// Bot API error object when it is one; otherwise the status decides.
    pub fn from_response(status: u16, body: &[u8]) -> Self {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let (code, description, retry_after) = match parsed {
            Some(b) => (
                b.error_code.unwrap_or(status),
                b.description
                    .unwrap_or_else(|| default_description(status).to_owned()),
                b.parameters.and_then(|p| p.retry_after),
            ),
            None => (status, default_description(status).to_owned(), None),
        };
        Self::classify(code, description, retry_after)
    }

    fn classify(code: u16, description: String, retry_after: Option<u64>) -> Self {
        if let Some(secs) = retry_after {
            return Self::RetryAfter {
                retry_after: Duration::from_secs(secs),
            };
        }
        match code {
            409 => Self::Conflict { description },
            408 | 429 | 500..=599 => Self::Retryable {
                status: Some(code),
                description,
            },
            // A 2xx with `ok: false` is not expected; treat it as a refusal rather than loop.
            _ => Self::Fatal {
                status: code,
                description,
            },
        }
    }
}

fn default_description(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "unexpected HTTP status",
    }
}

/// The error fields of a Bot API answer.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: Option<u16>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ResponseParameters>,
}

#[derive(Debug, Deserialize)]
struct ResponseParameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, body: &str) -> TelegramError {
        TelegramError::from_response(status, body.as_bytes())
    }

    #[test]
    fn flood_control_carries_its_delay() {
        let e = classify(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#,
        );
        assert_eq!(
            e,
            TelegramError::RetryAfter {
                retry_after: Duration::from_secs(3)
            }
        );
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        // Without the parameter a 429 is still transient.
        let e = classify(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests"}"#,
        );
        assert!(matches!(
            e,
            TelegramError::Retryable {
                status: Some(429),
                ..
            }
        ));
    }

    #[test]
    fn conflicts_are_not_retried_blindly() {
        let e = classify(
            409,
            r#"{"ok":false,"error_code":409,"description":"Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"}"#,
        );
        assert!(
            matches!(&e, TelegramError::Conflict { description } if description.contains("getUpdates"))
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn refusals_are_fatal() {
        for (status, body, want) in [
            (
                400,
                r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
                "chat not found",
            ),
            (
                403,
                r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#,
                "blocked",
            ),
            (
                401,
                r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#,
                "Unauthorized",
            ),
            (404, "", "Not Found"),
        ] {
            let e = classify(status, body);
            assert!(
                matches!(&e, TelegramError::Fatal { status: s, description } if *s == status && description.contains(want)),
                "{e:?}"
            );
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn server_errors_are_retryable_even_without_json() {
        let e = classify(502, "<html><body>502 Bad Gateway</body></html>");
        assert_eq!(
            e,
            TelegramError::Retryable {
                status: Some(502),
                description: "Bad Gateway".into()
            }
        );
        let e = classify(
            500,
            r#"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#,
        );
        assert!(e.is_retryable());
        assert!(e.to_string().contains("(500)"));
    }

    #[test]
    fn not_modified_is_recognised() {
        let e = classify(
            400,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: message is not modified: specified new message content and reply markup are exactly the same"}"#,
        );
        assert!(e.is_message_not_modified());
        assert!(
            !classify(400, r#"{"description":"Bad Request: chat not found"}"#)
                .is_message_not_modified()
        );
    }

    #[test]
    fn error_code_in_body_wins_over_http_status() {
        // Some proxies answer 200 with an error object.
        let e = classify(
            200,
            r#"{"ok":false,"error_code":403,"description":"Forbidden: x"}"#,
        );
        assert!(matches!(e, TelegramError::Fatal { status: 403, .. }));
    }
}
