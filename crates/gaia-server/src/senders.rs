//! Delivering outbox messages: one sender per channel, and the worker that leases due messages
//! and records each attempt.
//!
//! - Telegram: approval messages carry Approve / Deny buttons; a decision edits the approval
//!   message it answers (or is sent anew when that one was never delivered); Telegram's limits
//!   (1 message/s per chat, 20/min per group, 30/s overall) pace the sends, and after a 429
//!   nothing more goes to that chat until its `retry_after` has passed.
//! - Console: the text on stdout, for deployments without Telegram, and as the fallback when
//!   Telegram fails (each fallback is counted).
//! - Webhook: the message as JSON, POSTed with an HMAC-SHA256 signature header.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gaia_core::Gaia;
use gaia_core::outbox::{Attempt, Channel, Message, RetryPolicy};
use gaia_telegram::{
    BotClient, InlineKeyboardButton, InlineKeyboardMarkup, Limits, RateLimits, TelegramError,
    html_escape,
};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Messages leased per round.
const BATCH: u32 = 20;
/// Extra wait after the rate limits held a send back. The limits time sends here, but Telegram
/// judges arrivals: a send exactly one second after another can arrive a little less than a
/// second after it and be refused (`gaia bench outbox` saw this with 3 ms of slack on a busy
/// machine). Costs about 2 % of the overall rate.
const PACING_SLACK: Duration = Duration::from_millis(20);
/// How long a leased message is reserved for this sender, by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// How the outbox worker reaches each channel.
#[derive(Clone)]
pub struct Senders {
    pub telegram: Option<BotClient>,
    pub webhook_secret: Option<String>,
    pub http: reqwest::Client,
    pub retry: RetryPolicy,
    /// How long a leased message is reserved for this sender: after a crash, the messages it
    /// held are sent again once this has passed.
    pub lease: Duration,
    limits: Arc<Mutex<RateLimits>>,
    /// Chats Telegram told us to leave alone (429 `retry_after`), until when.
    held: Arc<std::sync::Mutex<HashMap<i64, Instant>>>,
}

