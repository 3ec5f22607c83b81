//! Claims (leases) on a story's todolist: the typed outcomes and the pure rules that decide them.
//!
//! A backend locks the key's row, reads the time from its clock, and asks [`decide`] what to do;
//! it then writes the new row together with the returned events and audit records in the same
//! transaction. Keeping the rules here means both backends decide identically.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::NewAudit;
use crate::error::ValidationError;
use crate::event::{NewEvent, kinds};
use crate::names::{ClaimKey, check_name};
use crate::time::{MAX_DURATION, rfc3339};

/// Default lease length.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
/// Shortest lease accepted: below this a heartbeat could not keep up.
pub const MIN_TTL: Duration = Duration::from_secs(1);

/// Who holds a claim: the operator they act for, the agent, and the agent run's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub agent: String,
    pub operator: String,
    pub fingerprint: String,
    /// The token the claim was taken with (absent for direct store access, which is trusted
    /// like the database itself). Only that token refreshes or releases it: the agent name is
    /// whom the token acts for, and any token could write any name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

impl Holder {
    /// Who acts: the token when there is one, else the agent.
    pub fn actor(&self) -> &str {
        self.principal.as_deref().unwrap_or(&self.agent)
    }
}

/// The stored state of one key. The row outlives releases so that `token` keeps increasing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRow {
    pub key: ClaimKey,
    pub holder: Option<Holder>,
    /// Fencing token of the latest acquisition (0: never acquired).
    pub token: i64,
    pub acquired_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub ttl: Duration,
}

impl ClaimRow {
    pub fn vacant(key: ClaimKey) -> Self {
        Self {
            key,
            holder: None,
            token: 0,
            acquired_at: None,
            expires_at: None,
            ttl: DEFAULT_TTL,
        }
    }

    /// Held and not yet expired at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.holder.is_some() && self.expires_at.is_some_and(|e| e > now)
    }
}

/// Every result a claim call can have. The string forms are part of the CLI and API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Acquired,
    AlreadyHeld,
    TakenOver,
    HeldByOther,
    Refreshed,
    Released,
    NotHeld,
    LockTimeout,
    /// `inspect`/`list`: held and live.
    Held,
    /// `inspect`/`list`: a holder is recorded but its TTL has passed.
    Expired,
    /// `inspect`/`list`: nobody holds it.
    Free,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acquired => "acquired",
            Self::AlreadyHeld => "already_held",
            Self::TakenOver => "taken_over",
            Self::HeldByOther => "held_by_other",
            Self::Refreshed => "refreshed",
            Self::Released => "released",
            Self::NotHeld => "not_held",
            Self::LockTimeout => "lock_timeout",
            Self::Held => "held",
            Self::Expired => "expired",
            Self::Free => "free",
        }
    }

    /// True when the call did what was asked (exit code 0).
    pub fn is_success(self) -> bool {
        !matches!(self, Self::HeldByOther | Self::NotHeld | Self::LockTimeout)
    }
}

/// What a claim call returns: the outcome and the key's state after the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimResult {
    pub outcome: Outcome,
    pub key: ClaimKey,
    pub holder: Option<Holder>,
    pub token: i64,
    pub acquired_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// For `taken_over`: whom the claim was taken from.
    pub previous: Option<Holder>,
}

impl ClaimResult {
    fn from_row(outcome: Outcome, row: &ClaimRow) -> Self {
        Self {
            outcome,
            key: row.key.clone(),
            holder: row.holder.clone(),
            token: row.token,
            acquired_at: row.acquired_at,
            expires_at: row.expires_at,
            previous: None,
        }
    }

    /// The state of a key as `inspect` and `list` report it.
    pub fn observe(row: &ClaimRow, now: DateTime<Utc>) -> Self {
        let outcome = match (&row.holder, row.is_live(now)) {
            (None, _) => Outcome::Free,
            (Some(_), true) => Outcome::Held,
            (Some(_), false) => Outcome::Expired,
        };
        Self::from_row(outcome, row)
    }

