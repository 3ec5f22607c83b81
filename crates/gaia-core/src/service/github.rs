//! GitHub sync records: the write-ahead intent before an issue is created, the pushes
//! recorded after, the records of a repository, and the scheduled sync's state.

use super::Gaia;
use crate::error::Error;
use crate::github::{ItemKind, SyncRecord, WORKER_STATE_SETTING, WorkerState, check_repo};
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

    /// The scheduled sync's state as its lease holder last wrote it; `None` when no node has
    /// run it (it is off by default). An unreadable value reads as none rather than failing
    /// the page that shows it.
    pub async fn github_worker_state(&self) -> Result<Option<WorkerState>, Error> {
        let text = self
            .store
            .setting_get_or_init(WORKER_STATE_SETTING, "")
            .await?;
        Ok(serde_json::from_str(&text).ok())
    }

    /// Records the scheduled sync's state (written by the lease holder only).
    pub async fn github_worker_record(&self, state: &WorkerState) -> Result<(), Error> {
        let text = serde_json::to_string(state)
            .map_err(|e| crate::StoreError::Corrupt(format!("github worker state: {e}")))?;
        Ok(self.store.setting_set(WORKER_STATE_SETTING, &text).await?)
    }
}
