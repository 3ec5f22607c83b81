//! The `Origin` check of `/mcp`. The MCP specification says a Streamable HTTP server MUST
//! validate `Origin`, against DNS rebinding: a web page on a name its owner later points at
//! 127.0.0.1 reaches a local server as a same-origin page, `Host` and `Origin` both naming
//! the attacker's name. So comparing `Origin` with `Host` is not enough. A request is taken
//! when its `Origin` is
//! - this server's own origin: the same authority as `Host`, where the host is an IP literal or
//!   `localhost`, names no DNS answer can move; or
//! - one of the configured origins (`mcp.allowed_origins`), for a server reached by a name.
//!
//! A request without `Origin` is refused too: MCP clients are told to send one, and a request
//! that does not say where it comes from cannot be told apart from a rebound page's.

use std::net::IpAddr;

use axum::http::{HeaderMap, header};

/// Why a request's `Origin` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Foreign(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str(
                "the request has no Origin header; send this server's origin \
                 (e.g. http://127.0.0.1:PORT) or one listed in mcp.allowed_origins",
            ),
            Self::Foreign(o) => write!(
                f,
                "the Origin {o:?} is neither this server's nor one of mcp.allowed_origins"
            ),
        }
    }
}

/// `text` as an origin (`scheme://host[:port]`, lowercased), or why it is not one.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let t = text.trim();
    let (scheme, authority) = t
        .split_once("://")
        .ok_or_else(|| format!("'{t}' is not an origin: expected http://HOST[:PORT]"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("'{t}': an origin's scheme is http or https"));
    }
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@', ' '])
        || authority.starts_with(':')
    {
        return Err(format!(
            "'{t}' is not an origin: expected {scheme}://HOST[:PORT], no path"
        ));
    }
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// Whether `host` (an authority's host, IPv6 in brackets) cannot be moved by DNS.
fn fixed_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok()
}

/// The host of an authority (`host:port`, `[v6]:port`, `host`).
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Checks a request's `Origin` against this server and the configured `allowed` origins
/// (already parsed by [`parse_origin`]).
pub fn check(headers: &HeaderMap, allowed: &[String]) -> Result<(), Refused> {
    let Some(raw) = headers.get(header::ORIGIN) else {
        return Err(Refused::Missing);
    };
    let shown = String::from_utf8_lossy(raw.as_bytes())
        .chars()
        .take(200)
        .collect::<String>();
    let Ok(origin) = raw
        .to_str()
        .map_err(|_| ())
        .and_then(|o| parse_origin(o).map_err(|_| ()))
    else {
        return Err(Refused::Foreign(shown));
    };
    if allowed.contains(&origin) {
        return Ok(());
    }
    let authority = origin.split_once("://").map_or("", |(_, a)| a);
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| h.trim().to_ascii_lowercase());
    match host {
        Some(h) if h == authority && fixed_host(host_of(authority)) => Ok(()),
        _ => Err(Refused::Foreign(shown)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn own_origin_by_ip_or_localhost_only() {
        let none: &[String] = &[];
        assert_eq!(
            check(&headers("127.0.0.1:8080", None), none),
            Err(Refused::Missing)
        );
        assert!(
            check(
                &headers("127.0.0.1:8080", Some("http://127.0.0.1:8080")),
                none
            )
            .is_ok()
        );
        assert!(
            check(
                &headers("localhost:8080", Some("http://LOCALHOST:8080")),
                none
            )
            .is_ok()
        );
        assert!(check(&headers("[::1]:8080", Some("http://[::1]:8080")), none).is_ok());
        // Another port is another origin.
        assert!(
            check(
                &headers("127.0.0.1:8080", Some("http://127.0.0.1:9090")),
                none
            )
            .is_err()
        );
        // A rebound name: Host and Origin agree, and it is still refused.
        assert!(
            check(
                &headers("evil.example:8080", Some("http://evil.example:8080")),
                none
            )
            .is_err()
        );
        assert!(check(&headers("127.0.0.1:8080", Some("null")), none).is_err());
    }

    #[test]
    fn configured_origins_are_taken_whatever_the_host() {
        let allowed = vec![parse_origin("https://Gaia.Example.com").unwrap()];
        assert_eq!(allowed[0], "https://gaia.example.com");
        assert!(
            check(
                &headers("gaia.example.com", Some("https://gaia.example.com")),
                &allowed
            )
            .is_ok()
        );
        assert!(
            check(
                &headers("gaia.example.com", Some("http://gaia.example.com")),
                &allowed
            )
            .is_err()
        );
    }

    #[test]
    fn origins_must_be_scheme_host_port() {
        assert!(parse_origin("http://127.0.0.1:8080").is_ok());
        for bad in [
            "127.0.0.1:8080",
            "ftp://x",
            "http://x/path",
            "http://",
            "http://:80",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
