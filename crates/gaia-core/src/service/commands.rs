//! Command approval requests: filing them (the policy decides first), reading them, applying
//! actions to them and expiring those nobody decided in time.

use serde_json::json;

use super::Gaia;
use crate::commands::{Action, CommandRecord, CommandSpec, Decided, Decider, NewCommand, Status};
use crate::error::{Error, ValidationError};
use crate::event::Event;
use crate::policy::Verdict;
use crate::usecase::commands::Applied;

impl Gaia {
    /// Files a command approval request. Commands that contain a configured secret are
    /// refused: the request, its events and its audit records would all carry it.
    pub async fn request_command(&self, new: &NewCommand) -> Result<CommandRecord, Error> {
        self.refuse_secrets(new)?;
        let (record, events) = self.store.command_create(new, &self.notify).await?;
        self.mirror(&events);
        // The policy decides before a person is asked; `ask` leaves the request pending.
        let d = self
            .apply_policy(&record.spec, "policy", json!({ "id": record.id }))
            .await?;
        let by = Decider {
            name: "policy".into(),
            via: "policy".into(),
        };
        let reason = Some(d.reason);
        let action = match d.verdict {
            Verdict::Allow => Action::Approve { by, reason },
            Verdict::Deny => Action::Deny { by, reason },
            Verdict::Ask => return Ok(record),
        };
        // A refusal here (a test request cannot be approved before allow-test) leaves it
        // pending for a person.
        Ok(self.apply_command(&record.id, &action).await?.into_record())
    }

    /// A validation error when the command, its cwd or its reason holds a configured secret.
    fn refuse_secrets(&self, new: &NewCommand) -> Result<(), ValidationError> {
        let text = match &new.spec {
            CommandSpec::Argv(a) => a.join(" "),
            CommandSpec::Shell(s) => s.clone(),
        };
        let text = format!(
            "{text} {} {}",
            new.cwd.as_deref().unwrap_or(""),
            new.reason.as_deref().unwrap_or("")
        );
        if self.redactor.text(&text) != text {
            return Err(ValidationError::new(
                "the command contains a configured secret; pass secrets through the environment, not the command line",
            ));
        }
        Ok(())
    }

    /// One request; [`Error::NotFound`] when there is none with this id.
    pub async fn get_command(&self, id: &str) -> Result<CommandRecord, Error> {
        self.store
            .command_get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no command request '{id}'")))
    }

    /// Requests, newest first, optionally only those in `status`.
    pub async fn list_commands(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, Error> {
        Ok(self.store.command_list(status, limit).await?)
    }

    /// Decides, cancels or executes a request. A refusal (already decided, the requester
    /// deciding, expired ...) is [`Decided::Refused`], carrying the request as it stands.
    pub async fn apply_command(&self, id: &str, action: &Action) -> Result<Decided, Error> {
        action.check()?;
        match self.store.command_apply(id, action, &self.notify).await? {
            Applied::Done { record, events } => {
                self.mirror(&events);
                Ok(Decided::Done(*record))
            }
            Applied::Refused { refusal, events } => {
                self.mirror(&events);
                Ok(Decided::Refused(refusal))
            }
            Applied::Missing => Err(Error::NotFound(format!("no command request '{id}'"))),
        }
    }

    /// Expires pending requests past their expiry.
    pub async fn expire_commands(&self, limit: u32) -> Result<Vec<Event>, Error> {
        let events = self.store.command_expire_due(limit, &self.notify).await?;
        self.mirror(&events);
        Ok(events)
    }
}
