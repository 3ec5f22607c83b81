//! GitHub sync records: the write-ahead intent committed before an issue is created, and the
//! link (issue number, hash of what was pushed) recorded after, each created or changed issue
//! being an event and an audit record.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::audit::NewAudit;
use crate::error::StoreError;
use crate::event::{Event, NewEvent, kinds};
use crate::github::{ItemKind, SyncRecord, sync_key};
use crate::time::{from_micros, to_micros};
use crate::tx::WriteTx;

/// The intent recorded by [`intend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub record: SyncRecord,
    /// Whether the caller may send the create: the intent is new, or the caller expected the
    /// record's attempt time as it was (so no other sync has claimed this attempt meanwhile).
    /// `false` also when the record already has its issue.
    pub go: bool,
}

/// Records the intent to create `item`'s issue in `repo`: a new record (with `last_seen`,
/// the highest issue number the caller saw before, and a fresh intent time), or, for a
/// record without an issue whose attempt time is `expected` (the caller's reading, `None`
/// when it saw no record), the attempt time moved to now. Anything else (another sync
/// recorded an intent or an attempt meanwhile, or the issue is linked) is returned
/// unchanged with `go` false: two syncs never both send a create for one attempt.
pub async fn intend(
    mut tx: Box<dyn WriteTx>,
    repo: &str,
    kind: ItemKind,
    item: &str,
    last_seen: i64,
    expected: Option<DateTime<Utc>>,
) -> Result<Intent, StoreError> {
    // Kept as stored (microseconds), so the record returned equals the one read back.
    let now = from_micros(to_micros(tx.now().await?));
    match tx.github_sync_lock(repo, kind, item).await? {
        Some(r) if r.issue.is_some() || Some(r.attempt_at) != expected => {
            tx.rollback().await?;
            Ok(Intent {
                record: r,
                go: false,
            })
        }
        Some(r) => {
            let record = SyncRecord {
                attempt_at: now,
                updated_at: now,
                ..r
            };
            tx.github_sync_update(&record).await?;
            tx.commit().await?;
            Ok(Intent { record, go: true })
        }
        None => {
            let record = SyncRecord {
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
            };
            if tx.github_sync_insert(&record).await? {
                tx.commit().await?;
                return Ok(Intent { record, go: true });
            }
            // Another sync recorded it first: its attempt, not ours.
            let theirs = tx.github_sync_lock(repo, kind, item).await?;
            tx.rollback().await?;
            let record = theirs.ok_or_else(|| {
                StoreError::Corrupt("github_sync: an inserted record is missing".into())
            })?;
            Ok(Intent { record, go: false })
        }
    }
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
    tx.github_sync_update(&record).await?;
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
    let events = tx.append_and_commit(&[event], &[audit], now).await?;
    Ok(Some((record, events)))
}
