//! Gaia's HTTP server: the REST API under `/api/v1`, the live event stream, the OpenAPI
//! document, health endpoints and the background workers of `gaia serve`.
//!
//! [`serve`] takes a bound listener and a shutdown future, so tests bind port 0 and stop the
//! server when they are done.

pub mod auth;
pub mod conn;
pub mod dashboard;
pub mod dashboard_backlog;
pub mod doc;
pub mod extract;
pub mod mcp;
pub mod mcp_doc;
pub mod mcp_origin;
pub mod problem;
pub mod refusals;
pub mod routes;
pub mod session;
pub mod sse;
pub mod telegram_hook;
pub mod ticket;
pub mod wire;
pub mod workers;

// The runtime's parts, under the paths the server has always offered them.
pub use gaia_runtime::{Runtime, RuntimeOptions, exec, hub, senders, telegram};

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gaia_core::Gaia;
use gaia_core::tokens::hash;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::problem::ApiError;

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The schema version `/readyz` expects.
    pub schema_version: i64,
    /// Lease length when a request names none.
    pub default_ttl: Duration,
    /// Largest request body.
    pub body_limit: usize,
    /// Longest a request (other than the stream and long-polls) may take.
    pub request_timeout: Duration,
    /// Longest a client may take to send a request's headers, counted from when the
    /// connection opened or the request's first byte arrived; then the connection is closed.
    pub header_read_timeout: Duration,
    /// Longest a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Most connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Connections accepted beyond `max_connections` for `/healthz` and `/readyz` only, so
    /// that health checks still answer when the server is full.
    pub connection_reserve: usize,
    /// Heartbeat comment interval on the stream.
    pub heartbeat: Duration,
    /// How long shutdown waits for workers and streams.
    pub drain_timeout: Duration,
    /// How the runtime's workers behave (polling, reaping, execution, requeue, alerts).
    pub runtime: gaia_runtime::RuntimeOptions,
    /// The tasks every new todolist starts with (a created story's first list, and each list
    /// that replaces an archived one).
    pub backlog_template: gaia_core::backlog::Template,
    /// How long the MCP approval tools on `/mcp` wait, and how often they report progress.
    pub mcp_waits: gaia_mcp::Waits,
    /// Origins `/mcp` accepts besides this server's own (see `mcp_origin`), parsed.
    pub mcp_allowed_origins: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            schema_version: 0,
            default_ttl: gaia_core::claims::DEFAULT_TTL,
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            connection_reserve: 16,
            heartbeat: Duration::from_secs(15),
            drain_timeout: Duration::from_secs(10),
            runtime: gaia_runtime::RuntimeOptions::default(),
            backlog_template: gaia_core::backlog::Template::default(),
            mcp_waits: gaia_mcp::Waits::default(),
            mcp_allowed_origins: Vec::new(),
        }
    }
}

/// What every handler shares: the runtime (service, hub, shutdown, senders, Telegram listener;
/// its fields read through `Deref`) and what only HTTP needs.
#[derive(Debug, Clone)]
pub struct AppState {
    pub runtime: gaia_runtime::Runtime,
    pub opts: Arc<ServerOptions>,
    /// SHA-256 of the configured admin token (`MONITOR_ADMIN_TOKEN`), when one is configured.
    pub admin_token_hash: Option<String>,
    /// Signs and checks stream tickets; shared by every node through the store.
    pub tickets: Option<ticket::TicketKey>,
    /// Signs and checks dashboard sessions; derived from the same shared secret.
    pub sessions: Option<session::SessionKey>,
    /// Bounds how many refusals are audited one by one (see `refusals`).
    pub refusals: Arc<refusals::RefusalGate>,
    /// MCP tool calls running over `/mcp`, for cancellations (see `mcp`).
    pub mcp_calls: Arc<gaia_mcp::InFlight>,
}

impl std::ops::Deref for AppState {
    type Target = gaia_runtime::Runtime;

    fn deref(&self) -> &gaia_runtime::Runtime {
        &self.runtime
    }
}

impl AppState {
    /// Wires the service to a new hub: this node's own commits wake streams at once.
    pub async fn new(
        gaia: Gaia,
        opts: ServerOptions,
        admin_token: Option<&str>,
    ) -> Result<Self, gaia_core::StoreError> {
        let secret = gaia
            .store()
            .setting_get_or_init(
                "stream_ticket_secret",
                &gaia_core::tokens::generate(gaia_core::tokens::Role::Admin),
            )
            .await?;
        let runtime = gaia_runtime::Runtime::new(gaia, opts.runtime.clone()).await?;
        Ok(Self {
            runtime,
            opts: Arc::new(opts),
            admin_token_hash: admin_token.map(hash),
            tickets: ticket::TicketKey::derive(&secret),
            sessions: session::SessionKey::derive(&secret),
            refusals: Arc::default(),
            mcp_calls: Arc::default(),
        })
    }

