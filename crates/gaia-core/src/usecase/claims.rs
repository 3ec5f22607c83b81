//! Claims. Acquire, refresh and release are decided by the pure [`crate::claims::decide`];
//! each backend keeps its own write path for them because that is where claim throughput is
//! won (PostgreSQL commits concurrent claims in groups, SQLite writes a claim and its log in
//! one round trip). Reporting expiries has no such need and is written once here.

use crate::error::StoreError;
use crate::event::Event;
use crate::tx::WriteTx;

/// Emits `claim.expired` once for each acquisition whose TTL passed without a release (at
/// most `limit`), in one transaction.
pub async fn reap(mut tx: Box<dyn WriteTx>, limit: u32) -> Result<Vec<Event>, StoreError> {
    let now = tx.now().await?;
    let rows = tx.claim_expired(now, limit).await?;
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let mut events = Vec::new();
    let mut audit = Vec::new();
    for row in &rows {
        if let Some((e, a)) = crate::claims::expiry(row, now) {
            tx.claim_mark_reported(&row.key).await?;
            events.push(e);
            audit.push(a);
        }
    }
    let events = tx.append_and_commit(&events, &audit, now).await?;
    Ok(events)
}
