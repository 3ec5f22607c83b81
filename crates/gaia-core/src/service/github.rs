//! GitHub sync records: the write-ahead intent before an issue is created, the pushes
//! recorded after, and the records of a repository.

use super::Gaia;
use crate::error::Error;
use crate::github::{ItemKind, SyncRecord, check_repo};
use crate::usecase::github::{Intent, Push};
use chrono::{DateTime, Utc};

impl Gaia {
    /// Records (before creating it) the intent to create `item`'s issue in `repo`, for the
    /// attempt the caller saw last (`expected`, `None` when it saw no record); see
    /// [`crate::usecase::github::intend`].
    pub async fn github_sync_intend(
        &self,
        repo: &str,
        kind: ItemKind,
        item: &str,
        last_seen: i64,
        expected: Option<DateTime<Utc>>,
    ) -> Result<Intent, Error> {
        check_repo(repo)?;
        Ok(self
            .store
            .github_sync_intend(repo, kind, item, last_seen, expected)
            .await?)
    }

    /// Records a push to an issue, with its event and audit record; `None` when no intent was
    /// recorded for the item or it is linked to another issue.
    pub async fn github_sync_record_push(
        &self,
        push: &Push<'_>,
        actor: &str,
    ) -> Result<Option<SyncRecord>, Error> {
        check_repo(push.repo)?;
        match self.store.github_sync_record_push(push, actor).await? {
            Some((record, events)) => {
                self.mirror(&events);
                Ok(Some(record))
            }
            None => Ok(None),
        }
    }

    /// Every sync record of `repo`.
    pub async fn github_sync_list(&self, repo: &str) -> Result<Vec<SyncRecord>, Error> {
        check_repo(repo)?;
        Ok(self.store.github_sync_list(repo).await?)
    }
}
