//! Events of the callers' own types: emitting them (audited) and reading the log.

use serde_json::json;

use super::Gaia;
use crate::audit::NewAudit;
use crate::error::{Error, StoreError, ValidationError};
use crate::event::{Event, EventFilter, NewEvent};
use crate::names::{check_event_type, check_name, check_subject};
use crate::store::Change;

/// Largest `data` payload of an emitted event, serialised.
pub const MAX_EVENT_DATA: usize = 64 * 1024;

impl Gaia {
    /// Emits an event of the caller's own (`chat.message`, `story.updated` ...), audited.
    pub async fn emit_event(
        &self,
        kind: &str,
        actor: &str,
        subject: &str,
        data: serde_json::Value,
    ) -> Result<Event, Error> {
        self.emit_event_for(kind, actor, None, subject, data).await
    }

    /// [`emit_event`](Self::emit_event) by an authenticated `actor` acting for `agent` (an
    /// agent behind a shared token): the actor is what the event and the audit record name;
    /// the agent is kept beside it in the audit record.
    pub async fn emit_event_for(
        &self,
        kind: &str,
        actor: &str,
        agent: Option<&str>,
        subject: &str,
        data: serde_json::Value,
    ) -> Result<Event, Error> {
        check_event_type(kind)?;
        check_name("actor", actor)?;
        let agent = agent.filter(|a| *a != actor);
        if let Some(a) = agent {
            check_name("agent", a)?;
        }
        check_subject(subject)?;
        crate::text::check_json("event data", &data)?;
        let data = self.redactor.json(data);
        let subject = self.redactor.text(subject);
        if data.to_string().len() > MAX_EVENT_DATA {
            return Err(ValidationError::new(format!(
                "event data is larger than {} KiB",
                MAX_EVENT_DATA / 1024
            ))
            .into());
        }
        let details = match agent {
            Some(a) => json!({ "type": kind, "agent": a }),
            None => json!({ "type": kind }),
        };
        let change = Change {
            events: vec![NewEvent::new(kind, actor, &subject, data)],
            audit: vec![NewAudit::new(actor, "event.emit", &subject, "ok", details)],
        };
        let events = self.store.append(change).await?;
        self.mirror(&events);
        events
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("append returned no event".into()).into())
    }

    /// Events after `since` (a seq), oldest first, at most `limit`.
    pub async fn list_events_after(
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
}
