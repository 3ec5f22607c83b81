//! The audit trail: who did what to which subject, with what outcome. Each record carries the
//! hash of the one before it, so that editing, deleting or reordering any stored record is
//! detected by the [`Verifier`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::time::to_micros;

/// The `prev_hash` of the first record ever written.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: i64,
    #[serde(with = "crate::event::ts_format")]
    pub ts: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub outcome: String,
    /// JSON text exactly as stored and hashed.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

/// An audit record before the store numbers, times and chains it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub outcome: String,
    pub details: serde_json::Value,
}

impl NewAudit {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        subject: impl Into<String>,
        outcome: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            outcome: outcome.into(),
            details,
        }
    }

    /// Numbers, times and chains this record after `prev_hash`. Backends call this while they
    /// hold the log head lock, so that the chain is built in commit order.
    pub fn seal(&self, id: i64, ts: DateTime<Utc>, prev_hash: &str) -> AuditRecord {
        let details = self.details.to_string();
        let hash = record_hash(
            id,
            ts,
            &self.actor,
            &self.action,
            &self.subject,
            &self.outcome,
            &details,
            prev_hash,
        );
        AuditRecord {
            id,
            ts,
            actor: self.actor.clone(),
            action: self.action.clone(),
            subject: self.subject.clone(),
            outcome: self.outcome.clone(),
            details,
            prev_hash: prev_hash.to_owned(),
            hash,
        }
    }
}

/// SHA-256 over a JSON array of every field, so that no two different records (however their
/// texts are chosen) serialise to the same input: `[id,ts_us,"actor","action","subject",
/// "outcome","details","prev_hash"]`, with serde_json's escaping and no spaces.
#[allow(clippy::too_many_arguments)]
pub fn record_hash(
    id: i64,
    ts: DateTime<Utc>,
    actor: &str,
    action: &str,
    subject: &str,
    outcome: &str,
    details: &str,
    prev_hash: &str,
) -> String {
    hash_after(
        id,
        to_micros(ts),
        &hashed_fields(actor, action, subject, outcome, details),
        prev_hash,
    )
}

/// The five texts in the middle of a record's hash input, serialised and joined as they
/// appear there (`"actor","action","subject","outcome","details"`). A backend that seals
/// records where the chain's head is (PostgreSQL's `gaia_append`, migration 12) is sent
/// these, so that it writes no JSON escaping of its own and only joins
/// `[id,ts_us,` + fields + `,"prev_hash"]`.
pub fn hashed_fields(
    actor: &str,
    action: &str,
    subject: &str,
    outcome: &str,
    details: &str,
) -> String {
    [actor, action, subject, outcome, details]
        .map(|t| serde_json::Value::from(t).to_string())
        .join(",")
}

/// The hash of the record `id` at `ts_us` with `fields` ([`hashed_fields`]) after `prev_hash`.
fn hash_after(id: i64, ts_us: i64, fields: &str, prev_hash: &str) -> String {
    let prev = serde_json::Value::from(prev_hash);
    let canonical = format!("[{id},{ts_us},{fields},{prev}]");
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

impl AuditRecord {
    pub fn computed_hash(&self) -> String {
        record_hash(
            self.id,
            self.ts,
            &self.actor,
            &self.action,
            &self.subject,
            &self.outcome,
            &self.details,
            &self.prev_hash,
        )
    }
}

/// Where the chain starts and ends, as the store's head row says. `anchor_*` is the record just
/// before the oldest one still stored (id 0 and the genesis hash until old records are archived).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub anchor_id: i64,
    pub anchor_hash: String,
    pub last_id: i64,
    pub last_hash: String,
}

/// Why the chain does not verify, naming the first record where it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The record id where the break was found (for a deletion: the id that is missing).
    pub id: i64,
    pub reason: String,
}

/// Outcome of [`Verifier`]: how many records were checked and the first break, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub checked: u64,
    pub first_break: Option<Break>,
}

/// Checks records fed in id order, page by page, so a large trail never has to be in memory.
#[derive(Debug)]
pub struct Verifier {
    expected_id: i64,
    expected_prev: String,
    checked: u64,
    first_break: Option<Break>,
}

impl Verifier {
    pub fn new(head: &ChainHead) -> Self {
        Self {
            expected_id: head.anchor_id + 1,
            expected_prev: head.anchor_hash.clone(),
            checked: 0,
            first_break: None,
        }
    }

    pub fn is_broken(&self) -> bool {
        self.first_break.is_some()
    }

    /// The id of the last record fed that held (the anchor's before any).
    pub fn last_seen(&self) -> i64 {
        self.expected_id - 1
    }

    /// The first break found so far.
    pub fn first_break(&self) -> Option<&Break> {
        self.first_break.as_ref()
    }

