//! What the commands talk to: the store directly (the default), or a Gaia server when
//! `GAIA_URL`/`--url` is set. Both return the same core types, so every command prints the
//! same output and exits with the same code in either mode. The backlog's calls are in
//! [`backlog`].

mod backlog;

use std::time::Duration;

use gaia_core::Gaia;
use gaia_core::audit::{AuditRecord, VerifyReport};
use gaia_core::claims::{ClaimResult, Request};
use gaia_core::commands::{Action, CommandRecord, NewCommand, Refusal, Status};
use gaia_core::event::{Event, EventFilter};
use gaia_core::names::ClaimKey;
use gaia_core::tokens::{Role, TokenInfo};

use crate::config::Config;
use crate::exit::CliError;
use crate::remote::Remote;

pub use self::backlog::{StoryView, Took};

#[derive(Debug)]
pub enum Client {
    Direct(Gaia),
    Remote(Remote),
}

/// Connects as the configuration says: remote when a server URL is set, else the store.
pub async fn connect(config: &Config) -> Result<Client, CliError> {
    match &config.remote {
        Some((url, token)) => Ok(Client::Remote(Remote::new(url, token)?)),
        None => Ok(Client::Direct(crate::open::gaia(config).await?)),
    }
}

impl Client {
    pub async fn claim(&self, req: &Request) -> Result<ClaimResult, CliError> {
        match self {
            Self::Direct(g) => Ok(g.apply_claim(req).await?),
            Self::Remote(r) => r.claim(req).await,
        }
    }

    pub async fn inspect(&self, key: &ClaimKey) -> Result<ClaimResult, CliError> {
        match self {
            Self::Direct(g) => Ok(g.get_claim(key).await?),
            Self::Remote(r) => r.inspect(key).await,
        }
    }

    pub async fn list_claims(&self, all: bool) -> Result<Vec<ClaimResult>, CliError> {
        match self {
            Self::Direct(g) => Ok(g.list_claims(all).await?),
            Self::Remote(r) => r.list_claims(all).await,
        }
    }

    pub async fn emit(
        &self,
        kind: &str,
        actor: &str,
        subject: &str,
        data: serde_json::Value,
    ) -> Result<Event, CliError> {
        match self {
            Self::Direct(g) => Ok(g.emit_event(kind, actor, subject, data).await?),
            Self::Remote(r) => r.emit(kind, actor, subject, data).await,
        }
    }