    pub fn lock_timeout(key: ClaimKey) -> Self {
        Self {
            outcome: Outcome::LockTimeout,
            key,
            holder: None,
            token: 0,
            acquired_at: None,
            expires_at: None,
            previous: None,
        }
    }

    /// The JSON object of the CLI contract: a holder is its agent, operator and fingerprint
    /// (the same in direct and remote mode; the API's own body also names the token).
    pub fn to_json(&self) -> serde_json::Value {
        let public = |h: &Holder| json!({ "agent": h.agent, "operator": h.operator, "fingerprint": h.fingerprint });
        let mut v = json!({
            "outcome": self.outcome.as_str(),
            "key": self.key.to_string(),
            "holder": self.holder.as_ref().map(public),
            "token": self.token,
            "acquired_at": self.acquired_at.map(rfc3339),
            "expires_at": self.expires_at.map(rfc3339),
        });
        if let (Some(prev), Some(obj)) = (&self.previous, v.as_object_mut()) {
            obj.insert("previous_holder".into(), public(prev));
        }
        v
    }
}

/// A validated claim call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Acquire {
        key: ClaimKey,
        holder: Holder,
        ttl: Duration,
    },
    Refresh {
        key: ClaimKey,
        agent: String,
        fingerprint: Option<String>,
        ttl: Option<Duration>,
        principal: Option<String>,
    },
    Release {
        key: ClaimKey,
        agent: String,
        fingerprint: Option<String>,
        principal: Option<String>,
    },
}

impl Request {
    pub fn key(&self) -> &ClaimKey {
        match self {
            Self::Acquire { key, .. } | Self::Refresh { key, .. } | Self::Release { key, .. } => {
                key
            }
        }
    }

    /// The same call made with the token named `principal`: the claim is held by that token,
    /// and a refresh or release by any other token does not touch it.
    #[must_use]
    pub fn by(mut self, name: &str) -> Self {
        let p = Some(name.to_owned());
        match &mut self {
            Self::Acquire { holder, .. } => holder.principal = p,
            Self::Refresh { principal, .. } | Self::Release { principal, .. } => *principal = p,
        }
        self
    }

    pub fn acquire(
        key: ClaimKey,
        agent: &str,
        operator: Option<&str>,
        fingerprint: Option<&str>,
        ttl: Option<Duration>,
    ) -> Result<Self, ValidationError> {
        check_name("agent id", agent)?;
        let operator = operator.unwrap_or("-");
        check_name("operator", operator)?;
        let fingerprint = fingerprint.unwrap_or("-");
        check_name("fingerprint", fingerprint)?;
        Ok(Self::Acquire {
            key,
            holder: Holder {
                agent: agent.to_owned(),
                operator: operator.to_owned(),
                fingerprint: fingerprint.to_owned(),
                principal: None,
            },
            ttl: check_ttl(ttl.unwrap_or(DEFAULT_TTL))?,
        })
    }

    pub fn refresh(
        key: ClaimKey,
        agent: &str,
        fingerprint: Option<&str>,
        ttl: Option<Duration>,
    ) -> Result<Self, ValidationError> {
        check_name("agent id", agent)?;
        if let Some(fp) = fingerprint {
            check_name("fingerprint", fp)?;
        }
        Ok(Self::Refresh {
            key,
            agent: agent.to_owned(),
            fingerprint: fingerprint.map(str::to_owned),
            ttl: ttl.map(check_ttl).transpose()?,
            principal: None,
        })
    }

    pub fn release(
        key: ClaimKey,
        agent: &str,
        fingerprint: Option<&str>,
    ) -> Result<Self, ValidationError> {
        check_name("agent id", agent)?;
        if let Some(fp) = fingerprint {
            check_name("fingerprint", fp)?;
        }
        Ok(Self::Release {
            key,
            agent: agent.to_owned(),
            fingerprint: fingerprint.map(str::to_owned),
            principal: None,
        })
    }
}

