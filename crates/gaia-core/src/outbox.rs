//! The notification outbox: every outbound message (approval requests, decisions, alerts,
//! replies) is a row written in the same transaction as the change that caused it, then sent by
//! a worker that retries with exponential backoff and jitter, honours `retry_after` without
//! using up attempts, sends non-retryable failures to the dead set at once, and moves a message
//! to the dead set after its last attempt. Dead messages can be requeued by hand or by a
//! bounded policy.
//!
//! This module holds the message records and the pure rules; backends store them and hand
//! batches to workers (`FOR UPDATE SKIP LOCKED` on PostgreSQL).
//!
//! Pacing and fencing live in the store, so that every node and every restart sees them:
//! a leased message carries a fencing token ([`Leased`]); right before each send the sender
//! asks the store for a send slot ([`SlotRequest`] → [`Slot`]), which checks that the lease
//! is still its own, renews it for the send, and judges the chat's `retry_after` hold and
//! Telegram's limits ([`Pacing`], [`pace_wait`]) by the store's clock; recording an attempt
//! with the token only takes effect while the lease is still held.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ValidationError;
use crate::event::kinds;
use crate::time::rfc3339;

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Telegram,
    Console,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Telegram => "telegram",
            Self::Console => "console",
            Self::Webhook => "webhook",
        }
    }
}

impl std::str::FromStr for Channel {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "telegram" => Ok(Self::Telegram),
            "console" => Ok(Self::Console),
            "webhook" => Ok(Self::Webhook),
            _ => Err(ValidationError::new(format!(
                "unknown channel '{}': use telegram, console or webhook",
                s.escape_debug()
            ))),
        }
    }
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for its next attempt.
    Pending,
    Sent,
    /// In the dead set: failed for good, until requeued.
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Dead => "dead",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "sent" => Ok(Self::Sent),
            "dead" => Ok(Self::Dead),
            _ => Err(ValidationError::new(format!(
                "unknown message status '{}': use pending, sent or dead",
                s.escape_debug()
            ))),
        }
    }
}

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub channel: Channel,
    /// Chat id, URL or `console`.
    pub target: String,
    /// What it is: `approval`, `decision`, `alert`, `reply`.
    pub kind: String,
    /// Channel-specific content (text, buttons, the message to edit ...).
    pub payload: serde_json::Value,
    /// Messages with the same key are sent once; later ones are skipped and counted.
    pub dedupe_key: Option<String>,
}

/// Where notifications of a kind go: a channel and its target (chat id, URL, `console`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub channel: Channel,
    pub target: String,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: i64,
    pub channel: Channel,
    pub target: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub dedupe_key: Option<String>,
    pub status: Status,
    /// Attempts since it was (re)queued.
    pub attempts: u32,
    /// Times it was requeued from the dead set.
    pub requeues: u32,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub dead_at: Option<DateTime<Utc>>,
    /// What the channel answered (e.g. Telegram's message id).
    pub result: Option<serde_json::Value>,
}

impl Message {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "channel": self.channel.as_str(),
            "target": self.target,
            "kind": self.kind,
            "payload": self.payload,
            "dedupe_key": self.dedupe_key,
            "status": self.status.as_str(),
            "attempts": self.attempts,
            "requeues": self.requeues,
            "created_at": rfc3339(self.created_at),
            "next_attempt_at": rfc3339(self.next_attempt_at),
            "last_error": self.last_error,
            "sent_at": self.sent_at.map(rfc3339),
            "dead_at": self.dead_at.map(rfc3339),
            "result": self.result,
        })
    }
}

/// A message leased to one sender, with the fencing token of that lease. Each lease of a row
/// gets a larger token, so a sender whose lease was taken over can tell (its token no longer
/// matches) and neither sends nor records.
#[derive(Debug, Clone, PartialEq)]
pub struct Leased {
    pub message: Message,
    pub token: i64,
}

/// Telegram's sending limits, applied by the store to every sender sharing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Minimum time between two sends to one chat (measured from when the previous send was
    /// recorded, so from after its answer: arrivals keep the gap whatever the latency).
    pub per_chat_interval: Duration,
    /// Sends per rolling minute to one group chat (negative id); `None`: no limit.
    pub group_per_minute: Option<u32>,
    /// Sends per rolling second, all paced chats together; `None`: no limit.
    pub global_per_second: Option<u32>,
}

