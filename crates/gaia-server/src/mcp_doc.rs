//! `/mcp` in the OpenAPI document. The endpoint speaks MCP (JSON-RPC 2.0 messages), not the
//! REST API, so the document describes its envelope only: a POST carries one message and is
//! answered as JSON, as an SSE stream (`tools/call`) or with 202 (a notification or a
//! response); GET and DELETE answer 405. What can be refused is documented with the same
//! problem bodies as the API: no or a bad token (401), a missing or foreign `Origin` (403), an
//! unsupported `MCP-Protocol-Version` (400).

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathItemBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{
    Content, ContentBuilder, Ref, Required, ResponseBuilder, Responses, ResponsesBuilder,
};
use utoipa::{PartialSchema, ToSchema};

use crate::doc::{PROBLEM_JSON, ServerErrors, Unauthorized};

/// A JSON-RPC 2.0 message as MCP frames it: a request, a notification or a response.
#[derive(Debug)]
pub struct JsonRpcMessage;

impl PartialSchema for JsonRpcMessage {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One JSON-RPC 2.0 message (MCP, revisions 2025-03-26 to 2025-11-25): a request \
                 (id and method), a notification (method only) or a response (id and result \
                 or error).",
            ))
            .property(
                "jsonrpc",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["2.0"])),
            )
            .property("method", ObjectBuilder::new().schema_type(Type::String))
            .property("params", ObjectBuilder::new().schema_type(Type::Object))
            .examples([serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" })])
            .into()
    }
}

impl ToSchema for JsonRpcMessage {}

fn json_rpc() -> Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("JsonRpcMessage")))
        .build()
}

fn problem() -> Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build()
}

/// 403 (the Origin) and 400 (a message that is not JSON-RPC, or a protocol version not
/// spoken), shared by every method.
fn refusals() -> ResponsesBuilder {
    ResponsesBuilder::new()
        .response(
            "400",
            ResponseBuilder::new()
                .description(
                    "Not a JSON-RPC message (a JSON-RPC error), or an unsupported \
                     MCP-Protocol-Version (a problem)",
                )
                .content("application/json", json_rpc())
                .content(PROBLEM_JSON, problem()),
        )
        .response(
            "403",
            ResponseBuilder::new()
                .description(
                    "No Origin header, or one that is neither this server's nor one of \
                     mcp.allowed_origins (audited)",
                )
                .content(PROBLEM_JSON, problem()),
        )
        .responses_from_into_responses::<Unauthorized>()
        .responses_from_into_responses::<ServerErrors>()
}

fn post_responses() -> Responses {
    refusals()
        .response(
            "413",
            ResponseBuilder::new()
                .description("The body is larger than the server's limit")
                .content(PROBLEM_JSON, problem()),
        )
        .response(
            "200",
            ResponseBuilder::new()
                .description(
                    "The response: JSON, or for tools/call an SSE stream of progress \
                     notifications ending with the response. initialize sets Mcp-Session-Id.",
                )
                .content("application/json", json_rpc())
                .content(
                    "text/event-stream",
                    ContentBuilder::new().schema(Some(String::schema())).build(),
                )
                .header(
                    "Mcp-Session-Id",
                    HeaderBuilder::new().schema(String::schema()).build(),
                ),
        )
        .response(
            "202",
            ResponseBuilder::new().description("A notification or a response, taken"),
        )
        .build()
}

fn no_stream_responses() -> Responses {
    refusals()
        .response(
            "405",
            ResponseBuilder::new()
                .description("Only POST is offered: no server-initiated stream, no session to end")
                .content(PROBLEM_JSON, problem())
                .header(
                    "Allow",
                    HeaderBuilder::new().schema(String::schema()).build(),
                ),
        )
        .build()
}

fn header(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(String::schema()))
        .build()
}

/// The `/mcp` path item.
pub fn path_item() -> PathItem {
    let origin = header(
        "Origin",
        "This server's origin, or one of mcp.allowed_origins; required, a request without \
         it is refused",
    );
    let version = header("MCP-Protocol-Version", "The MCP revision the client speaks");
    let session = header("Mcp-Session-Id", "The id initialize assigned");
    let op = |summary: &str, id: &str, responses: Responses| {
        OperationBuilder::new()
            .summary(Some(summary))
            .operation_id(Some(id))
            .tag("mcp")
            .parameter(origin.clone())
            .parameter(version.clone())
            .parameter(session.clone())
            .responses(responses)
    };
    let body = RequestBodyBuilder::new()
        .description(Some("One JSON-RPC message"))
        .content("application/json", json_rpc())
        .required(Some(Required::True))
        .build();
    PathItemBuilder::new()
        .operation(
            HttpMethod::Post,
            op("Send one MCP message", "mcp_post", post_responses()).request_body(Some(body)),
        )
        .operation(
            HttpMethod::Get,
            op("Not offered (405)", "mcp_get", no_stream_responses()),
        )
        .operation(
            HttpMethod::Delete,
            op("Not offered (405)", "mcp_delete", no_stream_responses()),
        )
        .build()
}
