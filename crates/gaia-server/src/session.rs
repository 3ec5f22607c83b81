//! Browser sessions for the dashboard: a token is entered once at `POST /dashboard/login`
//! and traded for an `HttpOnly`, `SameSite=Strict` cookie, so no token is ever kept by the
//! page or put into a URL.
//!
//! The cookie value is `s2|HEX(NAME)|ROLE|EXPIRY|SOURCE|MAC`, where MAC is HMAC-SHA256 under
//! a key derived from the same shared secret as stream tickets (with its own label), so a
//! session opened on one node is valid on every other. SOURCE tells the configured admin
//! token (`a-FINGERPRINT`) from a stored token (`t`): a stored token's session ends when the
//! token is revoked, an admin session when the configured admin token changes.
//!
//! State-changing requests authenticated by the cookie must also carry `X-CSRF-Token` (an
//! HMAC of the cookie value, handed to the page at login: a double-submit token another site
//! cannot read) and an `Origin` (or `Referer`) naming this server.

use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gaia_core::tokens::Role;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::auth::Caller;
use crate::extract::ApiJson;
use crate::problem::{ApiError, ApiResult};

/// The cookie's name.
pub const COOKIE: &str = "gaia_session";
/// The header a state-changing request authenticated by the cookie carries.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub const SESSION_TTL_SECS: i64 = 12 * 3600;

type HmacSha256 = Hmac<Sha256>;

/// The key sessions are signed with.
#[derive(Clone)]
pub struct SessionKey(HmacSha256);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub caller: Caller,
    pub expires: i64,
    /// The configured admin token's fingerprint, when that token opened it.
    pub fingerprint: Option<String>,
}

impl SessionKey {
    /// Derives the key from the deployment's shared secret, under a label of its own so a
    /// session value can never pass as a stream ticket or the other way round.
    pub fn derive(shared_secret: &str) -> Option<Self> {
        let mut h = Sha256::new();
        h.update(b"gaia dashboard session v1\0");
        h.update(shared_secret.as_bytes());
        HmacSha256::new_from_slice(&h.finalize()).ok().map(Self)
    }

    fn mac(&self, label: &str, payload: &str) -> Vec<u8> {
        let mut m = self.0.clone();
        m.update(label.as_bytes());
        m.update(b"\0");
        m.update(payload.as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    /// A new session value for `caller`, valid for [`SESSION_TTL_SECS`] from `now`;
    /// `fingerprint` is the configured admin token's when that token authenticated the caller.
    pub fn issue(&self, caller: &Caller, fingerprint: Option<&str>, now: DateTime<Utc>) -> String {
        let expires = now.timestamp() + SESSION_TTL_SECS;
        let payload = format!(
            "s2|{}|{}|{}|{}",
            hex::encode(caller.name.as_bytes()),
            caller.role.as_str(),
            expires,
            crate::ticket::source_part(caller.source, fingerprint),
        );
        let mac = hex::encode(self.mac("session", &payload));
        format!("{payload}|{mac}")
    }

    /// The session a value stands for, if it is genuine and not expired.
    pub fn verify(&self, value: &str, now: DateTime<Utc>) -> Option<Session> {
        let (payload, mac) = value.rsplit_once('|')?;
        let mac = hex::decode(mac).ok()?;
        if !bool::from(self.mac("session", payload).ct_eq(&mac)) {
            return None;
        }
        let mut parts = payload.split('|');
        let (version, name, role, expires, source) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if version != "s2" || parts.next().is_some() {
            return None;
        }
        let expires = expires.parse::<i64>().ok()?;
        if expires <= now.timestamp() {
            return None;
        }
        let (source, fingerprint) = crate::ticket::parse_source(source)?;
        Some(Session {
            caller: Caller {
                name: String::from_utf8(hex::decode(name).ok()?).ok()?,
                role: role.parse::<Role>().ok()?,
                source,
            },
            expires,
            fingerprint,
        })
    }

    /// The CSRF token that goes with a session value.
    pub fn csrf(&self, value: &str) -> String {
        hex::encode(self.mac("csrf", value))
    }

    /// Whether `presented` is the CSRF token of session `value` (constant time).
    pub fn csrf_ok(&self, value: &str, presented: &str) -> bool {
        let want = self.csrf(value);
        want.len() == presented.len() && bool::from(want.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim().to_owned())
        })
}

/// Whether the request names this server as its origin: `Origin`, or failing that
/// `Referer`, must have the same host and port as `Host`.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(source) = source else { return false };
    let Some((_, rest)) = source.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.eq_ignore_ascii_case(host.trim())
}