impl Pacing {
    /// Telegram's published limits: 1 message/s per chat, 20/min per group, 30/s overall.
    pub const TELEGRAM: Self = Self {
        per_chat_interval: Duration::from_secs(1),
        group_per_minute: Some(20),
        global_per_second: Some(30),
    };
}

/// The window of the group limit.
pub const GROUP_WINDOW: Duration = Duration::from_secs(60);
/// The window of the overall limit.
pub const GLOBAL_WINDOW: Duration = Duration::from_secs(1);

/// What a sender asks the store for right before sending message `id`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotRequest {
    pub id: i64,
    /// The fencing token its lease was granted under.
    pub token: i64,
    /// Telegram's limits for this channel; `None` for channels that only honour holds.
    pub pacing: Option<Pacing>,
    /// On `Go`, the lease is renewed for this long from the store's now: it must cover the
    /// whole send (longer than the channel's HTTP timeout), so that no other sender can take
    /// the message while it is in flight.
    pub lease: Duration,
    /// Waits up to this long are returned as [`Slot::Wait`]; longer ones put the message back
    /// in the queue, due when the wait ends ([`Slot::Deferred`]).
    pub max_wait: Duration,
}

/// The store's answer to a [`SlotRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Send now: the lease is renewed, the send is counted against the limits and the chat is
    /// marked busy until the attempt is recorded.
    Go,
    /// Ask again after this long (nothing was reserved; the lease is still held).
    Wait(Duration),
    /// The chat is held (`retry_after`), busy with another send, or paced for longer than the
    /// sender waits: the message is back in the queue, due after this long, its lease
    /// released, no attempt used.
    Deferred(Duration),
    /// The lease is no longer this sender's (another sender took the message, or it was
    /// recorded): do not send.
    LostLease,
}

/// What a lane asks for with the record of its attempt: the chat's next message, leased for
/// `lease`, with the send slot `request` asks for it.
pub struct Next<'a> {
    pub lease: Duration,
    pub request: &'a (dyn Fn(&Leased) -> SlotRequest + Send + Sync),
}

impl std::fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// The record of an attempt with, when asked for, the chat's next message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    /// The message as recorded and the events committed; `None` when the lease was no longer
    /// the sender's (nothing recorded).
    pub attempt: Option<(Message, Vec<crate::event::Event>)>,
    /// The chat's next message, leased to the sender with its send slot granted (as
    /// [`Slot::Go`]); `None` when the chat has no due, unleased message after this one whose
    /// turn has come (or none was asked for).
    pub next: Option<Leased>,
}

/// What the store knows about a chat when a slot is asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PaceState {
    /// `retry_after` hold: nothing goes to the chat before this.
    pub held_until: Option<DateTime<Utc>>,
    /// When the last send to the chat was recorded (or reserved, while it is in flight).
    pub last_sent: Option<DateTime<Utc>>,
    /// Another send to this chat is in flight until this (unless recorded sooner).
    pub busy_until: Option<DateTime<Utc>>,
    /// Groups: the `group_per_minute`-th most recent send to the chat within the minute.
    pub group_nth: Option<DateTime<Utc>>,
    /// The `global_per_second`-th most recent paced send within the second.
    pub global_nth: Option<DateTime<Utc>>,
}

/// The key pacing and holds are kept under: one per channel and target (chat id, URL).
pub fn pacing_key(channel: Channel, target: &str) -> String {
    format!("{}:{}", channel.as_str(), target.trim())
}

/// Whether Telegram's group limit applies: a negative chat id.
pub fn is_group_chat(channel: Channel, target: &str) -> bool {
    channel == Channel::Telegram && target.trim().parse::<i64>().is_ok_and(|id| id < 0)
}

