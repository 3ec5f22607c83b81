//! [`BotClient`]: JSON POSTs to `{base}/bot{token}/{method}`, answers decoded into typed
//! results or classified [`TelegramError`]s.
//!
//! The token lives only in request URLs. Transport errors are rendered without their URL and
//! every error text is scrubbed of the token, and `Debug` shows it redacted.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::error::TelegramError;
use crate::text::{MAX_MESSAGE_UNITS, html_escape, split_text};
use crate::types::{InlineKeyboardMarkup, Message, Update, User};

/// The public Bot API.
pub const DEFAULT_BASE_URL: &str = "https://api.telegram.org";
/// HTTP timeout of every call but `getUpdates`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Added to a `getUpdates` long-poll timeout to get its HTTP timeout.
pub const DEFAULT_POLL_MARGIN: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REDACTED: &str = "<redacted>";

/// A Bot API client for one bot. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct BotClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
    request_timeout: Duration,
    poll_margin: Duration,
}

impl fmt::Debug for BotClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotClient")
            .field("base_url", &self.base_url)
            .field("token", &REDACTED)
            .field("request_timeout", &self.request_timeout)
            .field("poll_margin", &self.poll_margin)
            .finish()
    }
}

/// What `getWebhookInfo` answers (the fields Gaia reads).
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookInfo {
    /// The webhook's URL; empty when none is set.
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub pending_update_count: i64,
    #[serde(default)]
    pub last_error_message: Option<String>,
}

/// The envelope of every Bot API answer.
#[derive(Debug, Deserialize)]
struct Envelope {
    ok: bool,
    #[serde(default)]
    result: Option<Value>,
}

