//! `/api/v1/tokens`: admin-only token management.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gaia_core::tokens::Role;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::doc::{
    BadRequest, Conflict, Forbidden, JsonBody, Name, NotFound, ServerErrors, Unauthorized,
};
use crate::extract::{ApiJson, ApiPath};
use crate::problem::{ApiError, ApiResult};
use crate::wire::{NewTokenBody, RoleBody, TokenBody};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    #[schema(value_type = Name)]
    pub name: String,
    pub role: RoleBody,
}

/// Every token (never the secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = [TokenBody]), Unauthorized, Forbidden, ServerErrors))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<TokenBody>>> {
    caller.require(&state, Role::Admin, "token.list").await?;
    let tokens = state.gaia.list_tokens().await?;
    Ok(Json(tokens.iter().map(TokenBody::from).collect()))
}

/// Create a token; its secret is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateTokenBody,
    responses((status = 201, body = NewTokenBody), JsonBody, Unauthorized, Forbidden, Conflict,
        ServerErrors))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTokenBody>,
) -> ApiResult<(StatusCode, Json<NewTokenBody>)> {
    caller.require(&state, Role::Admin, "token.create").await?;
    let (info, secret) = state
        .gaia
        .create_token(&body.name, body.role.into(), &caller.name)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewTokenBody {
            name: info.name,
            role: info.role.as_str().to_owned(),
            token: secret,
        }),
    ))
}

/// Revoke a token.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens",
    params(("name" = Name, Path)),
    responses((status = 204, description = "Revoked"), BadRequest, Unauthorized, Forbidden,
        NotFound, ServerErrors))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(&state, Role::Admin, "token.revoke").await?;
    gaia_core::names::check_name("token name", &name)?;
    if state.gaia.revoke_token(&name, &caller.name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no live token named '{name}'")))
    }
}

/// Who the presented token is.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WhoamiBody {
    pub name: String,
    /// agent, operator or admin
    pub role: String,
}

/// The name and role of the presented token.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "tokens",
    responses((status = 200, body = WhoamiBody), Unauthorized, ServerErrors))]
pub async fn whoami(caller: Caller) -> Json<WhoamiBody> {
    Json(WhoamiBody {
        name: caller.name,
        role: caller.role.as_str().to_owned(),
    })
}
