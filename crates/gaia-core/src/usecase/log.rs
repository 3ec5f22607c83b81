//! Appending events and audit records with no other state change (`gaia events emit`,
//! refusals, policy decisions).

use crate::error::StoreError;
use crate::event::Event;
use crate::store::Change;
use crate::tx::WriteTx;

/// Appends the change's events and audit records in one transaction.
pub async fn append(mut tx: Box<dyn WriteTx>, change: Change) -> Result<Vec<Event>, StoreError> {
    let now = tx.now().await?;
    let events = tx
        .append_and_commit(&change.events, &change.audit, now)
        .await?;
    Ok(events)
}

/// The log's head as a transaction finds it: the last event seq, the last audit id and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHead {
    pub event_seq: i64,
    pub audit_id: i64,
    pub audit_hash: String,
}

/// What an append writes: the events numbered after the head, the audit records sealed into
/// the chain after it, and the new head.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub events: Vec<Event>,
    pub audit: Vec<crate::audit::AuditRecord>,
    pub head: LogHead,
}

/// Numbers `events` and seals `audit` after `head`, all stamped `now`: the one rule of the log
/// every backend's `append` writes down (seqs gap-free from the head, each audit record's hash
/// covering the previous one's).
pub fn number(
    head: LogHead,
    events: &[crate::event::NewEvent],
    audit: &[crate::audit::NewAudit],
    now: chrono::DateTime<chrono::Utc>,
) -> Appended {
    let events: Vec<Event> = (head.event_seq + 1..)
        .zip(events)
        .map(|(seq, e)| Event {
            seq,
            ts: now,
            kind: e.kind.clone(),
            actor: e.actor.clone(),
            subject: e.subject.clone(),
            data: e.data.clone(),
        })
        .collect();
    let mut audit_id = head.audit_id;
    let mut prev_hash = head.audit_hash;
    let mut sealed = Vec::with_capacity(audit.len());
    for a in audit {
        audit_id += 1;
        let r = a.seal(audit_id, now, &prev_hash);
        prev_hash.clone_from(&r.hash);
        sealed.push(r);
    }
    Appended {
        head: LogHead {
            event_seq: head.event_seq + i64::try_from(events.len()).unwrap_or(i64::MAX),
            audit_id,
            audit_hash: prev_hash,
        },
        events,
        audit: sealed,
    }
}
