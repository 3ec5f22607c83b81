//! `/api/v1/events`: read and emit events; the live stream is in [`crate::sse`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gaia_core::event::EventFilter;
use gaia_core::names::check_event_type;
use gaia_core::tokens::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::doc::{
    BadRequest, EventType, Forbidden, JsonBody, Name, ServerErrors, Subject, Unauthorized,
};
use crate::extract::{ApiJson, ApiQuery};
use crate::problem::{ApiError, ApiResult};
use crate::wire::EventBody;

/// Most events one request returns.
pub const MAX_PAGE: u32 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this seq (oldest first).
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub since: Option<i64>,
    /// Alone: the newest events before this seq (still oldest first). With since: only events
    /// before this seq, paging forward from since.
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub before: Option<i64>,
    /// Only types equal to or under this dotted prefix.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<EventType>)]
    pub type_prefix: Option<String>,
    /// Only events about exactly this subject.
    pub subject: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

pub fn filter(
    type_prefix: Option<String>,
    subject: Option<String>,
) -> Result<EventFilter, ApiError> {
    if let Some(p) = &type_prefix {
        check_event_type(p)?;
    }
    // Refused like a subject written with an event (no control characters, NUL included):
    // PostgreSQL cannot even compare text holding NUL.
    if let Some(s) = &subject {
        gaia_core::names::check_subject(s)?;
    }
    Ok(EventFilter {
        type_prefix,
        subject,
    })
}

/// Committed events, oldest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, body = [EventBody]), BadRequest, Unauthorized, ServerErrors))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<Vec<EventBody>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    if q.since.is_some_and(|s| s < 0) || q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::bad_request("since must be >= 0 and before >= 1"));
    }
    let f = filter(q.type_prefix, q.subject)?;
    let events = match (q.since, q.before) {
        // Events come in seq order, so the first page after `since` cut at `before` is
        // exactly the first page of the range.
        (Some(since), Some(before)) => {
            let mut page = state.gaia.list_events_after(since, &f, limit).await?;
            page.retain(|e| e.seq < before);
            page
        }
        (None, Some(before)) => state.gaia.store().events_before(before, &f, limit).await?,
        (since, None) => {
            state
                .gaia
                .list_events_after(since.unwrap_or(0), &f, limit)
                .await?
        }
    };
    Ok(Json(events.iter().map(EventBody::from).collect()))
}

/// The newest committed seq.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HeadBody {
    pub last_seq: i64,
}

/// The newest committed seq (0 when the log is empty).
#[utoipa::path(get, path = "/api/v1/events/head", tag = "events",
    responses((status = 200, body = HeadBody), Unauthorized, ServerErrors))]
pub async fn head(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<HeadBody>> {
    Ok(Json(HeadBody {
        last_seq: state.gaia.store().last_seq().await?,
    }))
}

/// An event of the caller's own.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmitBody {
    /// Dotted lowercase type, e.g. chat.message.
    #[serde(rename = "type")]
    #[schema(value_type = EventType)]
    pub kind: String,
    /// Defaults to empty.
    #[serde(default)]
    #[schema(value_type = Subject)]
    pub subject: String,
    /// Any JSON value up to 64 KiB; null or absent means {}.
    #[serde(default)]
    pub data: serde_json::Value,
    /// The agent the token acts for, kept beside the token's name in the audit record; the
    /// event's actor is always the token's name.
    #[schema(value_type = Option<Name>)]
    pub actor: Option<String>,
}

/// Emit an event (audited like every change).
#[utoipa::path(post, path = "/api/v1/events", tag = "events", request_body = EmitBody,
    responses((status = 201, body = EventBody), JsonBody, Unauthorized, Forbidden, ServerErrors))]
pub async fn emit(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<EmitBody>,
) -> ApiResult<(StatusCode, Json<EventBody>)> {
    caller.require(&state, Role::Agent, "event.emit").await?;
    let data = if body.data.is_null() {
        serde_json::json!({})
    } else {
        body.data
    };
    // The token is the actor; a name given in the body is the agent it acts for.
    let e = state
        .gaia
        .emit_event_for(
            &body.kind,
            &caller.name,
            body.actor.as_deref(),
            &body.subject,
            data,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(EventBody::from(&e))))
}
