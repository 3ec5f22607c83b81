//! Cleanup's deletions, each batch its own short write transaction so that writers wait at
//! most one batch. They delete only rows already in a verified archive (the service checks the
//! archive first) and only while those rows still match the rule that let them be archived, so
//! a batch repeated after a crash deletes nothing twice and nothing else.

use crate::error::StoreError;
use crate::tx::WriteTx;

/// Deletes the events with `low <= seq <= high`.
pub async fn delete_events(
    mut tx: Box<dyn WriteTx>,
    low: i64,
    high: i64,
) -> Result<u64, StoreError> {
    let n = tx.events_delete(low, high).await?;
    tx.commit().await?;
    Ok(n)
}

/// Deletes the audit records with `low <= id <= high` and, in the same transaction, moves the
/// chain's anchor to record `high` (hash `hash`), so the stored chain verifies at every commit.
pub async fn prune_audit(
    mut tx: Box<dyn WriteTx>,
    low: i64,
    high: i64,
    hash: &str,
) -> Result<u64, StoreError> {
    let n = tx.audit_prune(low, high, hash).await?;
    tx.commit().await?;
    Ok(n)
}

/// Deletes the messages `ids` that are delivered.
pub async fn delete_outbox(mut tx: Box<dyn WriteTx>, ids: &[i64]) -> Result<u64, StoreError> {
    let mut n = 0;
    for id in ids {
        n += u64::from(tx.outbox_delete_sent(*id).await?);
    }
    tx.commit().await?;
    Ok(n)
}

/// Deletes the requests `ids` that have ended.
pub async fn delete_commands(mut tx: Box<dyn WriteTx>, ids: &[String]) -> Result<u64, StoreError> {
    let mut n = 0;
    for id in ids {
        n += u64::from(tx.command_delete_ended(id).await?);
    }
    tx.commit().await?;
    Ok(n)
}
