//! Retention: how long each kind of record is kept before `gaia cleanup` archives and prunes
//! it, what one cleanup plans to take (its write-ahead record, kept in the store so that a
//! run killed at any point is completed by the next one), and the rules that keep live state
//! out of every plan.
//!
//! What is never taken: live or released claims (a claim row carries the fencing token its
//! next acquisition must exceed), pending or approved requests, undelivered (pending or dead)
//! outbox rows, GitHub sync records (their sync keys are what prevents duplicate issues), and
//! any event or audit record after the first one the retention keeps: both logs are pruned
//! only as a prefix, so a stream reader whose resume point is kept resumes without a gap and
//! the audit chain stays whole from its anchor.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The setting under which the open cleanup job is kept (see [`Job`]).
pub const JOB_SETTING: &str = "cleanup.job";

/// A kind of record cleanup can archive and prune.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The event log, as a prefix by seq.
    Event,
    /// The audit chain, as a prefix by id; the chain's anchor moves to the last pruned record.
    Audit,
    /// Delivered (`sent`) notifications.
    Outbox,
    /// Approval requests that ended (denied, expired, cancelled, executed, failed, dry run).
    Command,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Self::Event, Self::Audit, Self::Outbox, Self::Command];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Audit => "audit",
            Self::Outbox => "outbox",
            Self::Command => "command",
        }
    }
}

/// How long each kind is kept; `None` keeps it forever.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub events: Option<Duration>,
    pub audit: Option<Duration>,
    pub outbox: Option<Duration>,
    pub commands: Option<Duration>,
}

impl Retention {
    pub fn keep(&self, kind: Kind) -> Option<Duration> {
        match kind {
            Kind::Event => self.events,
            Kind::Audit => self.audit,
            Kind::Outbox => self.outbox,
            Kind::Command => self.commands,
        }
    }
}

/// The records of one kind a plan takes. For events and audit records they are exactly the
/// stored ones with `low <= key <= high`; for outbox rows and commands, the ones that match the
/// kind's rule and are older than the cutoff (`high` bounds outbox ids, so rows delivered
/// after planning wait for the next run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub count: u64,
    pub low: Option<i64>,
    pub high: Option<i64>,
    #[serde(default, with = "opt_micros")]
    pub oldest: Option<DateTime<Utc>>,
    #[serde(default, with = "opt_micros")]
    pub newest: Option<DateTime<Utc>>,
}

/// What a plan takes of one kind, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindPlan {
    pub kind: Kind,
    /// The configured age, in milliseconds.
    pub keep_ms: u64,
    /// Records older than this are taken.
    #[serde(with = "micros")]
    pub cutoff: DateTime<Utc>,
    pub span: Span,
}

/// What one cleanup archives and prunes, decided once at `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    #[serde(with = "micros")]
    pub now: DateTime<Utc>,
    pub kinds: Vec<KindPlan>,
    /// The audit chain's anchor when planned: the archived audit records follow it.
    pub audit_anchor_id: i64,
    pub audit_anchor_hash: String,
}

impl Plan {
    pub fn get(&self, kind: Kind) -> Option<&KindPlan> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// Rows the plan takes, all kinds together.
    pub fn total(&self) -> u64 {
        self.kinds.iter().map(|k| k.span.count).sum()
    }
}

/// Where a job is: nothing may be deleted before `Archived` is recorded, which happens only
/// after the archive was written, synced and read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Planned,
    Archived,
    Done,
}

/// The write-ahead record of one cleanup, kept in the store's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    pub plan: Plan,
    /// The verified archive (set with `Archived`).
    pub archive: Option<String>,
    pub sha256: Option<String>,
}

impl Job {
    /// A job id that sorts by time: `YYYYMMDDTHHMMSSZ` and the micros, unique per run.
    pub fn id_for(now: DateTime<Utc>) -> String {
        format!(
            "{}-{:06}",
            now.format("%Y%m%dT%H%M%SZ"),
            now.timestamp_subsec_micros()
        )
    }
}

/// The cutoff of a kind kept for `keep` at `now` (the epoch when `keep` reaches past it).
pub fn cutoff(now: DateTime<Utc>, keep: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(keep)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .map_or(DateTime::<Utc>::UNIX_EPOCH, |t| {
            t.max(DateTime::<Utc>::UNIX_EPOCH)
        })
}

/// Statuses of approval requests that have ended: nothing can happen to them any more.
pub const ENDED_COMMANDS: [&str; 6] = [
    "denied",
    "expired",
    "cancelled",
    "executed",
    "failed",
    "dryrun",
];

/// Times as microseconds, as the store keeps them, so a plan round-trips exactly.
mod micros {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(crate::time::to_micros(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        Ok(crate::time::from_micros(i64::deserialize(d)?))
    }
}

mod opt_micros {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&crate::time::to_micros(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(crate::time::from_micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_round_trips_through_its_setting() {
        let now = crate::time::from_micros(1_700_000_000_123_456);
        let job = Job {
            id: Job::id_for(now),
            status: JobStatus::Planned,
            plan: Plan {
                now,
                kinds: vec![KindPlan {
                    kind: Kind::Event,
                    keep_ms: 1000,
                    cutoff: cutoff(now, Duration::from_secs(1)),
                    span: Span {
                        count: 3,
                        low: Some(1),
                        high: Some(3),
                        oldest: Some(now),
                        newest: None,
                    },
                }],
                audit_anchor_id: 0,
                audit_anchor_hash: crate::audit::GENESIS_HASH.into(),
            },
            archive: None,
            sha256: None,
        };
        let text = serde_json::to_string(&job).unwrap_or_default();
        let back: Job = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, job);
        assert_eq!(job.id, "20231114T221320Z-123456");
        assert_eq!(
            cutoff(now, Duration::from_secs(400 * 365 * 86_400)),
            DateTime::<Utc>::UNIX_EPOCH
        );
    }
}
