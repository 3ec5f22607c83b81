//! Metrics: counters and gauges derived from the store (so they survive restarts), named with
//! the prototype's dotted names (`telegram.retry.moved_permanent`), rendered as the
//! prototype's `metrics.json` shape or as Prometheus text; and threshold alerts on them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::ValidationError;

/// One snapshot: dotted name → value, and the histograms (Prometheus only).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot(
    pub BTreeMap<String, f64>,
    #[serde(skip)] pub BTreeMap<String, Histogram>,
);

/// A cumulative histogram: counts of observations at or below each bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

impl Snapshot {
    pub fn set(&mut self, name: &str, value: f64) {
        self.0.insert(name.to_owned(), value);
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
    }

    /// Prometheus text exposition: `gaia_` + the dotted name with dots as underscores;
    /// counters end in `_total`.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.0 {
            let base = format!("gaia_{}", name.replace(['.', '-'], "_"));
            let counter = COUNTERS.iter().any(|c| name.starts_with(c));
            let (family, kind) = if counter {
                (format!("{base}_total"), "counter")
            } else {
                (base, "gauge")
            };
            out.push_str(&format!(
                "# HELP {family} {}\n# TYPE {family} {kind}\n{family} {value}\n",
                help(name)
            ));
        }
        for (name, h) in &self.1 {
            let family = format!("gaia_{}", name.replace(['.', '-'], "_"));
            out.push_str(&format!(
                "# HELP {family} {}\n# TYPE {family} histogram\n",
                help(name)
            ));
            for (b, c) in h.bounds.iter().zip(&h.counts) {
                out.push_str(&format!("{family}_bucket{{le=\"{b}\"}} {c}\n"));
            }
            out.push_str(&format!("{family}_bucket{{le=\"+Inf\"}} {}\n", h.count));
            out.push_str(&format!(
                "{family}_sum {}\n{family}_count {}\n",
                h.sum, h.count
            ));
        }
        out
    }
}

/// Names (prefixes) that only ever grow.
const COUNTERS: &[&str] = &[
    "telegram.retry.attempt",
    "telegram.retry.moved_permanent",
    "telegram.sent",
    "notify.requeued",
    "notify.duplicate_skipped",
    "notify.fallback",
    "events.appended",
];

fn help(name: &str) -> &'static str {
    match name {
        n if n.starts_with("telegram.retry.attempt") => {
            "Send attempts that failed and will be retried, by outcome"
        }
        "telegram.retry.moved_permanent" => "Messages moved to the dead set",
        "telegram.sent" => "Messages delivered",
        n if n.starts_with("notify.requeued") => "Dead messages requeued, by how",
        "notify.duplicate_skipped" => "Messages skipped as duplicates",
        "notify.fallback" => "Messages shown on the console because Telegram failed",
        "events.appended" => "Events appended to the log",
        "outbox.dead" => "Messages in the dead set now",
        "outbox.pending" => "Messages waiting to be sent now",
        "approvals.pending" => "Approval requests waiting for a decision",
        "claims.live" => "Claims held and not expired",
        n if n.starts_with("approval.latency") => {
            "Time from request to a person's decision, seconds"
        }
        _ => "Gaia metric",
    }
}

/// A threshold: fires when the metric is at or above `value`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    pub metric: String,
    pub value: f64,
}

impl std::str::FromStr for Threshold {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ValidationError::new(format!(
                "invalid threshold '{s}': use NAME=NUMBER, e.g. telegram.retry.moved_permanent=2"
            ))
        };
        let (name, value) = s.split_once('=').ok_or_else(bad)?;
        let name = name.trim();
        let value: f64 = value.trim().parse().map_err(|_| bad())?;
        if name.is_empty() || !value.is_finite() {
            return Err(bad());
        }
        Ok(Self {
            metric: name.to_owned(),
            value,
        })
    }
}

/// The prototype's default thresholds.
pub fn default_thresholds() -> Vec<Threshold> {
    vec![
        Threshold {
            metric: "telegram.retry.moved_permanent".into(),
            value: 5.0,
        },
        Threshold {
            metric: "telegram.retry.attempt.error".into(),
            value: 50.0,
        },
    ]
}

/// One threshold's state against a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub metric: String,
    pub threshold: f64,
    pub value: f64,
    pub breached: bool,
}

/// Checks every threshold; a metric the snapshot lacks counts as 0.
pub fn check(snapshot: &Snapshot, thresholds: &[Threshold]) -> Vec<Check> {
    thresholds
        .iter()
        .map(|t| {
            let value = snapshot.get(&t.metric).unwrap_or(0.0);
            Check {
                metric: t.metric.clone(),
                threshold: t.value,
                value,
                breached: value >= t.value,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_check() {
        let t: Threshold = "telegram.retry.moved_permanent=2".parse().unwrap();
        assert_eq!(t.value, 2.0);
        for bad in ["x", "=2", "a=b", "a=inf"] {
            assert!(bad.parse::<Threshold>().is_err(), "{bad}");
        }
        let mut s = Snapshot::default();
        s.set("telegram.retry.moved_permanent", 3.0);
        let c = check(&s, &[t, "claims.live=1".parse().unwrap()]);
        assert!(c[0].breached);
        assert!(!c[1].breached && c[1].value == 0.0);
    }

    #[test]
    fn prometheus_text() {
        let mut s = Snapshot::default();
        s.set("telegram.retry.moved_permanent", 3.0);
        s.set("claims.live", 2.0);
        let text = s.prometheus();
        assert!(text.contains("# TYPE gaia_telegram_retry_moved_permanent_total counter\ngaia_telegram_retry_moved_permanent_total 3\n"), "{text}");
        assert!(
            text.contains("# TYPE gaia_claims_live gauge\ngaia_claims_live 2\n"),
            "{text}"
        );
        let mut h = Histogram::new(&[1.0, 60.0]);
        for v in [0.5, 30.0, 90.0] {
            h.observe(v);
        }
        s.1.insert("approval.latency_seconds".into(), h);
        let text = s.prometheus();
        for line in [
            "# TYPE gaia_approval_latency_seconds histogram",
            "gaia_approval_latency_seconds_bucket{le=\"1\"} 1",
            "gaia_approval_latency_seconds_bucket{le=\"60\"} 2",
            "gaia_approval_latency_seconds_bucket{le=\"+Inf\"} 3",
            "gaia_approval_latency_seconds_sum 120.5",
            "gaia_approval_latency_seconds_count 3",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
