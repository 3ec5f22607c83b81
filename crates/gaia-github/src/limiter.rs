//! Pacing of mutating requests under GitHub's secondary limits: at most one per second, 80
//! per minute and 500 per hour, and nothing at all while a `Retry-After` hold lasts. The
//! decision is a pure function of the times already used, so it is tested without waiting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The limits to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The shortest gap between two mutating requests.
    pub spacing: Duration,
    pub per_minute: usize,
    pub per_hour: usize,
    /// Shrinks the minute and the hour by this factor (1: real time). Only for runs against
    /// a fake server, to measure or test a long sync in a short time; never for GitHub.
    pub window_scale: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            spacing: Duration::from_secs(1),
            per_minute: 80,
            per_hour: 500,
            window_scale: 1,
        }
    }
}

impl Limits {
    /// The minute and the hour, shrunk by [`window_scale`](Self::window_scale).
    pub fn windows(&self) -> (Duration, Duration) {
        let scale = self.window_scale.max(1);
        (MINUTE / scale, HOUR / scale)
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// The mutating requests sent in the last hour and any hold.
#[derive(Debug, Clone, Default)]
pub struct Limiter {
    limits: Limits,
    sent: VecDeque<Instant>,
    hold_until: Option<Instant>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            sent: VecDeque::new(),
            hold_until: None,
        }
    }

    /// How long to wait at `now` before the next mutating request may go.
    pub fn delay(&self, now: Instant) -> Duration {
        let mut ready = now;
        if let Some(h) = self.hold_until {
            ready = ready.max(h);
        }
        if let Some(&last) = self.sent.back() {
            ready = ready.max(last + self.limits.spacing);
        }
        let (minute, hour) = self.limits.windows();
        for (window, limit) in [
            (minute, self.limits.per_minute),
            (hour, self.limits.per_hour),
        ] {
            let in_window: Vec<&Instant> =
                self.sent.iter().filter(|t| **t + window > now).collect();
            if limit > 0 && in_window.len() >= limit {
                // The request that leaves the window first frees a slot.
                let idx = in_window.len() - limit;
                ready = ready.max(*in_window[idx] + window);
            }
        }
        ready.saturating_duration_since(now)
    }

    /// Counts a mutating request sent at `at`.
    pub fn record(&mut self, at: Instant) {
        self.sent.push_back(at);
        let hour = self.limits.windows().1;
        while self.sent.front().is_some_and(|t| *t + hour <= at) {
            self.sent.pop_front();
        }
    }

    /// The mutating requests of the last hour as wall-clock times (microseconds since the
    /// epoch), to hand to the next sync through the store.
    pub fn to_wall(&self, now: Instant, wall_now_us: i64) -> Vec<i64> {
        let hour = self.limits.windows().1;
        self.sent
            .iter()
            .filter(|t| **t + hour > now)
            .map(|t| wall_now_us - micros(now.saturating_duration_since(*t)))
            .collect()
    }

    /// Counts requests an earlier sync sent (wall-clock microseconds, see
    /// [`to_wall`](Self::to_wall)), so that a restarted sync keeps the same pace.
    pub fn restore(&mut self, now: Instant, wall_now_us: i64, sent_us: &[i64]) {
        let hour = self.limits.windows().1;
        let mut times: Vec<Instant> = sent_us
            .iter()
            .filter_map(|us| {
                let ago = Duration::from_micros(u64::try_from(wall_now_us - us).ok()?);
                (ago < hour).then(|| now.checked_sub(ago)).flatten()
            })
            .collect();
        times.extend(self.sent.iter().copied());
        times.sort();
        self.sent = times.into();
    }

    /// Sends nothing before `until` (a `Retry-After` answer).
    pub fn hold(&mut self, until: Instant) {
        self.hold_until = Some(self.hold_until.map_or(until, |h| h.max(until)));
    }

    /// Waits until a mutating request may go, and counts it as sent.
    pub async fn acquire(&mut self) {
        loop {
            let wait = self.delay(Instant::now());
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        self.record(Instant::now());
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_requests_a_second_apart() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Limits::default());
        assert_eq!(l.delay(t0), Duration::ZERO);
        l.record(t0);
        assert_eq!(l.delay(t0), Duration::from_secs(1));
        assert_eq!(
            l.delay(t0 + Duration::from_millis(400)),
            Duration::from_millis(600)
        );
        assert_eq!(l.delay(t0 + Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn keeps_the_minute_and_hour_budgets() {
        let t0 = Instant::now();
        let limits = Limits {
            spacing: Duration::ZERO,
            per_minute: 3,
            per_hour: 5,
            window_scale: 1,
        };
        let mut l = Limiter::new(limits);
        for i in 0..3 {
            l.record(t0 + Duration::from_secs(i));
        }
        let at = t0 + Duration::from_secs(10);
        assert_eq!(
            l.delay(at),
            Duration::from_secs(50),
            "the first leaves at 60 s"
        );
        l.record(t0 + Duration::from_secs(60));
        l.record(t0 + Duration::from_secs(61));
        let at = t0 + Duration::from_secs(200);
        assert_eq!(l.delay(at), Duration::from_secs(3400), "five in the hour");
    }

    #[test]
    fn a_restarted_limiter_keeps_the_pace() {
        let t0 = Instant::now() + Duration::from_secs(7200);
        let wall = 1_000_000_000_000;
        let mut l = Limiter::new(Limits::default());
        l.record(t0 - Duration::from_millis(300));
        let saved = l.to_wall(t0, wall);
        assert_eq!(saved, vec![wall - 300_000]);
        let mut fresh = Limiter::new(Limits::default());
        fresh.restore(t0, wall, &saved);
        fresh.restore(t0, wall, &[wall - 4_000_000_000]);
        assert_eq!(fresh.delay(t0), Duration::from_millis(700));
    }

    #[test]
    fn a_scaled_clock_shrinks_the_windows_alike() {
        let t0 = Instant::now();
        let limits = Limits {
            spacing: Duration::ZERO,
            per_minute: 2,
            per_hour: 3,
            window_scale: 60,
        };
        let mut l = Limiter::new(limits);
        l.record(t0);
        l.record(t0);
        assert_eq!(
            l.delay(t0),
            Duration::from_secs(1),
            "a minute lasts a second"
        );
        l.record(t0 + Duration::from_secs(1));
        assert_eq!(
            l.delay(t0 + Duration::from_secs(2)),
            Duration::from_secs(58),
            "an hour lasts a minute"
        );
    }

    #[test]
    fn a_hold_stops_everything_until_it_ends() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Limits::default());
        l.hold(t0 + Duration::from_secs(61));
        l.hold(t0 + Duration::from_secs(5));
        assert_eq!(l.delay(t0), Duration::from_secs(61));
    }
}
