//! What the OpenAPI document says beyond the wire types: the text formats gaia-core validates,
//! as named schemas so each rule is written once, and the problem responses operations give.
//!
//! The formats mirror `gaia_core::names` and `gaia_core::time`: a client that follows the
//! document is never refused for the shape of its input, and one that does not is told why.

use std::collections::BTreeMap;

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{
    ContentBuilder, Ref, RefOr, Response, ResponseBuilder, header::HeaderBuilder,
};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

/// Media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Characters `check_name` refuses anywhere: `/` and control characters (Unicode Cc).
const NAME_BODY: &str = r"[^/\u0000-\u001f\u007f-\u009f]";
/// ... and additionally at either end: what `str::trim` removes (Unicode White_Space).
const NAME_EDGE: &str =
    r"[^/\u0000-\u001f\u007f-\u009f \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// The pattern of a name: see [`gaia_core::names::check_name`].
pub fn name_pattern() -> String {
    format!("^{NAME_EDGE}(?:{NAME_BODY}*{NAME_EDGE})?$")
}

/// Event types: see [`gaia_core::names::check_event_type`].
pub const EVENT_TYPE_PATTERN: &str = r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$";

/// Subjects: any text without control characters; see [`gaia_core::names::check_subject`].
pub const SUBJECT_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*$";

/// Lease lengths in the documented form: units in descending order, each at most once, and a
/// non-zero number of whole seconds or more (claims refuse a ttl under 1s). The digit counts
/// keep the largest total (about 1109 days) under the 3650-day maximum, so every matching value
/// is accepted.
pub const TTL_PATTERN: &str = r"^(?=.*[1-9][0-9]*(?:[dhs]|m(?!s)))(?:[0-9]{1,3}d)?(?:[0-9]{1,4}h)?(?:[0-9]{1,5}m)?(?:[0-9]{1,6}s)?(?:[0-9]{1,9}ms)?$";

/// A story, todolist, agent, operator, fingerprint, actor or token name.
#[derive(Debug)]
pub struct Name;

impl PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "1 to 128 characters; no '/', no control characters, no leading or trailing spaces.",
            ))
            .min_length(Some(1))
            .max_length(Some(gaia_core::names::MAX_NAME_LEN))
            .pattern(Some(name_pattern()))
            .examples(["checkout"])
            .into()
    }
}

impl ToSchema for Name {}

/// The pattern of a story slug: see [`gaia_core::backlog::check_slug`].
pub const SLUG_PATTERN: &str = r"^[A-Za-z0-9._-]+$";

/// A story's slug: the name it is addressed by.
#[derive(Debug)]
pub struct Slug;

impl PartialSchema for Slug {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "1 to 128 letters, digits, '-', '_' and '.', e.g. checkout or S-12.auth",
            ))
            .min_length(Some(1))
            .max_length(Some(gaia_core::names::MAX_NAME_LEN))
            .pattern(Some(SLUG_PATTERN))
            .examples(["checkout"])
            .into()
    }
}

impl ToSchema for Slug {}

/// The pattern of a story label: a name without commas; see
/// [`gaia_core::backlog::check_labels`].
pub fn label_pattern() -> String {
    name_pattern().replace("[^/", "[^/,")
}

/// A story's label.
#[derive(Debug)]
pub struct Label;

impl PartialSchema for Label {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A name (1 to 128 characters; no '/', no control characters, no leading or \
                 trailing spaces) without commas.",
            ))
            .min_length(Some(1))
            .max_length(Some(gaia_core::names::MAX_NAME_LEN))
            .pattern(Some(label_pattern()))
            .examples(["backend"])
            .into()
    }
}

impl ToSchema for Label {}

/// Characters a title refuses anywhere: control characters (Unicode Cc).
const TITLE_BODY: &str = r"[^\u0000-\u001f\u007f-\u009f]";
/// ... and the characters a title needs at least one of: neither control nor white space.
const TITLE_MARK: &str =
    r"[^\u0000-\u001f\u007f-\u009f \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// The pattern of a story or task title: see [`gaia_core::backlog::check_title`].
pub fn title_pattern() -> String {
    format!("^{TITLE_BODY}*{TITLE_MARK}{TITLE_BODY}*$")
}

/// The title of a story or a task.
#[derive(Debug)]
pub struct Title;

