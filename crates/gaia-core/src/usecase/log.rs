//! Appending events and audit records with no other state change (`gaia events emit`,
//! refusals, policy decisions).

use crate::error::StoreError;
use crate::event::Event;
use crate::store::Change;
use crate::tx::WriteTx;

/// Appends the change's events and audit records in one transaction.
pub async fn append(mut tx: Box<dyn WriteTx>, change: Change) -> Result<Vec<Event>, StoreError> {
    let now = tx.now().await?;
    let events = tx.append(&change.events, &change.audit, now).await?;
    tx.commit().await?;
    Ok(events)
}
