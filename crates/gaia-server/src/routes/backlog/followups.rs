//! `/api/v1/followups`: follow-up child docs collected into their story's triage list, listed,
//! and accepted (each becomes a task of the story's current todolist) or rejected.

use axum::Json;
use axum::extract::State;
use gaia_core::backlog::NewFollowup;
use gaia_core::tokens::Role;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::wire::{CollectBody, FollowupBody, FollowupStatusBody};
use crate::AppState;
use crate::auth::Caller;
use crate::doc::{
    BadRequest, Conflict, Forbidden, JsonBody, Name, NotFound, ServerErrors, Slug, Text, Title,
    Unauthorized,
};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::problem::ApiResult;

/// Longest follow-up doc path, in characters.
pub use gaia_core::backlog::MAX_PATH_CHARS;

/// A follow-up doc as collected: identified by its path, compared by its content hash.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectFollowupBody {
    /// The doc's path: its identity.
    #[schema(
        min_length = 1,
        max_length = 4096,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$"
    )]
    pub path: String,
    /// The hash of its content: a doc seen again with the same hash changes nothing.
    #[schema(value_type = Name)]
    pub hash: String,
    /// The story it follows up on.
    #[schema(value_type = Slug)]
    pub story: String,
    /// The agent that wrote it.
    #[schema(value_type = Name)]
    pub agent: String,
    /// The task it came from.
    #[schema(value_type = Name)]
    pub task: String,
    #[schema(value_type = Title)]
    pub title: String,
    #[schema(value_type = Text)]
    pub body: String,
}

/// Why the follow-up is rejected.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"^[^\u0000]*\S[^\u0000]*$"
    )]
    pub reason: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FollowupsQuery {
    /// Only follow-ups with this status.
    pub status: Option<FollowupStatusBody>,
}

impl CollectFollowupBody {
    /// The doc to collect (the core checks every field before the store sees it).
    fn into_new(self) -> NewFollowup {
        NewFollowup {
            path: self.path,
            hash: self.hash,
            story: self.story,
            agent: self.agent,
            task: self.task,
            title: self.title,
            body: self.body,
        }
    }
}

/// Collect a follow-up doc (agent or operator): `added` when its path is new, `updated` when its
/// content changed (a triaged entry keeps its decision), `unchanged` when seen with this hash.
#[utoipa::path(post, path = "/api/v1/followups", tag = "backlog",
    request_body = CollectFollowupBody,
    responses((status = 200, body = CollectBody), JsonBody, Unauthorized, Forbidden, NotFound,
        ServerErrors))]
pub async fn collect_followup(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CollectFollowupBody>,
) -> ApiResult<Json<CollectBody>> {
    caller
        .require(&state, Role::Agent, "followup.collect")
        .await?;
    let doc = body.into_new();
    let (outcome, f) = state.gaia.collect_followup(&doc, &caller.name).await?;
    Ok(Json(CollectBody {
        outcome: outcome.into(),
        followup: FollowupBody::from(&f),
    }))
}

/// Follow-ups, with their triage status.
#[utoipa::path(get, path = "/api/v1/followups", tag = "backlog", params(FollowupsQuery),
    responses((status = 200, body = [FollowupBody]), BadRequest, Unauthorized, ServerErrors))]
pub async fn list_followups(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<FollowupsQuery>,
) -> ApiResult<Json<Vec<FollowupBody>>> {
    let list = state.gaia.list_followups(q.status.map(Into::into)).await?;
    Ok(Json(list.iter().map(FollowupBody::from).collect()))
}

/// Accept a pending follow-up (operator): it becomes a task of its story's current todolist,
/// before the final task. A follow-up is triaged once; a closed story or a finalized list
/// takes no new task (409).
#[utoipa::path(post, path = "/api/v1/followups/{id}/accept", tag = "backlog",
    params(("id" = i64, Path, minimum = 1, example = 1,
        description = "The follow-up's id")),
    responses((status = 200, body = FollowupBody), BadRequest, Unauthorized, Forbidden,
        NotFound, Conflict, ServerErrors))]
pub async fn accept_followup(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<FollowupBody>> {
    caller
        .require(&state, Role::Operator, "followup.accept")
        .await?;
    let f = state.gaia.triage_followup(id, None, &caller.name).await?;
    Ok(Json(FollowupBody::from(&f)))
}

/// Reject a pending follow-up with a reason (operator). A follow-up is triaged once.
#[utoipa::path(post, path = "/api/v1/followups/{id}/reject", tag = "backlog",
    params(("id" = i64, Path, minimum = 1, example = 1,
        description = "The follow-up's id")),
    request_body = RejectBody,
    responses((status = 200, body = FollowupBody), JsonBody, Unauthorized, Forbidden,
        NotFound, Conflict, ServerErrors))]
pub async fn reject_followup(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<RejectBody>,
) -> ApiResult<Json<FollowupBody>> {
    caller
        .require(&state, Role::Operator, "followup.reject")
        .await?;
    let f = state
        .gaia
        .triage_followup(id, Some(&body.reason), &caller.name)
        .await?;
    Ok(Json(FollowupBody::from(&f)))
}
