//! `/metrics` (Prometheus text) and `/api/v1/metrics` (the dotted names as JSON). The values
//! are derived from the store, so every node reports the same and restarts lose nothing.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::collections::BTreeMap;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Problem};

/// Prometheus text exposition format (version 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "metrics", security(()),
    responses((status = 200, content_type = "text/plain", body = String),
        (status = 500, body = Problem, content_type = "application/problem+json")))]
pub async fn prometheus(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let snapshot = state.gaia.get_metrics().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        snapshot.prometheus(),
    ))
}

/// The metrics as `{"dotted.name": value}`, the prototype's metrics.json shape.
#[utoipa::path(get, path = "/api/v1/metrics", tag = "metrics",
    responses((status = 200, body = Object),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 500, body = Problem, content_type = "application/problem+json")))]
pub async fn json(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<BTreeMap<String, f64>>> {
    Ok(Json(state.gaia.get_metrics().await?.0))
}
