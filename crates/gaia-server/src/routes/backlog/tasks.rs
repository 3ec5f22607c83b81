//! Tasks: `/api/v1/stories/{slug}/tasks` adds and lists them, `/api/v1/tasks/{id}` reads and
//! edits one, and its `start`, `done`, `block`, `unblock` and `move` change its work state.
//!
//! Start and done are always fenced: the caller passes the agent and the fencing token of the
//! claim on the task's todolist, and is refused (409) unless that claim is live under exactly
//! that token. Block, unblock and move are fenced the same way for agents (agents move their
//! own tasks); operators may leave the agent and token out to change a task unfenced. When a
//! token took the claim, only that token's callers may act under it as an agent.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gaia_core::backlog::NewTask;
use gaia_core::names::check_name;
use gaia_core::tokens::Role;
use gaia_core::usecase::backlog::{Fenced, TaskAction};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::check_story;
use super::wire::TaskBody;
use crate::AppState;
use crate::auth::Caller;
use crate::doc::{
    BadRequest, Conflict, Forbidden, JsonBody, Name, NotFound, ServerErrors, Slug, Text, Title,
    Unauthorized,
};
use crate::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use crate::problem::{ApiError, ApiResult};

/// A task to add to a story's current todolist.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTaskBody {
    #[schema(value_type = Title)]
    pub title: String,
    /// Its acceptance criteria; defaults to empty.
    #[schema(value_type = Option<Text>)]
    pub body: Option<String>,
    /// Tasks of the same story it waits for (at most 50).
    #[schema(max_items = 50)]
    pub blocked_by: Option<Vec<i64>>,
}

/// A task's new title and body (both are replaced).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditTaskBody {
    #[schema(value_type = Title)]
    pub title: String,
    #[schema(value_type = Text)]
    pub body: String,
}

/// Who changes the task: the agent holding the claim on its todolist, and the claim's fencing
/// token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FenceBody {
    #[schema(value_type = Name)]
    pub agent: String,
    /// The fencing token the claim was acquired (or the task taken) with.
    pub token: i64,
}

/// Why the task is blocked; the agent and token are required from agents.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockBody {
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"^[^\u0000]*\S[^\u0000]*$"
    )]
    pub reason: String,
    /// The agent holding the claim on the task's todolist (with `token`; operators may omit
    /// both).
    #[schema(value_type = Option<Name>)]
    pub agent: Option<String>,
    /// The claim's fencing token (with `agent`).
    pub token: Option<i64>,
}

/// The agent and token, required from agents; operators may send no body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnblockBody {
    /// The agent holding the claim on the task's todolist (with `token`).
    #[schema(value_type = Option<Name>)]
    pub agent: Option<String>,
    /// The claim's fencing token (with `agent`).
    pub token: Option<i64>,
}

/// Where the task goes within its list; the agent and token are required from agents.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// 1-based; at most the number of tasks in the list. A list's final task stays last.
    #[schema(minimum = 1)]
    pub position: i64,
    /// The agent holding the claim on the task's todolist (with `token`; operators may omit
    /// both).
    #[schema(value_type = Option<Name>)]
    pub agent: Option<String>,
    /// The claim's fencing token (with `agent`).
    pub token: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TasksQuery {
    /// This todolist (an archived one, for instance) instead of the current one.
    #[param(value_type = Option<Name>)]
    pub todolist: Option<String>,
}

/// Add a task to the story's current todolist (agent or operator). It goes before the list's
/// final task, which stays last; a finalized list or a closed story takes no new task (409).
#[utoipa::path(post, path = "/api/v1/stories/{slug}/tasks", tag = "backlog",
    params(("slug" = Slug, Path)), request_body = NewTaskBody,
    responses((status = 201, body = TaskBody), JsonBody, Unauthorized, Forbidden, NotFound,
        Conflict, ServerErrors))]
