//! Approvals from the phone: the Telegram listener. It long-polls `getUpdates`, keeps its
//! offset in the store, and turns button presses, replies to approval messages and chat
//! commands (`/pending`, `/approve ID`, `/deny ID`, `/allowtest ID`, `/status`, `/help`) into
//! decisions.
//!
//! Only listed approvers decide (numeric `from.id`, never a username); messages sent on behalf
//! of a chat (anonymous admins, channels), edits of old messages, unknown or forged callbacks and
//! non-approvers are refused with an answer and audited. Handling is idempotent: an update
//! handled again after a crash (before its offset was saved) meets a request that is already
//! decided, and the decision is refused, not applied twice.
//!
//! Instead of polling, Telegram can POST updates to `gaia serve` ([`Webhook`]): the listener
//! then only registers the webhook, and [`Listener::deliver`] handles each update once, however
//! often Telegram delivers it.
//!
//! One poller per deployment: it holds a Gaia claim as its leader lease (6 s, renewed every 2 s
//! by a heartbeat beside the long poll), so another node does not poll, and a poller that died
//! is replaced within seconds; a 409 from Telegram (another poller, or a webhook) is reported and backed off.

use std::time::Duration;

use gaia_core::Gaia;
use gaia_core::commands::{Action, Decided, Decider, Status, parse_id};
use gaia_core::event::kinds;
use gaia_core::names::ClaimKey;
use gaia_core::outbox::{Channel, NewMessage};
use gaia_telegram::{BotClient, CallbackQuery, Message, TelegramError, Update};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Long-poll timeout.
const POLL_SECS: u32 = 30;
/// The leader lease: short, so that a poller that died is replaced within seconds, and renewed
/// by a heartbeat three times within its TTL, so that one slow renewal does not lose it.
const LEASE_TTL: Duration = Duration::from_secs(6);
const LEASE_RENEW: Duration = Duration::from_secs(2);
/// Where the offset is kept.
const OFFSET_SETTING: &str = "telegram.offset";

/// Where the webhook was registered, kept in the store: polling deletes it first.
const WEBHOOK_SETTING: &str = "telegram.webhook";
/// How long a webhook delivery holds its update: a handler that dies holding it lets a
/// redelivery take it after this.
const UPDATE_HOLD: Duration = Duration::from_secs(60);
/// The update kinds Gaia reads, asked for when polling and when setting the webhook.
const ALLOWED_UPDATES: [&str; 3] = ["message", "edited_message", "callback_query"];

/// Who may decide from Telegram.
#[derive(Debug, Clone)]
pub struct Listener {
    pub bot: BotClient,
    pub gaia: Gaia,
    pub approvers: Vec<i64>,
    /// Identifies this node in the leader lease.
    pub node: String,
    /// Updates come to this webhook instead of being polled for.
    pub webhook: Option<Webhook>,
}

/// Telegram's webhook mode: Telegram POSTs each update to `url` (the public address of
/// `path` on `gaia serve`) with `secret` in the `X-Telegram-Bot-Api-Secret-Token` header.
#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    /// Where `gaia serve` receives the updates (the path of `url`).
    pub path: String,
    pub secret: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What became of an update delivered to the webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handled now.
    Applied,
    /// Handled before (Telegram delivered it again): ignored.
    Duplicate,
    /// Being handled by another request: Telegram is to deliver it again later.
    Busy,
}

fn decider(u: &gaia_telegram::User) -> Decider {
    let name = match &u.username {
        Some(n) => format!("telegram:@{n}({})", u.id),
        None => format!("telegram:{}", u.id),
    };
    Decider {
        name,
        via: "telegram".into(),
    }
}

/// What a person wrote, as an action on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Intent {
    Approve(String, Option<String>),
    Deny(String, Option<String>),
    AllowTest(String),
    Pending,
    Status,
    Help,
}