fn until(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> Duration {
    t.and_then(|t| (t - now).to_std().ok())
        .unwrap_or(Duration::ZERO)
}

/// How long from `now` a send to the chat must wait: `(hold, pace, busy)`, for its
/// `retry_after` hold, (with `pacing`) Telegram's limits, and another send in flight.
pub fn pace_wait(
    state: &PaceState,
    pacing: Option<&Pacing>,
    now: DateTime<Utc>,
) -> (Duration, Duration, Duration) {
    let hold = until(now, state.held_until);
    let mut pace = Duration::ZERO;
    if let Some(p) = pacing {
        let after = |t: Option<DateTime<Utc>>, d: Duration| t.map(|t| later(t, d));
        pace = until(now, after(state.last_sent, p.per_chat_interval))
            .max(until(now, after(state.group_nth, GROUP_WINDOW)))
            .max(until(now, after(state.global_nth, GLOBAL_WINDOW)));
    }
    (hold, pace, until(now, state.busy_until))
}

/// The slot for a request whose chat is in `state` at `now` (the lease already checked). A
/// short pacing wait is slept by the sender; a hold, a busy chat or a long wait puts the
/// message back in the queue, so that the sender goes on with other chats.
pub fn slot_for(state: &PaceState, req: &SlotRequest, now: DateTime<Utc>) -> Slot {
    let (hold, pace, busy) = pace_wait(state, req.pacing.as_ref(), now);
    if hold.is_zero() && busy.is_zero() {
        if pace.is_zero() {
            return Slot::Go;
        }
        if pace <= req.max_wait {
            return Slot::Wait(pace);
        }
    }
    // A send in flight ends when it is recorded, which nobody can tell in advance: come back
    // after a short while rather than after its whole lease.
    Slot::Deferred(hold.max(pace).max(busy.min(req.max_wait)))
}

/// How failed sends are retried. The defaults retry for about twenty minutes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts before a message goes to the dead set (`retry_after` answers do not count).
    pub max_attempts: u32,
    /// Delay after the first failure; doubles after each further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Each delay is spread by up to this fraction either way, so that failed messages do not
    /// all come back at once.
    pub jitter: f64,
}

impl RetryPolicy {
    pub const DEFAULT: Self = Self {
        max_attempts: 8,
        base_delay: Duration::from_secs(2),
        max_delay: Duration::from_secs(600),
        jitter: 0.2,
    };

    /// The delay after `attempts` failed attempts; `unit` is a random sample in [0, 1).
    pub fn delay(&self, attempts: u32, unit: f64) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let raw = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let spread = 1.0 + self.jitter * (unit.clamp(0.0, 1.0) * 2.0 - 1.0);
        raw.mul_f64(spread.max(0.0))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What one attempt to send came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Sent {
        result: serde_json::Value,
    },
    /// The channel asked to wait (Telegram's 429 `retry_after`): not counted as an attempt.
    RetryAfter(Duration),
    /// A failure worth retrying (5xx, network, timeout).
    Retryable(String),
    /// A failure that will not go away (400, 403 bot blocked, chat not found).
    Fatal(String),
}

/// The message after an attempt, and the event kind that reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub message: Message,
    /// `notify.sent`, `notify.retry` or `notify.dead`.
    pub event: &'static str,
    pub data: serde_json::Value,
}

