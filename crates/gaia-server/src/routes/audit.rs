//! `/api/v1/audit`: the newest records and chain verification.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::Caller;
use crate::doc::{BadRequest, ServerErrors, Unauthorized};
use crate::extract::ApiQuery;
use crate::problem::{ApiError, ApiResult};
use crate::wire::{AuditBody, BrokenBody, VerifyBody};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many of the newest records (1 to 1000, default 20).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The newest audit records, oldest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = [AuditBody]), BadRequest, Unauthorized, ServerErrors))]
pub async fn tail(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Vec<AuditBody>>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1 to 1000"));
    }
    let records = state.gaia.list_audit_tail(limit).await?;
    Ok(Json(records.iter().map(AuditBody::from).collect()))
}

/// Walks the hash chain and names the first broken record.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, body = VerifyBody), Unauthorized, ServerErrors))]
pub async fn verify(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<VerifyBody>> {
    let r = state.gaia.verify_audit().await?;
    Ok(Json(VerifyBody {
        intact: r.first_break.is_none(),
        checked: r.checked,
        first_broken: r.first_break.map(|b| BrokenBody {
            id: b.id,
            reason: b.reason,
        }),
    }))
}
