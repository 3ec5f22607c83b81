//! The command policy: decisions made before a person is asked, recorded like any other.

use serde_json::json;

use super::Gaia;
use crate::audit::NewAudit;
use crate::commands::CommandSpec;
use crate::error::Error;
use crate::event::{NewEvent, kinds};
use crate::policy::Decision;
use crate::store::Change;

impl Gaia {
    /// Applies the policy to a command and records the decision (event and audit record).
    pub async fn apply_policy(
        &self,
        spec: &CommandSpec,
        actor: &str,
        context: serde_json::Value,
    ) -> Result<Decision, Error> {
        let d = self.policy.check(spec);
        let (event, audit) = self.policy_note(spec, &d, actor, context);
        let change = Change {
            events: vec![event],
            audit: vec![audit],
        };
        let events = self.store.append(change).await?;
        self.mirror(&events);
        Ok(d)
    }

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
