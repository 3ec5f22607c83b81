//! Who is calling: tokens presented as `Authorization: Bearer`, `X-Admin-Token` (the
//! prototype's header) or `?token=` (the prototype's query form, accepted but never logged),
//! resolved to a name and a [`Role`]; or the dashboard's session cookie (see
//! [`crate::session`]). Refusals are audited.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use gaia_core::tokens::{Role, hash};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::problem::ApiError;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// Which credential it authenticated with: what decides when its sessions, tickets and
    /// streams end.
    pub source: Source,
}

/// The credential behind a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The configured admin token (`MONITOR_ADMIN_TOKEN`): valid while it stays configured.
    Configured,
    /// A stored token: valid until it is revoked.
    Stored,
}

/// A short fingerprint of the configured admin token, carried (under a MAC) by sessions and
/// tickets opened with it, so that they end when the configured token changes. It is a hash of
/// the token's hash under a label of its own, so it reveals nothing usable.
pub fn admin_fingerprint(state: &AppState) -> Option<String> {
    use sha2::{Digest, Sha256};
    let admin = state.admin_token_hash.as_deref()?;
    let mut h = Sha256::new();
    h.update(b"gaia admin fingerprint v1\0");
    h.update(admin.as_bytes());
    Some(hex::encode(&h.finalize()[..12]))
}

/// Whether a credential carried by a session or a ticket is still good: a configured-admin one
/// only while the same admin token is configured (`fingerprint` is the one it was issued
/// under), a stored token's only while that token exists with the same role, unrevoked.
pub async fn ensure_live(
    state: &AppState,
    caller: &Caller,
    fingerprint: Option<&str>,
) -> Result<(), ApiError> {
    match caller.source {
        Source::Configured => {
            let current = admin_fingerprint(state);
            let same = match (current.as_deref(), fingerprint) {
                (Some(now), Some(then)) => bool::from(now.as_bytes().ct_eq(then.as_bytes())),
                _ => false,
            };
            if same {
                Ok(())
            } else {
                Err(ApiError::unauthorized(
                    "the admin token this was issued under has changed; log in again",
                ))
            }
        }
        Source::Stored => {
            let live =
                state.gaia.list_tokens().await?.into_iter().any(|t| {
                    t.name == caller.name && t.role == caller.role && t.revoked_at.is_none()
                });
            if live {
                Ok(())
            } else {
                Err(ApiError::unauthorized(
                    "the token this was issued for was revoked; log in again",
                ))
            }
        }
    }
}

impl Caller {
    /// Allows the call when the caller's role includes `needed`; otherwise answers 403 and
    /// records the refusal in the audit trail.
    pub async fn require(
        &self,
        state: &AppState,
        needed: Role,
        action: &str,
    ) -> Result<(), ApiError> {
        if self.role.allows(needed) {
            return Ok(());
        }
        crate::refusals::record(
            state,
            &format!("token:{}", self.name),
            &self.name,
            action,
            "",
            "forbidden",
            json!({ "role": self.role.as_str(), "needed": needed.as_str() }),
        )
        .await;
        Err(ApiError::forbidden(format!(
            "{action} needs the {needed} role; this token has the {} role",
            self.role
        )))
    }
}

/// Where a request came from, for counting refusals per source: the peer's address (never a
/// header such as `X-Forwarded-For`, which the client writes itself).
pub fn peer(parts: &Parts) -> String {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// The token a request presents, from the first of: Bearer header, X-Admin-Token, ?token=.
pub fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim().to_owned());
        }
    }
    if let Some(v) = headers.get("x-admin-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned());
    }
    query_param(query, "token")
}

/// The decoded value of query parameter `name`.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let decoded = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = decoded {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Resolves a presented token: the configured admin token (compared in constant time), else a
/// stored token by its hash.
pub async fn resolve(state: &AppState, token: &str) -> Result<Option<Caller>, ApiError> {
    if let Some(admin) = &state.admin_token_hash {
        let presented = hash(token);
        if bool::from(presented.as_bytes().ct_eq(admin.as_bytes())) {
            return Ok(Some(Caller {
                name: "admin".into(),
                role: Role::Admin,
                source: Source::Configured,
            }));
        }
    }
    Ok(state.gaia.authenticate_token(token).await?.map(|t| Caller {
        name: t.name,
        role: t.role,
        source: Source::Stored,
    }))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // A stream ticket opens the event stream only.
        if parts.uri.path() == crate::sse::STREAM_PATH {
            if let Some(ticket) = query_param(parts.uri.query(), "ticket") {
                let now = state.gaia.store().now().await.map_err(ApiError::from)?;
                let (caller, fingerprint) = state
                    .tickets
                    .as_ref()
                    .and_then(|k| k.verify(&ticket, now))
                    .ok_or_else(|| {
                        ApiError::unauthorized("the stream ticket is not valid or has expired")
                    })?;
                // A ticket is no better than the credential it was traded for.
                ensure_live(state, &caller, fingerprint.as_deref()).await?;
                return Ok(caller);
            }
        }
        // A token in a header wins; then the dashboard's session cookie; then `?token=`.
        let header_token = presented_token(&parts.headers, None);
        if header_token.is_none() {
            if let Some(result) = crate::session::caller_from_cookie(parts, state).await {
                return result;
            }
        }
        let Some(token) = header_token.or_else(|| query_param(parts.uri.query(), "token")) else {
            return Err(ApiError::unauthorized(
                "send a token as 'Authorization: Bearer TOKEN'",
            ));
        };
        match resolve(state, &token).await? {
            Some(caller) => Ok(caller),
            None => {
                crate::refusals::record(
                    state,
                    &peer(parts),
                    "anonymous",
                    "auth",
                    parts.uri.path(),
                    "unauthorized",
                    json!({ "method": parts.method.as_str() }),
                )
                .await;
                Err(ApiError::unauthorized(
                    "the token is not valid or was revoked",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn token_sources_in_order() {
        let mut h = HeaderMap::new();
        assert_eq!(
            presented_token(&h, Some("a=1&token=q%2Bv")),
            Some("q+v".into())
        );
        h.insert("x-admin-token", HeaderValue::from_static("admin-t"));
        assert_eq!(presented_token(&h, Some("token=q")), Some("admin-t".into()));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer bear"),
        );
        assert_eq!(presented_token(&h, None), Some("bear".into()));
        assert_eq!(presented_token(&HeaderMap::new(), Some("tok=1")), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
