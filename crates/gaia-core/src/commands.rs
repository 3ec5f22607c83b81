//! Command approvals: an agent asks before running a command, a person decides, and the
//! command runs at most once, only after approval, only when execution is allowed.
//!
//! This module holds the records and the pure transition rules ([`apply`]); backends lock the
//! request's row, call [`apply`] with the store's time, and commit the new record with its event
//! and audit record.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::NewAudit;
use crate::error::ValidationError;
use crate::event::{NewEvent, kinds};
use crate::names::check_name;
use crate::text::{MAX_ERROR_CHARS, MAX_LABEL_CHARS, MAX_OUTPUT_BYTES, check_opt_text, check_text};
use crate::time::{MAX_DURATION, rfc3339};

/// How long a request waits for a decision unless told otherwise.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(3600);
/// Longest argv (all arguments together) or shell text accepted.
pub const MAX_COMMAND_BYTES: usize = 128 * 1024;
pub use crate::text::MAX_REASON_CHARS;

/// What is to run: an argv list (run without a shell), or a shell text as an agent's shell tool
/// would run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandSpec {
    Argv(Vec<String>),
    Shell(String),
}

impl CommandSpec {
    /// A one-line rendering for people (arguments quoted where needed).
    pub fn display(&self) -> String {
        match self {
            Self::Shell(s) => s.clone(),
            Self::Argv(args) => args
                .iter()
                .map(|a| {
                    let plain = !a.is_empty()
                        && a.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
                    if plain {
                        a.clone()
                    } else {
                        format!("'{}'", a.replace('\'', "'\\''"))
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Self::Argv(args) => {
                if args.is_empty() || args[0].is_empty() {
                    return Err(ValidationError::new(
                        "the command is empty: give the program and its arguments",
                    ));
                }
                if args.iter().map(String::len).sum::<usize>() > MAX_COMMAND_BYTES {
                    return Err(ValidationError::new("the command is longer than 128 KiB"));
                }
                if args.iter().any(|a| a.contains('\0')) {
                    return Err(ValidationError::new("arguments must not contain NUL bytes"));
                }
            }
            Self::Shell(text) => {
                if text.trim().is_empty() {
                    return Err(ValidationError::new("the command is empty"));
                }
                if text.len() > MAX_COMMAND_BYTES {
                    return Err(ValidationError::new("the command is longer than 128 KiB"));
                }
                if text.contains('\0') {
                    return Err(ValidationError::new(
                        "the command must not contain NUL bytes",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where a request stands. `pending` → `approved` | `denied` | `expired` | `cancelled`; an
/// approved request → `executing` → `executed` | `failed`, or `dryrun` when execution is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
    Executing,
    Executed,
    Failed,
    Dryrun,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Self::Pending,
        Self::Approved,
        Self::Denied,
        Self::Expired,
        Self::Cancelled,
        Self::Executing,
        Self::Executed,
        Self::Failed,
        Self::Dryrun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::Executing => "executing",
            Self::Executed => "executed",
            Self::Failed => "failed",
            Self::Dryrun => "dryrun",
        }
    }

    /// True once a person (or the policy) approved it, whatever happened after.
    pub fn was_approved(self) -> bool {
        matches!(
            self,
            Self::Approved | Self::Executing | Self::Executed | Self::Failed | Self::Dryrun
        )
    }
}

impl std::str::FromStr for Status {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                ValidationError::new(format!(
                    "unknown status '{}': use pending, approved, denied, expired, cancelled, executing, executed, failed or dryrun",
                    s.escape_debug()
                ))
            })
    }
}

/// What happened when the command ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub executor: String,
    pub dry_run: bool,
    #[serde(with = "crate::event::ts_format")]
    pub started_at: DateTime<Utc>,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Why it could not start (program not found, bad cwd).
    pub error: Option<String>,
}

impl Execution {
    /// The outcome a requester reports for a command it ran itself (`POST …/ran`), ended at
    /// `now`: the duration must fit the longest duration Gaia accepts anywhere, so that the
    /// start time it implies is a real time.
    pub fn reported(
        executor: &str,
        exit_code: Option<i32>,
        duration_ms: u64,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let too_long = || {
            ValidationError::new(format!(
                "duration_ms must be at most {} (3650 days)",
                MAX_DURATION.as_millis()
            ))
        };
        if u128::from(duration_ms) > MAX_DURATION.as_millis() {
            return Err(too_long());
        }
        let took =
            chrono::Duration::try_milliseconds(i64::try_from(duration_ms).map_err(|_| too_long())?)
                .ok_or_else(too_long)?;
        let started_at = now.checked_sub_signed(took).ok_or_else(too_long)?;
        let execution = Self {
            executor: executor.to_owned(),
            dry_run: false,
            started_at,
            exit_code,
            timed_out: false,
            duration_ms,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            error,
        };
        execution.check()?;
        Ok(execution)
    }

    /// Checks every field against its limit: what a store keeps must read back the same on
    /// both backends and serialise within the API's schema (durations are exact integers).
    pub fn check(&self) -> Result<(), ValidationError> {
        check_text("executor", &self.executor, MAX_LABEL_CHARS)?;
        if u128::from(self.duration_ms) > MAX_DURATION.as_millis() {
            return Err(ValidationError::new(format!(
                "duration_ms must be at most {} (3650 days)",
                MAX_DURATION.as_millis()
            )));
        }
        check_opt_text("error", self.error.as_deref(), MAX_ERROR_CHARS)?;
        for (what, out) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if out.len() > MAX_STORED_OUTPUT_BYTES {
                return Err(ValidationError::new(format!(
                    "{what} is longer than {MAX_STORED_OUTPUT_BYTES} bytes"
                )));
            }
            check_text(what, out, usize::MAX - 1)?;
        }
        Ok(())
    }

    /// Reads an execution as stored. A record that no longer parses (written before its
    /// fields were bounded) is reported in the log and read as missing: one bad row must not
    /// make every listing fail.
    pub fn from_stored(id: &str, text: Option<&str>) -> Option<Self> {
        let text = text?;
        match serde_json::from_str(text) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(command = id, error = %e, "unreadable execution record ignored");
                None
            }
        }
    }
}

