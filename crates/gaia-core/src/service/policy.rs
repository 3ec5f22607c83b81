//! The command policy: decisions made before a person is asked, recorded like any other
//! (in the transaction that files the request, see `request_command`).

use serde_json::json;

use super::Gaia;
use crate::audit::NewAudit;
use crate::commands::CommandSpec;
use crate::event::{NewEvent, kinds};
use crate::policy::Decision;

impl Gaia {
    /// The event and audit record of the policy's decision `d` on `spec`, redacted.
    pub(crate) fn policy_note(
        &self,
        spec: &CommandSpec,
        d: &Decision,
        actor: &str,
        context: serde_json::Value,
    ) -> (NewEvent, NewAudit) {
        let data = self.redactor.json(json!({
            "command": spec.display(),
            "verdict": d.verdict.as_str(),
            "rule": d.rule,
            "reason": d.reason,
            "context": context,
        }));
        (
            NewEvent::new(kinds::POLICY_DECIDED, actor, "policy", data.clone()),
            NewAudit::new(actor, "policy.decide", "policy", d.verdict.as_str(), data),
        )
    }
}