impl std::fmt::Debug for Senders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Senders")
            .field("telegram", &self.telegram.is_some())
            .field("webhook", &self.webhook_secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Senders {
    pub fn new(telegram: Option<BotClient>, webhook_secret: Option<String>) -> Self {
        Self {
            telegram,
            webhook_secret,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap_or_default(),
            retry: RetryPolicy::DEFAULT,
            lease: DEFAULT_LEASE,
            limits: Arc::new(Mutex::new(RateLimits::default())),
            held: Arc::new(std::sync::Mutex::new(HashMap::new())),
        }
    }

    /// The same senders pacing Telegram sends by `limits` instead of Telegram's own (for
    /// benchmarks and tests; [`new`](Self::new) uses Telegram's).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Arc::new(Mutex::new(RateLimits::new(limits)));
        self
    }

    /// Sends one message and says how it went.
    pub async fn send(&self, gaia: &Gaia, m: &Message) -> Attempt {
        let text = m.payload["text"].as_str().unwrap_or("").to_owned();
        match m.channel {
            Channel::Console => {
                println!("[gaia {}] {}", m.kind, text.replace('\n', "\n    "));
                Attempt::Sent {
                    result: json!({ "console": true }),
                }
            }
            Channel::Webhook => self.webhook(m).await,
            Channel::Telegram => {
                // A chat under a 429 is not tried again before its retry_after has passed; the
                // message waits without using up an attempt (and is not a fallback).
                if let Some(wait) = self.held_for(&m.target) {
                    return Attempt::RetryAfter(wait);
                }
                let attempt = self.telegram(gaia, m, &text).await;
                if matches!(attempt, Attempt::Retryable(_) | Attempt::RetryAfter(_))
                    && m.attempts == 0
                {
                    // Telegram is failing: show it on the console now (counted as an event, so
                    // the metric survives restarts); the retry still goes to Telegram.
                    let _ = gaia
                        .emit(
                            "notify.fallback",
                            "gaia",
                            &format!("outbox/{}", m.id),
                            json!({ "id": m.id }),
                        )
                        .await;
                    println!(
                        "[gaia {} (telegram unavailable)] {}",
                        m.kind,
                        text.replace('\n', "\n    ")
                    );
                }
                attempt
            }
        }
    }

    /// How long a 429 still holds the chat `target` names, if it does.
    fn held_for(&self, target: &str) -> Option<Duration> {
        let chat = target.trim().parse::<i64>().ok()?;
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        held.retain(|_, until| *until > now);
        held.get(&chat)
            .map(|until| until.saturating_duration_since(now))
    }

    async fn telegram(&self, gaia: &Gaia, m: &Message, text: &str) -> Attempt {
        let Some(bot) = &self.telegram else {
            return Attempt::Fatal("telegram is not configured (TELEGRAM_BOT_TOKEN)".into());
        };
        let Ok(chat) = m.target.trim().parse::<i64>() else {
            return Attempt::Fatal(format!("'{}' is not a Telegram chat id", m.target));
        };
        // Telegram's limits: wait our turn rather than be told to (429).
        loop {
            let wait = self.limits.lock().await.delay_for(chat, Instant::now());
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait + PACING_SLACK).await;
        }
        self.limits.lock().await.record(chat, Instant::now());
        let html = html_escape(text);
        let result = match m.kind.as_str() {
            "approval" => {
                let keyboard = keyboard(&m.payload["buttons"]);
                bot.send_message(chat, &html, keyboard.as_ref(), None)
                    .await
                    .map(|msg| json!({ "chat_id": chat, "message_id": msg.message_id }))
            }
            "decision" => {
                // Edit the approval message this decision answers, when it was delivered.
                let original = match m.payload["edit_of"].as_str() {
                    Some(key) => gaia.store().outbox_by_key(key).await.ok().flatten(),
                    None => None,
                };
                let message_id = original
                    .and_then(|o| o.result)
                    .and_then(|r| r["message_id"].as_i64());
                match message_id {
                    Some(id) => bot
                        .edit_message_text(chat, id, &html, None)
                        .await
                        .or_else(|e| if e.is_message_not_modified() { Ok(()) } else { Err(e) })
                        .map(|()| json!({ "chat_id": chat, "edited": id })),
                    None => bot
                        .send_message(chat, &html, None, None)
                        .await
                        .map(|msg| json!({ "chat_id": chat, "message_id": msg.message_id })),
                }
            }
            _ => bot
                .send_long_message(chat, text, None, m.payload["reply_to"].as_i64())
                .await
                .map(|msgs| json!({ "chat_id": chat, "message_ids": msgs.iter().map(|x| x.message_id).collect::<Vec<_>>() })),
        };
        match result {
            Ok(result) => Attempt::Sent { result },
            Err(TelegramError::RetryAfter { retry_after }) => {
                let until = Instant::now() + retry_after;
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                let entry = held.entry(chat).or_insert(until);
                *entry = (*entry).max(until);
                Attempt::RetryAfter(retry_after)
            }
            Err(e) if e.is_retryable() => Attempt::Retryable(e.to_string()),
            // 409 means another poller, not a failed send: retry later.
            Err(e @ TelegramError::Conflict { .. }) => Attempt::Retryable(e.to_string()),
            Err(e) => Attempt::Fatal(e.to_string()),
        }
    }

    async fn webhook(&self, m: &Message) -> Attempt {
        let body = json!({
            "id": m.id,
            "kind": m.kind,
            "payload": m.payload,
            "created_at": gaia_core::time::rfc3339(m.created_at),
        })
        .to_string();
        let mut req = self
            .http
            .post(&m.target)
            .header("content-type", "application/json");
        if let Some(secret) = &self.webhook_secret {
            req = req.header(
                "x-gaia-signature",
                format!("sha256={}", sign(secret, body.as_bytes())),
            );
        }
        match req.body(body).send().await {
            Ok(res) if res.status().is_success() => Attempt::Sent {
                result: json!({ "status": res.status().as_u16() }),
            },
            Ok(res) if res.status().as_u16() == 429 => {
                let wait = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(30);
                Attempt::RetryAfter(Duration::from_secs(wait))
            }
            Ok(res) if res.status().is_server_error() => {
                Attempt::Retryable(format!("webhook answered {}", res.status()))
            }
            Ok(res) => Attempt::Fatal(format!("webhook answered {}", res.status())),
            Err(e) => Attempt::Retryable(format!("webhook unreachable: {}", e.without_url())),
        }
    }
}

/// HMAC-SHA256 of `body` under `secret`, hex: what `X-Gaia-Signature` carries after `sha256=`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

fn keyboard(buttons: &serde_json::Value) -> Option<InlineKeyboardMarkup> {
    let rows: Vec<Vec<InlineKeyboardButton>> = buttons
        .as_array()?
        .iter()
        .map(|row| {
            row.as_array()
                .map(|b| {
                    b.iter()
                        .filter_map(|pair| {
                            Some(InlineKeyboardButton::callback(
                                pair[0].as_str()?,
                                pair[1].as_str()?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    Some(InlineKeyboardMarkup {
        inline_keyboard: rows,
    })
}

/// Sends due messages until cancelled: wakes on every commit (a new message may be due) and at
/// least every `every`.
pub async fn worker(
    gaia: Gaia,
    hub: crate::hub::EventHub,
    senders: Senders,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut wake = hub.subscribe();
    loop {
        loop {
            let due = match gaia.store().outbox_lease(BATCH, senders.lease).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: cannot lease messages");
                    break;
                }
            };
            if due.is_empty() {
                break;
            }
            for m in &due {
                if cancel.is_cancelled() {
                    return;
                }
                let attempt = senders.send(&gaia, m).await;
                let unit: f64 = rand::random();
                match gaia
                    .store()
                    .outbox_record(m.id, &attempt, &senders.retry, unit)
                    .await
                {
                    Ok(Some((_, events))) => {
                        if let Some(e) = events.last() {
                            hub.committed(e.seq);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(id = m.id, error = %e, "outbox: cannot record an attempt")
                    }
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = wake.changed() => {}
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn buttons_become_an_inline_keyboard() {
        let k = keyboard(&json!([[["Approve", "a:k7m2qx"], ["Deny", "d:k7m2qx"]]])).unwrap();
        assert_eq!(k.inline_keyboard[0].len(), 2);
        assert_eq!(
            k.inline_keyboard[0][1].callback_data.as_deref(),
            Some("d:k7m2qx")
        );
    }
}