/// Whether the request reached us over TLS (directly or through a proxy that says so).
fn over_tls(parts_headers: &HeaderMap, scheme: Option<&str>) -> bool {
    scheme == Some("https")
        || parts_headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn set_cookie(value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The caller a session cookie stands for, when the request carries one. State-changing
/// methods must also pass the CSRF and origin checks; refusals are audited.
pub async fn caller_from_cookie(
    parts: &Parts,
    state: &AppState,
) -> Option<Result<Caller, ApiError>> {
    let value = cookie(&parts.headers, COOKIE)?;
    let key = state.sessions.as_ref()?;
    Some(check(parts, state, key, &value).await)
}

async fn check(
    parts: &Parts,
    state: &AppState,
    key: &SessionKey,
    value: &str,
) -> Result<Caller, ApiError> {
    let now = state.gaia.store().now().await?;
    let Some(session) = key.verify(value, now) else {
        return Err(ApiError::unauthorized(
            "the session has expired or is not valid; log in again",
        ));
    };
    crate::auth::ensure_live(state, &session.caller, session.fingerprint.as_deref()).await?;
    let safe = matches!(parts.method.as_str(), "GET" | "HEAD" | "OPTIONS");
    if !safe {
        let csrf = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let why = if !key.csrf_ok(value, csrf) {
            Some("missing or wrong X-CSRF-Token")
        } else if !same_origin(&parts.headers) {
            Some("Origin does not match this server")
        } else {
            None
        };
        if let Some(why) = why {
            crate::refusals::record(
                state,
                &format!("token:{}", session.caller.name),
                &session.caller.name,
                "csrf",
                parts.uri.path(),
                "forbidden",
                json!({ "method": parts.method.as_str(), "reason": why }),
            )
            .await;
            return Err(ApiError::forbidden(format!(
                "refused a cross-site request: {why}"
            )));
        }
    }
    Ok(session.caller)
}

/// A token to log in with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub token: String,
}

/// Who is logged in, and the CSRF token to send on every state-changing request.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginAnswer {
    pub name: String,
    pub role: String,
    pub csrf: String,
}