impl BotClient {
    /// A client for the bot with `token`, talking to `base_url` (an empty string means
    /// [`DEFAULT_BASE_URL`]; a trailing `/` is ignored). Refuses a base URL that is not
    /// `http(s)://` and a token with characters that do not belong in a URL path.
    pub fn new(
        base_url: impl Into<String>,
        token: impl Into<String>,
    ) -> Result<Self, TelegramError> {
        let token = token.into();
        let base_url = base_url.into();
        let base_url = match base_url.trim().trim_end_matches('/') {
            "" => DEFAULT_BASE_URL.to_owned(),
            b => b.to_owned(),
        };
        let invalid = |description: String| TelegramError::InvalidRequest { description };
        let parsed = reqwest::Url::parse(&base_url)
            .map_err(|e| invalid(format!("bot API base URL is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(invalid(
                "bot API base URL must start with http:// or https://".into(),
            ));
        }
        if token.is_empty() {
            return Err(invalid("the bot token is empty".into()));
        }
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
        {
            return Err(invalid(
                "the bot token has characters other than letters, digits, ':', '_' and '-'".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base_url,
            token,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            poll_margin: DEFAULT_POLL_MARGIN,
        })
    }

    /// Sets the HTTP timeout of every call but `getUpdates`.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The HTTP timeout of every call but `getUpdates`: the longest one send can take.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Sets what is added to a `getUpdates` long-poll timeout to get its HTTP timeout.
    pub fn with_poll_margin(mut self, margin: Duration) -> Self {
        self.poll_margin = margin;
        self
    }

    /// The base URL (no token in it).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `getUpdates`: long-polls for up to `timeout_secs` seconds. Passing `offset` confirms
    /// (and drops on Telegram's side) every update with a smaller id. `allowed_updates` is
    /// always sent; empty means Telegram's default set.
    ///
    /// An update this client cannot read is returned with only its `update_id`, so that the
    /// caller's offset still moves past it.
    pub async fn get_updates(
        &self,
        offset: Option<i64>,
        timeout_secs: u32,
        allowed_updates: &[&str],
    ) -> Result<Vec<Update>, TelegramError> {
        let mut body = Map::new();
        if let Some(offset) = offset {
            body.insert("offset".into(), json!(offset));
        }
        body.insert("timeout".into(), json!(timeout_secs));
        body.insert("allowed_updates".into(), json!(allowed_updates));
        let http_timeout = Duration::from_secs(u64::from(timeout_secs)) + self.poll_margin;
        let raw: Vec<Value> = self.call("getUpdates", body, http_timeout).await?;
        raw.into_iter().map(lenient_update).collect()
    }

    /// `sendMessage` with `html` in Telegram's HTML parse mode: escape every untrusted part
    /// with [`html_escape`]. `reply_to` makes it a reply (sent anyway if that message is gone).
    pub async fn send_message(
        &self,
        chat_id: i64,
        html: &str,
        reply_markup: Option<&InlineKeyboardMarkup>,
        reply_to: Option<i64>,
    ) -> Result<Message, TelegramError> {
        let mut body = Map::new();
        body.insert("chat_id".into(), json!(chat_id));
        body.insert("text".into(), json!(html));
        body.insert("parse_mode".into(), json!("HTML"));
        body.insert("link_preview_options".into(), json!({"is_disabled": true}));
        if let Some(markup) = reply_markup {
            body.insert("reply_markup".into(), json!(markup));
        }
        if let Some(id) = reply_to {
            body.insert(
                "reply_parameters".into(),
                json!({"message_id": id, "allow_sending_without_reply": true}),
            );
        }
        self.call("sendMessage", body, self.request_timeout).await
    }

    /// Sends plain `text` (escaped here) as one message or, past Telegram's length limit, as
    /// several, split on line boundaries where possible. `reply_to` goes on the first part and
    /// `reply_markup` on the last. Parts that are only whitespace are skipped. Stops at the
    /// first failure: the parts before it have been sent.
    pub async fn send_long_message(
        &self,
        chat_id: i64,
        text: &str,
        reply_markup: Option<&InlineKeyboardMarkup>,
        reply_to: Option<i64>,
    ) -> Result<Vec<Message>, TelegramError> {
        let parts: Vec<&str> = split_text(text, MAX_MESSAGE_UNITS)
            .into_iter()
            .filter(|p| !p.trim().is_empty())
            .collect();
        if parts.is_empty() {
            return Err(TelegramError::InvalidRequest {
                description: "message text is empty".into(),
            });
        }
        let last = parts.len() - 1;
        let mut sent = Vec::with_capacity(parts.len());
        for (i, part) in parts.into_iter().enumerate() {
            let markup = if i == last { reply_markup } else { None };
            let reply = if i == 0 { reply_to } else { None };
            sent.push(
                self.send_message(chat_id, &html_escape(part), markup, reply)
                    .await?,
            );
        }
        Ok(sent)
    }

    /// `editMessageText` on a message this bot sent; `html` as for
    /// [`send_message`](Self::send_message). Without `reply_markup` the inline keyboard is
    /// removed. An edit that changes nothing fails with a `Fatal` error for which
    /// [`TelegramError::is_message_not_modified`] is true.
    pub async fn edit_message_text(
        &self,
        chat_id: i64,
        message_id: i64,
        html: &str,
        reply_markup: Option<&InlineKeyboardMarkup>,
    ) -> Result<(), TelegramError> {
        let mut body = Map::new();
        body.insert("chat_id".into(), json!(chat_id));
        body.insert("message_id".into(), json!(message_id));
        body.insert("text".into(), json!(html));
        body.insert("parse_mode".into(), json!("HTML"));
        body.insert("link_preview_options".into(), json!({"is_disabled": true}));
        if let Some(markup) = reply_markup {
            body.insert("reply_markup".into(), json!(markup));
        }
        let _: Value = self
            .call("editMessageText", body, self.request_timeout)
            .await?;
        Ok(())
    }

    /// `answerCallbackQuery`: stops the button's loading indicator, showing `text` as a
    /// notification when given.
    pub async fn answer_callback_query(
        &self,
        callback_query_id: &str,
        text: Option<&str>,
    ) -> Result<(), TelegramError> {
        let mut body = Map::new();
        body.insert("callback_query_id".into(), json!(callback_query_id));
        if let Some(text) = text {
            body.insert("text".into(), json!(text));
        }
        let _: Value = self
            .call("answerCallbackQuery", body, self.request_timeout)
            .await?;
        Ok(())
    }

    /// `getMe`: the bot's own user; a cheap check of the token.
    pub async fn get_me(&self) -> Result<User, TelegramError> {
        self.call("getMe", Map::new(), self.request_timeout).await
    }

    /// `getWebhookInfo`: whether a webhook is set (which stops `getUpdates` from working),
    /// and the last delivery error Telegram saw.
    pub async fn get_webhook_info(&self) -> Result<WebhookInfo, TelegramError> {
        self.call("getWebhookInfo", Map::new(), self.request_timeout)
            .await
    }

    /// `deleteWebhook` (pending updates are kept), needed before `getUpdates` works on a bot
    /// that had a webhook.
    pub async fn delete_webhook(&self) -> Result<(), TelegramError> {
        let mut body = Map::new();
        body.insert("drop_pending_updates".into(), json!(false));
        let _: Value = self
            .call("deleteWebhook", body, self.request_timeout)
            .await?;
        Ok(())
    }

    /// `setWebhook`: Telegram POSTs each update to `url`, with `secret_token` in the
    /// `X-Telegram-Bot-Api-Secret-Token` header (1-256 characters of `A-Z`, `a-z`, `0-9`, `_`
    /// and `-`), and `getUpdates` stops working until [`delete_webhook`](Self::delete_webhook).
    pub async fn set_webhook(
        &self,
        url: &str,
        secret_token: &str,
        allowed_updates: &[&str],
    ) -> Result<(), TelegramError> {
        let mut body = Map::new();
        body.insert("url".into(), json!(url));
        body.insert("secret_token".into(), json!(secret_token));
        body.insert("allowed_updates".into(), json!(allowed_updates));
        let _: Value = self.call("setWebhook", body, self.request_timeout).await?;
        Ok(())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: Map<String, Value>,
        timeout: Duration,
    ) -> Result<T, TelegramError> {
        self.call_inner(method, body, timeout)
            .await
            .map_err(|e| self.scrub(e))
    }

    async fn call_inner<T: DeserializeOwned>(
        &self,
        method: &str,
        body: Map<String, Value>,
        timeout: Duration,
    ) -> Result<T, TelegramError> {
        let url = format!("{}/bot{}/{}", self.base_url, self.token, method);
        let response = self
            .http
            .post(url)
            .json(&body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| transport_error(method, e))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(method, e))?;
        if !(200..300).contains(&status) {
            return Err(TelegramError::from_response(status, &bytes));
        }
        let envelope: Envelope =
            serde_json::from_slice(&bytes).map_err(|e| TelegramError::Decode {
                description: format!("{method}: answer is not a Bot API object: {e}"),
            })?;
        if !envelope.ok {
            return Err(TelegramError::from_response(status, &bytes));
        }
        let result = envelope.result.unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| TelegramError::Decode {
            description: format!("{method}: unexpected result: {e}"),
        })
    }

    /// Removes the token from an error's text, in case any layer below put it there.
    fn scrub(&self, e: TelegramError) -> TelegramError {
        let clean = |s: String| s.replace(&self.token, REDACTED);
        match e {
            TelegramError::Retryable {
                status,
                description,
            } => TelegramError::Retryable {
                status,
                description: clean(description),
            },
            TelegramError::Conflict { description } => TelegramError::Conflict {
                description: clean(description),
            },
            TelegramError::Fatal {
                status,
                description,
            } => TelegramError::Fatal {
                status,
                description: clean(description),
            },
            TelegramError::Decode { description } => TelegramError::Decode {
                description: clean(description),
            },
            TelegramError::InvalidRequest { description } => TelegramError::InvalidRequest {
                description: clean(description),
            },
            e @ TelegramError::RetryAfter { .. } => e,
        }
    }
}

