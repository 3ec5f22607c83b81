//! The event log's records: what a state change says happened, and how readers filter them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::time::rfc3339;

/// One committed event. `seq` is gap-free and strictly increasing per deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: i64,
    #[serde(with = "crate::event::ts_format")]
    pub ts: DateTime<Utc>,
    #[serde(rename = "type")]
    pub kind: String,
    pub actor: String,
    pub subject: String,
    pub data: serde_json::Value,
}

impl Event {
    /// The NDJSON line for this event (no trailing newline).
    pub fn to_ndjson(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// An event before it is committed; the store assigns `seq` and `ts`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: String,
    pub actor: String,
    pub subject: String,
    pub data: serde_json::Value,
}

impl NewEvent {
    pub fn new(
        kind: impl Into<String>,
        actor: impl Into<String>,
        subject: impl Into<String>,
        data: serde_json::Value,
    ) -> Self {
        Self {
            kind: kind.into(),
            actor: actor.into(),
            subject: subject.into(),
            data,
        }
    }
}

/// Which events a reader wants. `type_prefix` matches whole dotted segments: `claim` matches
/// `claim` and `claim.acquired`, not `claims.x`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub type_prefix: Option<String>,
    pub subject: Option<String>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        let type_ok = match &self.type_prefix {
            None => true,
            Some(p) => {
                e.kind == *p
                    || (e.kind.starts_with(p.as_str()) && e.kind[p.len()..].starts_with('.'))
            }
        };
        type_ok && self.subject.as_ref().is_none_or(|s| e.subject == *s)
    }
}

/// Serde adapter: events carry times as RFC 3339 UTC strings with microseconds.
pub mod ts_format {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_micros;

    fn ev(kind: &str, subject: &str) -> Event {
        Event {
            seq: 1,
            ts: from_micros(0),
            kind: kind.into(),
            actor: "a".into(),
            subject: subject.into(),
            data: serde_json::json!({}),
        }
    }

    #[test]
    fn prefix_matches_whole_segments() {
        let f = EventFilter {
            type_prefix: Some("claim".into()),
            subject: None,
        };
        assert!(f.matches(&ev("claim", "")));
        assert!(f.matches(&ev("claim.acquired", "")));
        assert!(!f.matches(&ev("claims.x", "")));
        let f = EventFilter {
            type_prefix: None,
            subject: Some("s".into()),
        };
        assert!(f.matches(&ev("x", "s")));
        assert!(!f.matches(&ev("x", "t")));
    }

    #[test]
    fn ndjson_round_trip() {
        let e = ev("chat.message", "story/x");
        let line = e.to_ndjson();
        assert!(line.contains("\"type\":\"chat.message\""));
        let back: Event = serde_json::from_str(&line).expect("parses");
        assert_eq!(back, e);
    }
}

/// The event types Gaia itself appends, named once. Agents emit types of their own
/// (`chat.message`, `story.updated` ...); these are the ones the system writes and reads.
pub mod kinds {
    pub const CLAIM_ACQUIRED: &str = "claim.acquired";
    pub const CLAIM_TAKEN_OVER: &str = "claim.taken_over";
    pub const CLAIM_REFRESHED: &str = "claim.refreshed";
    pub const CLAIM_RELEASED: &str = "claim.released";
    pub const CLAIM_EXPIRED: &str = "claim.expired";
    pub const APPROVAL_REQUESTED: &str = "approval.requested";
    pub const COMMAND_APPROVED: &str = "command.approved";
    pub const COMMAND_DENIED: &str = "command.denied";
    pub const COMMAND_ALLOWED_TEST: &str = "command.allowed_test";
    pub const COMMAND_CANCELLED: &str = "command.cancelled";
    pub const COMMAND_EXPIRED: &str = "command.expired";
    pub const COMMAND_EXECUTED_DRYRUN: &str = "command.executed.dryrun";
    pub const COMMAND_EXECUTING: &str = "command.executing";
    pub const COMMAND_EXECUTED: &str = "command.executed";
    pub const POLICY_DECIDED: &str = "policy.decided";
    pub const TOKEN_CREATED: &str = "token.created";
    pub const TOKEN_REVOKED: &str = "token.revoked";
    pub const NOTIFY_SENT: &str = "notify.sent";
    pub const NOTIFY_RETRY: &str = "notify.retry";
    pub const NOTIFY_DEAD: &str = "notify.dead";
    pub const NOTIFY_REQUEUED: &str = "notify.requeued";
    pub const NOTIFY_DUPLICATE_SKIPPED: &str = "notify.duplicate_skipped";
    pub const NOTIFY_FALLBACK: &str = "notify.fallback";
    pub const ALERT_FIRED: &str = "alert.fired";
    pub const ALERT_RESOLVED: &str = "alert.resolved";
    pub const TELEGRAM_CONFLICT: &str = "telegram.conflict";
    pub const STORY_CREATED: &str = "story.created";
    pub const STORY_UPDATED: &str = "story.updated";
    pub const STORY_CLOSED: &str = "story.closed";
    pub const STORY_REOPENED: &str = "story.reopened";
    pub const TODO_ADDED: &str = "todo.added";
    pub const TODO_EDITED: &str = "todo.edited";
    pub const TODO_STARTED: &str = "todo.started";
    pub const TODO_DONE: &str = "todo.done";
    pub const TODO_BLOCKED: &str = "todo.blocked";
    pub const TODO_UNBLOCKED: &str = "todo.unblocked";
    pub const TODO_MOVED: &str = "todo.moved";
    pub const TODO_LIST_CREATED: &str = "todo.list_created";
    pub const TODO_ARCHIVED: &str = "todo.archived";
    pub const TODO_FINALIZED: &str = "todo.finalized";
    pub const FOLLOWUP_COLLECTED: &str = "followup.collected";
    pub const FOLLOWUP_UPDATED: &str = "followup.updated";
    pub const FOLLOWUP_ACCEPTED: &str = "followup.accepted";
    pub const FOLLOWUP_REJECTED: &str = "followup.rejected";
    pub const GITHUB_ISSUE_CREATED: &str = "github.issue_created";
    pub const GITHUB_ISSUE_LINKED: &str = "github.issue_linked";
    pub const GITHUB_ISSUE_UPDATED: &str = "github.issue_updated";
    pub const GITHUB_ISSUE_CLOSED: &str = "github.issue_closed";
    pub const CLEANUP_APPLIED: &str = "cleanup.applied";
}