/// `POST /dashboard/login`: checks the token like any API call and sets the session cookie.
pub async fn login(
    State(state): State<AppState>,
    parts: Parts,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Response> {
    let headers = &parts.headers;
    // A login form posted from another site would log the browser into the wrong account.
    if headers.contains_key(header::ORIGIN) && !same_origin(headers) {
        return Err(ApiError::forbidden("refused a cross-site login"));
    }
    let key = state
        .sessions
        .as_ref()
        .ok_or_else(|| ApiError::not_found("sessions are not available"))?;
    let Some(caller) = crate::auth::resolve(&state, body.token.trim()).await? else {
        crate::refusals::record(
            &state,
            &crate::auth::peer(&parts),
            "anonymous",
            "dashboard.login",
            "",
            "unauthorized",
            json!({}),
        )
        .await;
        return Err(ApiError::unauthorized(
            "the token is not valid or was revoked",
        ));
    };
    let fingerprint = match caller.source {
        crate::auth::Source::Configured => crate::auth::admin_fingerprint(&state),
        crate::auth::Source::Stored => None,
    };
    let now = state.gaia.store().now().await?;
    let value = key.issue(&caller, fingerprint.as_deref(), now);
    let _ = state
        .gaia
        .audit_refusal(
            &caller.name,
            "dashboard.login",
            "",
            "ok",
            json!({ "role": caller.role.as_str() }),
        )
        .await;
    let secure = over_tls(headers, parts.uri.scheme_str());
    let answer = LoginAnswer {
        name: caller.name.clone(),
        role: caller.role.as_str().to_owned(),
        csrf: key.csrf(&value),
    };
    let mut res = Json(answer).into_response();
    let cookie = HeaderValue::from_str(&set_cookie(&value, SESSION_TTL_SECS, secure))
        .map_err(|_| ApiError::bad_request("the session could not be encoded"))?;
    res.headers_mut().insert(header::SET_COOKIE, cookie);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `GET /dashboard/session`: who the cookie stands for, with its CSRF token, so a reloaded
/// page carries on without asking for the token again.
pub async fn current(State(state): State<AppState>, parts: Parts) -> ApiResult<Response> {
    let (Some(key), Some(value)) = (state.sessions.as_ref(), cookie(&parts.headers, COOKIE)) else {
        return Err(ApiError::unauthorized("not logged in"));
    };
    let caller = check(&parts, &state, key, &value).await?;
    let mut res = Json(LoginAnswer {
        name: caller.name,
        role: caller.role.as_str().to_owned(),
        csrf: key.csrf(&value),
    })
    .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `POST /dashboard/logout`: clears the cookie.
pub async fn logout(parts: Parts) -> Response {
    let secure = over_tls(&parts.headers, parts.uri.scheme_str());
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie("", 0, secure)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Caller {
        Caller {
            name: "ops.alice".into(),
            role: Role::Operator,
            source: crate::auth::Source::Stored,
        }
    }

    #[test]
    fn sessions_verify_until_they_expire() {
        let key = SessionKey::derive("shared").unwrap();
        let now = Utc::now();
        let v = key.issue(&alice(), None, now);
        let s = key.verify(&v, now).unwrap();
        assert_eq!(s.caller, alice());
        assert_eq!(s.fingerprint, None);
        let late = now + chrono::Duration::seconds(SESSION_TTL_SECS);
        assert_eq!(key.verify(&v, late), None, "expired");
        assert!(
            key.verify(&v, late - chrono::Duration::seconds(1))
                .is_some()
        );
        assert_eq!(SessionKey::derive("other").unwrap().verify(&v, now), None);
        assert_eq!(key.verify(&v.replace("|operator|", "|admin|"), now), None);
        assert_eq!(key.verify(&v.replace("|t|", "|a-|"), now), None);
        assert_eq!(key.verify("garbage", now), None);
        assert_eq!(key.verify("", now), None);
    }

    #[test]
    fn sessions_and_stream_tickets_do_not_mix() {
        let now = Utc::now();
        let tickets = crate::ticket::TicketKey::derive("shared").unwrap();
        let sessions = SessionKey::derive("shared").unwrap();
        let (t, _) = tickets.issue(&alice(), None, now);
        assert_eq!(sessions.verify(&t, now), None);
        let v = sessions.issue(&alice(), None, now);
        assert_eq!(tickets.verify(&v, now), None);
    }

    #[test]
    fn csrf_token_belongs_to_its_session() {
        let key = SessionKey::derive("shared").unwrap();
        let now = Utc::now();
        let a = key.issue(&alice(), None, now);
        let b = key.issue(&alice(), None, now + chrono::Duration::seconds(1));
        let csrf = key.csrf(&a);
        assert!(key.csrf_ok(&a, &csrf));
        assert!(!key.csrf_ok(&b, &csrf), "another session's token");
        assert!(!key.csrf_ok(&a, ""));
        assert!(!key.csrf_ok(&a, &csrf[..10]));
        assert_ne!(csrf, a, "the token is not the cookie value");
    }

    #[test]
    fn origin_must_name_this_server() {
        let mut h = HeaderMap::new();
        assert!(!same_origin(&h), "no host");
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!same_origin(&h), "no origin nor referer");
        h.insert(
            header::REFERER,
            HeaderValue::from_static("http://127.0.0.1:8080/#approvals"),
        );
        assert!(same_origin(&h), "referer");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h), "origin wins over referer");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; gaia_session=s1|x|y ; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("s1|x|y".into()));
        assert_eq!(cookie(&h, "c"), None);
        assert!(set_cookie("v", 10, true).ends_with("; Secure"));
        assert!(set_cookie("v", 10, false).contains("HttpOnly; SameSite=Strict"));
    }
}
