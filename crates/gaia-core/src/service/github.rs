//! GitHub sync records: the write-ahead intent before an issue is created, the pushes
//! recorded after, the records of a repository, the scheduled sync's state, and a task
//! finished because its issue was closed on GitHub.

use super::Gaia;
use crate::backlog::Task;
use crate::claims::{Outcome, Request};
use crate::error::Error;
use crate::error::StoreError;
use crate::github::{ItemKind, SyncRecord, WORKER_STATE_SETTING, WorkerState, check_repo};
use crate::usecase::backlog::{Fenced, TaskAction};
use crate::usecase::github::{Intent, Push};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// How long the claim a pull takes to finish a task may live if the pull dies holding it.
const FINISH_CLAIM_TTL: Duration = Duration::from_secs(60);

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

    /// Finishes task `id` because its issue was closed on GitHub. Finishing needs the live
    /// claim on the task's list (the backlog's fence), so `agent` (the sync's own name) takes
    /// it for that moment, finishes the task under it (an event, `actor` named) and lets it go
    /// again. A list another agent holds is left alone: a `Conflict` naming the holder.
    pub async fn github_finish_task(
        &self,
        id: i64,
        agent: &str,
        actor: &str,
    ) -> Result<Task, Error> {
        let task = self.get_task(id).await?;
        let key = task.key();
        let req = Request::acquire(
            key.clone(),
            agent,
            Some("gaia"),
            Some("github-pull"),
            Some(FINISH_CLAIM_TTL),
        )?;
        let claim = self.apply_claim(&req).await?;
        match claim.outcome {
            Outcome::Acquired | Outcome::TakenOver | Outcome::AlreadyHeld => {}
            _ => {
                let holder = claim
                    .holder
                    .map_or_else(|| "another agent".to_owned(), |h| h.agent);
                return Err(StoreError::Conflict(format!(
                    "task {id}: its list {key} is claimed by {holder}; finish it there"
                ))
                .into());
            }
        }
        let fenced = Fenced {
            agent: agent.to_owned(),
            token: claim.token,
            principal: None,
        };
        let done = self
            .act_on_task(id, &TaskAction::Done, Some(&fenced), actor)
            .await;
        if claim.outcome != Outcome::AlreadyHeld {
            let release = Request::release(key, agent, Some("github-pull"))?;
            if let Err(e) = self.apply_claim(&release).await {
                tracing::warn!(error = %e, task = id, "github pull: the list's claim expires on its own");
            }
        }
        done
    }
}
