//! The HTTP client of remote mode (`GAIA_URL`, `GAIA_TOKEN`): the same operations as the
//! direct store, through the server's API, returning the same core types so that output and
//! exit codes do not depend on the mode. The backlog's routes are in [`backlog`].

mod backlog;

use std::time::Duration;

use chrono::{DateTime, Utc};
use gaia_core::audit::{AuditRecord, Break, VerifyReport};
use gaia_core::claims::{ClaimResult, Holder, Outcome, Request};
use gaia_core::commands::{
    Action, CommandRecord, CommandSpec, NewCommand, Refusal, Status, binding,
};
use gaia_core::event::{Event, EventFilter};
use gaia_core::names::ClaimKey;
use gaia_core::time::format_duration;
use gaia_core::tokens::{Role, TokenInfo};
use gaia_server::problem::Problem;
use gaia_server::wire::{
    AuditBody, ClaimBody, CommandBody, CommandSpecBody, EventBody, HolderBody, MessageBody,
    NewTokenBody, TokenBody, VerifyBody,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::exit::{self, CliError};

/// How long one ordinary call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A Gaia server and the token to call it with.
#[derive(Clone)]
pub struct Remote {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Remote {
    pub fn new(url: &str, token: &str) -> Result<Self, CliError> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::bad_input(format!(
                "GAIA_URL '{base}' must start with http:// or https://"
            )));
        }
        if token.is_empty() {
            return Err(CliError::bad_input(
                "GAIA_URL is set but GAIA_TOKEN (or --token) is not",
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| {
                CliError::new(exit::FAILURE, format!("cannot build the HTTP client: {e}"))
            })?;
        Ok(Self {
            base,
            token: token.to_owned(),
            http,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<T, CliError> {
        self.call_within(method, path, query, body, REQUEST_TIMEOUT)
            .await
    }

    /// [`Self::call`] with its own time limit (a long-poll needs longer than the default).
    async fn call_within<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<T, CliError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .query(query);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.map_err(|e| {
            let why = if e.is_connect() {
                "connection refused or unreachable"
            } else if e.is_timeout() {
                "timed out"
            } else {
                "request failed"
            };
            // An outage, not the caller's mistake: its own exit code, so retries can tell.
            CliError::new(exit::UNAVAILABLE, format!("server {} {why}", self.base))
        })?;
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| CliError::new(exit::FAILURE, format!("reading the response: {e}")))?;
        if status.is_success() {
            let text: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            return serde_json::from_slice(text).map_err(|e| {
                CliError::new(
                    exit::FAILURE,
                    format!("unexpected response from the server: {e}"),
                )
            });
        }
        let detail = serde_json::from_slice::<Problem>(&bytes)
            .map(|p| p.detail)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        let code = match status {
            StatusCode::CONFLICT | StatusCode::NOT_FOUND => exit::CONFLICT,
            StatusCode::SERVICE_UNAVAILABLE => exit::LOCK_TIMEOUT,
            // A proxy in front of the server could not reach it.
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => exit::UNAVAILABLE,
            s if s.is_client_error() => exit::BAD_INPUT,
            _ => exit::FAILURE,
        };
        Err(CliError::new(code, detail))
    }

    pub async fn claim(&self, req: &Request) -> Result<ClaimResult, CliError> {
        let (path, body) = match req {
            Request::Acquire { key, holder, ttl } => (
                "/api/v1/claims/acquire",
                json!({
                    "story": key.story, "todolist": key.todolist, "agent": holder.agent,
                    "operator": holder.operator, "fingerprint": holder.fingerprint,
                    "ttl": format_duration(*ttl),
                }),
            ),
            Request::Refresh {
                key,
                agent,
                fingerprint,
                ttl,
                ..
            } => (
                "/api/v1/claims/refresh",
                json!({
                    "story": key.story, "todolist": key.todolist, "agent": agent,
                    "fingerprint": fingerprint, "ttl": ttl.map(format_duration),
                }),
            ),
            Request::Release {
                key,
                agent,
                fingerprint,
                ..
            } => (
                "/api/v1/claims/release",
                json!({
                    "story": key.story, "todolist": key.todolist, "agent": agent,
                    "fingerprint": fingerprint,
                }),
            ),
        };
        let b: ClaimBody = self.call(Method::POST, path, &[], Some(body)).await?;
        claim_result(b)
    }

    pub async fn inspect(&self, key: &ClaimKey) -> Result<ClaimResult, CliError> {
        let path = format!(
            "/api/v1/claims/{}/{}",
            encode(&key.story),
            encode(&key.todolist)
        );
        claim_result(self.call(Method::GET, &path, &[], None).await?)
    }

    pub async fn list_claims(&self, all: bool) -> Result<Vec<ClaimResult>, CliError> {
        let list: Vec<ClaimBody> = self
            .call(
                Method::GET,
                "/api/v1/claims",
                &[("all", all.to_string())],
                None,
            )
            .await?;
        list.into_iter().map(claim_result).collect()
    }

    pub async fn emit(
        &self,
        kind: &str,
        actor: &str,
        subject: &str,
        data: serde_json::Value,
    ) -> Result<Event, CliError> {
        let body = json!({ "type": kind, "actor": actor, "subject": subject, "data": data });
        event(
            self.call(Method::POST, "/api/v1/events", &[], Some(body))
                .await?,
        )
    }

    pub async fn events(
        &self,
        anchor: (&str, i64),
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<Event>, CliError> {
        let mut q = vec![
            (anchor.0, anchor.1.to_string()),
            ("limit", limit.min(1000).to_string()),
        ];
        if let Some(t) = &filter.type_prefix {
            q.push(("type", t.clone()));
        }
        if let Some(s) = &filter.subject {
            q.push(("subject", s.clone()));
        }
        let list: Vec<EventBody> = self.call(Method::GET, "/api/v1/events", &q, None).await?;
        list.into_iter().map(event).collect()
    }

    pub async fn last_seq(&self) -> Result<i64, CliError> {
        let head: serde_json::Value = self
            .call(Method::GET, "/api/v1/events/head", &[], None)
            .await?;
        Ok(head["last_seq"].as_i64().unwrap_or(0))
    }

    pub async fn audit_tail(&self, limit: u32) -> Result<Vec<AuditRecord>, CliError> {
        let list: Vec<AuditBody> = self
            .call(
                Method::GET,
                "/api/v1/audit",
                &[("limit", limit.to_string())],
                None,
            )
            .await?;
        list.into_iter()
            .map(|a| {
                Ok(AuditRecord {
                    id: a.id,
                    ts: time(&a.ts)?,
                    actor: a.actor,
                    action: a.action,
                    subject: a.subject,
                    outcome: a.outcome,
                    details: a.details,
                    prev_hash: a.prev_hash,
                    hash: a.hash,
                })
            })
            .collect()
    }

    pub async fn audit_verify(&self) -> Result<VerifyReport, CliError> {
        let v: VerifyBody = self
            .call(Method::GET, "/api/v1/audit/verify", &[], None)
            .await?;
        Ok(VerifyReport {
            checked: v.checked,
            first_break: v.first_broken.map(|b| Break {
                id: b.id,
                reason: b.reason,
            }),
        })
    }

    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
    ) -> Result<(TokenInfo, String), CliError> {
        let b: NewTokenBody = self
            .call(
                Method::POST,
                "/api/v1/tokens",
                &[],
                Some(json!({"name": name, "role": role})),
            )
            .await?;
        let info = TokenInfo {
            name: b.name,
            role: b.role.parse()?,
            created_at: Utc::now(),
            created_by: String::new(),
            revoked_at: None,
        };
        Ok((info, b.token))
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, CliError> {
        let list: Vec<TokenBody> = self.call(Method::GET, "/api/v1/tokens", &[], None).await?;
        list.into_iter()
            .map(|t| {
                Ok(TokenInfo {
                    name: t.name,
                    role: t.role.parse()?,
                    created_at: time(&t.created_at)?,
                    created_by: t.created_by,
                    revoked_at: t.revoked_at.as_deref().map(time).transpose()?,
                })
            })
            .collect()
    }

    pub async fn revoke_token(&self, name: &str) -> Result<bool, CliError> {
        let path = format!("/api/v1/tokens/{}", encode(name));
        match self
            .call::<serde_json::Value>(Method::DELETE, &path, &[], None)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code == exit::CONFLICT => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Remote {
    /// The name the server knows the token by.
    pub async fn whoami(&self) -> Result<String, CliError> {
        let me: serde_json::Value = self.call(Method::GET, "/api/v1/whoami", &[], None).await?;
        me["name"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| bad_reply("whoami without a name"))
    }

    pub async fn request_command(&self, new: &NewCommand) -> Result<CommandRecord, CliError> {
        let body = json!({
            "command": CommandSpecBody::from(&new.spec),
            "cwd": new.cwd, "story": new.story, "todolist": new.todolist, "reason": new.reason,
            "is_test": new.is_test, "expires": format_duration(new.expires_in), "agent": new.requester,
        });
        command_record(
            self.call(Method::POST, "/api/v1/commands", &[], Some(body))
                .await?,
        )
    }

    pub async fn command(&self, id: &str) -> Result<CommandRecord, CliError> {
        let path = format!("/api/v1/commands/{}", encode(id));
        command_record(self.call(Method::GET, &path, &[], None).await?)
    }

    pub async fn commands(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, CliError> {
        let mut q = vec![("limit", limit.to_string())];
        if let Some(s) = status {
            q.push(("status", s.as_str().to_owned()));
        }
        let list: Vec<CommandBody> = self.call(Method::GET, "/api/v1/commands", &q, None).await?;
        list.into_iter().map(command_record).collect()
    }

    /// Over the API the decider is the token's name; the action's named decider is not sent.
    pub async fn command_action(
        &self,
        id: &str,
        action: &Action,
    ) -> Result<Result<CommandRecord, Refusal>, CliError> {
        let (verb, body) = match action {
            Action::Approve { reason, .. } => ("approve", json!({ "reason": reason })),
            Action::Deny { reason, .. } => ("deny", json!({ "reason": reason })),
            Action::AllowTest { .. } => ("allow-test", json!({})),
            Action::Cancel { .. } => ("cancel", json!({})),
            Action::Expire => return Ok(Ok(self.command(id).await?)),
            Action::BeginExecution { .. } => ("run", json!({})),
            Action::FinishExecution { execution } => (
                "ran",
                json!({
                    "exit_code": execution.exit_code,
                    "duration_ms": execution.duration_ms,
                    "error": execution.error,
                }),
            ),
        };
        let path = format!("/api/v1/commands/{}/{verb}", encode(id));
        self.refusable(self.call(Method::POST, &path, &[], Some(body)).await, id)
            .await
    }

    pub async fn execute_command(
        &self,
        id: &str,
        really: bool,
    ) -> Result<Result<CommandRecord, Refusal>, CliError> {
        let path = format!("/api/v1/commands/{}/execute", encode(id));
        let res = self
            .call(Method::POST, &path, &[], Some(json!({ "execute": really })))
            .await;
        self.refusable(res, id).await
    }

    /// Long-polls the server for a decision, at most `timeout` (the server caps one call at 60s).
    pub async fn wait_command(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<CommandRecord, CliError> {
        let secs = timeout.as_secs().clamp(1, 60);
        let path = format!("/api/v1/commands/{}/wait", encode(id));
        // The server answers after `secs` at the latest; the default limit would race it.
        let within = Duration::from_secs(secs) + REQUEST_TIMEOUT;
        command_record(
            self.call_within(
                Method::GET,
                &path,
                &[("timeout", format!("{secs}s"))],
                None,
                within,
            )
            .await?,
        )
    }

    /// A 409 from a decision is a refusal: fetch the request as it stands to report it.
    async fn refusable(
        &self,
        res: Result<CommandBody, CliError>,
        id: &str,
    ) -> Result<Result<CommandRecord, Refusal>, CliError> {
        match res {
            Ok(b) => Ok(Ok(command_record(b)?)),
            Err(e) if e.code == exit::CONFLICT && e.message.starts_with("refused: ") => {
                let current = self.command(id).await?;
                // The API adds the status for HTTP clients; direct mode's reason has none.
                let reason = e.message.trim_start_matches("refused: ");
                let suffix = format!(" (status {})", current.status.as_str());
                let reason = reason.strip_suffix(&suffix).unwrap_or(reason).to_owned();
                Ok(Err(Refusal {
                    reason,
                    current: Box::new(current),
                }))
            }
            Err(e) => Err(e),
        }
    }
}

impl Remote {
    pub async fn queue(
        &self,
        status: Option<gaia_core::outbox::Status>,
        limit: u32,
    ) -> Result<Vec<gaia_core::outbox::Message>, CliError> {
        let mut q = vec![("limit", limit.to_string())];
        if let Some(s) = status {
            q.push(("status", s.as_str().to_owned()));
        }
        let list: Vec<MessageBody> = self.call(Method::GET, "/api/v1/queue", &q, None).await?;
        list.into_iter().map(message).collect()
    }

    pub async fn requeue(&self, id: i64) -> Result<gaia_core::outbox::Message, CliError> {
        message(
            self.call(
                Method::POST,
                "/admin/requeue",
                &[],
                Some(json!({ "id": id })),
            )
            .await?,
        )
    }

    pub async fn auto_requeue(
        &self,
        dry_run: bool,
    ) -> Result<Vec<gaia_core::outbox::Message>, CliError> {
        let list: Vec<MessageBody> = self
            .call(
                Method::POST,
                "/api/v1/queue/auto-requeue",
                &[],
                Some(json!({ "dry_run": dry_run })),
            )
            .await?;
        list.into_iter().map(message).collect()
    }
}

fn message(b: MessageBody) -> Result<gaia_core::outbox::Message, CliError> {
    Ok(gaia_core::outbox::Message {
        id: b.id,
        channel: b
            .channel
            .parse()
            .map_err(|_| bad_reply("unknown channel"))?,
        target: b.target,
        kind: b.kind,
        payload: b.payload,
        dedupe_key: b.dedupe_key,
        status: b
            .status
            .parse()
            .map_err(|_| bad_reply("unknown message status"))?,
        attempts: b.attempts,
        requeues: b.requeues,
        created_at: time(&b.created_at)?,
        next_attempt_at: time(&b.next_attempt_at)?,
        last_error: b.last_error,
        sent_at: b.sent_at.as_deref().map(time).transpose()?,
        dead_at: b.dead_at.as_deref().map(time).transpose()?,
        result: b.result,
    })
}

fn command_record(b: CommandBody) -> Result<CommandRecord, CliError> {
    let spec: CommandSpec = b.command.into();
    Ok(CommandRecord {
        binding: binding(&spec, b.cwd.as_deref()),
        id: b.id,
        spec,
        cwd: b.cwd,
        story: b.story,
        todolist: b.todolist,
        reason: b.reason,
        requester: b.requester,
        is_test: b.is_test,
        test_allowed: b.test_allowed,
        created_at: time(&b.created_at)?,
        expires_at: time(&b.expires_at)?,
        status: b
            .status
            .parse()
            .map_err(|_| bad_reply("unknown command status"))?,
        decided_by: b.decided_by,
        decided_via: b.decided_via,
        decided_at: b.decided_at.as_deref().map(time).transpose()?,
        decision_reason: b.decision_reason,
        execution: b
            .execution
            .map(serde_json::from_value)
            .transpose()
            .map_err(|_| bad_reply("bad execution record"))?,
    })
}

/// Percent-encodes a path segment.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn bad_reply(what: &str) -> CliError {
    CliError::new(
        exit::FAILURE,
        format!("unexpected response from the server: {what}"),
    )
}

fn time(s: &str) -> Result<DateTime<Utc>, CliError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad_reply("bad time"))
}

fn holder(h: HolderBody) -> Holder {
    Holder {
        agent: h.agent,
        operator: h.operator,
        fingerprint: h.fingerprint,
        principal: h.principal,
    }
}

fn claim_result(b: ClaimBody) -> Result<ClaimResult, CliError> {
    let outcome: Outcome = serde_json::from_value(serde_json::Value::String(b.outcome))
        .map_err(|_| bad_reply("unknown claim outcome"))?;
    Ok(ClaimResult {
        outcome,
        key: ClaimKey::parse(&b.key).map_err(|_| bad_reply("bad claim key"))?,
        holder: b.holder.map(holder),
        token: b.token,
        acquired_at: b.acquired_at.as_deref().map(time).transpose()?,
        expires_at: b.expires_at.as_deref().map(time).transpose()?,
        previous: b.previous_holder.map(holder),
    })
}

fn event(b: EventBody) -> Result<Event, CliError> {
    Ok(Event {
        seq: b.seq,
        ts: time(&b.ts)?,
        kind: b.kind,
        actor: b.actor,
        subject: b.subject,
        data: b.data,
    })
}
