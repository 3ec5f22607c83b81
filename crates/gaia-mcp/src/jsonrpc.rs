//! JSON-RPC 2.0 messages as MCP frames them: requests, notifications, results and errors.

use serde_json::{Value, json};

/// The message is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// The message is JSON but not a JSON-RPC request or notification.
pub const INVALID_REQUEST: i64 = -32600;
/// No such method: answered at once, so a newer client falls back instead of waiting.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// The parameters of a protocol method (not of a tool) are wrong, or the tool is unknown.
pub const INVALID_PARAMS: i64 = -32602;
/// Gaia failed to answer.
pub const INTERNAL_ERROR: i64 = -32603;

/// A protocol-level error: the JSON-RPC `error` member.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }
}

/// One incoming message, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    /// A response to something the server sent (it sends no requests): ignored.
    Response,
    /// Not a valid message; answered with this error (and the id when one was readable).
    Invalid {
        id: Value,
        error: RpcError,
    },
}

/// Classifies one parsed JSON value.
pub fn classify(v: Value) -> Incoming {
    let Value::Object(mut obj) = v else {
        return Incoming::Invalid {
            id: Value::Null,
            error: RpcError::new(INVALID_REQUEST, "a message is one JSON object"),
        };
    };
    let id = obj.remove("id");
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Incoming::Invalid {
            id: id.unwrap_or(Value::Null),
            error: RpcError::new(INVALID_REQUEST, "jsonrpc must be \"2.0\""),
        };
    }
    let params = obj.remove("params").unwrap_or(Value::Null);
    match (obj.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) if id.is_string() || id.is_number() => {
            Incoming::Request { id, method, params }
        }
        (Some(Value::String(method)), None) => Incoming::Notification { method, params },
        (None, Some(_)) if obj.contains_key("result") || obj.contains_key("error") => {
            Incoming::Response
        }
        (_, id) => Incoming::Invalid {
            id: id.unwrap_or(Value::Null),
            error: RpcError::new(
                INVALID_REQUEST,
                "a request needs a method and a string or number id",
            ),
        },
    }
}

/// A success response.
pub fn result(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// An error response.
pub fn error(id: Value, e: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": e.code, "message": e.message } })
}

/// A notification from the server.
pub fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_requests_notifications_and_junk() {
        let r = classify(json!({"jsonrpc":"2.0","id":1,"method":"ping"}));
        assert!(matches!(r, Incoming::Request { ref method, .. } if method == "ping"));
        let n = classify(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        assert!(matches!(n, Incoming::Notification { .. }));
        assert_eq!(
            classify(json!({"jsonrpc":"2.0","id":1,"result":{}})),
            Incoming::Response
        );
        let bad = classify(json!({"id":3,"method":"x"}));
        assert!(matches!(bad, Incoming::Invalid { ref id, .. } if *id == json!(3)));
        assert!(matches!(classify(json!([1])), Incoming::Invalid { .. }));
        let null_id = classify(json!({"jsonrpc":"2.0","id":null,"method":"x"}));
        assert!(matches!(null_id, Incoming::Invalid { .. }));
    }
}
