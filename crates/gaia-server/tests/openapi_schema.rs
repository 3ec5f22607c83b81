//! The OpenAPI document against the conventions tools such as schemathesis rely on: every
//! operation documents its errors as `application/problem+json`, only the health endpoints, the
//! Prometheus metrics and the document itself are public, and every parameter is documented where it is read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

/// Public on purpose: supervisors, scrapers and clients read these without a token.
const PUBLIC: [&str; 4] = ["/healthz", "/readyz", "/api/v1/openapi.json", "/metrics"];
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn doc() -> Value {
    serde_json::to_value(gaia_server::openapi()).unwrap()
}

/// (path, method, operation) for every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                ops.push((path.clone(), method.to_owned(), op.clone()));
            }
        }
    }
    assert!(ops.len() > 10, "the document lists too few operations");
    ops
}

fn problem_ref(content: &Value) -> bool {
    content["schema"]["$ref"] == "#/components/schemas/Problem"
}

#[test]
fn every_operation_documents_problem_json_errors() {
    let doc = doc();
    for (path, method, op) in operations(&doc) {
        let responses = op["responses"].as_object().expect("responses");
        let mut problems = 0;
        for (status, response) in responses {
            let Some(content) = response.get("content").and_then(Value::as_object) else {
                continue;
            };
            for (media_type, body) in content {
                // A problem document is only ever sent as problem JSON.
                if problem_ref(body) {
                    assert_eq!(
                        media_type, "application/problem+json",
                        "{method} {path} {status}: Problem documented as {media_type}"
                    );
                }
                if media_type == "application/problem+json" {
                    assert!(
                        problem_ref(body),
                        "{method} {path} {status}: problem JSON without the Problem schema"
                    );
                    assert!(
                        status.starts_with('4') || status.starts_with('5'),
                        "{method} {path}: problem JSON under {status}"
                    );
                    problems += 1;
                }
            }
        }
        assert!(
            problems > 0,
            "{method} {path} documents no application/problem+json error response"
        );
        // A status is documented by itself or by its range.
        let documents = |status: &str| {
            responses.contains_key(status) || responses.contains_key(&format!("{}XX", &status[..1]))
        };
        if !PUBLIC.contains(&path.as_str()) {
            assert!(
                documents("401"),
                "{method} {path} needs a token but does not document 401"
            );
        }
        // /mcp answers a message it cannot take with a JSON-RPC error (400), as MCP says,
        // whatever the content type, so it has no 415 or 422.
        let body_errors: &[&str] = if path == "/mcp" {
            &["400", "413"]
        } else {
            &["400", "413", "415", "422"]
        };
        if op.get("requestBody").is_some() {
            for &status in body_errors {
                assert!(
                    documents(status),
                    "{method} {path} reads a JSON body but does not document {status}"
                );
            }
        }
    }
}

#[test]
fn only_health_and_the_document_are_public() {
    let doc = doc();
    assert_eq!(
        doc["security"],
        serde_json::json!([{ "bearer": [] }]),
        "bearer is the default requirement"
    );
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    for (path, method, op) in operations(&doc) {
        let security = op.get("security");
        if PUBLIC.contains(&path.as_str()) {
            assert_eq!(
                security,
                Some(&serde_json::json!([{}])),
                "{method} {path} is public: it needs an empty security requirement"
            );
        } else {
            // Absent means the document's default, bearer; an override must still be bearer.
            if let Some(s) = security {
                assert_eq!(
                    s,
                    &serde_json::json!([{ "bearer": [] }]),
                    "{method} {path} must require a bearer token"
                );
            }
        }
    }
    for public in PUBLIC {
        assert!(
            doc["paths"].get(public).is_some(),
            "{public} is missing from the document"
        );
    }
}

#[test]
fn parameters_are_documented_where_they_are_read() {
    let doc = doc();
    for (path, method, op) in operations(&doc) {
        let Some(params) = op.get("parameters").and_then(Value::as_array) else {
            continue;
        };
        for p in params {
            let name = p["name"].as_str().unwrap();
            let placeholder = format!("{{{name}}}");
            match p["in"].as_str().unwrap() {
                "path" => assert!(
                    path.contains(&placeholder),
                    "{method} {path}: '{name}' is documented in the path but is not in it"
                ),
                "query" | "header" => assert!(
                    !path.contains(&placeholder),
                    "{method} {path}: path parameter '{name}' documented elsewhere"
                ),
                other => panic!("{method} {path}: '{name}' in {other}"),
            }
        }
    }
}

#[test]
fn names_and_limits_carry_the_core_rules() {
    let doc = doc();
    let schemas = &doc["components"]["schemas"];
    let name = &schemas["Name"];
    assert_eq!(name["minLength"], 1);
    assert_eq!(name["maxLength"], gaia_core::names::MAX_NAME_LEN);
    assert!(name["pattern"].as_str().unwrap().contains('/'));
    let event_type = &schemas["EventType"];
    assert_eq!(
        event_type["maxLength"],
        gaia_core::names::MAX_EVENT_TYPE_LEN
    );
    assert_eq!(
        schemas["Subject"]["maxLength"],
        gaia_core::names::MAX_SUBJECT_LEN
    );
    assert_eq!(
        schemas["CreateTokenBody"]["properties"]["name"]["$ref"],
        "#/components/schemas/Name"
    );
    // The backlog's text rules.
    assert_eq!(schemas["Slug"]["maxLength"], gaia_core::names::MAX_NAME_LEN);
    assert_eq!(
        schemas["Title"]["maxLength"],
        gaia_core::backlog::MAX_TITLE_CHARS
    );
    assert_eq!(
        schemas["Text"]["maxLength"],
        gaia_core::backlog::MAX_BODY_BYTES
    );
    assert!(schemas["Label"]["pattern"].as_str().unwrap().contains(','));
    assert_eq!(
        schemas["CreateStoryBody"]["properties"]["slug"]["$ref"],
        "#/components/schemas/Slug"
    );
    assert_eq!(
        schemas["NewTaskBody"]["properties"]["blocked_by"]["maxItems"],
        gaia_core::backlog::MAX_BLOCKED_BY
    );
    let events = &doc["paths"]["/api/v1/events"]["get"]["parameters"];
    let limit = events
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 1000);
}

/// OpenAPI requires unique operation ids; utoipa names operations after their handlers, and
/// several handlers are called `list`.
#[test]
fn operation_ids_are_unique() {
    let doc = doc();
    let mut seen = std::collections::BTreeMap::new();
    for (path, method, op) in operations(&doc) {
        let Some(id) = op["operationId"].as_str() else {
            continue;
        };
        if let Some(other) = seen.insert(id.to_owned(), format!("{method} {path}")) {
            panic!("operationId {id} names both {other} and {method} {path}");
        }
    }
    assert_eq!(seen["claims_list"], "get /api/v1/claims");
}
