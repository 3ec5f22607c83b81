//! GitHub sync rows.

use gaia_core::StoreError;
use gaia_core::github::{ItemKind, SyncRecord};
use gaia_core::time::from_micros;
use sqlx::{FromRow, Row};

use super::{corrupt, decode};

#[derive(Debug, FromRow)]
pub struct SyncColumns {
    repo: String,
    item_kind: String,
    item: String,
    sync_key: String,
    issue: Option<i64>,
    pushed_hash: Option<String>,
    intent_at_us: i64,
    attempt_at_us: i64,
    last_seen: i64,
    updated_at_us: i64,
}

/// A row of `github_sync`.
pub fn sync_record<R: Row>(row: &R) -> Result<SyncRecord, StoreError>
where
    for<'r> SyncColumns: FromRow<'r, R>,
{
    let c = decode::<SyncColumns, _>("github_sync", row)?;
    Ok(SyncRecord {
        kind: ItemKind::parse(&c.item_kind)
            .ok_or_else(|| corrupt("github_sync", "item_kind", &c.item_kind))?,
        repo: c.repo,
        item: c.item,
        sync_key: c.sync_key,
        issue: c.issue,
        pushed_hash: c.pushed_hash,
        intent_at: from_micros(c.intent_at_us),
        attempt_at: from_micros(c.attempt_at_us),
        last_seen: c.last_seen,
        updated_at: from_micros(c.updated_at_us),
    })
}
