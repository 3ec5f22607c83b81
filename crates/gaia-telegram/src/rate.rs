//! Telegram's sending limits as pure bookkeeping: how long to wait before the next message to
//! a chat, given the messages already sent. Time is passed in, so tests use synthetic instants.
//!
//! The limits (from Telegram's bot FAQ): about 30 messages per second overall, at most one
//! message per second to the same chat, and at most 20 messages per minute to the same group
//! (negative chat id). Flood control (`retry_after`) still applies on top.
//!
//! This history lives in one process's memory, so it only paces one process. Gaia's outbox
//! worker paces through the store instead (`gaia_core::outbox::Pacing`, `outbox_reserve`), so
//! that every node and every restart sees the same sends and holds; [`Limits`] is how its
//! limits are configured.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// The limits [`RateLimits`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages per rolling second, all chats together.
    pub global_per_second: usize,
    /// Minimum time between two messages to the same chat.
    pub per_chat_interval: Duration,
    /// Messages per rolling minute to one group chat (negative id).
    pub group_per_minute: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            global_per_second: 30,
            per_chat_interval: SECOND,
            group_per_minute: 20,
        }
    }
}

/// Sending history for the rate limits. Call [`delay_for`](Self::delay_for) before a send,
/// wait that long, then [`record`](Self::record) the send.
#[derive(Debug, Clone)]
pub struct RateLimits {
    limits: Limits,
    /// Send times within the last second, oldest first.
    global: VecDeque<Instant>,
    chats: HashMap<i64, ChatHistory>,
    last_prune: Option<Instant>,
}

