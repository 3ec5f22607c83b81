//! The dashboard's Backlog tab: one JSON snapshot of the backlog (open stories with their
//! current todolist, who holds each list's claim, ready work, blocked tasks, follow-ups waiting
//! for triage, the scheduled GitHub sync's state) and the triage actions, Accept and Reject.
//!
//! These routes serve the dashboard only: they take the session cookie and nothing else (no
//! bearer token), state-changing ones also its CSRF token and a same-origin `Origin` (checked by
//! [`crate::session`]), and triage needs the operator role. They stay out of the OpenAPI
//! document like the other dashboard routes.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gaia_core::backlog::{Followup, FollowupStatus, StoryStatus, Task, TaskStatus};
use gaia_core::claims::ClaimResult;
use gaia_core::github::WorkerState;
use gaia_core::time::rfc3339;
use gaia_core::tokens::Role;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
use crate::extract::{ApiJson, ApiPath};
use crate::problem::{ApiError, ApiResult};

/// Most open stories a snapshot carries; the rest are counted in `more_stories`.
pub const MAX_STORIES: usize = 200;
/// Most ready tasks a snapshot carries.
pub const MAX_READY: u32 = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard/backlog", get(snapshot))
        .route("/dashboard/backlog/followups/{id}/accept", post(accept))
        .route("/dashboard/backlog/followups/{id}/reject", post(reject))
}

/// A caller authenticated by the dashboard's session cookie alone.
#[derive(Debug, Clone)]
pub struct SessionCaller(pub Caller);

impl FromRequestParts<AppState> for SessionCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match crate::session::caller_from_cookie(parts, state).await {
            Some(caller) => caller.map(Self),
            None => Err(ApiError::unauthorized("log in to the dashboard first")),
        }
    }
}

/// Everything the Backlog tab shows, read at one moment.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// The store's clock when the snapshot was read (RFC 3339 UTC).
    pub now: String,
    /// Open stories, oldest first, each with its current todolist.
    pub stories: Vec<StoryCard>,
    /// Open stories left out beyond [`MAX_STORIES`].
    pub more_stories: usize,
    /// Closed stories (not shown).
    pub closed_stories: usize,
    /// Tasks nobody holds that can be taken now, in the order `take` offers them.
    pub ready: Vec<TaskRef>,
    /// Tasks marked blocked (with their reason) and tasks waiting for unfinished ones.
    pub blocked: Vec<BlockedTask>,
    /// Follow-ups waiting for triage, oldest first.
    pub followups: Vec<FollowupCard>,
    /// The scheduled GitHub sync's state; `None` when no node has run it.
    #[serde(default)]
    pub github: Option<WorkerState>,
}

/// An open story and its current todolist.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoryCard {
    pub slug: String,
    pub title: String,
    pub description: String,
    pub labels: Vec<String>,
    /// The current todolist's name.
    pub todolist: String,
    /// RFC 3339 UTC, when the list was finalized.
    pub finalized_at: Option<String>,
    pub updated_at: String,
    /// The live claim on the current list, when someone holds it.
    pub claim: Option<ClaimView>,
    pub tasks: Vec<TaskRow>,
    /// How many tasks are in each status (`todo`, `in_progress`, `done`, `blocked`).
    pub counts: BTreeMap<String, usize>,
}

/// Who holds a list, since when and until when.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClaimView {
    pub agent: String,
    pub operator: String,
    /// Fencing token of the acquisition.
    pub token: i64,
    /// RFC 3339 UTC.
    pub acquired_at: Option<String>,
    /// RFC 3339 UTC.
    pub expires_at: Option<String>,
}

/// A task of a story's current list.
#[derive(Debug, Serialize, Deserialize)]
pub struct TaskRow {
    pub id: i64,
    pub title: String,
    /// `todo`, `in_progress`, `done` or `blocked`.
    pub status: String,
    /// Why it is blocked.
    pub reason: Option<String>,
    /// Who works on it (or finished it).
    pub worker: Option<String>,
    pub position: i64,
    /// Whether it is the list's final task.
    pub is_final: bool,
    /// The tasks it waits for that are not done yet.
    pub waiting_for: Vec<i64>,
}

