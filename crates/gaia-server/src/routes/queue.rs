//! The notification outbox: `GET /api/v1/queue`, the prototype's `POST /admin/requeue` (by id
//! or by index in the dead set, oldest first), and `POST /api/v1/queue/auto-requeue`.

use axum::Json;
use axum::extract::State;
use gaia_core::outbox::Status;
use gaia_core::tokens::Role;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::extract::{ApiJson, ApiQuery, OptionalJson};
use crate::problem::{ApiError, ApiResult, Problem};
use crate::wire::MessageBody;

/// Most dead messages an index can reach.
const DEAD_WINDOW: u32 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// pending, sent or dead
    #[param(value_type = Option<crate::doc::OutboxStatus>)]
    pub status: Option<String>,
    /// 1 to 1000, default 50.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Outbox messages, newest first.
#[utoipa::path(get, path = "/api/v1/queue", tag = "queue", params(QueueQuery),
    responses((status = 200, body = [MessageBody]), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<QueueQuery>,
) -> ApiResult<Json<Vec<MessageBody>>> {
    let status = q.status.as_deref().map(str::parse::<Status>).transpose()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1 to 1000"));
    }
    let list = state.gaia.list_messages(status, limit).await?;
    Ok(Json(list.iter().map(MessageBody::from).collect()))
}

/// Which dead message to requeue: `{"id": N}` or `{"index": N}` (position in the dead set,
/// oldest first, as the prototype's queue admin numbered it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequeueBody {
    pub id: Option<i64>,
    pub index: Option<u32>,
}

/// Exactly one of the two, as the handler requires: ids start at 1.
impl utoipa::PartialSchema for RequeueBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        let variant = |name: &str, description: &str, format: KnownFormat, min: i64, max: i64| {
            let int = ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(format)))
                .description(Some(description))
                .minimum(Some(min))
                .maximum(Some(max));
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(name, int)
                .required(name)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOfBuilder::new()
            .description(Some(r#"{"id": N} or {"index": N}"#))
            .item(variant(
                "id",
                "The message's id",
                KnownFormat::Int64,
                1,
                i64::MAX,
            ))
            .item(variant(
                "index",
                "Position in the dead set, oldest first, from 0",
                KnownFormat::Int32,
                0,
                i64::from(u32::MAX),
            ))
            .into()
    }
}

impl ToSchema for RequeueBody {}

/// Requeue one dead message (operator).
#[utoipa::path(post, path = "/admin/requeue", tag = "queue", request_body = RequeueBody,
    responses((status = 200, body = MessageBody), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn requeue(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RequeueBody>,
) -> ApiResult<Json<MessageBody>> {
    caller
        .require(&state, Role::Operator, "notify.requeue")
        .await?;
    let id = match (body.id, body.index) {
        (Some(id), None) if id > 0 => id,
        (None, Some(index)) => {
            let mut dead = state
                .gaia
                .list_messages(Some(Status::Dead), DEAD_WINDOW)
                .await?;
            dead.reverse();
            dead.get(index as usize)
                .map(|m| m.id)
                .ok_or_else(|| ApiError::not_found(format!("the dead set has no index {index}")))?
        }
        _ => {
            return Err(ApiError::bad_request(
                "give either a positive id or an index",
            ));
        }
    };
    let m = state.gaia.requeue_message(id, &caller.name).await?;
    Ok(Json(MessageBody::from(&m)))
}

/// Whether to only preview.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoRequeueBody {
    #[serde(default)]
    pub dry_run: bool,
}

/// Requeue eligible dead messages under the server's AUTO_REQUEUE_* policy (operator).
#[utoipa::path(post, path = "/api/v1/queue/auto-requeue", tag = "queue", request_body = Option<AutoRequeueBody>,
    responses((status = 200, body = [MessageBody]), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn auto_requeue(
    State(state): State<AppState>,
    caller: Caller,
    OptionalJson(body): OptionalJson<AutoRequeueBody>,
) -> ApiResult<Json<Vec<MessageBody>>> {
    caller
        .require(&state, Role::Operator, "notify.auto_requeue")
        .await?;
    let list = state
        .gaia
        .auto_requeue_messages(&state.opts.runtime.auto_requeue, body.dry_run, &caller.name)
        .await?;
    Ok(Json(list.iter().map(MessageBody::from).collect()))
}