/// Largest output tail a store keeps for an execution, in bytes: the executor's default tail
/// with room for invalid UTF-8 turned into replacement characters.
pub const MAX_STORED_OUTPUT_BYTES: usize = 4 * MAX_OUTPUT_BYTES;

/// A stored approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    pub id: String,
    pub spec: CommandSpec,
    pub cwd: Option<String>,
    pub story: Option<String>,
    pub todolist: Option<String>,
    pub reason: Option<String>,
    pub requester: String,
    pub is_test: bool,
    pub test_allowed: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: Status,
    pub decided_by: Option<String>,
    pub decided_via: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision_reason: Option<String>,
    /// SHA-256 of the exact command and cwd asked for; execution checks it.
    pub binding: String,
    pub execution: Option<Execution>,
}

impl CommandRecord {
    /// The decision in words: `approved` for every status past approval.
    pub fn decision(&self) -> &'static str {
        if self.status.was_approved() {
            "approved"
        } else {
            self.status.as_str()
        }
    }

    pub fn subject(&self) -> String {
        format!("command/{}", self.id)
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "command": self.spec,
            "display": self.spec.display(),
            "cwd": self.cwd,
            "story": self.story,
            "todolist": self.todolist,
            "reason": self.reason,
            "requester": self.requester,
            "is_test": self.is_test,
            "test_allowed": self.test_allowed,
            "status": self.status.as_str(),
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "decided_by": self.decided_by,
            "decided_via": self.decided_via,
            "decided_at": self.decided_at.map(rfc3339),
            "decision_reason": self.decision_reason,
            "execution": self.execution,
        })
    }
}

/// The hash that binds a decision to the exact command and cwd.
pub fn binding(spec: &CommandSpec, cwd: Option<&str>) -> String {
    let canonical = json!([spec, cwd]).to_string();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Request ids: six characters from an alphabet without look-alikes (no 0/o, 1/l/i, u), easy
/// to read out and type on a phone.
pub const ID_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstvwxyz";
pub const ID_LEN: usize = 6;

pub fn new_id() -> String {
    let mut rng = rand::rng();
    (0..ID_LEN)
        .map(|_| char::from(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())]))
        .collect()
}

