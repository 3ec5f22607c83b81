//! `/api/v1/stories`: create, list, show, edit, close and reopen stories; archive, replace and
//! finalize a story's todolist; `/api/v1/backlog/validate` checks the final-task rule.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gaia_core::backlog::{NewStory, StoryStatus};
use gaia_core::tokens::Role;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::check_story;
use super::wire::{RuleBreakBody, StoryBody, StoryStatusBody, StoryViewBody};
use crate::AppState;
use crate::auth::Caller;
use crate::doc::{
    BadRequest, Conflict, Forbidden, JsonBody, Label, Name, NotFound, ServerErrors, Slug, Text,
    Title, Unauthorized,
};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::problem::ApiResult;

/// A story to create. Its first todolist, `default`, starts from the server's template.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStoryBody {
    #[schema(value_type = Slug)]
    pub slug: String,
    #[schema(value_type = Title)]
    pub title: String,
    /// Defaults to empty.
    #[schema(value_type = Option<Text>)]
    pub description: Option<String>,
    /// At most 20; defaults to none.
    #[schema(value_type = Option<Vec<Label>>, max_items = 20)]
    pub labels: Option<Vec<String>>,
}

/// A story's new title, description and labels (all three are replaced).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditStoryBody {
    #[schema(value_type = Title)]
    pub title: String,
    #[schema(value_type = Text)]
    pub description: String,
    /// At most 20.
    #[schema(value_type = Vec<Label>, max_items = 20)]
    pub labels: Vec<String>,
}

/// The name of the todolist that replaces the current one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewListBody {
    /// A name without '@' (archived lists are named `NAME@TIME`).
    #[schema(value_type = Name)]
    pub name: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StoriesQuery {
    /// Only stories with this status.
    pub status: Option<StoryStatusBody>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ValidateQuery {
    /// Only this story (whatever its status); otherwise every open story.
    #[param(value_type = Option<Slug>)]
    pub story: Option<String>,
}

/// Create a story (operator).
#[utoipa::path(post, path = "/api/v1/stories", tag = "backlog", request_body = CreateStoryBody,
    responses((status = 201, body = StoryBody), JsonBody, Unauthorized, Forbidden, Conflict,
        ServerErrors))]
pub async fn create_story(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateStoryBody>,
) -> ApiResult<(StatusCode, Json<StoryBody>)> {
    caller
        .require(&state, Role::Operator, "story.create")
        .await?;
    let new = NewStory {
        slug: body.slug,
        title: body.title,
        description: body.description.unwrap_or_default(),
        labels: body.labels.unwrap_or_default(),
    };
    let story = state
        .gaia
        .create_story(&new, &state.opts.backlog_template, &caller.name)
        .await?;
    Ok((StatusCode::CREATED, Json(StoryBody::from(&story))))
}

/// Stories, by slug.
#[utoipa::path(get, path = "/api/v1/stories", tag = "backlog", params(StoriesQuery),
    responses((status = 200, body = [StoryBody]), BadRequest, Unauthorized, ServerErrors))]
pub async fn list_stories(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<StoriesQuery>,
) -> ApiResult<Json<Vec<StoryBody>>> {
    let list = state.gaia.list_stories(q.status.map(Into::into)).await?;
    Ok(Json(list.iter().map(StoryBody::from).collect()))
}

/// One story with its current todolist's tasks and all its todolists.
#[utoipa::path(get, path = "/api/v1/stories/{slug}", tag = "backlog",
    params(("slug" = Slug, Path)),
    responses((status = 200, body = StoryViewBody), BadRequest, Unauthorized, NotFound,
        ServerErrors))]
pub async fn show_story(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult<Json<StoryViewBody>> {
    check_story(&slug)?;
    let v = state.gaia.get_story(&slug).await?;
    Ok(Json(StoryViewBody::new(&v.story, &v.tasks, &v.lists)))
}

/// Replace a story's title, description and labels (operator).
#[utoipa::path(put, path = "/api/v1/stories/{slug}", tag = "backlog",
    params(("slug" = Slug, Path)), request_body = EditStoryBody,
    responses((status = 200, body = StoryBody), JsonBody, Unauthorized, Forbidden, NotFound,
        ServerErrors))]
pub async fn edit_story(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<EditStoryBody>,
) -> ApiResult<Json<StoryBody>> {
    caller.require(&state, Role::Operator, "story.edit").await?;
    check_story(&slug)?;
    let edit = NewStory {
        slug,
        title: body.title,
        description: body.description,
        labels: body.labels,
    };
    let story = state.gaia.edit_story(&edit, &caller.name).await?;
    Ok(Json(StoryBody::from(&story)))
}

