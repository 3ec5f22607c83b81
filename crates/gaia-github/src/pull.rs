//! Bringing issue state back: an issue of a synced story closed on GitHub closes the story,
//! through the backlog's own use case (an event and an audit record). Finishing a task needs
//! the live claim on its list (the backlog's fence): the pull takes it for that moment as the
//! sync's own agent ([`AGENT`]) and lets it go; a list another agent holds is left alone, and
//! the task reported as skipped with the holder's name. Only issues updated since the last
//! pull are listed (every page, pull requests left out); the time of each pull is kept per
//! repository as a deployment-wide setting.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use gaia_core::Gaia;
use gaia_core::backlog::{StoryStatus, TaskStatus};
use gaia_core::github::{ItemKind, SyncRecord};

use crate::reconcile::Issue;
use crate::runner::Gh;
use crate::sync::SyncError;

/// What a pull did to one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub kind: ItemKind,
    pub item: String,
    pub issue: i64,
    pub result: PullResult,
}

/// What a pull did to one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullResult {
    /// `closed` (a story) or `done` (a task).
    Applied(&'static str),
    /// Left as it is: the change needs what a sync does not have (a task's claim).
    Skipped(String),
    Failed(String),
}

impl PullResult {
    fn of(r: Result<&'static str, gaia_core::error::Error>) -> Self {
        match r {
            Ok(what) => Self::Applied(what),
            Err(e @ gaia_core::error::Error::Store(gaia_core::StoreError::Conflict(_))) => {
                Self::Skipped(e.to_string())
            }
            Err(e) => Self::Failed(e.to_string()),
        }
    }
}

/// The agent a pull finishes tasks as (holding their lists' claims for that moment).
pub const AGENT: &str = "gaia-github";

fn setting(repo: &str) -> String {
    format!("github.pull.{repo}")
}

/// Pulls closed issues of `repo` back into the backlog on behalf of `actor`.
pub async fn pull(gaia: &Gaia, gh: &Gh, repo: &str, actor: &str) -> Result<Vec<Pulled>, SyncError> {
    let started = Utc::now();
    let since_text = gaia
        .store()
        .setting_get_or_init(&setting(repo), "")
        .await
        .map_err(gaia_core::error::Error::from)?;
    let since = DateTime::parse_from_rfc3339(&since_text)
        .ok()
        .map(|d| d.with_timezone(&Utc) - chrono::Duration::minutes(5));
    let records: HashMap<i64, SyncRecord> = gaia
        .github_sync_list(repo)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.issue?, r)))
        .collect();
    let mut path = Some(match since {
        Some(s) => format!(
            "repos/{repo}/issues?state=closed&per_page=100&since={}",
            s.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
        None => format!("repos/{repo}/issues?state=closed&per_page=100"),
    });
    let mut pulled = Vec::new();
    while let Some(p) = path.take() {
        let page = gh.get(&p).await?;
        for v in page.body.as_array().map(Vec::as_slice).unwrap_or_default() {
            let Some(issue) = Issue::from_json(v).filter(|i| !i.is_pull) else {
                continue;
            };
            let Some(record) = records.get(&issue.number) else {
                continue;
            };
            if let Some(result) = apply(gaia, record, &issue, actor).await {
                pulled.push(Pulled {
                    kind: record.kind,
                    item: record.item.clone(),
                    issue: issue.number,
                    result,
                });
            }
        }
        path = page.next_page();
    }
    gaia.store()
        .setting_set(
            &setting(repo),
            &started.to_rfc3339_opts(SecondsFormat::Secs, true),
        )
        .await
        .map_err(gaia_core::error::Error::from)?;
    Ok(pulled)
}

/// Closes the story or finishes the task of a closed issue; `None` when it already is, or
/// when a task's issue was closed as not planned (nothing was done: the sync itself closes
/// so the tasks of a story closed without them).
async fn apply(gaia: &Gaia, record: &SyncRecord, issue: &Issue, actor: &str) -> Option<PullResult> {
    match record.kind {
        ItemKind::Story => match gaia.get_story(&record.item).await {
            Ok(v) if v.story.status == StoryStatus::Closed => None,
            Ok(_) => Some(PullResult::of(
                gaia.set_story_status(&record.item, StoryStatus::Closed, actor)
                    .await
                    .map(|_| "closed"),
            )),
            Err(e) => Some(PullResult::Failed(e.to_string())),
        },
        ItemKind::Task if issue.state_reason.as_deref() == Some("not_planned") => None,
        ItemKind::Task => {
            let Ok(id) = record.item.parse::<i64>() else {
                return Some(PullResult::Failed(format!(
                    "task id '{}' is not a number",
                    record.item
                )));
            };
            match gaia.get_task(id).await {
                Ok(t) if t.status == TaskStatus::Done => None,
                Ok(_) => Some(PullResult::of(
                    gaia.github_finish_task(id, AGENT, actor)
                        .await
                        .map(|_| "done"),
                )),
                Err(e) => Some(PullResult::Failed(e.to_string())),
            }
        }
    }
}