/// Checks an id typed by a person (case-insensitive).
pub fn parse_id(text: &str) -> Result<String, ValidationError> {
    let id = text.trim().to_ascii_lowercase();
    if id.len() == ID_LEN && id.bytes().all(|b| ID_ALPHABET.contains(&b)) {
        Ok(id)
    } else {
        Err(ValidationError::new(format!(
            "'{}' is not a command id (six letters and digits, e.g. k7m2qx)",
            text.escape_debug()
        )))
    }
}

/// A validated new request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommand {
    pub spec: CommandSpec,
    pub cwd: Option<String>,
    pub story: Option<String>,
    pub todolist: Option<String>,
    pub reason: Option<String>,
    pub requester: String,
    /// The agent the requester acts for, when it names one other than itself (an agent
    /// behind a shared token): kept beside the requester in the event and audit record.
    pub agent: Option<String>,
    pub is_test: bool,
    pub expires_in: Duration,
}

impl NewCommand {
    /// Records that the requester acts for `agent` (ignored when it is the requester itself).
    pub fn acting_for(mut self, agent: Option<&str>) -> Result<Self, ValidationError> {
        if let Some(a) = agent {
            check_name("agent", a)?;
            if a != self.requester {
                self.agent = Some(a.to_owned());
            }
        }
        Ok(self)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spec: CommandSpec,
        cwd: Option<String>,
        story: Option<String>,
        todolist: Option<String>,
        reason: Option<String>,
        requester: &str,
        is_test: bool,
        expires_in: Option<Duration>,
    ) -> Result<Self, ValidationError> {
        spec.validate()?;
        check_name("requester", requester)?;
        if let Some(s) = &story {
            check_name("story", s)?;
        }
        if let Some(t) = &todolist {
            check_name("todolist", t)?;
        }
        if let Some(c) = &cwd {
            if c.is_empty() || c.contains('\0') || c.len() > 4096 {
                return Err(ValidationError::new(
                    "cwd must be a path of at most 4096 bytes",
                ));
            }
        }
        check_opt_text("reason", reason.as_deref(), MAX_REASON_CHARS)?;
        let expires_in = expires_in.unwrap_or(DEFAULT_EXPIRY);
        if expires_in < Duration::from_secs(1) || expires_in > MAX_DURATION {
            return Err(ValidationError::new("expiry must be between 1s and 3650d"));
        }
        Ok(Self {
            spec,
            cwd,
            story,
            todolist,
            reason,
            requester: requester.to_owned(),
            agent: None,
            is_test,
            expires_in,
        })
    }

    /// The record, event and audit record of the request, created at `now` with `id`.
    pub fn record(&self, id: String, now: DateTime<Utc>) -> (CommandRecord, NewEvent, NewAudit) {
        let r = CommandRecord {
            id,
            binding: binding(&self.spec, self.cwd.as_deref()),
            spec: self.spec.clone(),
            cwd: self.cwd.clone(),
            story: self.story.clone(),
            todolist: self.todolist.clone(),
            reason: self.reason.clone(),
            requester: self.requester.clone(),
            is_test: self.is_test,
            test_allowed: false,
            created_at: now,
            expires_at: now
                + chrono::Duration::from_std(self.expires_in).unwrap_or(chrono::Duration::MAX),
            status: Status::Pending,
            decided_by: None,
            decided_via: None,
            decided_at: None,
            decision_reason: None,
            execution: None,
        };
        let mut data = json!({
            "id": r.id, "command": r.spec.display(), "cwd": r.cwd, "story": r.story,
            "reason": r.reason, "is_test": r.is_test, "expires_at": rfc3339(r.expires_at),
        });
        if let (Some(agent), Some(obj)) = (&self.agent, data.as_object_mut()) {
            obj.insert("agent".into(), json!(agent));
        }
        let event = NewEvent::new(
            kinds::APPROVAL_REQUESTED,
            &r.requester,
            r.subject(),
            data.clone(),
        );
        let audit = NewAudit::new(
            &r.requester,
            "command.request",
            r.subject(),
            "pending",
            data,
        );
        (r, event, audit)
    }
}

/// Who decides, and through which channel (cli, api, dashboard, telegram, policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    pub name: String,
    pub via: String,
}

/// A change to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Approve {
        by: Decider,
        reason: Option<String>,
    },
    Deny {
        by: Decider,
        reason: Option<String>,
    },
    AllowTest {
        by: Decider,
    },
    Cancel {
        by: String,
    },
    Expire,
    /// Take the approved command for execution (real or dry run); `binding` is the hash of what
    /// the executor is about to run.
    BeginExecution {
        executor: String,
        dry_run: bool,
        binding: String,
    },
    FinishExecution {
        execution: Execution,
    },
}

