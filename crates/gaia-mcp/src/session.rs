//! The protocol: the `initialize` handshake with version negotiation, `ping`, `tools/list`
//! and `tools/call`. Every other method is answered with -32601 at once. A transport hands
//! each request to [`Session::request`] with a [`Progress`] for its notifications.

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::call::{ToolError, ToolResult, Tools};
use crate::jsonrpc::{self, INVALID_PARAMS, METHOD_NOT_FOUND, RpcError};
use crate::tools;

/// Protocol revisions spoken, newest first. A client asking for one of them gets it; any
/// other request is answered with the newest, which the client may refuse.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Where a request's progress notifications go, when its caller asked for them with a
/// `progressToken`.
#[derive(Debug, Clone)]
pub struct Progress {
    token: Option<Value>,
    out: mpsc::UnboundedSender<Value>,
}

impl Progress {
    pub fn new(params: &Value, out: mpsc::UnboundedSender<Value>) -> Self {
        let token = params
            .get("_meta")
            .and_then(|m| m.get("progressToken"))
            .filter(|t| t.is_string() || t.is_number())
            .cloned();
        Self { token, out }
    }

    /// Sends `notifications/progress` (nothing when no token was given).
    pub fn send(&self, progress: f64, total: Option<f64>, message: &str) {
        let Some(token) = &self.token else { return };
        let mut params =
            json!({ "progressToken": token, "progress": progress, "message": message });
        if let (Some(t), Some(obj)) = (total, params.as_object_mut()) {
            obj.insert("total".into(), json!(t));
        }
        // A closed channel means the transport is gone; the call is about to be dropped.
        let _ = self
            .out
            .send(jsonrpc::notification("notifications/progress", params));
    }
}

/// One client's session over any transport.
#[derive(Debug, Clone)]
pub struct Session {
    tools: Tools,
}

impl Session {
    pub fn new(tools: Tools) -> Self {
        Self { tools }
    }

    /// Answers one request: its JSON-RPC response.
    pub async fn respond(
        &self,
        id: Value,
        method: &str,
        params: Value,
        progress: Progress,
    ) -> Value {
        match self.request(method, params, progress).await {
            Ok(result) => jsonrpc::result(id, result),
            Err(e) => jsonrpc::error(id, &e),
        }
    }

    /// The result of one request, or its protocol error.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        progress: Progress,
    ) -> Result<Value, RpcError> {
        match method {
            "initialize" => Ok(initialize(&params)),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({ "tools": tools::list() })),
            "tools/call" => self.call(params, progress).await,
            _ => Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("method not found: {method}"),
            )),
        }
    }

    async fn call(&self, params: Value, progress: Progress) -> Result<Value, RpcError> {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("tools/call needs a tool name"))?;
        let arguments = params.get("arguments").cloned().unwrap_or(Value::Null);
        let t = &self.tools;
        let result: ToolResult = match name {
            "status" => t.status(arguments).await,
            "backlog_ready" => t.backlog_ready(arguments).await,
            "backlog_followup" => t.backlog_followup(arguments).await,
            "claim_acquire" => t.claim_acquire(arguments).await,
            "claim_refresh" => t.claim_refresh(arguments).await,
            "claim_release" => t.claim_release(arguments).await,
            "event_append" => t.event_append(arguments).await,
            "events_recent" => t.events_recent(arguments).await,
            "approval_request" => t.approval_request(arguments, &progress).await,
            "approval_wait" => t.approval_wait(arguments, &progress).await,
            "approval_decide" => t.approval_decide(arguments).await,
            // Claude Code reads the answer as JSON text; it is never an error result.
            "permission_prompt" => Ok(t.permission_prompt(arguments, &progress).await),
            _ => {
                return Err(RpcError::new(
                    INVALID_PARAMS,
                    format!("unknown tool: {name}"),
                ));
            }
        };
        Ok(tool_result(result))
    }
}

/// A tool's answer as a `CallToolResult`: the JSON as text and as structured content, or the
/// error's message with `isError`.
fn tool_result(result: ToolResult) -> Value {
    match result {
        Ok(v) => {
            let text = serde_json::to_string(&v).unwrap_or_else(|_| "null".into());
            let structured = if v.is_object() {
                v
            } else {
                json!({ "result": v })
            };
            json!({
                "content": [{ "type": "text", "text": text }],
                "structuredContent": structured,
                "isError": false,
            })
        }
        Err(e) => {
            if let ToolError::Gaia(gaia_core::error::Error::Store(s)) = &e {
                tracing::warn!(error = %s, "a tool call failed in the store");
            }
            json!({ "content": [{ "type": "text", "text": e.to_string() }], "isError": true })
        }
    }
}

/// The `initialize` result: the client's revision when spoken here, else the newest.
fn initialize(params: &Value) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    let version = asked
        .filter(|v| PROTOCOL_VERSIONS.contains(v))
        .unwrap_or(PROTOCOL_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": "gaia", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "Gaia coordinates agents: claim a todolist before working on it, \
            refresh the claim while you work, release it when done.",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_the_client_revision_or_the_newest() {
        let r = initialize(&json!({ "protocolVersion": "2025-03-26" }));
        assert_eq!(r["protocolVersion"], "2025-03-26");
        let r = initialize(&json!({ "protocolVersion": "2099-01-01" }));
        assert_eq!(r["protocolVersion"], "2025-11-25");
        let r = initialize(&json!({}));
        assert_eq!(r["protocolVersion"], "2025-11-25");
    }

    #[test]
    fn progress_without_token_sends_nothing() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        Progress::new(&json!({}), tx.clone()).send(1.0, None, "x");
        assert!(rx.try_recv().is_err());
        Progress::new(&json!({ "_meta": { "progressToken": "p" } }), tx).send(1.0, Some(5.0), "x");
        let n = rx.try_recv().ok();
        assert_eq!(
            n.as_ref().map(|n| n["params"]["progressToken"].clone()),
            Some(json!("p"))
        );
    }
}
