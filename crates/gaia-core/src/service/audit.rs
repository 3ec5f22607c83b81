//! The audit trail: reading it, verifying its hash chain, recording refused requests.

use super::Gaia;
use crate::audit::{AuditRecord, NewAudit, Verifier, VerifyReport};
use crate::error::Error;
use crate::store::Change;

/// Records per page when walking the audit trail.
const AUDIT_PAGE: u32 = 1_000;

impl Gaia {
    /// The newest `limit` audit records.
    pub async fn list_audit_tail(&self, limit: u32) -> Result<Vec<AuditRecord>, Error> {
        Ok(self.store.audit_tail(limit).await?)
    }

    /// Walks the whole trail and reports the first record that breaks the chain.
    pub async fn verify_audit(&self) -> Result<VerifyReport, Error> {
        let head = self.store.audit_head().await?;
        let mut verifier = Verifier::new(&head);
        let mut after = head.anchor_id;
        loop {
            let page = self.store.audit_page(after, AUDIT_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            if !page.iter().all(|r| verifier.feed(r)) {
                break;
            }
        }
        Ok(verifier.finish(&head))
    }

    /// Records a refused request (wrong token, missing role) in the audit trail.
    pub async fn audit_refusal(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        outcome: &str,
        details: serde_json::Value,
    ) -> Result<(), Error> {
        let change = Change {
            events: vec![],
            audit: vec![NewAudit::new(
                actor,
                action,
                self.redactor.text(subject),
                outcome,
                self.redactor.json(details),
            )],
        };
        self.store.append(change).await?;
        Ok(())
    }
}