    /// Feeds the next stored record. Returns false once a break is found.
    pub fn feed(&mut self, r: &AuditRecord) -> bool {
        if self.first_break.is_some() {
            return false;
        }
        let reason = if r.id != self.expected_id {
            if r.id > self.expected_id {
                Some((
                    self.expected_id,
                    format!(
                        "record #{} is missing (deleted, or ids were rewritten); next stored is #{}",
                        self.expected_id, r.id
                    ),
                ))
            } else {
                Some((r.id, format!("record #{} is out of order", r.id)))
            }
        } else if r.prev_hash != self.expected_prev {
            Some((
                r.id,
                format!(
                    "record #{} does not follow the record before it (reordered, or the one before was replaced)",
                    r.id
                ),
            ))
        } else if r.computed_hash() != r.hash {
            Some((
                r.id,
                format!(
                    "record #{} was edited (its hash does not match its contents)",
                    r.id
                ),
            ))
        } else {
            None
        };
        if let Some((id, reason)) = reason {
            self.first_break = Some(Break { id, reason });
            return false;
        }
        self.checked += 1;
        self.expected_id += 1;
        self.expected_prev.clone_from(&r.hash);
        true
    }

    /// Ends the walk: the last record seen must be the one the head names.
    pub fn finish(mut self, head: &ChainHead) -> VerifyReport {
        if self.first_break.is_none() {
            let last_seen = self.expected_id - 1;
            if last_seen < head.last_id {
                self.first_break = Some(Break {
                    id: last_seen + 1,
                    reason: format!(
                        "records #{}..#{} are missing (deleted from the end of the trail)",
                        last_seen + 1,
                        head.last_id
                    ),
                });
            } else if last_seen > head.last_id || self.expected_prev != head.last_hash {
                self.first_break = Some(Break {
                    id: last_seen,
                    reason: format!(
                        "record #{last_seen} is not the last record the store committed (#{})",
                        head.last_id
                    ),
                });
            }
        }
        VerifyReport {
            checked: self.checked,
            first_break: self.first_break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_micros;

    fn chain(n: i64) -> (Vec<AuditRecord>, ChainHead) {
        let mut prev = GENESIS_HASH.to_owned();
        let mut out = Vec::new();
        for id in 1..=n {
            let r = NewAudit::new(
                "a",
                "claim.acquire",
                "s/d",
                "acquired",
                serde_json::json!({"n": id}),
            )
            .seal(id, from_micros(id * 1000), &prev);
            prev.clone_from(&r.hash);
            out.push(r);
        }
        let head = ChainHead {
            anchor_id: 0,
            anchor_hash: GENESIS_HASH.into(),
            last_id: n,
            last_hash: prev,
        };
        (out, head)
    }

    /// The hash input is the JSON array of every field, as it was first written; texts that
    /// JSON escapes, and ones it leaves as they are, hash the same way.
    #[test]
    fn the_hash_input_is_the_json_array_of_the_fields() {
        let texts = [
            "plain",
            "quote \" backslash \\ slash /",
            "control \u{1} tab \t newline \n del \u{7f}",
            "unicode é ☃ 𝄞 \u{202e}rtl \u{2028}",
            "",
            "x'); DROP TABLE audit; --",
        ];
        for (i, t) in texts.iter().enumerate() {
            let id = i64::try_from(i).expect("small") - 2;
            let ts = from_micros(-7 + 1_000_000 * id);
            let prev = format!("{t}{GENESIS_HASH}");
            let canonical =
                serde_json::json!([id, to_micros(ts), t, "b", t, "d", t, prev]).to_string();
            assert_eq!(
                record_hash(id, ts, t, "b", t, "d", t, &prev),
                hex::encode(Sha256::digest(canonical.as_bytes())),
                "{t:?}"
            );
        }
    }

    fn check(records: &[AuditRecord], head: &ChainHead) -> VerifyReport {
        let mut v = Verifier::new(head);
        for r in records {
            if !v.feed(r) {
                break;
            }
        }
        v.finish(head)
    }

    #[test]
    fn intact_chain_verifies() {
        let (records, head) = chain(5);
        assert_eq!(
            check(&records, &head),
            VerifyReport {
                checked: 5,
                first_break: None
            }
        );
        let (none, empty) = chain(0);
        assert_eq!(check(&none, &empty).first_break, None);
    }

    #[test]
    fn tampering_is_found_at_the_first_broken_record() {
        type Tamper = Box<dyn Fn(&mut Vec<AuditRecord>)>;
        let cases: Vec<(&str, Tamper, i64)> = vec![
            ("edit", Box::new(|r| r[2].outcome = "released".into()), 3),
            ("edit details", Box::new(|r| r[1].details = "{}".into()), 2),
            (
                "delete middle",
                Box::new(|r| {
                    r.remove(1);
                }),
                2,
            ),
            (
                "delete last",
                Box::new(|r| {
                    r.pop();
                }),
                5,
            ),
            (
                "swap contents",
                Box::new(|r| {
                    let (a, b) = (r[1].clone(), r[2].clone());
                    r[1] = AuditRecord { id: 2, ..b };
                    r[2] = AuditRecord { id: 3, ..a };
                }),
                2,
            ),
        ];
        for (name, tamper, at) in cases {
            let (mut records, head) = chain(5);
            tamper(&mut records);
            let report = check(&records, &head);
            assert_eq!(report.first_break.map(|b| b.id), Some(at), "{name}");
        }
    }
}
