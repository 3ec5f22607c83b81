//! Who is calling the tools, and with which role: the roles are the API's.

use gaia_core::Gaia;
use gaia_core::tokens::Role;
use serde_json::json;

use crate::call::ToolError;

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

    /// Refuses (and audits the refusal, as the API does) when the role is too low for `action`.
    pub async fn require(&self, gaia: &Gaia, needed: Role, action: &str) -> Result<(), ToolError> {
        if self.role.allows(needed) {
            return Ok(());
        }
        let details =
            json!({ "needed": needed.as_str(), "role": self.role.as_str(), "via": "mcp" });
        if let Err(e) = gaia
            .audit_refusal(&self.name, action, action, "forbidden", details)
            .await
        {
            tracing::warn!(error = %e, "could not audit a refusal");
        }
        Err(ToolError::Forbidden(format!(
            "{action} needs the {} role; this caller is {}",
            needed.as_str(),
            self.role.as_str()
        )))
    }
}
