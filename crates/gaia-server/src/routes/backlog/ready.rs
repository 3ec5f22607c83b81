//! `/api/v1/ready`: the ready work nobody holds, and taking it: the claim on the task's
//! todolist and the task in progress, in one transaction.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use gaia_core::backlog::Taken;
use gaia_core::claims::{Holder, MIN_TTL};
use gaia_core::names::check_name;
use gaia_core::time::{MAX_DURATION, rfc3339};
use gaia_core::tokens::Role;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::check_story;
use super::wire::{TakenBody, TaskBody};
use crate::AppState;
use crate::auth::Caller;
use crate::doc::{
    BadRequest, Forbidden, JsonBody, Name, NotFound, ServerErrors, Slug, Unauthorized,
};
use crate::extract::{ApiJson, ApiQuery};
use crate::problem::{ApiError, ApiResult};

/// Most ready tasks one request lists.
pub const MAX_READY: u32 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadyQuery {
    /// Only this story's ready work.
    #[param(value_type = Option<Slug>)]
    pub story: Option<String>,
    /// At most this many (1 to 1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Take the first ready task nobody holds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TakeBody {
    /// The agent that will work on it (the claim's holder).
    #[schema(value_type = Name)]
    pub agent: String,
    /// Only this story's ready work.
    #[schema(value_type = Option<Slug>)]
    pub story: Option<String>,
    /// The claim's lease in seconds; defaults to the server's claims.default_ttl.
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub ttl_s: Option<u64>,
    /// Defaults to `-`.
    #[schema(value_type = Option<Name>)]
    pub operator: Option<String>,
    /// Defaults to `-`.
    #[schema(value_type = Option<Name>)]
    pub fingerprint: Option<String>,
}

/// Ready tasks: to do, in an open story's list nobody holds, every task they wait for done.
#[utoipa::path(get, path = "/api/v1/ready", tag = "backlog", params(ReadyQuery),
    responses((status = 200, body = [TaskBody]), BadRequest, Unauthorized, NotFound,
        ServerErrors))]
pub async fn list_ready(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<ReadyQuery>,
) -> ApiResult<Json<Vec<TaskBody>>> {
    if let Some(s) = &q.story {
        check_story(s)?;
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_READY).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_READY}"
        )));
    }
    let tasks = state.gaia.list_ready(q.story.as_deref(), limit).await?;
    Ok(Json(tasks.iter().map(TaskBody::from).collect()))
}

/// The lease a take asks for.
fn lease(ttl_s: Option<u64>, default: Duration) -> ApiResult<Duration> {
    let Some(secs) = ttl_s else {
        return Ok(default);
    };
    let ttl = Duration::from_secs(secs);
    if ttl < MIN_TTL || ttl > MAX_DURATION {
        return Err(ApiError::bad_request(format!(
            "ttl_s must be 1 to {}",
            MAX_DURATION.as_secs()
        )));
    }
    Ok(ttl)
}

/// Take ready work (agent or operator): the first ready task the agent can get is in progress
/// and its todolist claimed by the calling token for the agent, in one step. `taken` is false
/// when nothing is ready. Pass the returned token to done (and to refresh the claim as with
/// any claim; only the calling token refreshes or releases it).
#[utoipa::path(post, path = "/api/v1/ready/take", tag = "backlog", request_body = TakeBody,
    responses((status = 200, body = TakenBody), JsonBody, Unauthorized, Forbidden, NotFound,
        ServerErrors))]
pub async fn take(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TakeBody>,
) -> ApiResult<Json<TakenBody>> {
    caller.require(&state, Role::Agent, "todo.take").await?;
    if let Some(s) = &body.story {
        check_story(s)?;
    }
    check_name("agent id", &body.agent)?;
    let operator = body.operator.unwrap_or_else(|| "-".into());
    check_name("operator", &operator)?;
    let fingerprint = body.fingerprint.unwrap_or_else(|| "-".into());
    check_name("fingerprint", &fingerprint)?;
    let ttl = lease(body.ttl_s, state.opts.default_ttl)?;
    // The claim belongs to the token, as with `POST /api/v1/claims/acquire`.
    let holder = Holder {
        agent: body.agent,
        operator,
        fingerprint,
        principal: Some(caller.name.clone()),
    };
    let taken = state
        .gaia
        .take_ready(body.story.as_deref(), &holder, ttl, &caller.name)
        .await?;
    Ok(Json(match taken {
        Taken::Took { task, claim } => TakenBody {
            taken: true,
            task: Some(TaskBody::from(&*task)),
            token: Some(claim.token),
            expires_at: claim.expires_at.map(rfc3339),
        },
        Taken::Nothing => TakenBody {
            taken: false,
            task: None,
            token: None,
            expires_at: None,
        },
    }))
}