impl Action {
    /// Checks the action's own fields against their limits before any store is touched, so
    /// every channel (API, CLI, Telegram, dashboard) refuses the same input the same way.
    pub fn check(&self) -> Result<(), ValidationError> {
        let decider = |by: &Decider| {
            check_text("decider", &by.name, MAX_LABEL_CHARS)?;
            check_text("channel", &by.via, MAX_LABEL_CHARS)
        };
        match self {
            Self::Approve { by, reason } | Self::Deny { by, reason } => {
                decider(by)?;
                check_opt_text("reason", reason.as_deref(), MAX_REASON_CHARS)
            }
            Self::AllowTest { by } => decider(by),
            Self::Cancel { by } => check_text("actor", by, MAX_LABEL_CHARS),
            Self::Expire => Ok(()),
            Self::BeginExecution {
                executor, binding, ..
            } => {
                check_text("executor", executor, MAX_LABEL_CHARS)?;
                check_text("binding", binding, MAX_LABEL_CHARS)
            }
            Self::FinishExecution { execution } => execution.check(),
        }
    }
}

/// Why an action was refused; carries the request as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub current: Box<CommandRecord>,
}

/// What applying an action to an existing request decided.
// Returned once per call and matched at once, never stored in bulk: not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// The action took effect: the request as it now stands.
    Done(CommandRecord),
    /// The action was refused; the refusal carries the request as it stands.
    Refused(Refusal),
}

impl Decided {
    /// The request as it stands, whether the action took effect or not.
    pub fn record(&self) -> &CommandRecord {
        match self {
            Self::Done(r) => r,
            Self::Refused(refusal) => &refusal.current,
        }
    }

    /// [`record`](Self::record), owned.
    pub fn into_record(self) -> CommandRecord {
        match self {
            Self::Done(r) => r,
            Self::Refused(refusal) => *refusal.current,
        }
    }

    pub fn is_refused(&self) -> bool {
        matches!(self, Self::Refused(_))
    }

    /// `Ok` with the request when the action took effect, `Err` with the refusal otherwise.
    pub fn into_result(self) -> Result<CommandRecord, Refusal> {
        match self {
            Self::Done(r) => Ok(r),
            Self::Refused(refusal) => Err(refusal),
        }
    }
}

/// The new record with its event and audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub record: CommandRecord,
    pub event: NewEvent,
    pub audit: NewAudit,
}

fn decided_text(r: &CommandRecord) -> String {
    match (&r.decided_by, r.decided_at) {
        (Some(by), Some(at)) => format!("{} by {by} at {}", r.decision(), rfc3339(at)),
        _ => r.status.as_str().to_owned(),
    }
}

/// Applies `action` to `current` at `now`: the first valid decision wins, later ones are
/// refused with the existing decision; the requester never decides; expired requests cannot be
/// decided; a test request needs `allow-test` before it can be approved or run; execution
/// happens at most once, only for the exact command approved.
pub fn apply(
    current: &CommandRecord,
    action: &Action,
    now: DateTime<Utc>,
) -> Result<Transition, Refusal> {
    let step = match action {
        Action::Approve { by, reason } => decide(current, by, reason, true, now),
        Action::Deny { by, reason } => decide(current, by, reason, false, now),
        Action::AllowTest { by } => allow_test(current, by),
        Action::Cancel { by } => cancel(current, by, now),
        Action::Expire => expire(current, now),
        Action::BeginExecution {
            executor,
            dry_run,
            binding,
        } => begin_execution(current, executor, *dry_run, binding),
        Action::FinishExecution { execution } => finish_execution(current, execution),
    }
    .map_err(|reason| Refusal {
        reason,
        current: Box::new(current.clone()),
    })?;
    Ok(step.into_transition(current))
}

/// What an accepted action changes: the next record, and what its event and audit record say.
struct Step {
    next: CommandRecord,
    kind: &'static str,
    actor: String,
    outcome: &'static str,
    data: serde_json::Value,
}

