//! What a measurement yields: a [`Sample`] of calls with their latencies, and what one call did
//! ([`Done`]).

use std::time::Duration;

use serde_json::json;

/// One measured run of one side.
#[derive(Debug, Default)]
pub struct Sample {
    /// Calls made: acquires plus releases.
    pub ops: u64,
    /// Calls that changed nothing (a release that found the key already released).
    pub noops: u64,
    /// Calls that gave up waiting for a lock.
    pub timeouts: u64,
    pub elapsed: Duration,
    /// Per-call latency in microseconds.
    pub latencies: Vec<u32>,
}

impl Sample {
    pub fn merge(&mut self, other: Sample) {
        self.ops += other.ops;
        self.noops += other.noops;
        self.timeouts += other.timeouts;
        self.latencies.extend(other.latencies);
    }

    /// Adds a whole measured run (its own elapsed time included).
    pub fn combine(&mut self, other: Sample) {
        self.elapsed += other.elapsed;
        self.merge(other);
    }

    pub fn ops_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }

    /// The `pct` percentile in microseconds; `latencies` must be sorted.
    pub fn percentile(&self, pct: usize) -> u32 {
        if self.latencies.is_empty() {
            return 0;
        }
        let i = (self.latencies.len() * pct / 100).min(self.latencies.len() - 1);
        self.latencies[i]
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "ops": self.ops,
            "ops_per_s": self.ops_per_s().round(),
            "p50_us": self.percentile(50),
            "p99_us": self.percentile(99),
            "noops": self.noops,
            "timeouts": self.timeouts,
            "seconds": self.elapsed.as_secs_f64(),
        })
    }
}

/// What one call did.
#[derive(Debug)]
pub enum Done {
    Wrote,
    Noop,
    TimedOut,
}