#[derive(Debug, Clone)]
struct ChatHistory {
    last: Instant,
    /// Groups only: send times within the last minute, oldest first.
    recent: VecDeque<Instant>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl RateLimits {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits: Limits {
                global_per_second: limits.global_per_second.max(1),
                per_chat_interval: limits.per_chat_interval,
                group_per_minute: limits.group_per_minute.max(1),
            },
            global: VecDeque::new(),
            chats: HashMap::new(),
            last_prune: None,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How long to wait from `now` before a message to `chat_id` keeps within every limit
    /// (zero when it may go now).
    pub fn delay_for(&mut self, chat_id: i64, now: Instant) -> Duration {
        expire(&mut self.global, now, SECOND);
        let mut wait = Duration::ZERO;
        if let Some(t) = nth_from_end(&self.global, self.limits.global_per_second) {
            wait = wait.max((t + SECOND).saturating_duration_since(now));
        }
        if let Some(chat) = self.chats.get_mut(&chat_id) {
            let next = chat.last + self.limits.per_chat_interval;
            wait = wait.max(next.saturating_duration_since(now));
            if is_group(chat_id) {
                expire(&mut chat.recent, now, MINUTE);
                if let Some(t) = nth_from_end(&chat.recent, self.limits.group_per_minute) {
                    wait = wait.max((t + MINUTE).saturating_duration_since(now));
                }
            }
        }
        wait
    }

    /// Records a message sent to `chat_id` at `now`.
    pub fn record(&mut self, chat_id: i64, now: Instant) {
        self.global.push_back(now);
        let chat = self.chats.entry(chat_id).or_insert_with(|| ChatHistory {
            last: now,
            recent: VecDeque::new(),
        });
        chat.last = chat.last.max(now);
        if is_group(chat_id) {
            chat.recent.push_back(now);
        }
        self.prune(now);
    }

    /// Forgets chats that no limit applies to any more, at most once a minute.
    fn prune(&mut self, now: Instant) {
        if self
            .last_prune
            .is_some_and(|t| now.saturating_duration_since(t) < MINUTE)
        {
            return;
        }
        self.last_prune = Some(now);
        let keep = self.limits.per_chat_interval.max(MINUTE);
        self.chats
            .retain(|_, c| now.saturating_duration_since(c.last) < keep);
    }
}

fn is_group(chat_id: i64) -> bool {
    chat_id < 0
}

/// Drops entries that are `window` or more older than `now`.
fn expire(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

/// With `limit` sends allowed per window and at least `limit` in it, the send whose expiry
/// frees a slot.
fn nth_from_end(times: &VecDeque<Instant>, limit: usize) -> Option<Instant> {
    let len = times.len();
    (len >= limit).then(|| times[len - limit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn one_message_per_second_per_chat() {
        let t0 = Instant::now();
        let mut r = RateLimits::default();
        assert_eq!(r.delay_for(42, t0), Duration::ZERO);
        r.record(42, t0);
        assert_eq!(r.delay_for(42, t0), SECOND);
        assert_eq!(r.delay_for(42, t0 + ms(300)), ms(700));
        assert_eq!(r.delay_for(42, t0 + SECOND), Duration::ZERO);
        // Other chats are not held back by chat 42.
        assert_eq!(r.delay_for(43, t0 + ms(1)), Duration::ZERO);
    }

    #[test]
    fn thirty_messages_per_second_overall() {
        let t0 = Instant::now();
        let mut r = RateLimits::default();
        for i in 0..30 {
            let now = t0 + ms(i * 10);
            assert_eq!(
                r.delay_for(1000 + i as i64, now),
                Duration::ZERO,
                "send {i}"
            );
            r.record(1000 + i as i64, now);
        }
        // The 31st waits until the first leaves the one-second window.
        let now = t0 + ms(300);
        assert_eq!(r.delay_for(5000, now), ms(700));
        assert_eq!(r.delay_for(5000, t0 + SECOND), Duration::ZERO);
        r.record(5000, t0 + SECOND);
        // Now the second-oldest (t0 + 10ms) frees the next slot.
        assert_eq!(r.delay_for(5001, t0 + SECOND), ms(10));
    }

    #[test]
    fn twenty_messages_per_minute_per_group() {
        let t0 = Instant::now();
        let mut r = RateLimits::default();
        let group = -100_123;
        let mut now = t0;
        for i in 0..20 {
            let wait = r.delay_for(group, now);
            assert!(wait <= SECOND, "send {i} waited {wait:?}");
            now += wait;
            r.record(group, now);
        }
        // 20 sends took 19 s; the 21st waits for the first to be a minute old.
        assert_eq!(now, t0 + Duration::from_secs(19));
        let next = now + SECOND;
        assert_eq!(r.delay_for(group, next), Duration::from_secs(40));
        assert_eq!(r.delay_for(group, t0 + MINUTE), Duration::ZERO);
        // A private chat is only held by the one-second rule: 25 sends take 24 s.
        let mut r = RateLimits::default();
        let mut now = t0;
        for _ in 0..25 {
            now += r.delay_for(77, now);
            r.record(77, now);
        }
        assert_eq!(now, t0 + Duration::from_secs(24));
    }

    #[test]
    fn delay_is_the_largest_of_the_limits() {
        let t0 = Instant::now();
        let mut r = RateLimits::new(Limits {
            global_per_second: 2,
            per_chat_interval: ms(500),
            group_per_minute: 3,
        });
        r.record(-1, t0);
        r.record(-1, t0 + ms(500));
        // Global: 2 in the last second, the oldest at t0 -> 1000ms; per chat -> 1000ms.
        assert_eq!(r.delay_for(-1, t0 + ms(600)), ms(400));
        r.record(-1, t0 + SECOND);
        // Group: 3 in the minute, the oldest at t0 -> 60 s.
        assert_eq!(r.delay_for(-1, t0 + ms(1500)), MINUTE - ms(1500));
        assert_eq!(r.delay_for(2, t0 + ms(1500)), Duration::ZERO);
    }

    #[test]
    fn idle_chats_are_forgotten() {
        let t0 = Instant::now();
        let mut r = RateLimits::default();
        for id in 0..100 {
            r.record(id, t0);
        }
        r.record(1, t0 + Duration::from_secs(120));
        assert_eq!(r.chats.len(), 1);
        assert!(r.global.len() <= 101);
        r.delay_for(1, t0 + Duration::from_secs(120));
        assert_eq!(r.global.len(), 1);
    }
}