impl PartialSchema for Title {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "One line of 1 to 200 characters, not only spaces, no control characters. A \
                 task whose title holds the word FINAL, MANDATORY or FINALIZATION is its \
                 list's final task.",
            ))
            .min_length(Some(1))
            .max_length(Some(gaia_core::backlog::MAX_TITLE_CHARS))
            .pattern(Some(title_pattern()))
            .examples(["Write the login form"])
            .into()
    }
}

impl ToSchema for Title {}

/// The pattern of a description or task body: control characters other than tab and line
/// breaks are refused; see [`gaia_core::backlog::check_body`].
pub const TEXT_PATTERN: &str = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$";

/// A story's description or a task's body (its acceptance criteria).
#[derive(Debug)]
pub struct Text;

impl PartialSchema for Text {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Markdown text of at most 65536 bytes of UTF-8 (so fewer characters when some \
                 take several bytes); tabs and line breaks, but no other control characters.",
            ))
            .max_length(Some(gaia_core::backlog::MAX_BODY_BYTES))
            .pattern(Some(TEXT_PATTERN))
            .examples(["- [ ] the form validates its input"])
            .into()
    }
}

impl ToSchema for Text {}

/// A lease length such as `90s`, `15m`, `2h` or `1h30m`.
#[derive(Debug)]
pub struct Ttl;

impl PartialSchema for Ttl {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A lease length of at least 1s: numbers with units (d, h, m, s, ms), largest \
                 unit first, e.g. 90s, 15m, 2h, 1h30m. The server also accepts other orders, \
                 repeated units and larger numbers, up to 3650d in total.",
            ))
            .pattern(Some(TTL_PATTERN))
            .examples(["15m"])
            .into()
    }
}

impl ToSchema for Ttl {}

/// A dotted lowercase event type such as `chat.message`.
#[derive(Debug)]
pub struct EventType;

impl PartialSchema for EventType {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Dotted lowercase words (a-z, 0-9, '_', '-'), e.g. chat.message; at most 96 bytes.",
            ))
            .min_length(Some(1))
            .max_length(Some(gaia_core::names::MAX_EVENT_TYPE_LEN))
            .pattern(Some(EVENT_TYPE_PATTERN))
            .examples(["chat.message"])
            .into()
    }
}

impl ToSchema for EventType {}

/// What an event is about.
#[derive(Debug)]
pub struct Subject;

impl PartialSchema for Subject {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "What the event is about, e.g. story/checkout; at most 300 characters, no control characters.",
            ))
            .max_length(Some(gaia_core::names::MAX_SUBJECT_LEN))
            .pattern(Some(SUBJECT_PATTERN))
            .into()
    }
}

impl ToSchema for Subject {}

/// A command request's id: see [`gaia_core::commands::parse_id`], which also accepts capitals
/// and surrounding spaces.
#[derive(Debug)]
pub struct CommandId;

impl PartialSchema for CommandId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("Six letters and digits, e.g. k7m2qx"))
            .pattern(Some("^[2-9a-hjkmnp-tv-z]{6}$"))
            .examples(["k7m2qx"])
            .into()
    }
}

impl ToSchema for CommandId {}

/// The state of a command request.
#[derive(Debug)]
pub struct CommandStatus;

impl PartialSchema for CommandStatus {
    fn schema() -> RefOr<Schema> {
        let all = gaia_core::commands::Status::ALL.map(|s| s.as_str());
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(all))
            .into()
    }
}

impl ToSchema for CommandStatus {}

/// The state of an outbox message.
#[derive(Debug)]
pub struct OutboxStatus;

impl PartialSchema for OutboxStatus {
    fn schema() -> RefOr<Schema> {
        use gaia_core::outbox::Status;
        let all = [Status::Pending, Status::Sent, Status::Dead].map(Status::as_str);
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(all))
            .into()
    }
}

impl ToSchema for OutboxStatus {}

/// What to run, as a request gives it: see `gaia_core::commands::CommandSpec::validate`.
#[derive(Debug)]
pub struct NewCommandSpec;