impl Step {
    fn into_transition(mut self, current: &CommandRecord) -> Transition {
        if let Some(obj) = self.data.as_object_mut() {
            obj.insert("is_test".into(), json!(current.is_test));
        }
        let subject = current.subject();
        Transition {
            event: NewEvent::new(self.kind, &self.actor, &subject, self.data.clone()),
            audit: NewAudit::new(&self.actor, self.kind, &subject, self.outcome, self.data),
            record: self.next,
        }
    }
}

/// An action is accepted with a [`Step`] or refused with a reason.
type StepResult = Result<Step, String>;

/// Refuses unless the request is still pending.
fn pending(current: &CommandRecord) -> Result<(), String> {
    if current.status != Status::Pending {
        return Err(format!("already {}", decided_text(current)));
    }
    Ok(())
}

/// Approves (`approve`) or denies a pending, unexpired request decided by someone other than
/// its requester; a test request must be allowed before it is approved.
fn decide(
    current: &CommandRecord,
    by: &Decider,
    reason: &Option<String>,
    approve: bool,
    now: DateTime<Utc>,
) -> StepResult {
    pending(current)?;
    if now >= current.expires_at {
        return Err(format!("expired at {}", rfc3339(current.expires_at)));
    }
    if by.name == current.requester {
        return Err("the requester cannot decide its own request".into());
    }
    if approve && current.is_test && !current.test_allowed {
        return Err("this is a test request: use allow-test before approving it".into());
    }
    let mut next = current.clone();
    next.status = if approve {
        Status::Approved
    } else {
        Status::Denied
    };
    next.decided_by = Some(by.name.clone());
    next.decided_via = Some(by.via.clone());
    next.decided_at = Some(now);
    next.decision_reason = reason.clone();
    Ok(Step {
        kind: if approve {
            kinds::COMMAND_APPROVED
        } else {
            kinds::COMMAND_DENIED
        },
        actor: by.name.clone(),
        outcome: next.status.as_str(),
        data: json!({ "id": current.id, "by": by.name, "via": by.via, "reason": reason }),
        next,
    })
}

/// Allows a pending test request to be approved and run; never by its requester.
fn allow_test(current: &CommandRecord, by: &Decider) -> StepResult {
    if !current.is_test {
        return Err("this is not a test request".into());
    }
    pending(current)?;
    if current.test_allowed {
        return Err("the test request is already allowed".into());
    }
    if by.name == current.requester {
        return Err("the requester cannot allow its own test request".into());
    }
    let mut next = current.clone();
    next.test_allowed = true;
    Ok(Step {
        next,
        kind: kinds::COMMAND_ALLOWED_TEST,
        actor: by.name.clone(),
        outcome: "allowed",
        data: json!({ "id": current.id, "by": by.name, "via": by.via }),
    })
}

/// Cancels a pending request.
fn cancel(current: &CommandRecord, by: &str, now: DateTime<Utc>) -> StepResult {
    pending(current)?;
    let mut next = current.clone();
    next.status = Status::Cancelled;
    next.decided_by = Some(by.to_owned());
    next.decided_at = Some(now);
    Ok(Step {
        next,
        kind: kinds::COMMAND_CANCELLED,
        actor: by.to_owned(),
        outcome: "cancelled",
        data: json!({ "id": current.id, "by": by }),
    })
}

/// Expires a pending request past its expiry.
fn expire(current: &CommandRecord, now: DateTime<Utc>) -> StepResult {
    if current.status != Status::Pending || now < current.expires_at {
        return Err("not a pending request past its expiry".into());
    }
    let mut next = current.clone();
    next.status = Status::Expired;
    next.decided_at = Some(now);
    Ok(Step {
        next,
        kind: kinds::COMMAND_EXPIRED,
        actor: "gaia".to_owned(),
        outcome: "expired",
        data: json!({ "id": current.id }),
    })
}

