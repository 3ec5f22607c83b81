//! `/api/v1/claims`: acquire, refresh, release, inspect, list.

use axum::Json;
use axum::extract::State;
use gaia_core::claims::Request;
use gaia_core::names::ClaimKey;
use gaia_core::time::parse_duration;
use gaia_core::tokens::Role;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::doc::{BadRequest, Forbidden, JsonBody, Name, ServerErrors, Ttl, Unauthorized};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::problem::ApiResult;
use crate::wire::ClaimBody;

/// Acquire a claim on a story's todolist.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcquireBody {
    #[schema(value_type = Name)]
    pub story: String,
    /// Defaults to `default`.
    #[schema(value_type = Option<Name>)]
    pub todolist: Option<String>,
    /// The agent the token acts for; defaults to the token's name. The claim belongs to the
    /// token: only it refreshes or releases the claim, whatever agent name a call gives.
    #[schema(value_type = Option<Name>)]
    pub agent: Option<String>,
    /// Defaults to `-`.
    #[schema(value_type = Option<Name>)]
    pub operator: Option<String>,
    /// Defaults to `-`.
    #[schema(value_type = Option<Name>)]
    pub fingerprint: Option<String>,
    /// e.g. 90s, 15m, 2h; defaults to the server's claims.default_ttl.
    #[schema(value_type = Option<Ttl>)]
    pub ttl: Option<String>,
}

/// Refresh (heartbeat) a claim.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HolderCallBody {
    #[schema(value_type = Name)]
    pub story: String,
    /// Defaults to `default`.
    #[schema(value_type = Option<Name>)]
    pub todolist: Option<String>,
    /// The agent the token acts for; defaults to the token's name. The claim belongs to the
    /// token: only it refreshes or releases the claim, whatever agent name a call gives.
    #[schema(value_type = Option<Name>)]
    pub agent: Option<String>,
    /// When given, must match the holder's.
    #[schema(value_type = Option<Name>)]
    pub fingerprint: Option<String>,
    /// New lease length from now; defaults to the claim's current one.
    #[schema(value_type = Option<Ttl>)]
    pub ttl: Option<String>,
}

/// Release a claim. Unlike refresh it takes no ttl, so one is refused as an unknown field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    #[schema(value_type = Name)]
    pub story: String,
    /// Defaults to `default`.
    #[schema(value_type = Option<Name>)]
    pub todolist: Option<String>,
    /// The agent the token acts for; defaults to the token's name. The claim belongs to the
    /// token: only it refreshes or releases the claim, whatever agent name a call gives.
    #[schema(value_type = Option<Name>)]
    pub agent: Option<String>,
    /// When given, must match the holder's.
    #[schema(value_type = Option<Name>)]
    pub fingerprint: Option<String>,
}

fn key(story: &str, todolist: Option<&str>) -> Result<ClaimKey, gaia_core::ValidationError> {
    ClaimKey::new(story, todolist.unwrap_or(ClaimKey::DEFAULT_TODOLIST))
}

fn ttl(t: Option<&str>) -> Result<Option<std::time::Duration>, gaia_core::ValidationError> {
    t.map(parse_duration).transpose()
}

/// Acquire a claim. The outcome (acquired, already_held, taken_over, held_by_other,
/// lock_timeout) is in the body; conflicts are results, not errors.
#[utoipa::path(post, path = "/api/v1/claims/acquire", tag = "claims", request_body = AcquireBody,
    responses((status = 200, body = ClaimBody), JsonBody, Unauthorized, Forbidden, ServerErrors))]
pub async fn acquire(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<AcquireBody>,
) -> ApiResult<Json<ClaimBody>> {
    caller.require(&state, Role::Agent, "claim.acquire").await?;
    let agent = body.agent.as_deref().unwrap_or(&caller.name);
    let req = Request::acquire(
        key(&body.story, body.todolist.as_deref())?,
        agent,
        body.operator.as_deref(),
        body.fingerprint.as_deref(),
        Some(ttl(body.ttl.as_deref())?.unwrap_or(state.opts.default_ttl)),
    )?
    .by(&caller.name);
    Ok(Json(ClaimBody::from(&state.gaia.apply_claim(&req).await?)))
}

/// Extend a live claim. Outcome refreshed or not_held.
#[utoipa::path(post, path = "/api/v1/claims/refresh", tag = "claims", request_body = HolderCallBody,
    responses((status = 200, body = ClaimBody), JsonBody, Unauthorized, Forbidden, ServerErrors))]
pub async fn refresh(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<HolderCallBody>,
) -> ApiResult<Json<ClaimBody>> {
    caller.require(&state, Role::Agent, "claim.refresh").await?;
    let agent = body.agent.as_deref().unwrap_or(&caller.name);
    let req = Request::refresh(
        key(&body.story, body.todolist.as_deref())?,
        agent,
        body.fingerprint.as_deref(),
        ttl(body.ttl.as_deref())?,
    )?
    .by(&caller.name);
    Ok(Json(ClaimBody::from(&state.gaia.apply_claim(&req).await?)))
}

/// Release a claim. Outcome released or not_held.
#[utoipa::path(post, path = "/api/v1/claims/release", tag = "claims", request_body = ReleaseBody,
    responses((status = 200, body = ClaimBody), JsonBody, Unauthorized, Forbidden, ServerErrors))]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ReleaseBody>,
) -> ApiResult<Json<ClaimBody>> {
    caller.require(&state, Role::Agent, "claim.release").await?;
    let agent = body.agent.as_deref().unwrap_or(&caller.name);
    let req = Request::release(
        key(&body.story, body.todolist.as_deref())?,
        agent,
        body.fingerprint.as_deref(),
    )?
    .by(&caller.name);
    Ok(Json(ClaimBody::from(&state.gaia.apply_claim(&req).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Also list claims whose TTL passed without a release.
    #[serde(default)]
    pub all: bool,
}

/// Live claims (with all=true, also expired ones).
#[utoipa::path(get, path = "/api/v1/claims", tag = "claims", params(ListQuery),
    responses((status = 200, body = [ClaimBody]), BadRequest, Unauthorized, ServerErrors))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<ClaimBody>>> {
    let list = state.gaia.list_claims(q.all).await?;
    Ok(Json(list.iter().map(ClaimBody::from).collect()))
}

/// The state of one key: held, expired or free.
#[utoipa::path(get, path = "/api/v1/claims/{story}/{todolist}", tag = "claims",
    params(("story" = Name, Path), ("todolist" = Name, Path)),
    responses((status = 200, body = ClaimBody), BadRequest, Unauthorized, ServerErrors))]
pub async fn inspect(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath((story, todolist)): ApiPath<(String, String)>,
) -> ApiResult<Json<ClaimBody>> {
    let key = key(&story, Some(&todolist))?;
    Ok(Json(ClaimBody::from(&state.gaia.get_claim(&key).await?)))
}
