//! Short-lived stream tickets: a browser's `EventSource` cannot send headers, and a long-lived
//! token must not go into a URL, so a caller trades its token for a ticket that opens the event
//! stream for one minute.
//!
//! A ticket is `t2.HEX(NAME).ROLE.EXPIRY.SOURCE.MAC`, where MAC is HMAC-SHA256 under a key
//! derived from the deployment's shared secret. Every node derives the same key, so a ticket
//! issued by one node opens the stream on any other. SOURCE names the credential it was traded
//! for (`t`: a stored token; `a-FINGERPRINT`: the configured admin token), so a ticket stops
//! working when that credential is revoked or changed.

use chrono::{DateTime, Utc};
use gaia_core::tokens::Role;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::{Caller, Source};

/// How long a ticket opens the stream.
pub const TICKET_TTL_SECS: i64 = 60;

type HmacSha256 = Hmac<Sha256>;

/// The key tickets are signed with, ready to sign.
#[derive(Clone)]
pub struct TicketKey(HmacSha256);

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(..)")
    }
}

impl TicketKey {
    /// Derives the key from a secret every node of the deployment shares. (HMAC takes keys
    /// of any length, so this is `None` only in theory.)
    pub fn derive(shared_secret: &str) -> Option<Self> {
        let mut h = Sha256::new();
        h.update(b"gaia stream ticket v1\0");
        h.update(shared_secret.as_bytes());
        HmacSha256::new_from_slice(&h.finalize()).ok().map(Self)
    }

    fn mac(&self, payload: &str) -> Vec<u8> {
        let mut m = self.0.clone();
        m.update(payload.as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    /// A ticket for `caller`; `fingerprint` is the configured admin token's (see
    /// [`crate::auth::admin_fingerprint`]) when that token authenticated the caller.
    pub fn issue(
        &self,
        caller: &Caller,
        fingerprint: Option<&str>,
        now: DateTime<Utc>,
    ) -> (String, DateTime<Utc>) {
        let expires = now + chrono::Duration::seconds(TICKET_TTL_SECS);
        let payload = format!(
            "t2.{}.{}.{}.{}",
            hex::encode(caller.name.as_bytes()),
            caller.role.as_str(),
            expires.timestamp(),
            source_part(caller.source, fingerprint),
        );
        let mac = hex::encode(self.mac(&payload));
        (format!("{payload}.{mac}"), expires)
    }

    /// The caller a ticket was issued to, with the admin fingerprint it carries, if it is
    /// genuine and not expired. Whether its credential still holds is for the caller to check
    /// ([`crate::auth::ensure_live`]).
    pub fn verify(&self, ticket: &str, now: DateTime<Utc>) -> Option<(Caller, Option<String>)> {
        let (payload, mac) = ticket.rsplit_once('.')?;
        let mac = hex::decode(mac).ok()?;
        if !bool::from(self.mac(payload).ct_eq(&mac)) {
            return None;
        }
        let mut parts = payload.split('.');
        let (version, name, role, expires, source) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if version != "t2" || parts.next().is_some() {
            return None;
        }
        if expires.parse::<i64>().ok()? <= now.timestamp() {
            return None;
        }
        let (source, fingerprint) = parse_source(source)?;
        Some((
            Caller {
                name: String::from_utf8(hex::decode(name).ok()?).ok()?,
                role: role.parse::<Role>().ok()?,
                source,
            },
            fingerprint,
        ))
    }
}

/// How a signed value names its credential: `t` for a stored token, `a-FINGERPRINT` for the
/// configured admin token.
pub(crate) fn source_part(source: Source, fingerprint: Option<&str>) -> String {
    match source {
        Source::Stored => "t".to_owned(),
        Source::Configured => format!("a-{}", fingerprint.unwrap_or_default()),
    }
}

/// The inverse of [`source_part`].
pub(crate) fn parse_source(part: &str) -> Option<(Source, Option<String>)> {
    if part == "t" {
        return Some((Source::Stored, None));
    }
    let fp = part.strip_prefix("a-")?;
    Some((Source::Configured, Some(fp.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_verify_until_they_expire() {
        let key = TicketKey::derive("shared").unwrap();
        let caller = Caller {
            name: "ops.alice".into(),
            role: Role::Operator,
            source: Source::Stored,
        };
        let now = Utc::now();
        let (t, _) = key.issue(&caller, None, now);
        assert_eq!(key.verify(&t, now), Some((caller.clone(), None)));
        assert_eq!(
            key.verify(&t, now + chrono::Duration::seconds(TICKET_TTL_SECS)),
            None
        );
        assert_eq!(TicketKey::derive("other").unwrap().verify(&t, now), None);
        let forged = t.replace(".operator.", ".admin.");
        assert_eq!(key.verify(&forged, now), None);
        let forged = t.replace(".t.", ".a-00.");
        assert_eq!(key.verify(&forged, now), None);
        assert_eq!(key.verify("garbage", now), None);
    }

    #[test]
    fn admin_tickets_carry_the_fingerprint() {
        let key = TicketKey::derive("shared").unwrap();
        let admin = Caller {
            name: "admin".into(),
            role: Role::Admin,
            source: Source::Configured,
        };
        let now = Utc::now();
        let (t, _) = key.issue(&admin, Some("abc123"), now);
        assert_eq!(key.verify(&t, now), Some((admin, Some("abc123".into()))));
    }
}
