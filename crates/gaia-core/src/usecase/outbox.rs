//! Enqueueing notifications: inside the transaction of the change that causes them (so no
//! change commits without its messages), or on their own.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::error::StoreError;
use crate::event::{Event, NewEvent};
use crate::outbox::NewMessage;
use crate::tx::WriteTx;

/// Inserts `messages` due at `now` inside `tx`. A message whose dedupe key was seen before is
/// skipped and becomes a `notify.duplicate_skipped` event, for the caller to append.
pub async fn enqueue_in(
    tx: &mut dyn WriteTx,
    messages: &[NewMessage],
    now: DateTime<Utc>,
) -> Result<(Vec<i64>, Vec<NewEvent>), StoreError> {
    let mut ids = Vec::new();
    let mut skipped = Vec::new();
    for m in messages {
        match tx.outbox_insert(m, now).await? {
            Some(id) => ids.push(id),
            None => skipped.push(NewEvent::new(
                crate::event::kinds::NOTIFY_DUPLICATE_SKIPPED,
                "gaia",
                "outbox",
                json!({ "dedupe_key": m.dedupe_key, "kind": m.kind, "channel": m.channel.as_str() }),
            )),
        }
    }
    Ok((ids, skipped))
}

/// Enqueues messages in one transaction; returns the ids enqueued and the events committed.
pub async fn enqueue(
    mut tx: Box<dyn WriteTx>,
    messages: &[NewMessage],
) -> Result<(Vec<i64>, Vec<Event>), StoreError> {
    let now = tx.now().await?;
    let (ids, skipped) = enqueue_in(&mut *tx, messages, now).await?;
    let events = tx.append(&skipped, &[], now).await?;
    tx.commit().await?;
    Ok((ids, events))
}
