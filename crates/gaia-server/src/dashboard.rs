//! The dashboard: one page of hand-written HTML, CSS and JavaScript embedded in the binary
//! (no build step, no CDN, no external fonts), the session endpoints it logs in with, and the
//! Backlog tab's snapshot and triage actions ([`crate::dashboard_backlog`]).
//! These routes are for browsers and stay out of the OpenAPI document.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;

pub const INDEX_HTML: &str = include_str!("../assets/index.html");
pub const APP_CSS: &str = include_str!("../assets/app.css");
pub const APP_JS: &str = include_str!("../assets/app.js");

/// Only this server: scripts, styles and connections all come from it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page weight in bytes (HTML + CSS + JS).
pub fn page_weight() -> usize {
    INDEX_HTML.len() + APP_CSS.len() + APP_JS.len()
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .route("/dashboard/login", post(crate::session::login))
        .route("/dashboard/logout", post(crate::session::logout))
        .route("/dashboard/session", get(crate::session::current))
        .merge(crate::dashboard_backlog::routes())
}

fn asset(body: &'static str, content_type: &'static str, cache: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

async fn index() -> Response {
    let mut res = asset(INDEX_HTML, "text/html; charset=utf-8", "no-cache");
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

async fn css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8", "public, max-age=300")
}

async fn js() -> Response {
    asset(
        APP_JS,
        "text/javascript; charset=utf-8",
        "public, max-age=300",
    )
}
