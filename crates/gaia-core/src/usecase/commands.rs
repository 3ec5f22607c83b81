//! Command approval requests: filing one, applying an action (decide, cancel, execute), and
//! expiring those nobody decided in time. Messages to the notify targets are enqueued in the
//! same transaction as the change that causes them.

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
/// approval messages for `notify`.
pub async fn create(
    mut tx: Box<dyn WriteTx>,
    new: &NewCommand,
    notify: &[Target],
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
        let events = tx.append(&events, &[audit], now).await?;
        tx.commit().await?;
        return Ok((r, events));
    }
    Err(StoreError::Conflict(
        "could not find a free command id; retry".into(),
    ))
}

/// Locks the request, applies [`plan`] at the store's time and commits what it decided. When
/// the request leaves `pending`, the decision messages for `notify` are enqueued with it.
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
    let p = plan(&current, action, now);
    let Some(last) = p.transitions.last() else {
        return Ok(match p.outcome {
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
    tx.command_update(&last.record).await?;
    let mut events: Vec<NewEvent> = p.transitions.iter().map(|t| t.event.clone()).collect();
    if current.status == Status::Pending {
        let messages: Vec<_> = notify
            .iter()
            .filter_map(|t| decision_message(&last.record, t))
            .collect();
        let (_, skipped) = enqueue_in(&mut *tx, &messages, now).await?;
        events.extend(skipped);
    }
    let audit: Vec<_> = p.transitions.iter().map(|t| t.audit.clone()).collect();
    let events = tx.append(&events, &audit, now).await?;
    tx.commit().await?;
    Ok(match p.outcome {
        Ok(record) => Applied::Done {
            record: Box::new(record),
            events,
        },
        Err(refusal) => Applied::Refused { refusal, events },
    })
}

/// Expires pending requests past their expiry (at most `limit`), one event each, with their
/// decision messages.
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
    let events = tx.append(&events, &audit, now).await?;
    tx.commit().await?;
    Ok(events)
}
