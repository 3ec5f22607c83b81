//! GitHub sync records: the write-ahead intent committed before an issue is created, and the
//! link (issue number, hash of what was pushed) recorded after, each created or changed issue
//! being an event and an audit record.

use serde_json::json;

use crate::audit::NewAudit;
use crate::error::StoreError;
use crate::event::{Event, NewEvent, kinds};
use crate::github::{ItemKind, SyncRecord, sync_key};
use crate::time::{from_micros, to_micros};
use crate::tx::WriteTx;

/// Records the intent to create `item`'s issue in `repo` and returns the record: a new one
/// (with `last_seen`, the highest issue number the caller saw before, and a fresh intent
/// time), or the existing one with its attempt time moved to now. A record that already has
/// its issue is returned as it is.
pub async fn intend(
    mut tx: Box<dyn WriteTx>,
    repo: &str,
    kind: ItemKind,
    item: &str,
    last_seen: i64,
) -> Result<SyncRecord, StoreError> {
    // Kept as stored (microseconds), so the record returned equals the one read back.
    let now = from_micros(to_micros(tx.now().await?));
    let record = match tx.github_sync_lock(repo, kind, item).await? {
        Some(r) if r.issue.is_some() => {
            tx.rollback().await?;
            return Ok(r);
        }
        Some(r) => SyncRecord {
            attempt_at: now,
            updated_at: now,
            ..r
        },
        None => SyncRecord {
            repo: repo.to_owned(),
            kind,
            item: item.to_owned(),
            sync_key: sync_key(repo, kind, item),
            issue: None,
            pushed_hash: None,
            intent_at: now,
            attempt_at: now,
            last_seen,
            updated_at: now,
        },
    };
    tx.github_sync_write(&record).await?;
    tx.commit().await?;
    Ok(record)
}

/// What a push did to an issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The issue was created by this sync.
    Created,
    /// An issue carrying the record's marker was found (created by an earlier, interrupted
    /// attempt) and linked.
    Found,
    /// The issue's content was changed.
    Updated,
    /// The issue was closed.
    Closed,
}

impl Pushed {
    fn kind(self) -> &'static str {
        match self {
            Self::Created => kinds::GITHUB_ISSUE_CREATED,
            Self::Found => kinds::GITHUB_ISSUE_LINKED,
            Self::Updated => kinds::GITHUB_ISSUE_UPDATED,
            Self::Closed => kinds::GITHUB_ISSUE_CLOSED,
        }
    }
}

/// A push to record: `item`'s issue in `repo` is `issue` and now holds the content of `hash`.
#[derive(Debug, Clone, Copy)]
pub struct Push<'a> {
    pub repo: &'a str,
    pub kind: ItemKind,
    pub item: &'a str,
    pub issue: i64,
    pub hash: &'a str,
    pub what: Pushed,
}

/// Records `push`, with an event and an audit record of what happened. `None` when there is
/// no record (no intent was recorded) or it is linked to another issue.
pub async fn record_push(
    mut tx: Box<dyn WriteTx>,
    push: &Push<'_>,
    actor: &str,
) -> Result<Option<(SyncRecord, Vec<Event>)>, StoreError> {
    let Push {
        repo,
        kind,
        item,
        issue,
        hash,
        what,
    } = *push;
    let now = from_micros(to_micros(tx.now().await?));
    let Some(mut record) = tx.github_sync_lock(repo, kind, item).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    if record.issue.is_some_and(|n| n != issue) {
        tx.rollback().await?;
        return Ok(None);
    }
    record.issue = Some(issue);
    record.pushed_hash = Some(hash.to_owned());
    record.updated_at = now;
    tx.github_sync_write(&record).await?;
    let subject = format!("github/{repo}#{issue}");
    let data = json!({
        "repo": repo,
        "issue": issue,
        "item_kind": kind.as_str(),
        "item": item,
        "sync_key": record.sync_key,
        "hash": hash,
    });
    let event = NewEvent::new(what.kind(), actor, &subject, data.clone());
    let audit = NewAudit::new(actor, what.kind(), &subject, "ok", data);
    let events = tx.append(&[event], &[audit], now).await?;
    tx.commit().await?;
    Ok(Some((record, events)))
}
