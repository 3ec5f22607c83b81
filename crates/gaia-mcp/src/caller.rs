//! Who is calling the tools, and with which role (the roles are the API's), and where a
//! refused call is audited.

use std::future::Future;
use std::pin::Pin;

use gaia_core::Gaia;
use gaia_core::tokens::Role;
use serde_json::{Value, json};

use crate::call::ToolError;

/// A boxed future, for [`RefusalAudit`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Where the tools' refusals are audited. Over HTTP the server passes its own, which bounds a
/// flood of refusals as it bounds the API's; without one (`gaia mcp`, whose process opens the
/// store itself) each refusal is written directly.
pub trait RefusalAudit: Send + Sync + std::fmt::Debug {
    /// Audits that `caller` was refused `action`; `details` say why.
    fn record(&self, caller: &Caller, action: &str, details: Value) -> BoxFuture<()>;
}

/// The identity tools act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The name events, audit records and claims carry.
    pub name: String,
    pub role: Role,
    /// The token name claims are held under (`None` for direct store access, which is trusted
    /// like the database itself, as with the CLI).
    pub principal: Option<String>,
}

impl Caller {
    /// A local caller over stdio with direct store access, acting as `name` with `role`.
    pub fn local(name: impl Into<String>, role: Role) -> Self {
        Self {
            name: name.into(),
            role,
            principal: None,
        }
    }

    /// A caller authenticated by a token named `name`.
    pub fn token(name: impl Into<String>, role: Role) -> Self {
        let name = name.into();
        Self {
            principal: Some(name.clone()),
            name,
            role,
        }
    }

    /// Refuses (and audits the refusal, through `audit` when given, as the API does) when the
    /// role is too low for `action`.
    pub async fn require(
        &self,
        gaia: &Gaia,
        audit: Option<&dyn RefusalAudit>,
        needed: Role,
        action: &str,
    ) -> Result<(), ToolError> {
        if self.role.allows(needed) {
            return Ok(());
        }
        let details =
            json!({ "role": self.role.as_str(), "needed": needed.as_str(), "via": "mcp" });
        match audit {
            Some(a) => a.record(self, action, details).await,
            None => {
                if let Err(e) = gaia
                    .audit_refusal(&self.name, action, "", "forbidden", details)
                    .await
                {
                    tracing::warn!(error = %e, "could not audit a refusal");
                }
            }
        }
        Err(ToolError::Forbidden(format!(
            "{action} needs the {} role; this caller is {}",
            needed.as_str(),
            self.role.as_str()
        )))
    }
}
