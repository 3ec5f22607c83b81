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
    ///
    /// Records may commit while it walks: the head is read again once the walk reaches the
    /// end, and the walk goes on while the head names records past the last one it saw, so
    /// that a record committed after the first reading of the head is judged against a head
    /// that includes it. A record past the head as read after the walk is a break.
    pub async fn verify_audit(&self) -> Result<VerifyReport, Error> {
        /// Readings of the head before the walk ends against the last of them, however much
        /// is still being written.
        const READINGS: usize = 8;
        let mut head = self.store.audit_head().await?;
        let mut verifier = Verifier::new(&head);
        let mut after = head.anchor_id;
        for _ in 0..READINGS {
            loop {
                let page = self.store.audit_page(after, AUDIT_PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                if !page.iter().all(|r| verifier.feed(r)) {
                    break;
                }
            }
            if verifier.is_broken() || verifier.last_seen() == head.last_id {
                break;
            }
            let again = self.store.audit_head().await?;
            if again.last_id == head.last_id {
                break;
            }
            head = again;
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
