//! Metrics, derived from the store so that they survive restarts and agree across nodes.

use super::Gaia;
use crate::commands::Status;
use crate::error::Error;
use crate::event::kinds;
use crate::metrics::{Histogram, Snapshot};

/// Requests considered when counting pending ones.
const PENDING_SCAN: u32 = 10_000;
/// Latest requests whose approval latency is measured.
const LATENCY_SCAN: u32 = 1_000;
/// Bucket bounds of the approval latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 7] = [1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

/// The delivery metrics, reported as 0 before anything happened.
const DELIVERY_METRICS: [&str; 8] = [
    "telegram.retry.attempt.error",
    "telegram.retry.attempt.retry_after",
    "telegram.retry.moved_permanent",
    "telegram.sent",
    "notify.requeued.manual",
    "notify.requeued.auto",
    "notify.duplicate_skipped",
    "notify.fallback",
];

/// The metric a `notify.*` event of `kind` with `outcome` counts towards.
fn delivery_metric(kind: &str, outcome: &str) -> String {
    match (kind, outcome) {
        (kinds::NOTIFY_RETRY, "retry_after") => "telegram.retry.attempt.retry_after".to_owned(),
        (kinds::NOTIFY_RETRY, _) => "telegram.retry.attempt.error".to_owned(),
        (kinds::NOTIFY_DEAD, _) => "telegram.retry.moved_permanent".to_owned(),
        (kinds::NOTIFY_SENT, _) => "telegram.sent".to_owned(),
        (kinds::NOTIFY_REQUEUED, "auto") => "notify.requeued.auto".to_owned(),
        (kinds::NOTIFY_REQUEUED, _) => "notify.requeued.manual".to_owned(),
        (other, _) => other.to_owned(),
    }
}

impl Gaia {
    /// The metrics, derived from the store.
    pub async fn get_metrics(&self) -> Result<Snapshot, Error> {
        let mut s = Snapshot::default();
        self.add_delivery_metrics(&mut s).await?;
        let counts = self.store.outbox_counts().await?;
        s.set("outbox.dead", counts.dead as f64);
        s.set("outbox.pending", counts.pending as f64);
        let pending = self
            .store
            .command_list(Some(Status::Pending), PENDING_SCAN)
            .await?;
        s.set("approvals.pending", pending.len() as f64);
        s.set("claims.live", self.list_claims(false).await?.len() as f64);
        s.set("events.appended", self.store.last_seq().await? as f64);
        self.add_approval_latency(&mut s).await?;
        Ok(s)
    }

    /// Counts of delivery attempts and outcomes, from the `notify.*` events.
    async fn add_delivery_metrics(&self, s: &mut Snapshot) -> Result<(), Error> {
        for name in DELIVERY_METRICS {
            s.set(name, 0.0);
        }
        for (kind, outcome, n) in self.store.notify_event_counts().await? {
            let name = delivery_metric(&kind, &outcome);
            let prev = s.get(&name).unwrap_or(0.0);
            s.set(&name, prev + n as f64);
        }
        Ok(())
    }

    /// Approval latency over the latest requests decided by a person: a histogram and the
    /// p50 and p99.
    async fn add_approval_latency(&self, s: &mut Snapshot) -> Result<(), Error> {
        let mut latencies: Vec<f64> = self
            .store
            .command_list(None, LATENCY_SCAN)
            .await?
            .iter()
            .filter(|r| r.decided_via.as_deref().is_some_and(|v| v != "policy"))
            .filter_map(|r| {
                r.decided_at
                    .map(|d| (d - r.created_at).num_milliseconds() as f64 / 1000.0)
            })
            .collect();
        let mut histogram = Histogram::new(&LATENCY_BUCKETS);
        for l in &latencies {
            histogram.observe(*l);
        }
        s.1.insert("approval.latency_seconds".into(), histogram);
        latencies.sort_by(f64::total_cmp);
        if !latencies.is_empty() {
            let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
            s.set("approval.latency.p50_seconds", at(0.5));
            s.set("approval.latency.p99_seconds", at(0.99));
        }
        Ok(())
    }
}
