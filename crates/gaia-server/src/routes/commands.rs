//! `/api/v1/commands`: request, list, show, decide, cancel, execute, and wait for a decision.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gaia_core::commands::{
    Action, CommandRecord, Decided, Decider, NewCommand, Refusal, Status, parse_id,
};
use gaia_core::time::parse_duration;
use gaia_core::tokens::Role;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::doc::{
    BadRequest, CommandId, CommandStatus, Conflict, Forbidden, JsonBody, Name, NewCommandSpec,
    NotFound, ServerErrors, Ttl, Unauthorized, WaitTimeout,
};
use crate::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use crate::problem::{ApiError, ApiResult};
use crate::wire::{CommandBody, CommandSpecBody};

/// Longest a wait request holds the connection.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// A new approval request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    #[schema(value_type = NewCommandSpec)]
    pub command: CommandSpecBody,
    /// Working directory: at most 4096 bytes of UTF-8 (so fewer characters when some take
    /// several bytes), no NUL.
    #[schema(min_length = 1, max_length = 4096, pattern = r"^[^\u0000]*$")]
    pub cwd: Option<String>,
    #[schema(value_type = Option<Name>)]
    pub story: Option<String>,
    #[schema(value_type = Option<Name>)]
    pub todolist: Option<String>,
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub reason: Option<String>,
    #[serde(default)]
    pub is_test: bool,
    /// How long it waits for a decision, e.g. 1h (default 1h).
    #[schema(value_type = Option<Ttl>)]
    pub expires: Option<String>,
    /// The agent the token acts for, recorded beside it; the requester is always the token.
    #[schema(value_type = Option<Name>)]
    pub agent: Option<String>,
}

/// A decision's optional reason.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub reason: Option<String>,
}

/// Whether to really run it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBody {
    /// Really run it; otherwise (or when the server does not allow execution) a dry run.
    #[serde(default)]
    pub execute: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(value_type = Option<CommandStatus>)]
    pub status: Option<String>,
    /// 1 to 1000, default 50.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// How long to wait for a decision, at most 60s (default 30s).
    #[param(value_type = Option<WaitTimeout>)]
    pub timeout: Option<String>,
}

fn refused(r: Refusal) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "refused",
        format!(
            "refused: {} (status {})",
            r.reason,
            r.current.status.as_str()
        ),
    )
}

fn id(text: &str) -> Result<String, ApiError> {
    Ok(parse_id(text)?)
}

/// Ask for approval of a command.
#[utoipa::path(post, path = "/api/v1/commands", tag = "commands", request_body = RequestBody,
    responses((status = 201, body = CommandBody), JsonBody, Unauthorized, Forbidden, ServerErrors))]
pub async fn request(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RequestBody>,
) -> ApiResult<(StatusCode, Json<CommandBody>)> {
    caller
        .require(&state, Role::Agent, "command.request")
        .await?;
    let expires = body.expires.as_deref().map(parse_duration).transpose()?;
    // The token is the requester: the rules (the requester never decides, only the
    // requester runs its own request) judge who authenticated, not a name in the body.
    let new = NewCommand::new(
        body.command.into(),
        body.cwd,
        body.story,
        body.todolist,
        body.reason,
        &caller.name,
        body.is_test,
        expires,
    )?
    .acting_for(body.agent.as_deref())?;
    let r = state.gaia.request_command(&new).await?;
    Ok((StatusCode::CREATED, Json(CommandBody::from(&r))))
}

/// Requests, newest first.
#[utoipa::path(get, path = "/api/v1/commands", tag = "commands", params(ListQuery),
    responses((status = 200, body = [CommandBody]), BadRequest, Unauthorized, ServerErrors))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<CommandBody>>> {
    let status = q.status.as_deref().map(str::parse::<Status>).transpose()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1 to 1000"));
    }
    let list = state.gaia.list_commands(status, limit).await?;
    Ok(Json(list.iter().map(CommandBody::from).collect()))
}

/// One request.
#[utoipa::path(get, path = "/api/v1/commands/{id}", tag = "commands", params(("id" = CommandId, Path)),
    responses((status = 200, body = CommandBody), BadRequest, Unauthorized, NotFound, ServerErrors))]
pub async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<Json<CommandBody>> {
    Ok(Json(CommandBody::from(
        &state.gaia.get_command(&id(&raw)?).await?,
    )))
}