/// Takes an approved (or dry-run) request for execution, at most once, only for the exact
/// command and cwd approved (`binding`).
fn begin_execution(
    current: &CommandRecord,
    executor: &str,
    dry_run: bool,
    binding: &str,
) -> StepResult {
    if !matches!(current.status, Status::Approved | Status::Dryrun) {
        let why = match current.status {
            Status::Pending => "it is still waiting for a decision".to_owned(),
            Status::Executing | Status::Executed | Status::Failed => {
                "it was already executed (execution happens at most once)".to_owned()
            }
            _ => format!("it was {}", decided_text(current)),
        };
        return Err(format!("cannot execute: {why}"));
    }
    if current.is_test && !current.test_allowed {
        return Err("cannot execute a test request that was not allowed".into());
    }
    if binding != current.binding {
        return Err("cannot execute: the command or cwd differs from what was approved".into());
    }
    let mut next = current.clone();
    let (status, kind) = if dry_run {
        (Status::Dryrun, kinds::COMMAND_EXECUTED_DRYRUN)
    } else {
        (Status::Executing, kinds::COMMAND_EXECUTING)
    };
    next.status = status;
    Ok(Step {
        next,
        kind,
        actor: executor.to_owned(),
        outcome: status.as_str(),
        data: json!({ "id": current.id, "command": current.spec.display(), "cwd": current.cwd }),
    })
}

/// Records the result of an execution in progress: executed on exit code 0, failed otherwise.
fn finish_execution(current: &CommandRecord, execution: &Execution) -> StepResult {
    if current.status != Status::Executing {
        return Err("the command is not executing".into());
    }
    let ok = execution.exit_code == Some(0) && !execution.timed_out && execution.error.is_none();
    let mut next = current.clone();
    next.status = if ok { Status::Executed } else { Status::Failed };
    next.execution = Some(execution.clone());
    Ok(Step {
        kind: kinds::COMMAND_EXECUTED,
        actor: execution.executor.clone(),
        outcome: next.status.as_str(),
        data: json!({
            "id": current.id, "exit_code": execution.exit_code, "timed_out": execution.timed_out,
            "duration_ms": execution.duration_ms, "error": execution.error,
            "stdout_truncated": execution.stdout_truncated, "stderr_truncated": execution.stderr_truncated,
        }),
        next,
    })
}

/// The approval request message for one notification target: the command, where, for which
/// story, who asks and why, when it expires, a clear TEST marker, and Approve / Deny buttons
/// whose callback data (`a:ID` / `d:ID`) stays far below Telegram's 64 bytes.
pub fn approval_message(
    r: &CommandRecord,
    to: &crate::outbox::Target,
) -> crate::outbox::NewMessage {
    let test = if r.is_test { "[TEST] " } else { "" };
    let mut text = format!("{test}Approval needed: {}\n", r.id);
    text.push_str(&format!("command: {}\n", r.spec.display()));
    if let Some(cwd) = &r.cwd {
        text.push_str(&format!("cwd: {cwd}\n"));
    }
    if let Some(story) = &r.story {
        text.push_str(&format!("story: {story}\n"));
    }
    text.push_str(&format!("requested by: {}\n", r.requester));
    if let Some(reason) = &r.reason {
        text.push_str(&format!("reason: {reason}\n"));
    }
    text.push_str(&format!("expires: {}", rfc3339(r.expires_at)));
    if r.is_test {
        text.push_str("\nThis is a test request: allow it (/allowtest) before approving.");
    }
    crate::outbox::NewMessage {
        channel: to.channel,
        target: to.target.clone(),
        kind: "approval".into(),
        payload: json!({
            "text": text,
            "command_id": r.id,
            "is_test": r.is_test,
        }),
        dedupe_key: Some(format!(
            "approval:{}:{}:{}",
            r.id,
            to.channel.as_str(),
            to.target
        )),
    }
}

/// The message that reports a request's end (decided, expired, cancelled); on Telegram it
/// replaces the approval message's text and buttons.
pub fn decision_message(
    r: &CommandRecord,
    to: &crate::outbox::Target,
) -> Option<crate::outbox::NewMessage> {
    let what = match r.status {
        Status::Approved | Status::Denied | Status::Expired | Status::Cancelled => {
            r.status.as_str()
        }
        _ => return None,
    };
    let test = if r.is_test { "[TEST] " } else { "" };
    let who = match (&r.decided_by, &r.decided_via, r.decided_at) {
        (Some(by), via, Some(at)) => format!(
            " by {by}{} at {}",
            via.as_ref()
                .map(|v| format!(" via {v}"))
                .unwrap_or_default(),
            rfc3339(at)
        ),
        _ => String::new(),
    };
    let reason = r
        .decision_reason
        .as_ref()
        .map(|x| format!(" ({x})"))
        .unwrap_or_default();
    Some(crate::outbox::NewMessage {
        channel: to.channel,
        target: to.target.clone(),
        kind: "decision".into(),
        payload: json!({
            "text": format!("{test}{} {what}{who}{reason}\ncommand: {}", r.id, r.spec.display()),
            "command_id": r.id,
            "edit_of": format!("approval:{}:{}:{}", r.id, to.channel.as_str(), to.target),
        }),
        dedupe_key: Some(format!(
            "decision:{}:{}:{}",
            r.id,
            to.channel.as_str(),
            to.target
        )),
    })
}

