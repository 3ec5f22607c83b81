//! Delivering outbox messages: one sender per channel, and the worker that leases due messages
//! and records each attempt.
//!
//! Each chat is a lane: the store leases only a chat's oldest pending message, and the worker
//! runs up to [`Senders::lanes`] of them at once, so chats are sent to concurrently while each
//! chat's messages keep their order, on one node or several.
//!
//! - Telegram: approval messages carry Approve / Deny buttons; a decision edits the approval
//!   message it answers (or is sent anew when that one was never delivered); Telegram's limits
//!   (1 message/s per chat, 20/min per group, 30/s overall) pace the sends, and after a 429
//!   nothing more goes to that chat until its `retry_after` has passed.
//!
//! The pacing, the holds and the leases live in the store, not here: right before each send the
//! worker asks the store for a slot (`outbox_reserve`), which checks that the message is still
//! leased under this sender's fencing token, renews the lease for the whole send, and judges the
//! chat's hold and the limits by the store's clock, for every node and across restarts. The
//! attempt is then recorded under the same token (`outbox_record_next`), so a sender whose
//! lease was taken over neither sends nor records: without a crash, nothing is sent twice. The
//! same transaction leases the chat's next message if it is due and may go now, so a lane
//! keeps its chat while the chat has such messages, at one write transaction per message.
//! - Console: the text on stdout, for deployments without Telegram, and as the fallback when
//!   Telegram fails (each fallback is counted).
//! - Webhook: the message as JSON, POSTed with an HMAC-SHA256 signature header.

use std::time::Duration;

use gaia_core::Gaia;
use gaia_core::outbox::{
    Attempt, Channel, Leased, Message, Next, Pacing, Recorded, RetryPolicy, Slot, SlotRequest,
};
use gaia_telegram::{
    BotClient, DEFAULT_REQUEST_TIMEOUT, Limits, MAX_MESSAGE_UNITS, TelegramError, html_escape,
    split_text,
};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

/// Lanes (messages in flight or waiting for their chat's turn at once) per worker, by default.
pub const DEFAULT_LANES: usize = 16;
/// Extra wait after the rate limits held a send back. The store times sends by its clock, but
/// Telegram judges arrivals: a send exactly one second after another can arrive a little less
/// than a second after it and be refused (`gaia-bench outbox` saw this with 3 ms of slack on a
/// busy machine). Costs about 2 % of the overall rate.
const PACING_SLACK: Duration = Duration::from_millis(20);
/// Pacing waits up to this long are slept here; longer ones (a `retry_after` hold, a full
/// group minute) put the message back in the queue so the rest of the batch goes on.
const MAX_WAIT: Duration = Duration::from_secs(2);
/// HTTP timeout of a webhook call.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);
/// Added to the longest a send can take to get the lease renewed for it: the store's clock and
/// this host's timers may disagree a little, and the record follows the send. The price: after
/// a crash, the message that was in flight (and its chat) waits this long plus the HTTP
/// timeout, not just the configured lease, before another sender takes it.
const SEND_MARGIN: Duration = Duration::from_secs(5);
/// How long a leased message is reserved for this sender, by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// After a commit wakes the worker, it waits this long before asking the store for due
/// messages: a busy store commits thousands of times a second (on PostgreSQL, every node's
/// commits wake every node's worker), and each ask is a write transaction. Commits that land
/// meanwhile are answered by the same ask, so a worker asks at most once per this interval
/// for them, and a message enqueued while its lanes are idle waits at most this much longer.
const WAKE_COALESCE: Duration = Duration::from_millis(10);