pub async fn add_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<NewTaskBody>,
) -> ApiResult<(StatusCode, Json<TaskBody>)> {
    caller.require(&state, Role::Agent, "todo.add").await?;
    check_story(&slug)?;
    let new = NewTask {
        title: body.title,
        body: body.body.unwrap_or_default(),
        blocked_by: body.blocked_by.unwrap_or_default(),
    };
    let task = state.gaia.add_task(&slug, &new, &caller.name).await?;
    Ok((StatusCode::CREATED, Json(TaskBody::from(&task))))
}

/// The tasks of a story's todolist, in order.
#[utoipa::path(get, path = "/api/v1/stories/{slug}/tasks", tag = "backlog",
    params(("slug" = Slug, Path), TasksQuery),
    responses((status = 200, body = [TaskBody]), BadRequest, Unauthorized, NotFound,
        ServerErrors))]
pub async fn list_tasks(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(slug): ApiPath<String>,
    ApiQuery(q): ApiQuery<TasksQuery>,
) -> ApiResult<Json<Vec<TaskBody>>> {
    check_story(&slug)?;
    if let Some(name) = &q.todolist {
        check_name("todolist", name)?;
        // An unknown story is not found, whichever list is asked for.
        state.gaia.get_story(&slug).await?;
    }
    let tasks = state.gaia.list_tasks(&slug, q.todolist.as_deref()).await?;
    Ok(Json(tasks.iter().map(TaskBody::from).collect()))
}

/// One task.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "backlog",
    params(("id" = i64, Path, minimum = 1, example = 1,
        description = "The task's id")),
    responses((status = 200, body = TaskBody), BadRequest, Unauthorized, NotFound, ServerErrors))]
pub async fn show_task(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<TaskBody>> {
    Ok(Json(TaskBody::from(&state.gaia.get_task(id).await?)))
}

/// Replace a task's title and body (operator).
#[utoipa::path(put, path = "/api/v1/tasks/{id}", tag = "backlog",
    params(("id" = i64, Path, minimum = 1, example = 1,
        description = "The task's id")),
    request_body = EditTaskBody,
    responses((status = 200, body = TaskBody), JsonBody, Unauthorized, Forbidden, NotFound,
        ServerErrors))]
pub async fn edit_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<EditTaskBody>,
) -> ApiResult<Json<TaskBody>> {
    caller.require(&state, Role::Operator, "todo.edit").await?;
    let task = state
        .gaia
        .edit_task(id, &body.title, &body.body, &caller.name)
        .await?;
    Ok(Json(TaskBody::from(&task)))
}

/// The fence a caller gives: both the agent and the token, or (operators only, and never for
/// the actions that always need the claim) neither.
async fn fence(
    state: &AppState,
    caller: &Caller,
    action: &TaskAction,
    name: &str,
    agent: Option<String>,
    token: Option<i64>,
) -> ApiResult<Option<Fenced>> {
    match (agent, token) {
        (Some(agent), Some(token)) => {
            check_name("agent id", &agent)?;
            // The token that took a claim owns it, whatever agent name a call gives;
            // operators may act for any agent.
            let principal = (!caller.role.allows(Role::Operator)).then(|| caller.name.clone());
            Ok(Some(Fenced {
                agent,
                token,
                principal,
            }))
        }
        (None, None) if !action.needs_claim() => {
            // Changing a task without holding its list's claim is the operators' override.
            caller.require(state, Role::Operator, name).await?;
            Ok(None)
        }
        (None, None) => Err(ApiError::bad_request(format!(
            "{name} needs the agent and the fencing token of the claim on the task's todolist"
        ))),
        _ => Err(ApiError::bad_request(
            "pass both the agent and the fencing token, or neither",
        )),
    }
}

/// Applies `action` to task `id` as `caller`, fenced by `agent` and `token` when given.
async fn act(
    state: &AppState,
    caller: &Caller,
    id: i64,
    action: TaskAction,
    name: &str,
    agent: Option<String>,
    token: Option<i64>,
) -> ApiResult<Json<TaskBody>> {
    caller.require(state, Role::Agent, name).await?;
    let fenced = fence(state, caller, &action, name, agent, token).await?;
    let task = state
        .gaia
        .act_on_task(id, &action, fenced.as_ref(), &caller.name)
        .await?;
    Ok(Json(TaskBody::from(&task)))
}