fn parse_command(text: &str) -> Option<Intent> {
    let mut words = text.split_whitespace();
    let head = words.next()?;
    // `/approve@GaiaBot k7m2qx` in groups.
    let cmd = head.split('@').next().unwrap_or(head).to_ascii_lowercase();
    let id = words.next().map(str::to_owned);
    let rest: Vec<&str> = words.collect();
    let reason = (!rest.is_empty()).then(|| rest.join(" "));
    match (cmd.as_str(), id) {
        ("/approve", Some(id)) => Some(Intent::Approve(id, reason)),
        ("/deny", Some(id)) => Some(Intent::Deny(id, reason)),
        ("/allowtest", Some(id)) => Some(Intent::AllowTest(id)),
        ("/pending", _) => Some(Intent::Pending),
        ("/status", _) => Some(Intent::Status),
        ("/help" | "/start", _) => Some(Intent::Help),
        _ => None,
    }
}

/// A reply's verdict: approve/yes/ok or deny/no.
fn parse_reply(text: &str) -> Option<bool> {
    let word = text.trim().trim_end_matches(['.', '!']).to_lowercase();
    match word.as_str() {
        "approve" | "approved" | "yes" | "y" | "ok" | "okay" | "👍" => Some(true),
        "deny" | "denied" | "no" | "n" | "👎" => Some(false),
        _ => None,
    }
}

/// The request id an approval message names (`Approval needed: ID`).
fn id_in_approval(text: &str) -> Option<String> {
    let after = text.split("Approval needed: ").nth(1)?;
    parse_id(after.split_whitespace().next()?).ok()
}

impl Listener {
    /// Polls until cancelled, while holding the leader lease. A heartbeat renews the lease
    /// beside the poll, so a long poll never outlives it; a lost lease stops the poll at once.
    ///
    /// In webhook mode it registers the webhook instead (retrying until Telegram accepts it)
    /// and polls nothing: `gaia serve` receives the updates. Back in polling mode, a webhook
    /// registered before is deleted first, or Telegram would refuse `getUpdates`.
    pub async fn run(self, cancel: CancellationToken) {
        if let Some(hook) = &self.webhook {
            return self.register_webhook(hook, &cancel).await;
        }
        if !self.leave_webhook(&cancel).await {
            return;
        }
        let Ok(key) = ClaimKey::new("gaia-telegram", "poller") else {
            return;
        };
        let (leader, follow) = tokio::sync::watch::channel(false);
        let stop = cancel.child_token();
        tokio::join!(
            self.heartbeat(&key, leader, &cancel, &stop),
            self.poll_while_leader(follow, &stop),
        );
    }