async fn decide(state: &AppState, id: &str, action: Action) -> ApiResult<Json<CommandBody>> {
    match state.gaia.apply_command(id, &action).await? {
        Decided::Done(r) => Ok(Json(CommandBody::from(&r))),
        Decided::Refused(refusal) => Err(refused(refusal)),
    }
}

fn decider(caller: &Caller) -> Decider {
    Decider {
        name: caller.name.clone(),
        via: "api".into(),
    }
}

/// Approve (operator). The first decision wins; a later one is refused (409).
#[utoipa::path(post, path = "/api/v1/commands/{id}/approve", tag = "commands", params(("id" = CommandId, Path)),
    request_body = Option<DecisionBody>,
    responses((status = 200, body = CommandBody), JsonBody, Unauthorized, Forbidden, NotFound, Conflict,
        ServerErrors))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(body): OptionalJson<DecisionBody>,
) -> ApiResult<Json<CommandBody>> {
    caller
        .require(&state, Role::Operator, "command.approve")
        .await?;
    let reason = body.reason;
    decide(
        &state,
        &id(&raw)?,
        Action::Approve {
            by: decider(&caller),
            reason,
        },
    )
    .await
}

/// Deny (operator).
#[utoipa::path(post, path = "/api/v1/commands/{id}/deny", tag = "commands", params(("id" = CommandId, Path)),
    request_body = Option<DecisionBody>,
    responses((status = 200, body = CommandBody), JsonBody, Unauthorized, Forbidden, NotFound, Conflict,
        ServerErrors))]
pub async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(body): OptionalJson<DecisionBody>,
) -> ApiResult<Json<CommandBody>> {
    caller
        .require(&state, Role::Operator, "command.deny")
        .await?;
    let reason = body.reason;
    decide(
        &state,
        &id(&raw)?,
        Action::Deny {
            by: decider(&caller),
            reason,
        },
    )
    .await
}

/// Let a test request proceed to a decision (operator).
#[utoipa::path(post, path = "/api/v1/commands/{id}/allow-test", tag = "commands", params(("id" = CommandId, Path)),
    responses((status = 200, body = CommandBody), BadRequest, Unauthorized, Forbidden, NotFound,
        Conflict, ServerErrors))]
pub async fn allow_test(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<Json<CommandBody>> {
    caller
        .require(&state, Role::Operator, "command.allow_test")
        .await?;
    decide(
        &state,
        &id(&raw)?,
        Action::AllowTest {
            by: decider(&caller),
        },
    )
    .await
}

/// Withdraw a pending request (its requester, or an operator).
#[utoipa::path(post, path = "/api/v1/commands/{id}/cancel", tag = "commands", params(("id" = CommandId, Path)),
    responses((status = 200, body = CommandBody), BadRequest, Unauthorized, Forbidden, NotFound,
        Conflict, ServerErrors))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<Json<CommandBody>> {
    let id = id(&raw)?;
    let current = state.gaia.get_command(&id).await?;
    if current.requester != caller.name {
        caller
            .require(&state, Role::Operator, "command.cancel")
            .await?;
    }
    decide(
        &state,
        &id,
        Action::Cancel {
            by: caller.name.clone(),
        },
    )
    .await
}

/// The outcome of a command its requester ran itself.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RanBody {
    pub exit_code: Option<i32>,
    /// How long it ran; at most 3650 days.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 315_360_000_000_u64)]
    pub duration_ms: u64,
    /// Why it could not start, if it did not.
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub error: Option<String>,
}

/// Only the requester (or an operator) runs its own approved request.
async fn requester_or_operator(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: &str,
) -> ApiResult<CommandRecord> {
    let current = state.gaia.get_command(id).await?;
    if current.requester != caller.name {
        caller.require(state, Role::Operator, action).await?;
    }
    Ok(current)
}

/// The requester runs its approved request itself (`gaia run --approve`): claims the single
/// execution, exactly as a server-side execution would.
#[utoipa::path(post, path = "/api/v1/commands/{id}/run", tag = "commands", params(("id" = CommandId, Path)),
    responses((status = 200, body = CommandBody), BadRequest, Unauthorized, Forbidden, NotFound,
        Conflict, ServerErrors))]
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<Json<CommandBody>> {
    let id = id(&raw)?;
    let current = requester_or_operator(&state, &caller, &id, "command.run").await?;
    let action = Action::BeginExecution {
        executor: caller.name.clone(),
        dry_run: false,
        binding: gaia_core::commands::binding(&current.spec, current.cwd.as_deref()),
    };
    decide(&state, &id, action).await
}