fn check_ttl(ttl: Duration) -> Result<Duration, ValidationError> {
    if ttl < MIN_TTL {
        return Err(ValidationError::new("ttl must be at least 1s"));
    }
    if ttl > MAX_DURATION {
        return Err(ValidationError::new("ttl must be at most 3650d"));
    }
    Ok(ttl)
}

/// What the backend must do: write `row` (if `Some`) and append the events and audit records,
/// all in one transaction, then return `result`. `row: None` means nothing changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub result: ClaimResult,
    pub row: Option<ClaimRow>,
    pub events: Vec<NewEvent>,
    pub audit: Vec<NewAudit>,
}

fn later(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

/// Whether a refresh or release by (`agent`, `fingerprint`, `principal`) is the holder's own.
/// A call made with a token must come from the token that took the claim; a direct call
/// (no token) is trusted like the database it opens.
fn identity_matches(
    holder: &Holder,
    agent: &str,
    fingerprint: Option<&str>,
    principal: Option<&str>,
) -> bool {
    holder.agent == agent
        && fingerprint.is_none_or(|fp| holder.fingerprint == fp)
        && principal.is_none_or(|p| holder.principal.as_deref() == Some(p))
}

/// Applies `req` to the current row (`None`: the key was never claimed) at time `now`.
pub fn decide(current: Option<ClaimRow>, req: &Request, now: DateTime<Utc>) -> Decision {
    let row = current.unwrap_or_else(|| ClaimRow::vacant(req.key().clone()));
    match req {
        Request::Acquire { holder, ttl, .. } => acquire(&row, holder, *ttl, now),
        Request::Refresh {
            agent,
            fingerprint,
            ttl,
            principal,
            ..
        } => {
            let who = Caller {
                agent,
                fingerprint: fingerprint.as_deref(),
                principal: principal.as_deref(),
            };
            refresh(&row, &who, *ttl, now)
        }
        Request::Release {
            agent,
            fingerprint,
            principal,
            ..
        } => {
            let who = Caller {
                agent,
                fingerprint: fingerprint.as_deref(),
                principal: principal.as_deref(),
            };
            release(&row, &who, now)
        }
    }
}

/// Who asks to refresh or release a claim.
struct Caller<'a> {
    agent: &'a str,
    fingerprint: Option<&'a str>,
    principal: Option<&'a str>,
}

impl Caller<'_> {
    /// Whether `row` is held by this caller (whether or not its TTL passed).
    fn holds(&self, row: &ClaimRow) -> bool {
        row.holder
            .as_ref()
            .is_some_and(|h| identity_matches(h, self.agent, self.fingerprint, self.principal))
    }

    /// Who the event and the audit record name.
    fn actor(&self) -> &str {
        self.principal.unwrap_or(self.agent)
    }
}

/// Nothing changes: `outcome` reported on the row as it stands.
fn unchanged(outcome: Outcome, row: &ClaimRow) -> Decision {
    Decision {
        result: ClaimResult::from_row(outcome, row),
        row: None,
        events: vec![],
        audit: vec![],
    }
}

/// A change: `new` is written, with one event of type `kind` and its audit record (`action`).
fn changed(
    result: ClaimResult,
    new: ClaimRow,
    (kind, action): (&str, &str),
    actor: &str,
    data: serde_json::Value,
) -> Decision {
    let subject = format!("claim/{}", new.key);
    Decision {
        events: vec![NewEvent::new(kind, actor, &subject, data.clone())],
        audit: vec![NewAudit::new(
            actor,
            action,
            &subject,
            result.outcome.as_str(),
            data,
        )],
        result,
        row: Some(new),
    }
}

