//! The tool list `tools/list` answers: names, short exact descriptions, input schemas and
//! annotations. Kept small: each description and schema is read by the agent's model.

use serde_json::{Value, json};

/// One tool as `tools/list` shows it.
fn tool(
    name: &str,
    description: &str,
    read_only: bool,
    properties: Value,
    required: &[&str],
) -> Value {
    let annotations = if read_only {
        json!({ "readOnlyHint": true })
    } else {
        json!({ "readOnlyHint": false, "destructiveHint": false })
    };
    json!({
        "name": name,
        "description": description,
        "inputSchema": {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        },
        "annotations": annotations,
    })
}

fn s(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn n(description: &str) -> Value {
    json!({ "type": "integer", "minimum": 0, "description": description })
}

/// Every tool, in the order `tools/list` answers them.
pub fn list() -> Vec<Value> {
    let key = |extra: Value| {
        let mut p = json!({
            "story": s("Story slug"),
            "todolist": s("Todolist name (default: default)"),
            "agent": s("Agent id (default: the caller)"),
            "fingerprint": s("Agent run fingerprint"),
        });
        if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
            p.extend(extra);
        }
        p
    };
    let mut tools = vec![
        tool(
            "status",
            "Who you are to Gaia, live claims and ready-task count.",
            true,
            json!({}),
            &[],
        ),
        tool(
            "backlog_ready",
            "Ready tasks nobody holds; with take=true, takes the first one (claims its todolist).",
            false,
            json!({
                "story": s("Only this story"),
                "limit": n("At most this many (default 20)"),
                "take": { "type": "boolean", "description": "Take the first ready task" },
                "agent": s("Agent id for take (default: the caller)"),
                "ttl": s("Claim lease for take, e.g. 15m"),
            }),
            &[],
        ),
        tool(
            "backlog_followup",
            "Files a follow-up doc for triage (idempotent by path and content).",
            false,
            json!({
                "story": s("Story slug"),
                "path": s("Doc path, its identity"),
                "task": s("Task it came from"),
                "title": s("One-line title"),
                "body": s("Markdown body"),
                "agent": s("Agent id (default: the caller)"),
            }),
            &["story", "path", "task", "title", "body"],
        ),
        tool(
            "claim_acquire",
            "Claims STORY/TODOLIST; outcome acquired, already_held, taken_over or held_by_other.",
            false,
            key(json!({ "operator": s("Operator acted for"), "ttl": s("Lease, e.g. 15m") })),
            &["story"],
        ),
        tool(
            "claim_refresh",
            "Extends your live claim; outcome refreshed or not_held.",
            false,
            key(json!({ "ttl": s("New lease, e.g. 15m") })),
            &["story"],
        ),
        tool(
            "claim_release",
            "Releases your claim; outcome released or not_held.",
            false,
            key(json!({})),
            &["story"],
        ),
        tool(
            "event_append",
            "Appends an audited event of your own (type like chat.message).",
            false,
            json!({
                "type": s("Event type, dotted lowercase"),
                "subject": s("What it is about"),
                "data": { "type": "object", "description": "JSON payload" },
            }),
            &["type", "subject"],
        ),
        tool(
            "events_recent",
            "Recent events, oldest first; since=SEQ for those after it.",
            true,
            json!({
                "since": n("Only events after this seq"),
                "limit": n("At most this many (default 20, max 200)"),
                "type": s("Type, or a prefix: claim matches claim.*"),
                "subject": s("Only this subject"),
            }),
            &[],
        ),
        tool(
            "approval_request",
            "Asks a person to approve a command; waits up to ~50s, else returns pending with the id.",
            false,
            json!({
                "command": s("Shell command line"),
                "argv": { "type": "array", "items": { "type": "string" }, "description": "Or: program and arguments" },
                "cwd": s("Working directory"),
                "reason": s("Why, shown to the approver"),
                "story": s("Story slug"),
                "todolist": s("Todolist name"),
                "agent": s("Agent acted for"),
                "expires": s("Undecided request expires after, e.g. 30m"),
            }),
            &[],
        ),
        tool(
            "approval_wait",
            "Waits up to ~50s for the decision on an approval request.",
            true,
            json!({ "id": s("Request id"), "timeout_s": n("Seconds to wait (max 50)") }),
            &["id"],
        ),
        tool(
            "approval_decide",
            "Operator only: approves or denies a pending approval request.",
            false,
            json!({
                "id": s("Request id"),
                "decision": { "type": "string", "enum": ["approve", "deny"] },
                "reason": s("Why, recorded with the decision"),
            }),
            &["id", "decision"],
        ),
        tool(
            "permission_prompt",
            "Claude Code permission prompt: a Gaia approver decides; deny when undecided.",
            false,
            json!({
                "tool_name": s("Tool Claude Code wants to use"),
                "input": { "type": "object", "description": "The tool's input" },
                "tool_use_id": s("Claude Code's tool use id"),
            }),
            &["tool_name", "input"],
        ),
    ];
    // Claude Code may send more than it documents; the prompt must still answer.
    if let Some(p) = tools.last_mut().and_then(|t| t.get_mut("inputSchema")) {
        p["additionalProperties"] = json!(true);
    }
    tools
}