/// Start a task (agent or operator): it is in progress with the agent as its worker. Fenced:
/// refused (409) unless the agent holds the live claim on its todolist under `token`.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/start", tag = "backlog",
    params(("id" = i64, Path, minimum = 1, example = 1,
        description = "The task's id")),
    request_body = FenceBody,
    responses((status = 200, body = TaskBody), JsonBody, Unauthorized, Forbidden, NotFound,
        Conflict, ServerErrors))]
pub async fn start_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<FenceBody>,
) -> ApiResult<Json<TaskBody>> {
    let (agent, token) = (Some(body.agent), Some(body.token));
    act(
        &state,
        &caller,
        id,
        TaskAction::Start,
        "todo.start",
        agent,
        token,
    )
    .await
}

/// Mark a task done (agent or operator). Fenced like start.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/done", tag = "backlog",
    params(("id" = i64, Path, minimum = 1, example = 1,
        description = "The task's id")),
    request_body = FenceBody,
    responses((status = 200, body = TaskBody), JsonBody, Unauthorized, Forbidden, NotFound,
        Conflict, ServerErrors))]
pub async fn done_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<FenceBody>,
) -> ApiResult<Json<TaskBody>> {
    let (agent, token) = (Some(body.agent), Some(body.token));
    act(
        &state,
        &caller,
        id,
        TaskAction::Done,
        "todo.done",
        agent,
        token,
    )
    .await
}

/// Block a task with a reason (agents with the claim's agent and token; operators also
/// without).
#[utoipa::path(post, path = "/api/v1/tasks/{id}/block", tag = "backlog",
    params(("id" = i64, Path, minimum = 1, example = 1,
        description = "The task's id")),
    request_body = BlockBody,
    responses((status = 200, body = TaskBody), JsonBody, Unauthorized, Forbidden, NotFound,
        Conflict, ServerErrors))]
pub async fn block_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<BlockBody>,
) -> ApiResult<Json<TaskBody>> {
    let action = TaskAction::Block(body.reason);
    act(
        &state,
        &caller,
        id,
        action,
        "todo.block",
        body.agent,
        body.token,
    )
    .await
}

/// Unblock a task: it is to do again (agents with the claim's agent and token; operators also
/// without, and then with no body at all).
#[utoipa::path(post, path = "/api/v1/tasks/{id}/unblock", tag = "backlog",
    params(("id" = i64, Path, minimum = 1, example = 1,
        description = "The task's id")),
    request_body = Option<UnblockBody>,
    responses((status = 200, body = TaskBody), JsonBody, Unauthorized, Forbidden, NotFound,
        Conflict, ServerErrors))]
pub async fn unblock_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    OptionalJson(body): OptionalJson<UnblockBody>,
) -> ApiResult<Json<TaskBody>> {
    let action = TaskAction::Unblock;
    act(
        &state,
        &caller,
        id,
        action,
        "todo.unblock",
        body.agent,
        body.token,
    )
    .await
}

/// Move a task within its list (agents with the claim's agent and token; operators also
/// without).
#[utoipa::path(post, path = "/api/v1/tasks/{id}/move", tag = "backlog",
    params(("id" = i64, Path, minimum = 1, example = 1,
        description = "The task's id")),
    request_body = MoveBody,
    responses((status = 200, body = TaskBody), JsonBody, Unauthorized, Forbidden, NotFound,
        Conflict, ServerErrors))]
pub async fn move_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<MoveBody>,
) -> ApiResult<Json<TaskBody>> {
    let action = TaskAction::Move(body.position);
    act(
        &state,
        &caller,
        id,
        action,
        "todo.move",
        body.agent,
        body.token,
    )
    .await
}
