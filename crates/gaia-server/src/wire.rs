//! JSON bodies of the HTTP API. They mirror the core types field for field; keeping them here
//! lets the API document itself without the domain depending on the wire format.

use gaia_core::audit::AuditRecord;
use gaia_core::claims::{ClaimResult, Holder};
use gaia_core::event::Event;
use gaia_core::time::rfc3339;
use gaia_core::tokens::TokenInfo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who holds a claim.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HolderBody {
    pub agent: String,
    pub operator: String,
    pub fingerprint: String,
    /// The token the claim was taken with; absent when it was taken without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

impl From<&Holder> for HolderBody {
    fn from(h: &Holder) -> Self {
        Self {
            agent: h.agent.clone(),
            operator: h.operator.clone(),
            fingerprint: h.fingerprint.clone(),
            principal: h.principal.clone(),
        }
    }
}

/// The result of a claim call, or the state of a key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClaimBody {
    /// acquired, already_held, taken_over, held_by_other, refreshed, released, not_held,
    /// lock_timeout; for inspect and list: held, expired, free.
    #[schema(example = "acquired")]
    pub outcome: String,
    /// STORY/TODOLIST
    #[schema(example = "checkout/default")]
    pub key: String,
    pub holder: Option<HolderBody>,
    /// Fencing token of the latest acquisition.
    pub token: i64,
    /// RFC 3339 UTC.
    pub acquired_at: Option<String>,
    /// RFC 3339 UTC.
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous_holder: Option<HolderBody>,
}

impl From<&ClaimResult> for ClaimBody {
    fn from(r: &ClaimResult) -> Self {
        Self {
            outcome: r.outcome.as_str().to_owned(),
            key: r.key.to_string(),
            holder: r.holder.as_ref().map(HolderBody::from),
            token: r.token,
            acquired_at: r.acquired_at.map(rfc3339),
            expires_at: r.expires_at.map(rfc3339),
            previous_holder: r.previous.as_ref().map(HolderBody::from),
        }
    }
}

/// A committed event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventBody {
    pub seq: i64,
    /// RFC 3339 UTC.
    pub ts: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub actor: String,
    pub subject: String,
    /// Any JSON value; `{}` when the emitter gave none.
    pub data: serde_json::Value,
}

impl From<&Event> for EventBody {
    fn from(e: &Event) -> Self {
        Self {
            seq: e.seq,
            ts: rfc3339(e.ts),
            kind: e.kind.clone(),
            actor: e.actor.clone(),
            subject: e.subject.clone(),
            data: e.data.clone(),
        }
    }
}

/// An audit record.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditBody {
    pub id: i64,
    pub ts: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub outcome: String,
    /// JSON text as hashed.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&AuditRecord> for AuditBody {
    fn from(r: &AuditRecord) -> Self {
        Self {
            id: r.id,
            ts: rfc3339(r.ts),
            actor: r.actor.clone(),
            action: r.action.clone(),
            subject: r.subject.clone(),
            outcome: r.outcome.clone(),
            details: r.details.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
        }
    }
}

/// The result of verifying the audit chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyBody {
    pub intact: bool,
    pub checked: u64,
    pub first_broken: Option<BrokenBody>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BrokenBody {
    pub id: i64,
    pub reason: String,
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenBody {
    pub name: String,
    /// agent, operator or admin
    pub role: String,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
}

impl From<&TokenInfo> for TokenBody {
    fn from(t: &TokenInfo) -> Self {
        Self {
            name: t.name.clone(),
            role: t.role.as_str().to_owned(),
            created_at: rfc3339(t.created_at),
            created_by: t.created_by.clone(),
            revoked_at: t.revoked_at.map(rfc3339),
        }
    }
}

/// A newly created token: the secret is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewTokenBody {
    pub name: String,
    pub role: String,
    pub token: String,
}

/// The role of a token.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleBody {
    Agent,
    Operator,
    Admin,
}

