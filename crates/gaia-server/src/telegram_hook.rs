//! Telegram's webhook: in webhook mode Telegram POSTs each update to the configured path with
//! the secret in `X-Telegram-Bot-Api-Secret-Token`. The secret is compared in constant time; a
//! missing or wrong one is refused with 401 and audited (within the refusal gate's bounds).
//! Each `update_id` is applied once however often Telegram delivers it
//! ([`gaia_runtime::telegram::Listener::deliver`]); an update another request is still
//! handling is answered 503, so that Telegram delivers it again later.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use gaia_runtime::telegram::Delivery;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::problem::ApiError;

/// The header Telegram sends the webhook's secret in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The webhook route, at the configured path, when the listener is in webhook mode.
pub fn routes(state: &AppState) -> Router<AppState> {
    match state.telegram.as_ref().and_then(|l| l.webhook.as_ref()) {
        Some(hook) => Router::new().route(&hook.path, axum::routing::post(receive)),
        None => Router::new(),
    }
}

/// Whether `presented` is `secret`, in time that depends only on their lengths.
fn secret_matches(presented: &[u8], secret: &[u8]) -> bool {
    presented.len() == secret.len() && bool::from(presented.ct_eq(secret))
}

async fn receive(State(state): State<AppState>, parts: Parts, body: Bytes) -> Response {
    let Some(listener) = state.telegram.as_ref() else {
        return ApiError::not_found("no such resource").into_response();
    };
    let Some(hook) = listener.webhook.as_ref() else {
        return ApiError::not_found("no such resource").into_response();
    };
    let presented = parts.headers.get(SECRET_HEADER);
    let refusal = match presented {
        None => Some("missing secret token"),
        Some(v) if !secret_matches(v.as_bytes(), hook.secret.as_bytes()) => {
            Some("wrong secret token")
        }
        Some(_) => None,
    };
    if let Some(reason) = refusal {
        crate::refusals::record(
            &state,
            &crate::auth::peer(&parts),
            "anonymous",
            "telegram.webhook",
            parts.uri.path(),
            "unauthorized",
            json!({ "reason": reason }),
        )
        .await;
        return ApiError::unauthorized(format!("{reason} ({SECRET_HEADER})")).into_response();
    }
    let raw: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => {
            return ApiError::bad_request("the body must be a Telegram update (a JSON object)")
                .into_response();
        }
    };
    let update = match gaia_telegram::lenient_update(raw) {
        Ok(u) => u,
        Err(_) => {
            return ApiError::bad_request("the update has no update_id").into_response();
        }
    };
    match listener.deliver(update).await {
        Ok(Delivery::Applied) => axum::Json(json!({ "ok": true })).into_response(),
        Ok(Delivery::Duplicate) => {
            axum::Json(json!({ "ok": true, "duplicate": true })).into_response()
        }
        Ok(Delivery::Busy) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "update-in-progress",
            "this update is being handled; deliver it again later",
        )
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_exactly() {
        assert!(secret_matches(b"s3cret_-", b"s3cret_-"));
        assert!(!secret_matches(b"s3cret_+", b"s3cret_-"));
        assert!(!secret_matches(b"s3cret", b"s3cret_-"));
        assert!(!secret_matches(b"", b"s3cret_-"));
    }
}