/// A task named by its story and list.
#[derive(Debug, Serialize, Deserialize)]
pub struct TaskRef {
    pub id: i64,
    pub story: String,
    pub todolist: String,
    pub title: String,
}

/// A task that cannot go on: blocked with a reason, or waiting for unfinished tasks.
#[derive(Debug, Serialize, Deserialize)]
pub struct BlockedTask {
    pub id: i64,
    pub story: String,
    pub todolist: String,
    pub title: String,
    /// The reason given when it was blocked (status `blocked`).
    pub reason: Option<String>,
    /// The unfinished tasks it waits for.
    pub waiting_for: Vec<i64>,
}

/// A follow-up doc waiting for triage.
#[derive(Debug, Serialize, Deserialize)]
pub struct FollowupCard {
    pub id: i64,
    pub story: String,
    /// The agent that filed it, and the task it came out of.
    pub agent: String,
    pub task: String,
    pub title: String,
    pub body: String,
    pub path: String,
    /// `pending`, `accepted` or `rejected`.
    pub status: String,
    pub reason: Option<String>,
    /// The task an accepted follow-up became.
    pub task_id: Option<i64>,
    pub decided_by: Option<String>,
    pub created_at: String,
}

impl From<&Followup> for FollowupCard {
    fn from(f: &Followup) -> Self {
        Self {
            id: f.id,
            story: f.story.clone(),
            agent: f.agent.clone(),
            task: f.task.clone(),
            title: f.title.clone(),
            body: f.body.clone(),
            path: f.path.clone(),
            status: f.status.as_str().to_owned(),
            reason: f.reason.clone(),
            task_id: f.task_id,
            decided_by: f.decided_by.clone(),
            created_at: rfc3339(f.created_at),
        }
    }
}

impl From<&ClaimResult> for ClaimView {
    fn from(c: &ClaimResult) -> Self {
        let holder = c.holder.as_ref();
        Self {
            agent: holder.map(|h| h.agent.clone()).unwrap_or_default(),
            operator: holder.map(|h| h.operator.clone()).unwrap_or_default(),
            token: c.token,
            acquired_at: c.acquired_at.map(rfc3339),
            expires_at: c.expires_at.map(rfc3339),
        }
    }
}

impl TaskRef {
    fn of(t: &Task) -> Self {
        Self {
            id: t.id,
            story: t.story.clone(),
            todolist: t.todolist.clone(),
            title: t.title.clone(),
        }
    }
}

/// The tasks `t` waits for that are not done: `status` holds its list's tasks; one it waits
/// for outside the list (in an archived list) is looked up, and one that is gone waits no more.
async fn unfinished_blockers(
    state: &AppState,
    t: &Task,
    status: &HashMap<i64, TaskStatus>,
) -> ApiResult<Vec<i64>> {
    let mut waiting = Vec::new();
    for id in &t.blocked_by {
        let done = match status.get(id) {
            Some(s) => *s == TaskStatus::Done,
            None => match state.gaia.get_task(*id).await {
                Ok(b) => b.status == TaskStatus::Done,
                Err(gaia_core::error::Error::NotFound(_)) => true,
                Err(e) => return Err(e.into()),
            },
        };
        if !done {
            waiting.push(*id);
        }
    }
    Ok(waiting)
}