/// What a backend does for an action: commit `transitions` (the final record is the last
/// one's) and report `outcome`. A request found past its expiry is expired first, in the same
/// transaction, so that the refusal and the stored status agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub transitions: Vec<Transition>,
    pub outcome: Result<CommandRecord, Refusal>,
}

pub fn plan(current: &CommandRecord, action: &Action, now: DateTime<Utc>) -> Plan {
    let mut transitions = Vec::new();
    let mut cur = current.clone();
    if cur.status == Status::Pending && now >= cur.expires_at && *action != Action::Expire {
        if let Ok(t) = apply(&cur, &Action::Expire, now) {
            cur = t.record.clone();
            transitions.push(t);
        }
    }
    let outcome = match apply(&cur, action, now) {
        Ok(t) => {
            let record = t.record.clone();
            transitions.push(t);
            Ok(record)
        }
        Err(refusal) => Err(refusal),
    };
    Plan {
        transitions,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_micros;

    fn t(s: i64) -> DateTime<Utc> {
        from_micros(s * 1_000_000)
    }

    fn request(is_test: bool) -> CommandRecord {
        let n = NewCommand::new(
            CommandSpec::Argv(vec!["rm".into(), "-rf".into(), "build/".into()]),
            Some("/repo".into()),
            Some("checkout".into()),
            None,
            Some("clean build".into()),
            "agent-1",
            is_test,
            Some(Duration::from_secs(60)),
        )
        .expect("valid");
        n.record("k7m2qx".into(), t(0)).0
    }

    fn op(name: &str) -> Decider {
        Decider {
            name: name.into(),
            via: "cli".into(),
        }
    }

    /// Runs a script of (time, action, expected status or refusal text) against one request.
    fn check(start: CommandRecord, script: &[(i64, Action, Result<Status, &str>)]) {
        let mut r = start;
        for (i, (at, action, want)) in script.iter().enumerate() {
            match (apply(&r, action, t(*at)), want) {
                (Ok(tr), Ok(status)) => {
                    assert_eq!(tr.record.status, *status, "step {i}");
                    r = tr.record;
                }
                (Err(refusal), Err(text)) => {
                    assert!(
                        refusal.reason.contains(text),
                        "step {i}: {}",
                        refusal.reason
                    );
                    assert_eq!(*refusal.current, r, "step {i}: a refusal changes nothing");
                }
                (got, want) => panic!("step {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn exec(binding: &str, dry_run: bool) -> Action {
        Action::BeginExecution {
            executor: "gaia".into(),
            dry_run,
            binding: binding.into(),
        }
    }

    fn finished(code: i32) -> Action {
        Action::FinishExecution {
            execution: Execution {
                executor: "gaia".into(),
                dry_run: false,
                started_at: t(3),
                exit_code: Some(code),
                timed_out: false,
                duration_ms: 5,
                stdout: String::new(),
                stderr: String::new(),
                stdout_truncated: false,
                stderr_truncated: false,
                error: None,
            },
        }
    }

    #[test]
    fn first_decision_wins_and_requester_never_decides() {
        let r = request(false);
        let b = r.binding.clone();
        check(
            r,
            &[
                (1, exec(&b, false), Err("still waiting")),
                (
                    1,
                    Action::Approve {
                        by: op("agent-1"),
                        reason: None,
                    },
                    Err("requester cannot decide"),
                ),
                (
                    1,
                    Action::Approve {
                        by: op("alice"),
                        reason: None,
                    },
                    Ok(Status::Approved),
                ),
                (
                    1,
                    Action::Deny {
                        by: op("bob"),
                        reason: None,
                    },
                    Err("already approved by alice"),
                ),
                (
                    2,
                    exec("other", false),
                    Err("differs from what was approved"),
                ),
                (2, exec(&b, true), Ok(Status::Dryrun)),
                (2, exec(&b, false), Ok(Status::Executing)),
                (3, exec(&b, false), Err("at most once")),
                (3, finished(0), Ok(Status::Executed)),
                (4, exec(&b, false), Err("at most once")),
            ],
        );
    }

    #[test]
    fn expiry_and_cancel() {
        check(
            request(false),
            &[
                (
                    59,
                    Action::Expire,
                    Err("not a pending request past its expiry"),
                ),
                (
                    60,
                    Action::Approve {
                        by: op("alice"),
                        reason: None,
                    },
                    Err("expired"),
                ),
                (60, Action::Expire, Ok(Status::Expired)),
                (
                    61,
                    Action::Cancel {
                        by: "agent-1".into(),
                    },
                    Err("already expired"),
                ),
            ],
        );
        check(
            request(false),
            &[
                (
                    1,
                    Action::Cancel {
                        by: "agent-1".into(),
                    },
                    Ok(Status::Cancelled),
                ),
                (
                    2,
                    Action::Approve {
                        by: op("alice"),
                        reason: None,
                    },
                    Err("already cancelled"),
                ),
            ],
        );
    }

    #[test]
    fn test_requests_need_allow_test() {
        let r = request(true);
        let b = r.binding.clone();
        check(
            r,
            &[
                (
                    1,
                    Action::Approve {
                        by: op("alice"),
                        reason: None,
                    },
                    Err("use allow-test"),
                ),
                (
                    1,
                    Action::AllowTest { by: op("agent-1") },
                    Err("requester cannot allow"),
                ),
                (
                    1,
                    Action::AllowTest { by: op("alice") },
                    Ok(Status::Pending),
                ),
                (
                    1,
                    Action::AllowTest { by: op("alice") },
                    Err("already allowed"),
                ),
                (
                    2,
                    Action::Approve {
                        by: op("alice"),
                        reason: None,
                    },
                    Ok(Status::Approved),
                ),
                (3, exec(&b, false), Ok(Status::Executing)),
                (4, finished(2), Ok(Status::Failed)),
            ],
        );
        check(
            request(false),
            &[(
                1,
                Action::AllowTest { by: op("alice") },
                Err("not a test request"),
            )],
        );
    }

    #[test]
    fn a_late_decision_expires_the_request_first() {
        let r = request(false);
        let p = plan(
            &r,
            &Action::Approve {
                by: op("alice"),
                reason: None,
            },
            t(61),
        );
        assert_eq!(p.transitions.len(), 1);
        assert_eq!(p.transitions[0].event.kind, "command.expired");
        let refusal = p.outcome.expect_err("refused");
        assert_eq!(refusal.current.status, Status::Expired);
        assert!(
            refusal.reason.contains("already expired"),
            "{}",
            refusal.reason
        );
        let p = plan(
            &r,
            &Action::Approve {
                by: op("alice"),
                reason: None,
            },
            t(1),
        );
        assert_eq!(p.transitions.len(), 1);
        assert_eq!(p.outcome.map(|r| r.status), Ok(Status::Approved));
    }

    #[test]
    fn ids_and_display() {
        let id = new_id();
        assert_eq!(parse_id(&id.to_uppercase()).ok(), Some(id));
        for bad in ["", "abc", "k7m2q0", "k7m2qxx", "k7m2q!"] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
        let spec = CommandSpec::Argv(vec![
            "echo".into(),
            "a b".into(),
            "it's".into(),
            "$(x)".into(),
        ]);
        assert_eq!(spec.display(), "echo 'a b' 'it'\\''s' '$(x)'");
        assert!(
            NewCommand::new(
                CommandSpec::Argv(vec![]),
                None,
                None,
                None,
                None,
                "a",
                false,
                None
            )
            .is_err()
        );
        assert!(
            NewCommand::new(
                CommandSpec::Shell(" ".into()),
                None,
                None,
                None,
                None,
                "a",
                false,
                None
            )
            .is_err()
        );
    }

    #[test]
    fn binding_covers_command_and_cwd() {
        let a = CommandSpec::Argv(vec!["ls".into()]);
        assert_ne!(binding(&a, Some("/a")), binding(&a, Some("/b")));
        assert_ne!(
            binding(&a, None),
            binding(&CommandSpec::Shell("ls".into()), None)
        );
    }
}