/// Acquires the key for `holder`: refused while someone holds it live; taking over from
/// someone else whose TTL passed is reported as such, re-acquiring one's own expired claim is
/// a fresh acquisition.
fn acquire(row: &ClaimRow, holder: &Holder, ttl: Duration, now: DateTime<Utc>) -> Decision {
    if row.is_live(now) {
        let same = row.holder.as_ref() == Some(holder);
        let outcome = if same {
            Outcome::AlreadyHeld
        } else {
            Outcome::HeldByOther
        };
        return unchanged(outcome, row);
    }
    let previous = row.holder.clone().filter(|prev| prev != holder);
    let new = ClaimRow {
        key: row.key.clone(),
        holder: Some(holder.clone()),
        token: row.token + 1,
        acquired_at: Some(now),
        expires_at: Some(later(now, ttl)),
        ttl,
    };
    let mut data = json!({
        "key": new.key.to_string(),
        "agent": holder.agent,
        "operator": holder.operator,
        "fingerprint": holder.fingerprint,
        "token": new.token,
        "expires_at": new.expires_at.map(rfc3339),
        "ttl_ms": u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
    });
    if let (Some(prev), Some(obj)) = (&previous, data.as_object_mut()) {
        obj.insert("previous_holder".into(), json!(prev));
        obj.insert("previous_token".into(), json!(row.token));
        obj.insert(
            "previous_expires_at".into(),
            json!(row.expires_at.map(rfc3339)),
        );
    }
    let (outcome, names) = if previous.is_some() {
        (
            Outcome::TakenOver,
            (kinds::CLAIM_TAKEN_OVER, "claim.take_over"),
        )
    } else {
        (Outcome::Acquired, (kinds::CLAIM_ACQUIRED, "claim.acquire"))
    };
    let mut result = ClaimResult::from_row(outcome, &new);
    result.previous = previous;
    changed(result, new, names, holder.actor(), data)
}

/// Extends the caller's own live claim, by `ttl` or else by the TTL it was taken with.
fn refresh(
    row: &ClaimRow,
    who: &Caller<'_>,
    ttl: Option<Duration>,
    now: DateTime<Utc>,
) -> Decision {
    if !who.holds(row) || !row.is_live(now) {
        return unchanged(Outcome::NotHeld, row);
    }
    let ttl = ttl.unwrap_or(row.ttl);
    let new = ClaimRow {
        expires_at: Some(later(now, ttl)),
        ttl,
        ..row.clone()
    };
    let data = json!({
        "key": new.key.to_string(),
        "agent": who.agent,
        "token": new.token,
        "expires_at": new.expires_at.map(rfc3339),
    });
    let result = ClaimResult::from_row(Outcome::Refreshed, &new);
    let names = (kinds::CLAIM_REFRESHED, "claim.refresh");
    changed(result, new, names, who.actor(), data)
}

/// Releases the caller's own claim. A holder may release it even after its TTL passed, as
/// long as nobody took it over: the caller's goal (not holding it) is reached either way.
fn release(row: &ClaimRow, who: &Caller<'_>, now: DateTime<Utc>) -> Decision {
    if !who.holds(row) {
        return unchanged(Outcome::NotHeld, row);
    }
    let new = ClaimRow {
        holder: None,
        expires_at: None,
        ..row.clone()
    };
    let data = json!({
        "key": new.key.to_string(),
        "agent": who.agent,
        "token": row.token,
        "held_ms": row.acquired_at.map(|a| (now - a).num_milliseconds()),
    });
    let mut result = ClaimResult::from_row(Outcome::Released, &new);
    result.token = row.token;
    let names = (kinds::CLAIM_RELEASED, "claim.release");
    changed(result, new, names, who.actor(), data)
}

