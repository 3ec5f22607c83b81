//! `/mcp`: Gaia's MCP server over Streamable HTTP. One endpoint: a POST carries one JSON-RPC
//! message; a request is answered as JSON, except `tools/call`, answered as an SSE stream so
//! that progress notifications flow while an approval waits (the stream ends with the
//! response; closing it drops the call). There is no server-initiated stream and no session:
//! GET and DELETE answer 405.
//!
//! The token goes in a header (`Authorization: Bearer`, as for the API; neither the dashboard
//! cookie nor `?token=` is taken here), and a missing `Origin`, or one that is neither this
//! server's nor configured, is refused with 403 and audited, so a web page cannot drive a
//! local server (DNS rebinding; see `mcp_origin`). The tools carry the token's name and role,
//! and claims are held by the token, as through the API.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use gaia_mcp::jsonrpc::{self, Incoming, PARSE_ERROR, RpcError};
use gaia_mcp::{Caller, InFlight, PROTOCOL_VERSIONS, Progress, Session, Tools};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::AppState;
use crate::auth;
use crate::problem::ApiError;

/// The endpoint.
pub const MCP_PATH: &str = "/mcp";

/// The route, for the router.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        MCP_PATH,
        axum::routing::post(post).get(no_stream).delete(no_stream),
    )
}

/// The header naming a client's session, assigned by `initialize`.
const SESSION: &str = "mcp-session-id";

/// A new session id: random, not a credential (the token still authenticates every request).
fn new_session_id() -> String {
    use sha2::{Digest, Sha256};
    let seed = gaia_core::tokens::generate(gaia_core::tokens::Role::Agent);
    hex::encode(&Sha256::digest(seed.as_bytes())[..16])
}

/// GET (a server-initiated stream) and DELETE (ending a session) are not offered.
async fn no_stream(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Err(e) = check(&state, &parts).await {
        return e.into_response();
    }
    (
        [(header::ALLOW, "POST")],
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "this MCP endpoint answers POST only",
        ),
    )
        .into_response()
}

/// The Origin check, then the token: the caller, or the refusal.
async fn check(state: &AppState, parts: &Parts) -> Result<Caller, ApiError> {
    let headers = &parts.headers;
    if let Err(why) = crate::mcp_origin::check(headers, &state.opts.mcp_allowed_origins) {
        let origin = match &why {
            crate::mcp_origin::Refused::Missing => serde_json::Value::Null,
            crate::mcp_origin::Refused::Foreign(o) => json!(o),
        };
        crate::refusals::record(
            state,
            &auth::peer(parts),
            "anonymous",
            "mcp.origin",
            MCP_PATH,
            "forbidden",
            json!({ "method": parts.method.as_str(), "origin": origin, "via": "mcp" }),
        )
        .await;
        return Err(ApiError::forbidden(why.to_string()));
    }
    if let Some(v) = headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        && !PROTOCOL_VERSIONS.contains(&v)
    {
        return Err(ApiError::bad_request(format!(
            "unsupported MCP-Protocol-Version {v}; this server speaks {}",
            PROTOCOL_VERSIONS.join(", ")
        )));
    }
    let Some(token) = auth::presented_token(headers, None) else {
        return Err(ApiError::unauthorized(
            "send a token as 'Authorization: Bearer TOKEN'",
        ));
    };
    match auth::resolve(state, &token).await? {
        Some(c) => Ok(Caller::token(c.name, c.role)),
        None => {
            crate::refusals::record(
                state,
                &auth::peer(parts),
                "anonymous",
                "auth",
                MCP_PATH,
                "unauthorized",
                json!({ "method": parts.method.as_str(), "via": "mcp" }),
            )
            .await;
            Err(ApiError::unauthorized(
                "the token is not valid or was revoked",
            ))
        }
    }
}

async fn post(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let caller = match check(&state, &parts).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let limit = state.opts.body_limit;
    let body: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("the body is larger than {limit} bytes"),
            )
            .into_response();
        }
    };
    let msg = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => jsonrpc::classify(v),
        Err(e) => Incoming::Invalid {
            id: Value::Null,
            error: RpcError::new(PARSE_ERROR, format!("not JSON: {e}")),
        },
    };
    // A cancellation names a request id of the same client: its session when it has one.
    let session_id = parts
        .headers
        .get(SESSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let key = |id: &Value| format!("{}\n{session_id}\n{id}", caller.name);
    let calls = state.mcp_calls.clone();
    match msg {
        Incoming::Invalid { id, error } => (
            StatusCode::BAD_REQUEST,
            axum::Json(jsonrpc::error(id, &error)),
        )
            .into_response(),
        Incoming::Response => StatusCode::ACCEPTED.into_response(),
        Incoming::Notification { method, params } => {
            if method == "notifications/cancelled"
                && let Some(id) = params.get("requestId")
            {
                calls.cancel(&key(id));
            }
            StatusCode::ACCEPTED.into_response()
        }
        Incoming::Request { id, method, params } => {
            let session = Session::new(Tools {
                gaia: state.gaia.clone(),
                caller: caller.clone(),
                default_ttl: state.opts.default_ttl,
                waits: state.opts.mcp_waits,
                refusals: Some(Arc::new(GateAudit(state.clone()))),
            });
            let (tx, rx) = mpsc::unbounded_channel();
            let progress = Progress::new(&params, tx.clone());
            if method != "tools/call" {
                drop(tx);
                let initialize = method == "initialize";
                let answer = session.respond(id, &method, params, progress).await;
                if initialize && answer.get("result").is_some() {
                    return ([(SESSION, new_session_id())], axum::Json(answer)).into_response();
                }
                return axum::Json(answer).into_response();
            }
            let call_key = key(&id);
            let task = calls.spawn(call_key.clone(), async move {
                let answer = session.respond(id, &method, params, progress).await;
                let _ = tx.send(answer);
            });
            // Dropped with the stream: a client that goes away drops its call.
            let guard = DropCall(calls, call_key, task.abort_handle());
            let events = UnboundedReceiverStream::new(rx).map(move |msg| {
                let _ = &guard;
                Ok::<_, Infallible>(Event::default().event("message").data(msg.to_string()))
            });
            Sse::new(events)
                .keep_alive(KeepAlive::default())
                .into_response()
        }
    }
}

/// Audits a tool's refusal as the API audits one, through the server's refusal gate.
#[derive(Debug)]
struct GateAudit(AppState);

impl gaia_mcp::RefusalAudit for GateAudit {
    fn record(
        &self,
        caller: &Caller,
        action: &str,
        details: Value,
    ) -> gaia_mcp::caller::BoxFuture<()> {
        let (state, name, action) = (self.0.clone(), caller.name.clone(), action.to_owned());
        Box::pin(async move {
            let source = format!("token:{name}");
            crate::refusals::record(&state, &source, &name, &action, "", "forbidden", details)
                .await;
        })
    }
}

/// Aborts a call whose stream was dropped before it answered.
struct DropCall(Arc<InFlight>, String, tokio::task::AbortHandle);

impl Drop for DropCall {
    fn drop(&mut self) {
        if !self.2.is_finished() {
            self.0.cancel(&self.1);
        }
    }
}

impl std::fmt::Debug for DropCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DropCall").field(&self.1).finish()
    }
}
