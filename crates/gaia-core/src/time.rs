//! Time: the [`Clock`] that judges expiry, microsecond conversions used by every backend, and
//! the strict duration syntax (`90s`, `15m`, `2h`) of the CLI and configuration.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

use crate::error::ValidationError;

/// A source of "now". Stores use their own clock unless one is injected (tests do, to expire
/// claims without sleeping). Expiry is never judged by comparing two client processes' clocks.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Microseconds since the Unix epoch: how every backend stores a time, so that comparisons and
/// the audit hash are identical on SQLite and PostgreSQL.
pub fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// RFC 3339 in UTC with microseconds, the one textual form of a time in Gaia's output.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Longest duration accepted anywhere (ten years): protects arithmetic from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Parses `500ms`, `90s`, `15m`, `2h`, `7d` or a combination such as `1h30m`. Zero, negative,
/// unit-less and unknown-unit values are refused with a message that says what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, ValidationError> {
    let bad = || {
        ValidationError::new(format!(
            "invalid duration '{text}': use a positive number with a unit, e.g. 90s, 15m, 2h, 1h30m (units: ms, s, m, h, d)"
        ))
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return Err(bad());
        }
        let n: u128 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u128 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += n * unit_ms;
    }
    if total == 0 {
        return Err(bad());
    }
    if total > MAX_DURATION.as_millis() {
        return Err(ValidationError::new(format!(
            "invalid duration '{text}': longer than the maximum of 3650d"
        )));
    }
    u64::try_from(total)
        .map(Duration::from_millis)
        .map_err(|_| bad())
}

/// The shortest text [`parse_duration`] reads back as the same duration.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("90s", 90_000),
            ("15m", 900_000),
            ("2h", 7_200_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("7d", 604_800_000),
        ];
        for (text, ms) in ok {
            let d = parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(d.as_millis(), ms, "{text}");
            assert_eq!(parse_duration(&format_duration(d)).ok(), Some(d));
        }
        for bad in [
            "",
            "15x",
            "-1m",
            "0s",
            "15",
            "m",
            "1.5h",
            "1h 30m",
            "99999999999999s",
            "4000d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn micros_round_trip() {
        let t = Utc
            .timestamp_micros(1_700_000_000_123_456)
            .single()
            .expect("valid");
        assert_eq!(from_micros(to_micros(t)), t);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123456Z");
    }
}
