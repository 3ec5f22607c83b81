//! Command approval requests: filing them (the policy decides first), reading them, applying
//! actions to them and expiring those nobody decided in time.

use serde_json::json;

use super::Gaia;
use crate::commands::{Action, CommandRecord, CommandSpec, Decided, Decider, NewCommand, Status};
use crate::error::{Error, ValidationError};
use crate::event::Event;
use crate::policy::Verdict;
use crate::usecase::commands::{Applied, Ruling};

impl Gaia {
    /// Files a command approval request. Commands that contain a configured secret are
    /// refused: the request, its events and its audit records would all carry it.
    pub async fn request_command(&self, new: &NewCommand) -> Result<CommandRecord, Error> {
        self.refuse_secrets(new)?;
        // The policy decides before a person is asked (`ask` leaves the request pending); its
        // ruling is written in the transaction that files the request.
        let d = self.policy.check(&new.spec);
        let by = Decider {
            name: "policy".into(),
            via: "policy".into(),
        };
        let action = match d.verdict {
            Verdict::Allow => Some(Action::Approve {
                by,
                reason: Some(d.reason.clone()),
            }),
            Verdict::Deny => Some(Action::Deny {
                by,
                reason: Some(d.reason.clone()),
            }),
            Verdict::Ask => None,
        };
        if let Some(action) = &action {
            action.check()?;
        }
        let note =
            |r: &CommandRecord| self.policy_note(&r.spec, &d, "policy", json!({ "id": r.id }));
        let ruling = Ruling {
            note: &note,
            action,
        };
        let (record, events) = self
            .store
            .command_create(new, &self.notify, Some(&ruling))
            .await?;
        self.mirror(&events);
        Ok(record)
    }

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