/// The event and audit record that report an acquisition's TTL passing without a release.
/// `None` when the row is not held or still live.
pub fn expiry(row: &ClaimRow, now: DateTime<Utc>) -> Option<(NewEvent, NewAudit)> {
    let holder = row.holder.as_ref()?;
    if row.is_live(now) {
        return None;
    }
    let subject = format!("claim/{}", row.key);
    let data = json!({
        "key": row.key.to_string(),
        "agent": holder.agent,
        "operator": holder.operator,
        "fingerprint": holder.fingerprint,
        "token": row.token,
        "expires_at": row.expires_at.map(rfc3339),
    });
    Some((
        NewEvent::new(kinds::CLAIM_EXPIRED, "gaia", &subject, data.clone()),
        NewAudit::new("gaia", "claim.expire", &subject, "expired", data),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_micros;

    fn key() -> ClaimKey {
        ClaimKey::new("story", "default").expect("valid")
    }

    fn acquire(agent: &str, fp: &str, ttl_s: u64) -> Request {
        Request::acquire(
            key(),
            agent,
            None,
            Some(fp),
            Some(Duration::from_secs(ttl_s)),
        )
        .expect("valid")
    }

    fn t(s: i64) -> DateTime<Utc> {
        from_micros(s * 1_000_000)
    }

    /// Runs a script of (time, request, expected outcome, expected token) against one key.
    fn check(script: &[(i64, Request, Outcome, i64)]) {
        let mut row: Option<ClaimRow> = None;
        for (i, (at, req, want, token)) in script.iter().enumerate() {
            let d = decide(row.clone(), req, t(*at));
            assert_eq!(d.result.outcome, *want, "step {i}");
            assert_eq!(d.result.token, *token, "step {i} token");
            assert_eq!(
                d.row.is_some(),
                !d.events.is_empty(),
                "step {i}: a change has its event"
            );
            assert_eq!(
                d.events.len(),
                d.audit.len(),
                "step {i}: and its audit record"
            );
            if let Some(new) = d.row {
                row = Some(new);
            }
        }
    }

    #[test]
    fn lifecycle() {
        let refresh = |a: &str| Request::refresh(key(), a, None, None).expect("valid");
        let release = |a: &str| Request::release(key(), a, None).expect("valid");
        check(&[
            (0, acquire("a", "fp1", 10), Outcome::Acquired, 1),
            (1, acquire("a", "fp1", 10), Outcome::AlreadyHeld, 1),
            (2, acquire("a", "fp2", 10), Outcome::HeldByOther, 1),
            (3, acquire("b", "fp", 10), Outcome::HeldByOther, 1),
            (4, refresh("b"), Outcome::NotHeld, 1),
            (5, refresh("a"), Outcome::Refreshed, 1),
            (14, acquire("b", "fp", 10), Outcome::HeldByOther, 1),
            (15, acquire("b", "fp", 10), Outcome::TakenOver, 2),
            (16, refresh("a"), Outcome::NotHeld, 2),
            (16, release("a"), Outcome::NotHeld, 2),
            (17, release("b"), Outcome::Released, 2),
            (17, release("b"), Outcome::NotHeld, 2),
            (18, acquire("a", "fp1", 10), Outcome::Acquired, 3),
            (40, acquire("a", "fp1", 10), Outcome::Acquired, 4),
        ]);
    }

    #[test]
    fn expiry_is_exclusive_of_the_boundary() {
        // At exactly expires_at the claim is no longer live.
        check(&[
            (0, acquire("a", "x", 10), Outcome::Acquired, 1),
            (9, acquire("b", "y", 10), Outcome::HeldByOther, 1),
            (10, acquire("b", "y", 10), Outcome::TakenOver, 2),
        ]);
    }

    #[test]
    fn takeover_names_the_previous_holder() {
        let first = decide(None, &acquire("a", "x", 1), t(0));
        let second = decide(first.row, &acquire("b", "y", 1), t(5));
        assert_eq!(second.events[0].kind, "claim.taken_over");
        assert_eq!(second.events[0].data["previous_holder"]["agent"], "a");
        assert_eq!(second.result.to_json()["previous_holder"]["agent"], "a");
    }

    #[test]
    fn ttl_bounds() {
        assert!(
            Request::acquire(key(), "a", None, None, Some(Duration::from_millis(500))).is_err()
        );
        assert!(Request::acquire(key(), "", None, None, None).is_err());
    }
}