    pub async fn events_after(
        &self,
        since: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<Event>, CliError> {
        match self {
            Self::Direct(g) => Ok(g.list_events_after(since, filter, limit).await?),
            Self::Remote(r) => r.events(("since", since), filter, limit).await,
        }
    }

    pub async fn events_before(
        &self,
        before: i64,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<Event>, CliError> {
        match self {
            Self::Direct(g) => Ok(g.store().events_before(before, filter, limit).await?),
            Self::Remote(r) => r.events(("before", before), filter, limit).await,
        }
    }

    pub async fn last_seq(&self) -> Result<i64, CliError> {
        match self {
            Self::Direct(g) => Ok(g.store().last_seq().await?),
            Self::Remote(r) => r.last_seq().await,
        }
    }

    pub async fn audit_tail(&self, limit: u32) -> Result<Vec<AuditRecord>, CliError> {
        match self {
            Self::Direct(g) => Ok(g.list_audit_tail(limit).await?),
            Self::Remote(r) => r.audit_tail(limit).await,
        }
    }

    pub async fn audit_verify(&self) -> Result<VerifyReport, CliError> {
        match self {
            Self::Direct(g) => Ok(g.verify_audit().await?),
            Self::Remote(r) => r.audit_verify().await,
        }
    }

    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        actor: &str,
    ) -> Result<(TokenInfo, String), CliError> {
        match self {
            Self::Direct(g) => Ok(g.create_token(name, role, actor).await?),
            Self::Remote(r) => r.create_token(name, role).await,
        }
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, CliError> {
        match self {
            Self::Direct(g) => Ok(g.list_tokens().await?),
            Self::Remote(r) => r.list_tokens().await,
        }
    }

    pub async fn request_command(&self, new: &NewCommand) -> Result<CommandRecord, CliError> {
        match self {
            Self::Direct(g) => Ok(g.request_command(new).await?),
            Self::Remote(r) => r.request_command(new).await,
        }
    }

    pub async fn command(&self, id: &str) -> Result<CommandRecord, CliError> {
        match self {
            Self::Direct(g) => Ok(g.get_command(id).await?),
            Self::Remote(r) => r.command(id).await,
        }
    }

    pub async fn commands(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, CliError> {
        match self {
            Self::Direct(g) => Ok(g.list_commands(status, limit).await?),
            Self::Remote(r) => r.commands(status, limit).await,
        }
    }

    /// Decides or cancels. Over the API the decider is the token's name; `action` names the
    /// decider for direct mode.
    pub async fn command_apply(
        &self,
        id: &str,
        action: &Action,
    ) -> Result<Result<CommandRecord, Refusal>, CliError> {
        match self {
            Self::Direct(g) => Ok(g.apply_command(id, action).await?.into_result()),
            Self::Remote(r) => r.command_action(id, action).await,
        }
    }

    /// Executes an approved request (a dry run unless `really`).
    pub async fn execute_command(
        &self,
        id: &str,
        executor: &str,
        really: bool,
        limits: gaia_exec::Limits,
    ) -> Result<Result<CommandRecord, Refusal>, CliError> {
        match self {
            Self::Direct(g) => Ok(gaia_runtime::exec::execute(g, id, executor, really, limits)
                .await?
                .into_result()),
            Self::Remote(r) => r.execute_command(id, really).await,
        }
    }

    /// Waits until the request is decided (or expires), at most `timeout`; returns it as it
    /// then stands.
    pub async fn wait_command(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<CommandRecord, CliError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rec = match self {
                Self::Direct(g) => {
                    let rec = g.get_command(id).await?;
                    let now = g.store().now().await.map_err(CliError::from)?;
                    if rec.status == Status::Pending && now >= rec.expires_at {
                        // Record the expiry, so that every channel agrees it is over.
                        let _ = g.apply_command(id, &Action::Expire).await?;
                        g.get_command(id).await?
                    } else {
                        rec
                    }
                }
                Self::Remote(r) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    r.wait_command(id, left.min(Duration::from_secs(25)))
                        .await?
                }
            };
            if rec.status != Status::Pending || tokio::time::Instant::now() >= deadline {
                return Ok(rec);
            }
            if let Self::Direct(_) = self {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    pub async fn queue(
        &self,
        status: Option<gaia_core::outbox::Status>,
        limit: u32,
    ) -> Result<Vec<gaia_core::outbox::Message>, CliError> {
        match self {
            Self::Direct(g) => Ok(g.list_messages(status, limit).await?),
            Self::Remote(r) => r.queue(status, limit).await,
        }
    }

    pub async fn requeue(&self, id: i64) -> Result<gaia_core::outbox::Message, CliError> {
        match self {
            Self::Direct(g) => Ok(g.requeue_message(id, &cli_actor()).await?),
            Self::Remote(r) => r.requeue(id).await,
        }
    }

    pub async fn auto_requeue(
        &self,
        policy: &gaia_core::outbox::AutoRequeuePolicy,
        dry_run: bool,
    ) -> Result<Vec<gaia_core::outbox::Message>, CliError> {
        match self {
            Self::Direct(g) => Ok(g
                .auto_requeue_messages(policy, dry_run, &cli_actor())
                .await?),
            // The server applies its own configured policy.
            Self::Remote(r) => r.auto_requeue(dry_run).await,
        }
    }

    /// Closes the store (direct mode), so that pending change notifications go out before the
    /// process exits.
    pub async fn close(&self) {
        if let Self::Direct(g) = self {
            g.store().close().await;
        }
    }

    pub async fn revoke_token(&self, name: &str, actor: &str) -> Result<bool, CliError> {
        match self {
            Self::Direct(g) => Ok(g.revoke_token(name, actor).await?),
            Self::Remote(r) => r.revoke_token(name).await,
        }
    }
}

/// Who acts, for audit records of changes made from the CLI in direct mode.
pub fn cli_actor() -> String {
    std::env::var("GAIA_OPERATOR")
        .or_else(|_| std::env::var("USER").map(|u| format!("cli:{u}")))
        .unwrap_or_else(|_| "cli".into())
}
