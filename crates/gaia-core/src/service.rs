//! [`Gaia`]: the use cases every transport calls. It validates input, calls the store, and
//! after a commit mirrors the committed events to the optional NDJSON file sink.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use crate::audit::{AuditRecord, Verifier, VerifyReport};
use crate::claims::{ClaimResult, Request};
use crate::error::{Error, StoreError, ValidationError};
use crate::event::{Event, EventFilter, NewEvent};
use crate::names::{ClaimKey, check_event_type, check_name, check_subject};
use crate::redact::Redactor;
use crate::store::{Change, Store};

/// Largest `data` payload of an emitted event, serialised.
pub const MAX_EVENT_DATA: usize = 64 * 1024;

/// Records per page when walking the audit trail.
const AUDIT_PAGE: u32 = 1_000;

/// The entry point of every use case.
#[derive(Debug, Clone)]
pub struct Gaia {
    store: Arc<dyn Store>,
    sink: Option<PathBuf>,
    redactor: Redactor,
}

impl Gaia {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            sink: None,
            redactor: Redactor::default(),
        }
    }

    /// Also appends every committed event to this NDJSON file (created when missing).
    pub fn with_ndjson_sink(mut self, path: Option<PathBuf>) -> Self {
        self.sink = path;
        self
    }

    /// Secret values that must never be stored in events or audit records.
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Acquires, refreshes or releases a claim. A lock timeout is an outcome, not an error: the
    /// caller is expected to retry.
    pub async fn claim(&self, req: &Request) -> Result<ClaimResult, Error> {
        match self.store.claim(req).await {
            Ok((result, events)) => {
                self.mirror(&events);
                Ok(result)
            }
            Err(StoreError::LockTimeout) => Ok(ClaimResult::lock_timeout(req.key().clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// The state of one key (`free` when it was never claimed).
    pub async fn inspect(&self, key: &ClaimKey) -> Result<ClaimResult, Error> {
        let now = self.store.now().await?;
        let row = self
            .store
            .claim_get(key)
            .await?
            .unwrap_or_else(|| crate::claims::ClaimRow::vacant(key.clone()));
        Ok(ClaimResult::observe(&row, now))
    }

    /// Live claims; with `all`, also those whose TTL passed without a release.
    pub async fn list_claims(&self, all: bool) -> Result<Vec<ClaimResult>, Error> {
        let now = self.store.now().await?;
        Ok(self
            .store
            .claim_list()
            .await?
            .iter()
            .filter(|row| all || row.is_live(now))
            .map(|row| ClaimResult::observe(row, now))
            .collect())
    }

    /// Emits an event of the caller's own (`chat.message`, `story.updated` ...), audited.
    pub async fn emit(
        &self,
        kind: &str,
        actor: &str,
        subject: &str,
        data: serde_json::Value,
    ) -> Result<Event, Error> {
        check_event_type(kind)?;
        check_name("actor", actor)?;
        check_subject(subject)?;
        let data = self.redactor.json(data);
        let subject = self.redactor.text(subject);
        if data.to_string().len() > MAX_EVENT_DATA {
            return Err(ValidationError::new(format!(
                "event data is larger than {} KiB",
                MAX_EVENT_DATA / 1024
            ))
            .into());
        }
        let change = Change {
            events: vec![NewEvent::new(kind, actor, &subject, data)],
            audit: vec![crate::audit::NewAudit::new(
                actor,
                "event.emit",
                &subject,
                "ok",
                json!({ "type": kind }),
            )],
        };
        let events = self.store.append(change).await?;
        self.mirror(&events);
        events
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("append returned no event".into()).into())
    }

    pub async fn events_after(
        &self,
        since: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<Event>, Error> {
        if since < 0 {
            return Err(ValidationError::new("--since must be 0 or a positive event seq").into());
        }
        Ok(self.store.events_after(since, filter, limit).await?)
    }

    pub async fn audit_tail(&self, limit: u32) -> Result<Vec<AuditRecord>, Error> {
        Ok(self.store.audit_tail(limit).await?)
    }

    /// Walks the whole trail and reports the first record that breaks the chain.
    pub async fn audit_verify(&self) -> Result<VerifyReport, Error> {
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

    /// Appends committed events to the NDJSON sink. The events are already durable in the
    /// store, so a sink failure is logged rather than reported as a failed call.
    fn mirror(&self, events: &[Event]) {
        let Some(path) = &self.sink else { return };
        if events.is_empty() {
            return;
        }
        let mut buf = String::new();
        for e in events {
            buf.push_str(&e.to_ndjson());
            buf.push('\n');
        }
        // One write on an O_APPEND file: lines from concurrent processes do not interleave.
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(buf.as_bytes()));
        if let Err(e) = res {
            tracing::warn!(path = %path.display(), error = %e, "could not append to the events NDJSON sink");
        }
    }
}
