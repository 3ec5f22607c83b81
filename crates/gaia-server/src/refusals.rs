//! Auditing refused requests without letting a flood of them grow the store.
//!
//! Every refusal (a bad token, a missing role, a failed CSRF check) is worth an audit record,
//! but an unauthenticated client can send them as fast as the network allows. So each record's
//! subject is bounded, and within a fixed window each source (a peer address, or the caller's
//! name once it is known) gets a few records of its own and all sources together a few hundred;
//! beyond that refusals are only counted, and the window's counts go into one summary record
//! (`auth.refusals_suppressed`) when it ends. The audit trail then grows by at most
//! [`GLOBAL_PER_WINDOW`] + 1 bounded records per window, whatever the flood, while a single
//! refusal is still recorded as it happens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::AppState;

/// The window refusals are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Refusals recorded one by one per source and window.
pub const PER_SOURCE_PER_WINDOW: u32 = 10;
/// Refusals recorded one by one per window, all sources together.
pub const GLOBAL_PER_WINDOW: u32 = 300;
/// Sources counted by name per window; the rest are counted together as `other`.
const MAX_SOURCES: usize = 4096;
/// Sources named in a summary record, the busiest first.
const SUMMARY_SOURCES: usize = 20;
/// Longest subject kept in a refusal record, in characters (request paths can be 60 KB).
pub const MAX_SUBJECT_CHARS: usize = 200;

/// Decides which refusals are recorded one by one, and counts the others.
#[derive(Debug)]
pub struct RefusalGate {
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    recorded: HashMap<String, u32>,
    recorded_total: u32,
    suppressed: HashMap<String, u64>,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            started: now,
            recorded: HashMap::new(),
            recorded_total: 0,
            suppressed: HashMap::new(),
        }
    }
}

/// What a closed window counted without recording: source → refusals.
pub type Suppressed = Vec<(String, u64)>;

impl Default for RefusalGate {
    fn default() -> Self {
        Self::with_window(WINDOW)
    }
}

impl RefusalGate {
    /// A gate counting in windows of `window` (tests use short ones).
    pub fn with_window(window: Duration) -> Self {
        Self {
            window,
            state: Mutex::new(Window::new(Instant::now())),
        }
    }

    /// Whether a refusal from `source` at `now` is recorded on its own. When `now` starts a
    /// new window, the closed window's suppressed counts come back to be summarised.
    pub fn admit(&self, source: &str, now: Instant) -> (bool, Option<Suppressed>) {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let closed = Self::roll(&mut w, now, self.window);
        let mine = w.recorded.get(source).copied().unwrap_or(0);
        if mine < PER_SOURCE_PER_WINDOW
            && w.recorded_total < GLOBAL_PER_WINDOW
            && (w.recorded.len() < MAX_SOURCES || w.recorded.contains_key(source))
        {
            *w.recorded.entry(source.to_owned()).or_insert(0) += 1;
            w.recorded_total += 1;
            return (true, closed);
        }
        let key = if w.suppressed.len() < MAX_SOURCES || w.suppressed.contains_key(source) {
            source.to_owned()
        } else {
            "other".to_owned()
        };
        *w.suppressed.entry(key).or_insert(0) += 1;
        (false, closed)
    }

    /// The length of a window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The suppressed counts of a window that has ended by `now`, if any (for the periodic
    /// flush, so a flood's summary is written even when no refusal follows it).
    pub fn flush(&self, now: Instant) -> Option<Suppressed> {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Self::roll(&mut w, now, self.window)
    }

    fn roll(w: &mut Window, now: Instant, window: Duration) -> Option<Suppressed> {
        if now.duration_since(w.started) < window {
            return None;
        }
        let old = std::mem::replace(w, Window::new(now));
        if old.suppressed.is_empty() {
            return None;
        }
        let mut counts: Suppressed = old.suppressed.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Some(counts)
    }
}

/// `text` cut to [`MAX_SUBJECT_CHARS`] characters, marked when cut.
pub fn bounded_subject(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(MAX_SUBJECT_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// Records a refusal from `source` in the audit trail, within the gate's bounds. Failing to
/// write it never changes the answer the client gets.
pub async fn record(
    state: &AppState,
    source: &str,
    actor: &str,
    action: &str,
    subject: &str,
    outcome: &str,
    details: serde_json::Value,
) {
    let (admitted, closed) = state.refusals.admit(source, Instant::now());
    if let Some(counts) = closed {
        summarise(state, counts).await;
    }
    if admitted {
        let subject = bounded_subject(subject);
        if let Err(e) = state
            .gaia
            .audit_refusal(actor, action, &subject, outcome, details)
            .await
        {
            tracing::warn!(error = %e, "could not audit a refusal");
        }
    }
}

/// Writes the periodic summary when a window with suppressed refusals has ended.
pub async fn flush(state: &AppState) {
    if let Some(counts) = state.refusals.flush(Instant::now()) {
        summarise(state, counts).await;
    }
}

async fn summarise(state: &AppState, counts: Suppressed) {
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let sources = counts.len();
    let busiest: serde_json::Map<String, serde_json::Value> = counts
        .into_iter()
        .take(SUMMARY_SOURCES)
        .map(|(s, n)| (bounded_subject(&s), json!(n)))
        .collect();
    let details = json!({
        "suppressed": total,
        "sources": sources,
        "busiest": busiest,
        "window_ms": u64::try_from(state.refusals.window.as_millis()).unwrap_or(u64::MAX),
    });
    if let Err(e) = state
        .gaia
        .audit_refusal(
            "gaia",
            "auth.refusals_suppressed",
            "",
            "suppressed",
            details,
        )
        .await
    {
        tracing::warn!(error = %e, "could not audit suppressed refusals");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_gets_a_few_records_then_counts() {
        let gate = RefusalGate::default();
        let t0 = Instant::now();
        for _ in 0..PER_SOURCE_PER_WINDOW {
            assert!(gate.admit("1.2.3.4", t0).0);
        }
        assert!(!gate.admit("1.2.3.4", t0).0);
        assert!(!gate.admit("1.2.3.4", t0).0);
        assert!(
            gate.admit("5.6.7.8", t0).0,
            "another source has its own share"
        );
        let (admitted, closed) = gate.admit("1.2.3.4", t0 + WINDOW);
        assert!(admitted, "a new window");
        assert_eq!(closed, Some(vec![("1.2.3.4".to_owned(), 2)]));
        assert_eq!(gate.flush(t0 + WINDOW), None);
    }

    #[test]
    fn all_sources_together_are_bounded() {
        let gate = RefusalGate::default();
        let t0 = Instant::now();
        let admitted = (0..10_000)
            .filter(|i| gate.admit(&format!("10.0.{}.{}", i / 256, i % 256), t0).0)
            .count();
        assert_eq!(admitted, GLOBAL_PER_WINDOW as usize);
        let counts = gate.flush(t0 + WINDOW).unwrap();
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 10_000 - u64::from(GLOBAL_PER_WINDOW));
        assert!(counts.len() <= MAX_SOURCES + 1);
    }

    #[test]
    fn subjects_are_cut() {
        assert_eq!(bounded_subject("/api/v1/x"), "/api/v1/x");
        let long = "/".repeat(60_000);
        let cut = bounded_subject(&long);
        assert_eq!(cut.chars().count(), MAX_SUBJECT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
