//! Short-lived stream tickets: a browser's `EventSource` cannot send headers, and a long-lived
//! token must not go into a URL, so a caller trades its token for a ticket that opens the event
//! stream for one minute.
//!
//! A ticket is `t1.HEX(NAME).ROLE.EXPIRY.MAC`, where MAC is HMAC-SHA256 under a key derived
//! from the deployment's admin credential. Every node derives the same key, so a ticket issued
//! by one node opens the stream on any other.

use chrono::{DateTime, Utc};
use gaia_core::tokens::Role;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::Caller;

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

    pub fn issue(&self, caller: &Caller, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        let expires = now + chrono::Duration::seconds(TICKET_TTL_SECS);
        let payload = format!(
            "t1.{}.{}.{}",
            hex::encode(caller.name.as_bytes()),
            caller.role.as_str(),
            expires.timestamp()
        );
        let mac = hex::encode(self.mac(&payload));
        (format!("{payload}.{mac}"), expires)
    }

    /// The caller a ticket was issued to, if it is genuine and not expired.
    pub fn verify(&self, ticket: &str, now: DateTime<Utc>) -> Option<Caller> {
        let (payload, mac) = ticket.rsplit_once('.')?;
        let mac = hex::decode(mac).ok()?;
        if !bool::from(self.mac(payload).ct_eq(&mac)) {
            return None;
        }
        let mut parts = payload.split('.');
        let (version, name, role, expires) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "t1" || parts.next().is_some() {
            return None;
        }
        if expires.parse::<i64>().ok()? <= now.timestamp() {
            return None;
        }
        Some(Caller {
            name: String::from_utf8(hex::decode(name).ok()?).ok()?,
            role: role.parse::<Role>().ok()?,
        })
    }
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
        };
        let now = Utc::now();
        let (t, _) = key.issue(&caller, now);
        assert_eq!(key.verify(&t, now), Some(caller.clone()));
        assert_eq!(
            key.verify(&t, now + chrono::Duration::seconds(TICKET_TTL_SECS)),
            None
        );
        assert_eq!(TicketKey::derive("other").unwrap().verify(&t, now), None);
        let forged = t.replace(".operator.", ".admin.");
        assert_eq!(key.verify(&forged, now), None);
        assert_eq!(key.verify("garbage", now), None);
    }
}