impl PartialSchema for NewCommandSpec {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder};
        let no_nul = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[^\u0000]*$"))
        };
        let argv = ArrayBuilder::new()
            .description(Some(
                "The program and its arguments, run without a shell; at most 128 KiB in all",
            ))
            .min_items(Some(1))
            .prefix_items([no_nul().min_length(Some(1))])
            .items(no_nul());
        let shell = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A shell command line; at most 128 KiB"))
            .pattern(Some(r"^[^\u0000]*[^\s\u0000][^\u0000]*$"));
        let variant = |name: &str, schema: RefOr<Schema>| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(name, schema)
                .required(name)
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                ))
        };
        OneOfBuilder::new()
            .description(Some(r#"{"argv": [...]} or {"shell": "..."}"#))
            .item(variant("argv", argv.into()))
            .item(variant("shell", shell.into()))
            .into()
    }
}

impl ToSchema for NewCommandSpec {}

/// Longest `GET /api/v1/commands/{id}/wait` holds the connection, as [`WaitTimeout`] says.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a wait may hold the connection.
#[derive(Debug)]
pub struct WaitTimeout;

impl PartialSchema for WaitTimeout {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "1s to 60s, e.g. 30s; the server also accepts other durations up to 60s (500ms, 1m)",
            ))
            .pattern(Some("^(?:[1-9]|[1-5][0-9]|60)s$"))
            .examples(["30s"])
            .into()
    }
}

impl ToSchema for WaitTimeout {}

/// One Server-Sent Event of the stream, as OpenAPI 3.1 tools read `text/event-stream`.
#[derive(Debug)]
pub struct StreamEvent;

impl PartialSchema for StreamEvent {
    fn schema() -> RefOr<Schema> {
        let string = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A frame of the stream: an event (id = its seq, data = EventBody as JSON), a \
                 reset (event = reset, data = {reason, oldest_seq}), or the opening retry hint. \
                 Comment lines are heartbeats.",
            ))
            .property(
                "id",
                string("The event's seq; send it back as Last-Event-ID to resume"),
            )
            .property(
                "event",
                string("message (the default) or reset").enum_values(Some(["message", "reset"])),
            )
            .property("data", string("JSON text"))
            .property(
                "retry",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("Milliseconds to wait before reconnecting"))
                    .minimum(Some(0)),
            )
            .into()
    }
}

impl ToSchema for StreamEvent {}

/// A problem response with `description`.
fn problem(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

/// Declares a set of problem responses usable in `#[utoipa::path(responses(...))]`.
macro_rules! problems {
    ($(#[$meta:meta])* $name:ident { $($status:literal => $response:expr),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                BTreeMap::from([$(($status.to_owned(), RefOr::T($response.build()))),+])
            }
        }
    };
}

problems!(
    /// Malformed query, path or field values.
    BadRequest { "400" => problem("Invalid input: the detail says which value and why") }
);
problems!(
    /// No token, or one that is not valid.
    Unauthorized {
        "401" => problem("No valid token: send 'Authorization: Bearer TOKEN'").header(
            "WWW-Authenticate",
            HeaderBuilder::new().schema(String::schema()).build(),
        )
    }
);
problems!(
    /// The token's role does not allow the call.
    Forbidden { "403" => problem("The token's role does not allow this") }
);
problems!(
    /// The named thing does not exist.
    NotFound { "404" => problem("Not found") }
);
problems!(
    /// The state does not allow it: a name already taken, a request already decided.
    Conflict { "409" => problem("Conflicts with the current state; the detail says how") }
);
problems!(
    /// What can go wrong with a JSON request body.
    JsonBody {
        "400" => problem("Malformed JSON, or a field value that is not valid"),
        "413" => problem("The request body is larger than the server's limit"),
        "415" => problem("The body is not sent as Content-Type: application/json"),
        "422" => problem("The JSON does not have the documented shape"),
    }
);
problems!(
    /// The request took too long or the store was busy; retry. Not the client's fault.
    Unavailable {
        "503" => problem("Busy or too slow; retry after the given seconds").header(
            "Retry-After",
            HeaderBuilder::new().schema(i64::schema()).build(),
        )
    }
);
problems!(
    /// What a call that reads or writes the store may answer when the server fails.
    ServerErrors {
        "500" => problem("The server could not complete the request (details are in its log)"),
        "503" => problem("Busy or too slow; retry after the given seconds").header(
            "Retry-After",
            HeaderBuilder::new().schema(i64::schema()).build(),
        ),
    }
);