/// Reads the snapshot.
pub async fn read_snapshot(state: &AppState) -> ApiResult<Snapshot> {
    let gaia = &state.gaia;
    let now = gaia.store().now().await?;
    let all = gaia.list_stories(None).await?;
    let closed_stories = all
        .iter()
        .filter(|s| s.status == StoryStatus::Closed)
        .count();
    let open: Vec<_> = all
        .into_iter()
        .filter(|s| s.status == StoryStatus::Open)
        .collect();
    let more_stories = open.len().saturating_sub(MAX_STORIES);
    let claims: HashMap<String, ClaimResult> = gaia
        .list_claims(false)
        .await?
        .into_iter()
        .map(|c| (c.key.to_string(), c))
        .collect();
    let mut stories = Vec::new();
    let mut blocked = Vec::new();
    for story in open.into_iter().take(MAX_STORIES) {
        let tasks = gaia.list_tasks(&story.slug, Some(&story.todolist)).await?;
        let status: HashMap<i64, TaskStatus> = tasks.iter().map(|t| (t.id, t.status)).collect();
        let mut counts = BTreeMap::new();
        let mut rows = Vec::with_capacity(tasks.len());
        for t in &tasks {
            *counts.entry(t.status.as_str().to_owned()).or_insert(0) += 1;
            let waiting_for = if t.status == TaskStatus::Done {
                vec![]
            } else {
                unfinished_blockers(state, t, &status).await?
            };
            if t.status == TaskStatus::Blocked || !waiting_for.is_empty() {
                blocked.push(BlockedTask {
                    id: t.id,
                    story: t.story.clone(),
                    todolist: t.todolist.clone(),
                    title: t.title.clone(),
                    reason: t.reason.clone(),
                    waiting_for: waiting_for.clone(),
                });
            }
            rows.push(TaskRow {
                id: t.id,
                title: t.title.clone(),
                status: t.status.as_str().to_owned(),
                reason: t.reason.clone(),
                worker: t.worker.clone(),
                position: t.position,
                is_final: t.is_final(),
                waiting_for,
            });
        }
        let claim = claims
            .get(&story.key().to_string())
            .filter(|c| c.holder.is_some())
            .map(ClaimView::from);
        stories.push(StoryCard {
            finalized_at: story.finalized_at.map(rfc3339),
            updated_at: rfc3339(story.updated_at),
            slug: story.slug,
            title: story.title,
            description: story.description,
            labels: story.labels,
            todolist: story.todolist,
            claim,
            tasks: rows,
            counts,
        });
    }
    let ready = gaia
        .list_ready(None, MAX_READY)
        .await?
        .iter()
        .map(TaskRef::of)
        .collect();
    let followups = gaia
        .list_followups(Some(FollowupStatus::Pending))
        .await?
        .iter()
        .map(FollowupCard::from)
        .collect();
    Ok(Snapshot {
        now: rfc3339(now),
        stories,
        more_stories,
        closed_stories,
        ready,
        blocked,
        followups,
        github: gaia.github_worker_state().await?,
    })
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `GET /dashboard/backlog`: the snapshot, for any logged-in role.
pub async fn snapshot(
    State(state): State<AppState>,
    SessionCaller(_caller): SessionCaller,
) -> ApiResult<Response> {
    Ok(no_store(Json(read_snapshot(&state).await?).into_response()))
}

/// Why a follow-up is rejected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    pub reason: String,
}

/// `POST /dashboard/backlog/followups/{id}/accept` (operator): the follow-up becomes a task of
/// its story's current list.
pub async fn accept(
    State(state): State<AppState>,
    SessionCaller(caller): SessionCaller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<FollowupCard>> {
    caller
        .require(&state, Role::Operator, "followup.accept")
        .await?;
    let f = state.gaia.triage_followup(id, None, &caller.name).await?;
    Ok(Json(FollowupCard::from(&f)))
}

/// `POST /dashboard/backlog/followups/{id}/reject` (operator), with a reason.
pub async fn reject(
    State(state): State<AppState>,
    SessionCaller(caller): SessionCaller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<RejectBody>,
) -> ApiResult<Json<FollowupCard>> {
    caller
        .require(&state, Role::Operator, "followup.reject")
        .await?;
    let f = state
        .gaia
        .triage_followup(id, Some(&body.reason), &caller.name)
        .await?;
    Ok(Json(FollowupCard::from(&f)))
}
