//! `/api/v1/github/sync`: the scheduled GitHub sync's state (which node holds its lease, the
//! last run's time, counts and error, the next run), the same on every node.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiResult, Problem};

/// The scheduled sync's state: `{"state": null}` when no node has run it (it is off unless
/// `[github]` in gaia.toml enables it).
#[utoipa::path(get, path = "/api/v1/github/sync", tag = "github",
    responses((status = 200, body = Object),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 500, body = Problem, content_type = "application/problem+json")))]
pub async fn state(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Value>> {
    let s = state.gaia.github_worker_state().await?;
    Ok(Json(json!({ "state": s })))
}