/// A network-level failure (no usable HTTP answer): retryable, described without the URL.
fn transport_error(method: &str, e: reqwest::Error) -> TelegramError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    };
    let e = e.without_url();
    let mut description = format!("{method}: {kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        description.push_str(": ");
        description.push_str(&s.to_string());
        source = s.source();
    }
    TelegramError::Retryable {
        status: None,
        description,
    }
}

/// Decodes one update; one this client cannot read keeps its id and nothing else.
/// Reads one update as [`BotClient::get_updates`] does (for updates POSTed to a webhook): an
/// update this client cannot read comes back with only its `update_id`; one without an id is
/// an error.
pub fn lenient_update(raw: Value) -> Result<Update, TelegramError> {
    let update_id = raw.get("update_id").and_then(Value::as_i64);
    match serde_json::from_value::<Update>(raw) {
        Ok(u) => Ok(u),
        Err(e) => match update_id {
            Some(update_id) => Ok(Update {
                update_id,
                message: None,
                edited_message: None,
                callback_query: None,
            }),
            None => Err(TelegramError::Decode {
                description: format!("update without an id: {e}"),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456:AAE-secret_TOKEN";

    #[test]
    fn debug_redacts_the_token() {
        let c = BotClient::new("http://127.0.0.1:1/", TOKEN).expect("client");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        assert_eq!(c.base_url(), "http://127.0.0.1:1");
        assert_eq!(
            BotClient::new("", TOKEN).expect("client").base_url(),
            DEFAULT_BASE_URL
        );
    }

    #[test]
    fn bad_configuration_is_refused_without_echoing_the_token() {
        for (base, token) in [
            ("ftp://x", TOKEN),
            ("not a url", TOKEN),
            ("http://x", ""),
            ("http://x", "123:abc/../secret"),
            ("http://x", "123:abc secret"),
        ] {
            let e = BotClient::new(base, token).expect_err("refused");
            assert!(matches!(e, TelegramError::InvalidRequest { .. }));
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn unreadable_updates_keep_their_id() {
        let u = lenient_update(json!({"update_id": 9, "message": {"weird": true}})).expect("kept");
        assert_eq!(u.update_id, 9);
        assert!(u.message.is_none());
        assert!(lenient_update(json!({"message": {}})).is_err());
    }

    #[tokio::test]
    async fn connection_errors_are_retryable_and_clean() {
        // Port 1 on loopback refuses connections.
        let c = BotClient::new("http://127.0.0.1:1", TOKEN)
            .expect("client")
            .with_request_timeout(Duration::from_secs(5));
        let e = c.get_me().await.expect_err("no server");
        assert!(
            matches!(e, TelegramError::Retryable { status: None, .. }),
            "{e:?}"
        );
        let text = format!("{e} {e:?}");
        assert!(!text.contains("secret") && !text.contains(TOKEN), "{text}");
    }
}
