//! Command approval requests: filing one, applying an action (decide, cancel, execute), and
//! expiring those nobody decided in time. Messages to the notify targets are enqueued in the
//! same transaction as the change that causes them, and a new request's policy ruling (and the
//! approval or denial it applies) is written in the transaction that files it.

use chrono::{DateTime, Utc};

use crate::audit::NewAudit;
use crate::commands::{
    Action, CommandRecord, NewCommand, Refusal, Status, Transition, approval_message,
    decision_message, new_id, plan,
};
use crate::error::StoreError;
use crate::event::{Event, NewEvent};
use crate::outbox::Target;
use crate::tx::WriteTx;
use crate::usecase::outbox::enqueue_in;

/// Fresh ids tried before giving up (six characters from 30 make collisions rare).
const ID_ATTEMPTS: usize = 8;

/// The policy's ruling on a new request, written in the transaction that files it: its
/// decision's event and audit record (made once the request's id is known) and, unless it
/// leaves the request to a person, the approval or denial it applies.
pub struct Ruling<'a> {
    pub note: &'a (dyn Fn(&CommandRecord) -> (NewEvent, NewAudit) + Send + Sync),
    pub action: Option<Action>,
}

impl std::fmt::Debug for Ruling<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ruling")
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

/// What applying an action did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The action took effect: the request as it now stands, and the events committed.
    Done {
        record: Box<CommandRecord>,
        events: Vec<Event>,
    },
    /// The action was refused; `events` holds what still happened (a request found past its
    /// expiry is recorded as expired).
    Refused {
        refusal: Refusal,
        events: Vec<Event>,
    },
    /// There is no such request.
    Missing,
}

/// Stores a new pending request under a fresh id, with its event, audit record and the
/// approval messages for `notify`, then the policy's `ruling` on it, if given, in the same
/// transaction. Returns the request as the ruling left it.
pub async fn create(
    mut tx: Box<dyn WriteTx>,
    new: &NewCommand,
    notify: &[Target],
    ruling: Option<&Ruling<'_>>,
) -> Result<(CommandRecord, Vec<Event>), StoreError> {
    let now = tx.now().await?;
    for _ in 0..ID_ATTEMPTS {
        let (r, event, audit) = new.record(new_id(), now);
        if !tx.command_insert(&r).await? {
            continue;
        }
        let messages: Vec<_> = notify.iter().map(|t| approval_message(&r, t)).collect();
        let (_, skipped) = enqueue_in(&mut *tx, &messages, now).await?;
        let mut events = vec![event];
        events.extend(skipped);
        let mut audits = vec![audit];
        let mut record = r;
        if let Some(ruling) = ruling {
            let (event, audit) = (ruling.note)(&record);
            events.push(event);
            audits.push(audit);
            if let Some(action) = &ruling.action {
                // A refusal (a test request cannot be approved before allow-test) leaves the
                // request pending for a person.
                if let Some(done) = enact(&mut *tx, &record, action, notify, now).await? {
                    events.extend(done.events);
                    audits.extend(done.audit);
                    if let Ok(decided) = done.outcome {
                        record = decided;
                    }
                }
            }
        }
        let events = tx.append_and_commit(&events, &audits, now).await?;
        return Ok((record, events));
    }
    Err(StoreError::Conflict(
        "could not find a free command id; retry".into(),
    ))
}

pub async fn apply(
    mut tx: Box<dyn WriteTx>,
    id: &str,
    action: &Action,
    notify: &[Target],
) -> Result<Applied, StoreError> {
    let Some(current) = tx.command_lock(id).await? else {
        return Ok(Applied::Missing);
    };
    // The time is read once the row is locked, so decisions are ordered by it.
    let now = tx.now().await?;
    let Some(done) = enact(&mut *tx, &current, action, notify, now).await? else {
        return Ok(match plan(&current, action, now).outcome {
            Ok(record) => Applied::Done {
                record: Box::new(record),
                events: vec![],
            },
            Err(refusal) => Applied::Refused {
                refusal,
                events: vec![],
            },
        });
    };
    let events = tx.append_and_commit(&done.events, &done.audit, now).await?;
    Ok(match done.outcome {
        Ok(record) => Applied::Done {
            record: Box::new(record),
            events,
        },
        Err(refusal) => Applied::Refused { refusal, events },
    })
}

/// What applying an action wrote: the outcome, and the events and audit records to append.
struct Enacted {
    outcome: Result<CommandRecord, Refusal>,
    events: Vec<NewEvent>,
    audit: Vec<NewAudit>,
}

/// Applies `action` to `current` (locked, or inserted in this transaction) at `now`: writes
/// the request's new state and, when it ends, enqueues the decision messages for `notify`.
/// `None` when the action changes nothing.
async fn enact(
    tx: &mut dyn WriteTx,
    current: &CommandRecord,
    action: &Action,
    notify: &[Target],
    now: DateTime<Utc>,
) -> Result<Option<Enacted>, StoreError> {
    let p = plan(current, action, now);
    let Some(last) = p.transitions.last() else {
        return Ok(None);
    };
    tx.command_update(&last.record).await?;
    let mut events: Vec<NewEvent> = p.transitions.iter().map(|t| t.event.clone()).collect();
    if current.status == Status::Pending {
        let messages: Vec<_> = notify
            .iter()
            .filter_map(|t| decision_message(&last.record, t))
            .collect();
        let (_, skipped) = enqueue_in(tx, &messages, now).await?;
        events.extend(skipped);
    }
    let audit = p.transitions.iter().map(|t| t.audit.clone()).collect();
    Ok(Some(Enacted {
        outcome: p.outcome,
        events,
        audit,
    }))
}

pub async fn expire_due(
    mut tx: Box<dyn WriteTx>,
    limit: u32,
    notify: &[Target],
) -> Result<Vec<Event>, StoreError> {
    let now = tx.now().await?;
    let due = tx.command_due(now, limit).await?;
    if due.is_empty() {
        return Ok(vec![]);
    }
    let mut events = Vec::new();
    let mut audit = Vec::new();
    for current in &due {
        let Ok(Transition {
            record,
            event,
            audit: record_audit,
        }) = crate::commands::apply(current, &Action::Expire, now)
        else {
            continue;
        };
        tx.command_update(&record).await?;
        let messages: Vec<_> = notify
            .iter()
            .filter_map(|n| decision_message(&record, n))
            .collect();
        let (_, skipped) = enqueue_in(&mut *tx, &messages, now).await?;
        events.push(event);
        events.extend(skipped);
        audit.push(record_audit);
    }
    let events = tx.append_and_commit(&events, &audit, now).await?;
    Ok(events)
}