/// `now` plus `d`, saturating.
pub fn later(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Applies an attempt's result to `msg` at `now`; `unit` is a random sample for the jitter.
pub fn after_attempt(
    msg: &Message,
    attempt: &Attempt,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
    unit: f64,
) -> Outcome {
    let mut m = msg.clone();
    let (event, data) = match attempt {
        Attempt::Sent { result } => {
            m.attempts += 1;
            m.status = Status::Sent;
            m.sent_at = Some(now);
            m.last_error = None;
            m.result = Some(result.clone());
            (
                kinds::NOTIFY_SENT,
                json!({ "id": m.id, "attempts": m.attempts }),
            )
        }
        Attempt::RetryAfter(wait) => {
            m.next_attempt_at = later(now, *wait);
            m.last_error = Some(format!("rate limited: retry after {}s", wait.as_secs()));
            (
                kinds::NOTIFY_RETRY,
                json!({ "id": m.id, "attempts": m.attempts, "outcome": "retry_after", "retry_after_s": wait.as_secs() }),
            )
        }
        Attempt::Retryable(error) => {
            m.attempts += 1;
            m.last_error = Some(error.clone());
            if m.attempts >= policy.max_attempts {
                m.status = Status::Dead;
                m.dead_at = Some(now);
                (
                    kinds::NOTIFY_DEAD,
                    json!({ "id": m.id, "attempts": m.attempts, "outcome": "exhausted", "error": error }),
                )
            } else {
                m.next_attempt_at = later(now, policy.delay(m.attempts, unit));
                (
                    kinds::NOTIFY_RETRY,
                    json!({ "id": m.id, "attempts": m.attempts, "outcome": "error", "error": error, "next_attempt_at": rfc3339(m.next_attempt_at) }),
                )
            }
        }
        Attempt::Fatal(error) => {
            m.attempts += 1;
            m.status = Status::Dead;
            m.dead_at = Some(now);
            m.last_error = Some(error.clone());
            (
                kinds::NOTIFY_DEAD,
                json!({ "id": m.id, "attempts": m.attempts, "outcome": "fatal", "error": error }),
            )
        }
    };
    Outcome {
        message: m,
        event,
        data,
    }
}

/// Puts a dead message back in the queue. `None` when it is not in the dead set.
pub fn requeue(msg: &Message, now: DateTime<Utc>) -> Option<Message> {
    if msg.status != Status::Dead {
        return None;
    }
    let mut m = msg.clone();
    m.status = Status::Pending;
    m.attempts = 0;
    m.requeues += 1;
    m.next_attempt_at = now;
    m.dead_at = None;
    Some(m)
}

/// Which dead messages the automatic requeue may take (the prototype's `auto_requeue.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoRequeuePolicy {
    /// Messages requeued this many times already are left alone.
    pub max_retries: u32,
    /// Only messages created within this many hours.
    pub max_age: Duration,
    pub max_per_run: u32,
}

impl Default for AutoRequeuePolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            max_age: Duration::from_secs(72 * 3600),
            max_per_run: 10,
        }
    }
}

impl AutoRequeuePolicy {
    pub fn eligible(&self, msg: &Message, now: DateTime<Utc>) -> bool {
        msg.status == Status::Dead
            && msg.requeues < self.max_retries
            && (now - msg.created_at)
                .to_std()
                .is_ok_and(|age| age <= self.max_age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_micros;

    fn t(s: i64) -> DateTime<Utc> {
        from_micros(s * 1_000_000)
    }

    fn msg() -> Message {
        Message {
            id: 7,
            channel: Channel::Telegram,
            target: "-100".into(),
            kind: "approval".into(),
            payload: json!({"text": "hi"}),
            dedupe_key: None,
            status: Status::Pending,
            attempts: 0,
            requeues: 0,
            created_at: t(0),
            next_attempt_at: t(0),
            last_error: None,
            sent_at: None,
            dead_at: None,
            result: None,
        }
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let p = RetryPolicy::DEFAULT;
        assert_eq!(p.delay(1, 0.5), Duration::from_secs(2));
        assert_eq!(p.delay(2, 0.5), Duration::from_secs(4));
        assert_eq!(p.delay(3, 0.5), Duration::from_secs(8));
        assert_eq!(p.delay(30, 0.5), Duration::from_secs(600));
        for unit in [0.0, 0.25, 0.999] {
            let d = p.delay(3, unit).as_secs_f64();
            assert!((6.4..=9.6).contains(&d), "{d}");
        }
    }

    #[test]
    fn attempts_lead_to_sent_retry_or_dead() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::DEFAULT
        };
        let mut m = msg();
        // retry_after does not use up attempts.
        let o = after_attempt(
            &m,
            &Attempt::RetryAfter(Duration::from_secs(5)),
            &p,
            t(1),
            0.5,
        );
        assert_eq!(
            (o.event, o.message.attempts, o.message.next_attempt_at),
            ("notify.retry", 0, t(6))
        );
        m = o.message;
        for (i, want) in ["notify.retry", "notify.retry", "notify.dead"]
            .iter()
            .enumerate()
        {
            let o = after_attempt(&m, &Attempt::Retryable("502".into()), &p, t(10), 0.5);
            assert_eq!(o.event, *want, "attempt {i}");
            m = o.message;
        }
        assert_eq!((m.status, m.attempts), (Status::Dead, 3));
        let fatal = after_attempt(&msg(), &Attempt::Fatal("403 blocked".into()), &p, t(1), 0.5);
        assert_eq!(
            (fatal.event, fatal.message.status),
            ("notify.dead", Status::Dead)
        );
        let sent = after_attempt(
            &msg(),
            &Attempt::Sent {
                result: json!({"message_id": 5}),
            },
            &p,
            t(1),
            0.5,
        );
        assert_eq!(
            (sent.event, sent.message.status),
            ("notify.sent", Status::Sent)
        );
    }