    /// Acquires or renews the leader lease every [`LEASE_RENEW`] and says whether it is held;
    /// releases it when cancelled, once polling has stopped (`stop`).
    async fn heartbeat(
        &self,
        key: &ClaimKey,
        leader: tokio::sync::watch::Sender<bool>,
        cancel: &CancellationToken,
        stop: &CancellationToken,
    ) {
        let mut held = false;
        while !cancel.is_cancelled() {
            held = self.lease(key, held).await;
            leader.send_replace(held);
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(LEASE_RENEW) => {}
            }
        }
        stop.cancel();
        leader.send_replace(false);
        if held {
            let _ = self.gaia.release_lease(key, &self.node).await;
        }
    }

    /// Polls while `leader` says the lease is held, until `stop`.
    async fn poll_while_leader(
        &self,
        mut leader: tokio::sync::watch::Receiver<bool>,
        stop: &CancellationToken,
    ) {
        while !stop.is_cancelled() {
            tokio::select! {
                () = stop.cancelled() => break,
                r = leader.wait_for(|held| *held) => if r.is_err() { break },
            }
            let Some(offset) = self.read_offset().await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let poll =
                self.bot
                    .get_updates((offset > 0).then_some(offset), POLL_SECS, &ALLOWED_UPDATES);
            let updates = tokio::select! {
                () = stop.cancelled() => break,
                // Another node may take over: stop asking at once.
                _ = leader.wait_for(|held| !*held) => continue,
                r = poll => r,
            };
            let pause = match updates {
                Ok(updates) => {
                    self.handle_all(updates, &leader).await;
                    continue;
                }
                Err(TelegramError::Conflict { description }) => {
                    self.report_conflict(&description).await;
                    Duration::from_secs(30)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "telegram: getUpdates failed; retrying");
                    e.retry_after().unwrap_or(Duration::from_secs(3))
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// `setWebhook` with the secret, retried until Telegram accepts it or `cancel`; remembers
    /// in the store that a webhook is set.
    async fn register_webhook(&self, hook: &Webhook, cancel: &CancellationToken) {
        let mut pause = Duration::from_secs(1);
        loop {
            match self
                .bot
                .set_webhook(&hook.url, &hook.secret, &ALLOWED_UPDATES)
                .await
            {
                Ok(()) => {
                    if let Err(e) = self
                        .gaia
                        .store()
                        .setting_set(WEBHOOK_SETTING, &hook.url)
                        .await
                    {
                        tracing::warn!(error = %e, "telegram: cannot record the webhook");
                    }
                    tracing::info!(url = %hook.url, "telegram: webhook set");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "telegram: setWebhook failed; retrying");
                    pause = e.retry_after().unwrap_or(pause);
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(60));
        }
    }

    /// Deletes the webhook a webhook-mode run registered, if the store says one is set; retried
    /// until Telegram accepts it. `false` when cancelled first.
    async fn leave_webhook(&self, cancel: &CancellationToken) -> bool {
        loop {
            match self
                .gaia
                .store()
                .setting_get_or_init(WEBHOOK_SETTING, "")
                .await
            {
                Ok(url) if url.is_empty() => return true,
                Ok(_) => match self.bot.delete_webhook().await {
                    Ok(()) => {
                        tracing::info!("telegram: webhook deleted; polling");
                        match self.gaia.store().setting_set(WEBHOOK_SETTING, "").await {
                            Ok(()) => return true,
                            Err(e) => tracing::warn!(error = %e, "telegram: cannot record it"),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "telegram: deleteWebhook failed; retrying")
                    }
                },
                Err(e) => tracing::warn!(error = %e, "telegram: cannot read the webhook setting"),
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(Duration::from_secs(3)) => {}
            }
        }
    }

    /// Handles an update delivered to the webhook once: an update delivered again after it
    /// was handled is a [`Delivery::Duplicate`], one another request is handling is
    /// [`Delivery::Busy`].
    pub async fn deliver(&self, u: Update) -> Result<Delivery, gaia_core::error::Error> {
        let id = u.update_id;
        match self.gaia.take_telegram_update(id, UPDATE_HOLD).await? {
            gaia_core::store::UpdateTake::Done => return Ok(Delivery::Duplicate),
            gaia_core::store::UpdateTake::Busy => return Ok(Delivery::Busy),
            gaia_core::store::UpdateTake::Handle => {}
        }
        self.handle(u).await;
        self.gaia.finish_telegram_update(id).await?;
        Ok(Delivery::Applied)
    }

    /// The offset of the next update to ask for (0 before the first), kept in the store.
    async fn read_offset(&self) -> Option<i64> {
        match self
            .gaia
            .store()
            .setting_get_or_init(OFFSET_SETTING, "0")
            .await
        {
            Ok(v) => Some(v.parse::<i64>().unwrap_or(0)),
            Err(e) => {
                tracing::warn!(error = %e, "telegram: cannot read the offset");
                None
            }
        }
    }

    /// Handles updates in order, saving the offset after each, while the lease is held.
    /// An update below the stored offset was handled by another poller already (this one
    /// asked before that poller saved it): skipped.
    async fn handle_all(&self, updates: Vec<Update>, leader: &tokio::sync::watch::Receiver<bool>) {
        for u in updates {
            if !*leader.borrow() {
                // The lease was lost: the next leader asks from the stored offset.
                return;
            }
            let id = u.update_id;
            if self.read_offset().await.is_some_and(|next| id < next) {
                continue;
            }
            self.handle(u).await;
            // Saved after handling: a crash in between handles it again, which a decided
            // request refuses.
            if let Err(e) = self
                .gaia
                .store()
                .setting_set(OFFSET_SETTING, &(id + 1).to_string())
                .await
            {
                tracing::warn!(error = %e, "telegram: cannot save the offset");
            }
        }
    }

    /// Another poller or a webhook holds the bot's updates: an event and an alert.
    async fn report_conflict(&self, description: &str) {
        tracing::error!(%description, "telegram: another poller or a webhook is active; backing off");
        let _ = self
            .gaia
            .emit_event(
                kinds::TELEGRAM_CONFLICT,
                "gaia",
                "telegram",
                json!({ "description": description }),
            )
            .await;
        // The console sees it even while Telegram itself is what is in conflict.
        let _ = self
            .gaia
            .notify_alert(json!({
                "text": format!("ALERT telegram: getUpdates conflict ({description}); another poller or a webhook is active"),
                "metric": "telegram.conflict",
            }))
            .await;
    }

    async fn lease(&self, key: &ClaimKey, held: bool) -> bool {
        match self.gaia.hold_lease(key, &self.node, LEASE_TTL, held).await {
            Ok(holds) => holds,
            Err(e) => {
                tracing::warn!(error = %e, "telegram: cannot hold the poller lease");
                false
            }
        }
    }

    async fn refuse(&self, who: &str, what: &str, reason: &str) {
        let _ = self
            .gaia
            .audit_refusal(
                who,
                what,
                "telegram",
                "refused",
                json!({ "reason": reason }),
            )
            .await;
    }

    async fn reply(&self, chat: i64, reply_to: Option<i64>, text: String) {
        let msg = NewMessage {
            channel: Channel::Telegram,
            target: chat.to_string(),
            kind: "reply".into(),
            payload: json!({ "text": text, "reply_to": reply_to }),
            dedupe_key: None,
        };
        if let Err(e) = self.gaia.enqueue_messages(&[msg]).await {
            tracing::warn!(error = %e, "telegram: cannot queue a reply");
        }
    }

    /// Handles one update. Never fails: whatever goes wrong is answered or logged.
    pub async fn handle(&self, u: Update) {
        if let Some(q) = u.callback_query {
            self.callback(q).await;
        } else if let Some(m) = u.edited_message {
            let who = m
                .from
                .as_ref()
                .map_or_else(|| "telegram:unknown".into(), |f| decider(f).name);
            self.refuse(
                &who,
                "telegram.edited_message",
                "edits of old messages are not read",
            )
            .await;
            self.reply(
                m.chat.id,
                Some(m.message_id),
                "Edits are not read: send a new message.".into(),
            )
            .await;
        } else if let Some(m) = u.message {
            self.message(m).await;
        }
    }

    async fn callback(&self, q: CallbackQuery) {
        let who = decider(&q.from);
        let answer = |text: String| {
            let bot = self.bot.clone();
            let id = q.id.clone();
            async move {
                if let Err(e) = bot.answer_callback_query(&id, Some(&text)).await {
                    tracing::warn!(error = %e, "telegram: cannot answer a callback");
                }
            }
        };
        if !self.approvers.contains(&q.from.id) {
            self.refuse(&who.name, "telegram.callback", "not a listed approver")
                .await;
            return answer("You are not an approver for this Gaia.".into()).await;
        }
        let Some((press, id)) = crate::buttons::parse(q.data.as_deref().unwrap_or("")) else {
            self.refuse(
                &who.name,
                "telegram.callback",
                "unknown or forged callback data",
            )
            .await;
            return answer("This button is not one of Gaia's.".into()).await;
        };
        let action = match press {
            crate::buttons::Press::Approve => Action::Approve {
                by: who.clone(),
                reason: None,
            },
            crate::buttons::Press::Deny => Action::Deny {
                by: who.clone(),
                reason: None,
            },
        };
        answer(self.decide(&id, &action).await).await;
    }

    async fn decide(&self, id: &str, action: &Action) -> String {
        match self.gaia.apply_command(id, action).await {
            Ok(Decided::Done(r)) => format!("{} {}", r.id, r.decision()),
            Ok(Decided::Refused(refusal)) => format!("Refused: {}", refusal.reason),
            Err(gaia_core::error::Error::NotFound(m)) => m,
            Err(e) => {
                tracing::warn!(error = %e, "telegram: cannot apply a decision");
                "Gaia could not record that; try again.".into()
            }
        }
    }

    async fn message(&self, m: Message) {
        let chat = m.chat.id;
        let text = m.text.clone().unwrap_or_default();
        if m.sender_chat.is_some() {
            self.refuse(
                &format!("telegram:chat:{chat}"),
                "telegram.message",
                "sent on behalf of a chat (anonymous admin or channel)",
            )
            .await;
            return self
                .reply(
                    chat,
                    Some(m.message_id),
                    "Messages sent on behalf of a chat cannot decide; write as yourself.".into(),
                )
                .await;
        }
        let Some(from) = m.from.clone() else { return };
        let who = decider(&from);
        let intent = if let Some(original) = &m.reply_to_message {
            match (
                parse_reply(&text),
                original.text.as_deref().and_then(id_in_approval),
            ) {
                (Some(true), Some(id)) => Some(Intent::Approve(id, None)),
                (Some(false), Some(id)) => Some(Intent::Deny(id, None)),
                _ => parse_command(&text),
            }
        } else {
            parse_command(&text)
        };
        let Some(intent) = intent else { return };
        let decides = matches!(
            intent,
            Intent::Approve(..) | Intent::Deny(..) | Intent::AllowTest(_)
        );
        if decides && !self.approvers.contains(&from.id) {
            self.refuse(&who.name, "telegram.message", "not a listed approver")
                .await;
            return self
                .reply(
                    chat,
                    Some(m.message_id),
                    "You are not an approver for this Gaia.".into(),
                )
                .await;
        }
        let text = match intent {
            Intent::Approve(id, reason) | Intent::Deny(id, reason) if parse_id(&id).is_err() => {
                let _ = reason;
                format!("'{id}' is not a request id (six letters and digits)")
            }
            Intent::Approve(id, reason) => self.decide(&id.to_lowercase(), &Action::Approve { by: who, reason }).await,
            Intent::Deny(id, reason) => self.decide(&id.to_lowercase(), &Action::Deny { by: who, reason }).await,
            Intent::AllowTest(id) => match parse_id(&id) {
                Ok(id) => self.decide(&id, &Action::AllowTest { by: who }).await,
                Err(e) => e.to_string(),
            },
            Intent::Pending => match self.gaia.list_commands(Some(Status::Pending), 20).await {
                Ok(list) if list.is_empty() => "Nothing is waiting for a decision.".into(),
                Ok(list) => list
                    .iter()
                    .map(|r| format!("{}{} {} (by {})", if r.is_test { "[TEST] " } else { "" }, r.id, r.spec.display(), r.requester))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Err(_) => "Gaia could not list requests right now.".into(),
            },
            Intent::Status => {
                let pending = self.gaia.list_commands(Some(Status::Pending), 1000).await.map(|l| l.len()).unwrap_or(0);
                let claims = self.gaia.list_claims(false).await.map(|l| l.len()).unwrap_or(0);
                let dead = self.gaia.store().outbox_counts().await.map(|c| c.dead).unwrap_or(0);
                format!("Gaia: {pending} pending approvals, {claims} live claims, {dead} undelivered notifications.")
            }
            Intent::Help => "/pending — requests waiting\n/approve ID [reason]\n/deny ID [reason]\n/allowtest ID — let a test request be decided\n/status\nOr reply approve / deny to an approval message.".into(),
        };
        self.reply(chat, Some(m.message_id), text).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_replies() {
        assert_eq!(
            parse_command("/approve k7m2qx"),
            Some(Intent::Approve("k7m2qx".into(), None))
        );
        assert_eq!(
            parse_command("/deny@GaiaBot k7m2qx not now"),
            Some(Intent::Deny("k7m2qx".into(), Some("not now".into())))
        );
        assert_eq!(parse_command("/approve"), None);
        assert_eq!(parse_command("hello"), None);
        assert_eq!(parse_reply("Yes!"), Some(true));
        assert_eq!(parse_reply("no"), Some(false));
        assert_eq!(parse_reply("maybe"), None);
        assert_eq!(
            id_in_approval("[TEST] Approval needed: k7m2qx\ncommand: ls").as_deref(),
            Some("k7m2qx")
        );
        assert_eq!(id_in_approval("something else"), None);
    }
}