/// How the outbox worker reaches each channel.
#[derive(Clone)]
pub struct Senders {
    pub telegram: Option<BotClient>,
    pub webhook_secret: Option<String>,
    pub http: reqwest::Client,
    pub retry: RetryPolicy,
    /// How long a leased message is reserved for this sender: after a crash, the messages it
    /// held are sent again once this has passed. Right before each send the lease is renewed
    /// for at least the longest the send can take.
    pub lease: Duration,
    /// How many chats are sent to at once (one message per chat at a time, in order).
    pub lanes: usize,
    /// Telegram's limits, applied by the store across every sender sharing it.
    pacing: Pacing,
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
                .timeout(WEBHOOK_TIMEOUT)
                .build()
                .unwrap_or_default(),
            retry: RetryPolicy::DEFAULT,
            lease: DEFAULT_LEASE,
            lanes: DEFAULT_LANES,
            pacing: Pacing::TELEGRAM,
        }
    }

    /// The same senders pacing Telegram sends by `limits` instead of Telegram's own (for
    /// benchmarks and tests; [`new`](Self::new) uses Telegram's). A count too large for the
    /// store (`usize::MAX`) means no limit.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.pacing = Pacing {
            per_chat_interval: limits.per_chat_interval,
            group_per_minute: u32::try_from(limits.group_per_minute).ok(),
            global_per_second: u32::try_from(limits.global_per_second).ok(),
        };
        self
    }

    /// What to ask the store for right before sending the leased message.
    pub fn slot_request(&self, leased: &Leased) -> SlotRequest {
        let m = &leased.message;
        SlotRequest {
            id: m.id,
            token: leased.token,
            pacing: (m.channel == Channel::Telegram).then_some(self.pacing),
            lease: self.send_lease(m),
            max_wait: MAX_WAIT,
        }
    }

    /// How long the lease is renewed for right before sending `m`: at least the longest the
    /// send can take (every HTTP call it makes timing out), so that no other sender can take
    /// the message over while it is in flight.
    fn send_lease(&self, m: &Message) -> Duration {
        let longest = match m.channel {
            Channel::Console => Duration::ZERO,
            Channel::Webhook => WEBHOOK_TIMEOUT,
            Channel::Telegram => {
                let per_call = self
                    .telegram
                    .as_ref()
                    .map_or(DEFAULT_REQUEST_TIMEOUT, BotClient::request_timeout);
                let text = m.payload["text"].as_str().unwrap_or("");
                let calls = match m.kind.as_str() {
                    "approval" | "decision" => 1,
                    _ => split_text(text, MAX_MESSAGE_UNITS).len().max(1),
                };
                per_call.saturating_mul(u32::try_from(calls).unwrap_or(u32::MAX))
            }
        };
        self.lease.max(longest.saturating_add(SEND_MARGIN))
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
                let attempt = self.telegram(gaia, m, &text).await;
                if matches!(attempt, Attempt::Retryable(_) | Attempt::RetryAfter(_))
                    && m.attempts == 0
                {
                    // Telegram is failing: show it on the console now (counted as an event, so
                    // the metric survives restarts); the retry still goes to Telegram.
                    let _ = gaia
                        .emit_event(
                            gaia_core::event::kinds::NOTIFY_FALLBACK,
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

    async fn telegram(&self, gaia: &Gaia, m: &Message, text: &str) -> Attempt {
        let Some(bot) = &self.telegram else {
            return Attempt::Fatal("telegram is not configured (TELEGRAM_BOT_TOKEN)".into());
        };
        let Ok(chat) = m.target.trim().parse::<i64>() else {
            return Attempt::Fatal(format!("'{}' is not a Telegram chat id", m.target));
        };
        let html = html_escape(text);
        let result = match m.kind.as_str() {
            "approval" => {
                // Approve / Deny buttons, unless the message names no request to decide.
                let keyboard = m.payload["command_id"].as_str().map(crate::buttons::keyboard);
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
            // Recording it holds the chat in the store for every sender.
            Err(TelegramError::RetryAfter { retry_after }) => Attempt::RetryAfter(retry_after),
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

/// Sends due messages until cancelled, one lane per chat: the store hands out only the head of
/// each chat (its oldest pending message), each leased head runs in its own lane (reserve a
/// slot, maybe wait for the chat's turn, send, record), and up to `senders.lanes` lanes run at
/// once. A chat waiting for its turn or a `retry_after` therefore holds up only its own lane,
/// and the next message of a chat is leased only once the one before it was recorded. Wakes
/// after commits (a new message may be due, or a lane's record made the next head due; at most
/// once per 10 ms), when a lane ends, and at least every `every`.
pub async fn worker(
    gaia: Gaia,
    hub: crate::hub::EventHub,
    senders: Senders,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut wake = hub.subscribe();
    let mut lanes = tokio::task::JoinSet::new();
    let most = senders.lanes.max(1);
    let mut woken = false;
    loop {
        if std::mem::take(&mut woken) {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(WAKE_COALESCE) => {}
            }
            // The ask below covers every commit so far.
            wake.borrow_and_update();
        }
        let free = most.saturating_sub(lanes.len());
        let mut full = false;
        if free > 0 && !cancel.is_cancelled() {
            let ask = u32::try_from(free).unwrap_or(u32::MAX);
            match gaia.store().outbox_lease(ask, senders.lease).await {
                Ok(due) => {
                    // As many as were asked for: more may be due once lanes free up.
                    full = due.len() == free;
                    for leased in due {
                        lanes.spawn(lane(
                            gaia.clone(),
                            hub.clone(),
                            senders.clone(),
                            leased,
                            cancel.clone(),
                        ));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "outbox: cannot lease messages"),
            }
        }
        if full {
            // Every lane is busy: the next lease is worth asking for when one ends.
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = lanes.join_next() => {}
            }
            continue;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = lanes.join_next(), if !lanes.is_empty() => {}
            _ = wake.changed() => woken = true,
            () = tokio::time::sleep(every) => {}
        }
    }
    // A lane that is sending finishes and records its attempt; a waiting one gives up.
    while lanes.join_next().await.is_some() {}
}

/// One leased message: waits for its send slot, then sends and records it. A message not
/// sent now (its chat held or paced for long, or taken over) is back in the queue. The record
/// of each attempt also leases the chat's next message when it is due and may go now (one
/// write transaction), so the lane goes on with its chat, in order, while the chat has
/// messages whose turn has come; a chat paced for a moment frees the lane for another.
async fn lane(
    gaia: Gaia,
    hub: crate::hub::EventHub,
    senders: Senders,
    leased: Leased,
    cancel: CancellationToken,
) {
    if reserve(&gaia, &senders, &leased, &cancel).await != Some(true) {
        return;
    }
    let mut leased = leased;
    // Once cancelled, the lane ends with the send it has started and leases nothing more.
    while let Some(next) = deliver(&gaia, &hub, &senders, &leased, !cancel.is_cancelled()).await {
        leased = next;
    }
}

/// Waits for the store to grant a send slot: `Some(true)` to send now, `Some(false)` when the
/// message is not to be sent by this sender now (put back for later, or taken over by another
/// sender), `None` when cancelled.
async fn reserve(
    gaia: &Gaia,
    senders: &Senders,
    leased: &Leased,
    cancel: &CancellationToken,
) -> Option<bool> {
    let req = senders.slot_request(leased);
    loop {
        match gaia.store().outbox_reserve(&req).await {
            Ok(Slot::Go) => return Some(true),
            Ok(Slot::Wait(wait)) => {
                tokio::select! {
                    () = cancel.cancelled() => return None,
                    () = tokio::time::sleep(wait + PACING_SLACK) => {}
                }
            }
            Ok(Slot::Deferred(_)) => return Some(false),
            Ok(Slot::LostLease) => {
                tracing::info!(
                    id = req.id,
                    "outbox: another sender took this message over; not sending it"
                );
                return Some(false);
            }
            Err(e) => {
                // Its lease runs out and a sender takes it again.
                tracing::warn!(id = req.id, error = %e, "outbox: cannot reserve a send slot");
                return Some(false);
            }
        }
    }
}

/// Sends a message whose slot was granted and records the attempt under its lease; with
/// `go_on`, the same transaction leases the chat's next message if it may go now, returned
/// with its slot granted.
async fn deliver(
    gaia: &Gaia,
    hub: &crate::hub::EventHub,
    senders: &Senders,
    leased: &Leased,
    go_on: bool,
) -> Option<Leased> {
    let m = &leased.message;
    let attempt = senders.send(gaia, m).await;
    let unit: f64 = rand::random();
    let request = |next: &Leased| senders.slot_request(next);
    let recorded = if go_on {
        let next = Next {
            lease: senders.lease,
            request: &request,
        };
        gaia.store()
            .outbox_record_next(m.id, leased.token, &attempt, &senders.retry, unit, &next)
            .await
    } else {
        gaia.store()
            .outbox_record_leased(m.id, leased.token, &attempt, &senders.retry, unit)
            .await
            .map(|attempt| Recorded {
                attempt,
                next: None,
            })
    };
    match recorded {
        Ok(Recorded {
            attempt: Some((_, events)),
            next,
        }) => {
            if let Some(e) = events.last() {
                hub.committed(e.seq);
            }
            next
        }
        Ok(Recorded { attempt: None, .. }) => {
            tracing::warn!(
                id = m.id,
                "outbox: the lease ended during the send; the attempt is not recorded"
            );
            None
        }
        Err(e) => {
            tracing::warn!(id = m.id, error = %e, "outbox: cannot record an attempt");
            None
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
}