    /// Listens to Telegram for decisions from `approvers` (see [`gaia_runtime::Runtime::with_telegram`]).
    pub fn with_telegram(
        mut self,
        bot: gaia_telegram::BotClient,
        approvers: Vec<i64>,
        node: String,
    ) -> Self {
        self.runtime = self.runtime.with_telegram(bot, approvers, node);
        self
    }

    /// Takes Telegram's updates on a webhook route instead of polling (see
    /// [`gaia_runtime::Runtime::with_telegram_webhook`] and [`telegram_hook`]).
    pub fn with_telegram_webhook(mut self, webhook: gaia_runtime::telegram::Webhook) -> Self {
        self.runtime = self.runtime.with_telegram_webhook(webhook);
        self
    }

    /// Syncs the backlog to GitHub on a schedule (see [`gaia_runtime::Runtime::with_github`]).
    pub fn with_github(mut self, sync: gaia_runtime::github::GithubSync) -> Self {
        self.runtime = self.runtime.with_github(sync);
        self
    }

    /// Sends outbox messages through these senders (see [`gaia_runtime::Runtime::with_senders`]).
    pub fn with_senders(mut self, senders: senders::Senders) -> Self {
        self.runtime = self.runtime.with_senders(senders);
        self
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Gaia", description = "The control plane for AI coding agents with a human in the loop."),
    // Schemas only parameters refer to are not collected from the routes: list them here.
    components(schemas(
        problem::Problem,
        doc::Name,
        doc::Ttl,
        doc::EventType,
        doc::Subject,
        doc::CommandId,
        doc::CommandStatus,
        doc::OutboxStatus,
        doc::NewCommandSpec,
        doc::WaitTimeout,
        doc::Slug,
        doc::Label,
        doc::Title,
        doc::Text,
        routes::backlog::wire::StoryStatusBody,
        routes::backlog::wire::FollowupStatusBody,
        mcp_doc::JsonRpcMessage
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API routes together with their OpenAPI description: a route cannot exist without
/// being documented, because both come from the same registration.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::health::healthz))
        .routes(routes!(routes::health::readyz))
        .routes(routes!(routes::claims::list))
        .routes(routes!(routes::claims::acquire))
        .routes(routes!(routes::claims::refresh))
        .routes(routes!(routes::claims::release))
        .routes(routes!(routes::claims::inspect))
        .routes(routes!(routes::events::list, routes::events::emit))
        .routes(routes!(routes::events::head))
        .routes(routes!(sse::stream))
        .routes(routes!(sse::ticket))
        .routes(routes!(routes::audit::tail))
        .routes(routes!(routes::audit::verify))
        .routes(routes!(routes::tokens::list, routes::tokens::create))
        .routes(routes!(routes::tokens::revoke))
        .routes(routes!(routes::tokens::whoami))
        .routes(routes!(routes::commands::list, routes::commands::request))
        .routes(routes!(routes::commands::show))
        .routes(routes!(routes::commands::approve))
        .routes(routes!(routes::commands::deny))
        .routes(routes!(routes::commands::allow_test))
        .routes(routes!(routes::commands::cancel))
        .routes(routes!(routes::commands::execute))
        .routes(routes!(routes::commands::wait))
        .routes(routes!(routes::commands::run))
        .routes(routes!(routes::commands::ran))
        .routes(routes!(routes::github::state))
        .routes(routes!(routes::metrics::prometheus))
        .routes(routes!(routes::metrics::json))
        .routes(routes!(routes::queue::list))
        .routes(routes!(routes::queue::requeue))
        .routes(routes!(routes::queue::auto_requeue))
        .routes(routes!(
            routes::backlog::stories::list_stories,
            routes::backlog::stories::create_story
        ))
        .routes(routes!(
            routes::backlog::stories::show_story,
            routes::backlog::stories::edit_story
        ))
        .routes(routes!(routes::backlog::stories::close_story))
        .routes(routes!(routes::backlog::stories::reopen_story))
        .routes(routes!(routes::backlog::stories::archive_list))
        .routes(routes!(routes::backlog::stories::new_list))
        .routes(routes!(routes::backlog::stories::finalize_list))
        .routes(routes!(routes::backlog::stories::validate))
        .routes(routes!(
            routes::backlog::tasks::list_tasks,
            routes::backlog::tasks::add_task
        ))
        .routes(routes!(
            routes::backlog::tasks::show_task,
            routes::backlog::tasks::edit_task
        ))
        .routes(routes!(routes::backlog::tasks::start_task))
        .routes(routes!(routes::backlog::tasks::done_task))
        .routes(routes!(routes::backlog::tasks::block_task))
        .routes(routes!(routes::backlog::tasks::unblock_task))
        .routes(routes!(routes::backlog::tasks::move_task))
        .routes(routes!(routes::backlog::ready::list_ready))
        .routes(routes!(routes::backlog::ready::take))
        .routes(routes!(
            routes::backlog::followups::list_followups,
            routes::backlog::followups::collect_followup
        ))
        .routes(routes!(routes::backlog::followups::accept_followup))
        .routes(routes!(routes::backlog::followups::reject_followup))
        .split_for_parts()
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api();
    doc.paths.paths.insert(
        "/api/v1/openapi.json".into(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .summary(Some("This document"))
                .tag("meta")
                // Public, like the health endpoints: an empty requirement means no token.
                .security(utoipa::openapi::security::SecurityRequirement::default())
                .responses(
                    utoipa::openapi::ResponsesBuilder::new()
                        .response(
                            "200",
                            utoipa::openapi::ResponseBuilder::new()
                                .description("The OpenAPI document")
                                .content(
                                    "application/json",
                                    utoipa::openapi::ContentBuilder::new().build(),
                                ),
                        )
                        .responses_from_into_responses::<doc::Unavailable>(),
                ),
        ),
    );
    doc.paths
        .paths
        .insert(mcp::MCP_PATH.into(), mcp_doc::path_item());
    unique_operation_ids(&mut doc);
    doc
}

/// Every operation of the document, mutably.
fn operations_mut(
    doc: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

/// OpenAPI requires operation ids to be unique, and utoipa names each operation after its
/// handler: a name that several handlers share (`list`) becomes `TAG_NAME` (`claims_list`).
fn unique_operation_ids(doc: &mut utoipa::openapi::OpenApi) {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for op in operations_mut(doc) {
        if let Some(id) = &op.operation_id {
            *seen.entry(id.clone()).or_default() += 1;
        }
    }
    for op in operations_mut(doc) {
        let tag = op.tags.as_ref().and_then(|t| t.first());
        let (Some(id), Some(tag)) = (op.operation_id.as_mut(), tag) else {
            continue;
        };
        if seen.get(id.as_str()).is_some_and(|n| *n > 1) {
            *id = format!("{tag}_{id}");
        }
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let (api, _) = api();
    // Serialised once: the handler only clones a shared buffer.
    let doc = axum::body::Bytes::from(serde_json::to_vec(&openapi()).unwrap_or_default());
    let timeout = state.opts.request_timeout;
    api.merge(dashboard::routes())
        .merge(mcp::routes())
        .merge(telegram_hook::routes(&state))
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc,
                    )
                }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such resource") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this resource does not accept that method",
            )
        })
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| request_timeout(req, next, timeout),
        ))
        .layer(axum::extract::DefaultBodyLimit::max(state.opts.body_limit))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// The long-poll route, bounded by its own documented maximum instead of `request_timeout`.