impl From<RoleBody> for gaia_core::tokens::Role {
    fn from(r: RoleBody) -> Self {
        match r {
            RoleBody::Agent => Self::Agent,
            RoleBody::Operator => Self::Operator,
            RoleBody::Admin => Self::Admin,
        }
    }
}

/// What to run: `{"argv": [...]}` or `{"shell": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandSpecBody {
    Argv(Vec<String>),
    Shell(String),
}

impl From<&gaia_core::commands::CommandSpec> for CommandSpecBody {
    fn from(s: &gaia_core::commands::CommandSpec) -> Self {
        match s {
            gaia_core::commands::CommandSpec::Argv(a) => Self::Argv(a.clone()),
            gaia_core::commands::CommandSpec::Shell(t) => Self::Shell(t.clone()),
        }
    }
}

impl From<CommandSpecBody> for gaia_core::commands::CommandSpec {
    fn from(s: CommandSpecBody) -> Self {
        match s {
            CommandSpecBody::Argv(a) => Self::Argv(a),
            CommandSpecBody::Shell(t) => Self::Shell(t),
        }
    }
}

/// A command approval request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommandBody {
    pub id: String,
    pub command: CommandSpecBody,
    /// The command as one line, quoted for reading.
    pub display: String,
    pub cwd: Option<String>,
    pub story: Option<String>,
    pub todolist: Option<String>,
    pub reason: Option<String>,
    pub requester: String,
    pub is_test: bool,
    pub test_allowed: bool,
    /// pending, approved, denied, expired, cancelled, executing, executed, failed, dryrun
    pub status: String,
    pub created_at: String,
    pub expires_at: String,
    pub decided_by: Option<String>,
    pub decided_via: Option<String>,
    pub decided_at: Option<String>,
    pub decision_reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub execution: Option<serde_json::Value>,
}

impl From<&gaia_core::commands::CommandRecord> for CommandBody {
    fn from(r: &gaia_core::commands::CommandRecord) -> Self {
        Self {
            id: r.id.clone(),
            command: CommandSpecBody::from(&r.spec),
            display: r.spec.display(),
            cwd: r.cwd.clone(),
            story: r.story.clone(),
            todolist: r.todolist.clone(),
            reason: r.reason.clone(),
            requester: r.requester.clone(),
            is_test: r.is_test,
            test_allowed: r.test_allowed,
            status: r.status.as_str().to_owned(),
            created_at: rfc3339(r.created_at),
            expires_at: rfc3339(r.expires_at),
            decided_by: r.decided_by.clone(),
            decided_via: r.decided_via.clone(),
            decided_at: r.decided_at.map(rfc3339),
            decision_reason: r.decision_reason.clone(),
            execution: r
                .execution
                .as_ref()
                .and_then(|e| serde_json::to_value(e).ok()),
        }
    }
}

/// A notification in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageBody {
    pub id: i64,
    /// telegram, console or webhook
    pub channel: String,
    pub target: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub dedupe_key: Option<String>,
    /// pending, sent or dead
    pub status: String,
    pub attempts: u32,
    pub requeues: u32,
    pub created_at: String,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    pub sent_at: Option<String>,
    pub dead_at: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
}

impl From<&gaia_core::outbox::Message> for MessageBody {
    fn from(m: &gaia_core::outbox::Message) -> Self {
        Self {
            id: m.id,
            channel: m.channel.as_str().to_owned(),
            target: m.target.clone(),
            kind: m.kind.clone(),
            payload: m.payload.clone(),
            dedupe_key: m.dedupe_key.clone(),
            status: m.status.as_str().to_owned(),
            attempts: m.attempts,
            requeues: m.requeues,
            created_at: rfc3339(m.created_at),
            next_attempt_at: rfc3339(m.next_attempt_at),
            last_error: m.last_error.clone(),
            sent_at: m.sent_at.map(rfc3339),
            dead_at: m.dead_at.map(rfc3339),
            result: m.result.clone(),
        }
    }
}