async fn set_status(
    state: &AppState,
    caller: &Caller,
    slug: &str,
    status: StoryStatus,
    action: &str,
) -> ApiResult<Json<StoryBody>> {
    caller.require(state, Role::Operator, action).await?;
    check_story(slug)?;
    let story = state
        .gaia
        .set_story_status(slug, status, &caller.name)
        .await?;
    Ok(Json(StoryBody::from(&story)))
}

/// Close a story (operator): its tasks are no longer ready work and it takes no new tasks.
/// Closing a closed story changes nothing.
#[utoipa::path(post, path = "/api/v1/stories/{slug}/close", tag = "backlog",
    params(("slug" = Slug, Path)),
    responses((status = 200, body = StoryBody), BadRequest, Unauthorized, Forbidden, NotFound,
        ServerErrors))]
pub async fn close_story(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult<Json<StoryBody>> {
    set_status(&state, &caller, &slug, StoryStatus::Closed, "story.close").await
}

/// Reopen a closed story (operator). Reopening an open story changes nothing.
#[utoipa::path(post, path = "/api/v1/stories/{slug}/reopen", tag = "backlog",
    params(("slug" = Slug, Path)),
    responses((status = 200, body = StoryBody), BadRequest, Unauthorized, Forbidden, NotFound,
        ServerErrors))]
pub async fn reopen_story(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult<Json<StoryBody>> {
    set_status(&state, &caller, &slug, StoryStatus::Open, "story.reopen").await
}

/// Archive the story's current todolist under a timestamped name and start a fresh list of
/// the same name from the server's template (operator).
#[utoipa::path(post, path = "/api/v1/stories/{slug}/todolist/archive", tag = "backlog",
    params(("slug" = Slug, Path)),
    responses((status = 200, body = StoryBody), BadRequest, Unauthorized, Forbidden, NotFound,
        Conflict, ServerErrors))]
pub async fn archive_list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult<Json<StoryBody>> {
    caller
        .require(&state, Role::Operator, "todo.archive")
        .await?;
    check_story(&slug)?;
    let story = state
        .gaia
        .replace_list(&slug, None, &state.opts.backlog_template, &caller.name)
        .await?;
    Ok(Json(StoryBody::from(&story)))
}

/// Archive the story's current todolist and start a new one named `name` from the server's
/// template (operator).
#[utoipa::path(post, path = "/api/v1/stories/{slug}/todolist/new", tag = "backlog",
    params(("slug" = Slug, Path)), request_body = NewListBody,
    responses((status = 200, body = StoryBody), JsonBody, Unauthorized, Forbidden, NotFound,
        Conflict, ServerErrors))]
pub async fn new_list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<NewListBody>,
) -> ApiResult<Json<StoryBody>> {
    caller
        .require(&state, Role::Operator, "todo.new_list")
        .await?;
    check_story(&slug)?;
    let story = state
        .gaia
        .replace_list(
            &slug,
            Some(&body.name),
            &state.opts.backlog_template,
            &caller.name,
        )
        .await?;
    Ok(Json(StoryBody::from(&story)))
}

/// Finalize the story's current todolist (operator): nothing more is appended to it.
/// Finalizing a finalized list changes nothing.
#[utoipa::path(post, path = "/api/v1/stories/{slug}/todolist/finalize", tag = "backlog",
    params(("slug" = Slug, Path)),
    responses((status = 200, body = StoryBody), BadRequest, Unauthorized, Forbidden, NotFound,
        ServerErrors))]
pub async fn finalize_list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult<Json<StoryBody>> {
    caller
        .require(&state, Role::Operator, "todo.finalize")
        .await?;
    check_story(&slug)?;
    let story = state.gaia.finalize_list(&slug, &caller.name).await?;
    Ok(Json(StoryBody::from(&story)))
}

/// The current todolists that break the final-task rule: each list must end with a task whose
/// title holds FINAL, MANDATORY or FINALIZATION.
#[utoipa::path(get, path = "/api/v1/backlog/validate", tag = "backlog", params(ValidateQuery),
    responses((status = 200, body = [RuleBreakBody]), BadRequest, Unauthorized, NotFound,
        ServerErrors))]
pub async fn validate(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<ValidateQuery>,
) -> ApiResult<Json<Vec<RuleBreakBody>>> {
    if let Some(s) = &q.story {
        check_story(s)?;
    }
    let breaks = state.gaia.validate_lists(q.story.as_deref()).await?;
    Ok(Json(breaks.iter().map(RuleBreakBody::from).collect()))
}