pub const WAIT_ROUTE: &str = "/api/v1/commands/{id}/wait";

/// How long a request may take: the stream is meant to stay open (it ends on shutdown); a
/// long-poll may wait its documented maximum ([`doc::MAX_WAIT`]) and then still needs the time
/// of an ordinary request to answer; everything else gets `general`.
fn time_limit(route: Option<&str>, general: Duration) -> Option<Duration> {
    match route {
        Some(sse::STREAM_PATH) => None,
        Some(WAIT_ROUTE) | Some(mcp::MCP_PATH) => Some(doc::MAX_WAIT + general),
        _ => Some(general),
    }
}

/// Bounds request time by [`time_limit`].
async fn request_timeout(req: Request, next: Next, timeout: Duration) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let Some(limit) = time_limit(route, timeout) else {
        return next.run(req).await;
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long",
        )
        .into_response(),
    }
}

/// Logs method, route and status. Never the query string: it may carry `?token=`.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16();
    let ms = started.elapsed().as_millis();
    if status >= 500 {
        tracing::error!(%method, route, status, ms, "request");
    } else {
        tracing::info!(%method, route, status, ms, "request");
    }
    res
}

/// Serves until `shutdown` completes, then stops accepting, ends streams and drains open
/// requests and workers within `opts.drain_timeout` each.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cancel = state.shutdown.clone();
    let workers = workers::spawn(&state);
    let app = router(state.clone());
    let opts = &state.opts;
    let limits = conn::Limits {
        header_read_timeout: opts.header_read_timeout,
        idle_timeout: opts.idle_timeout,
        max_connections: opts.max_connections.max(1),
        connection_reserve: opts.connection_reserve,
    };
    let stop = cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => {}
            () = stop.cancelled() => {}
        }
        // Streams and long-polls end when the token is cancelled, so open connections finish.
        stop.cancel();
    });
    let drain = opts.drain_timeout;
    conn::run(listener, app, limits, cancel.clone(), drain).await;
    cancel.cancel();
    if tokio::time::timeout(drain, workers.join()).await.is_err() {
        tracing::warn!("workers did not stop within {drain:?}");
    }
    Ok(())
}