    #[test]
    fn slots_follow_holds_pacing_and_busy_chats() {
        let now = t(100);
        let req = SlotRequest {
            id: 1,
            token: 1,
            pacing: Some(Pacing::TELEGRAM),
            lease: Duration::from_secs(60),
            max_wait: Duration::from_secs(2),
        };
        let free = PaceState::default();
        assert_eq!(slot_for(&free, &req, now), Slot::Go);
        let just_sent = PaceState {
            last_sent: Some(now - chrono::Duration::milliseconds(300)),
            ..free
        };
        assert_eq!(
            slot_for(&just_sent, &req, now),
            Slot::Wait(Duration::from_millis(700))
        );
        let held = PaceState {
            held_until: Some(t(120)),
            ..free
        };
        // Even a short hold puts the message back: the sender goes on with other chats.
        let briefly_held = PaceState {
            held_until: Some(t(101)),
            ..free
        };
        assert_eq!(
            slot_for(&briefly_held, &req, now),
            Slot::Deferred(Duration::from_secs(1))
        );
        assert_eq!(
            slot_for(&held, &req, now),
            Slot::Deferred(Duration::from_secs(20))
        );
        // Without pacing (a webhook) only the hold counts.
        let plain = SlotRequest {
            pacing: None,
            ..req
        };
        assert_eq!(slot_for(&just_sent, &plain, now), Slot::Go);
        assert_eq!(
            slot_for(&held, &plain, now),
            Slot::Deferred(Duration::from_secs(20))
        );
        // 20 sends to a group in the minute: the 21st waits for the oldest to be a minute old.
        let full_group = PaceState {
            group_nth: Some(t(50)),
            ..free
        };
        assert_eq!(
            slot_for(&full_group, &req, now),
            Slot::Deferred(Duration::from_secs(10))
        );
        let full_second = PaceState {
            global_nth: Some(now - chrono::Duration::milliseconds(900)),
            ..free
        };
        assert_eq!(
            slot_for(&full_second, &req, now),
            Slot::Wait(Duration::from_millis(100))
        );
        // Another send in flight: back in a short while, not after its whole lease.
        let busy = PaceState {
            busy_until: Some(t(160)),
            ..free
        };
        assert_eq!(
            slot_for(&busy, &req, now),
            Slot::Deferred(Duration::from_secs(2))
        );
        assert!(is_group_chat(Channel::Telegram, " -100 "));
        assert!(!is_group_chat(Channel::Telegram, "100"));
        assert!(!is_group_chat(Channel::Webhook, "-1"));
        assert_eq!(pacing_key(Channel::Telegram, " -5 "), "telegram:-5");
    }

    #[test]
    fn requeue_and_auto_requeue_policy() {
        let dead = after_attempt(
            &msg(),
            &Attempt::Fatal("x".into()),
            &RetryPolicy::DEFAULT,
            t(1),
            0.5,
        )
        .message;
        assert!(requeue(&msg(), t(2)).is_none(), "only dead messages");
        let back = requeue(&dead, t(2)).unwrap();
        assert_eq!(
            (back.status, back.attempts, back.requeues),
            (Status::Pending, 0, 1)
        );
        let policy = AutoRequeuePolicy::default();
        assert!(policy.eligible(&dead, t(3600)));
        assert!(!policy.eligible(&dead, t(73 * 3600)), "too old");
        let tired = Message {
            requeues: 3,
            ..dead.clone()
        };
        assert!(!policy.eligible(&tired, t(10)), "requeued often enough");
        assert!(!policy.eligible(&back, t(10)), "not dead");
    }
}
