//! `/healthz` (the process is up) and `/readyz` (the store answers and its schema is current).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthBody {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, body = HealthBody), crate::doc::Unavailable))]
pub async fn healthz() -> Json<HealthBody> {
    Json(HealthBody {
        status: "ok".into(),
        detail: None,
    })
}

/// The store is reachable and migrated to this build's schema.
/// A 503 is JSON when the check itself says not ready, problem JSON when the request timed out.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses((status = 200, body = HealthBody),
        (status = 503, description = "Not ready, or the check took too long", content(
            (HealthBody = "application/json"),
            (crate::problem::Problem = "application/problem+json")))))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<HealthBody>) {
    match state.gaia.store().schema_version().await {
        Ok(v) if v == state.opts.schema_version => (
            StatusCode::OK,
            Json(HealthBody {
                status: "ready".into(),
                detail: None,
            }),
        ),
        Ok(v) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthBody {
                status: "not ready".into(),
                detail: Some(format!(
                    "schema version {v}, expected {}",
                    state.opts.schema_version
                )),
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(HealthBody {
                    status: "not ready".into(),
                    detail: Some("the store does not answer".into()),
                }),
            )
        }
    }
}