/// Records the outcome of a command its requester ran itself.
#[utoipa::path(post, path = "/api/v1/commands/{id}/ran", tag = "commands", params(("id" = CommandId, Path)),
    request_body = RanBody,
    responses((status = 200, body = CommandBody), JsonBody, Unauthorized, Forbidden, NotFound,
        Conflict, ServerErrors))]
pub async fn ran(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<RanBody>,
) -> ApiResult<Json<CommandBody>> {
    let id = id(&raw)?;
    requester_or_operator(&state, &caller, &id, "command.run").await?;
    let now = state.gaia.store().now().await?;
    let execution = gaia_core::commands::Execution::reported(
        &caller.name,
        body.exit_code,
        body.duration_ms,
        body.error,
        now,
    )?;
    decide(&state, &id, Action::FinishExecution { execution }).await
}

/// Execute an approved request (operator): at most once; a dry run unless `execute` is true and
/// the server allows execution (ALLOW_COMMAND_EXECUTION=1).
#[utoipa::path(post, path = "/api/v1/commands/{id}/execute", tag = "commands", params(("id" = CommandId, Path)),
    request_body = Option<ExecuteBody>,
    responses((status = 200, body = CommandBody), JsonBody, Unauthorized, Forbidden, NotFound, Conflict,
        ServerErrors))]
pub async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(raw): ApiPath<String>,
    OptionalJson(body): OptionalJson<ExecuteBody>,
) -> ApiResult<Json<CommandBody>> {
    caller
        .require(&state, Role::Operator, "command.execute")
        .await?;
    let really = body.execute && state.opts.runtime.allow_execution;
    let limits = gaia_exec::Limits {
        timeout: state.opts.runtime.exec_timeout,
        ..gaia_exec::Limits::default()
    };
    match crate::exec::execute(&state.gaia, &id(&raw)?, &caller.name, really, limits).await? {
        Decided::Done(r) => Ok(Json(CommandBody::from(&r))),
        Decided::Refused(refusal) => Err(refused(refusal)),
    }
}

/// Long-poll: answers as soon as the request is no longer pending, or after `timeout` with
/// the request still pending.
#[utoipa::path(get, path = "/api/v1/commands/{id}/wait", tag = "commands",
    params(("id" = CommandId, Path), WaitQuery),
    responses((status = 200, body = CommandBody), BadRequest, Unauthorized, NotFound, ServerErrors))]
pub async fn wait(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Json<CommandBody>> {
    let id = id(&raw)?;
    let timeout = match q.timeout.as_deref() {
        Some(t) => parse_duration(t)?,
        None => Duration::from_secs(30),
    };
    if timeout > MAX_WAIT {
        return Err(ApiError::bad_request("timeout must be at most 60s"));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let store = state.gaia.store().clone();
    // Every event up to `seen` committed before the request is read below, so a decision
    // the read misses comes after it. The request is read again only when an event about it
    // commits: with many waiters, each commit of someone else's is then a look at the hub's
    // shared events, not a read of the store per waiter.
    let mut seen = state.hub.latest();
    loop {
        let r = current(&state, &id).await?;
        if r.status != Status::Pending || tokio::time::Instant::now() >= deadline {
            return Ok(Json(CommandBody::from(&r)));
        }
        // Re-read at least every second for expiry.
        let nap = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
        let subject = r.subject();
        tokio::select! {
            touched = state.hub.next_about(&store, &mut seen, &subject) => touched?,
            () = tokio::time::sleep_until(nap) => {}
            () = state.shutdown.cancelled() => return Ok(Json(CommandBody::from(&r))),
        }
    }
}

/// The request as it stands, recording its expiry when it is due.
async fn current(state: &AppState, id: &str) -> ApiResult<CommandRecord> {
    let r = state.gaia.get_command(id).await?;
    if r.status == Status::Pending && state.gaia.store().now().await? >= r.expires_at {
        let _ = state.gaia.apply_command(id, &Action::Expire).await?;
        return Ok(state.gaia.get_command(id).await?);
    }
    Ok(r)
}
