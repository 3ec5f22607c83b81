//! Creating and revoking API tokens.

use serde_json::json;

use crate::audit::NewAudit;
use crate::error::StoreError;
use crate::event::{Event, NewEvent, kinds};
use crate::tokens::TokenInfo;
use crate::tx::WriteTx;

/// The event and audit record of a token change (`kind` is [`kinds::TOKEN_CREATED`] or
/// [`kinds::TOKEN_REVOKED`]). Neither carries the token or its hash.
pub fn token_change(kind: &str, info: &TokenInfo) -> (Vec<NewEvent>, Vec<NewAudit>) {
    let subject = format!("token/{}", info.name);
    let data = json!({ "name": info.name, "role": info.role.as_str() });
    let action = match kind {
        kinds::TOKEN_CREATED => "token.create",
        kinds::TOKEN_REVOKED => "token.revoke",
        other => other,
    };
    (
        vec![NewEvent::new(
            kind,
            &info.created_by,
            &subject,
            data.clone(),
        )],
        vec![NewAudit::new(
            &info.created_by,
            action,
            &subject,
            "ok",
            data,
        )],
    )
}

/// Stores a new token by its hash; a conflict when the name was ever used.
pub async fn create(
    mut tx: Box<dyn WriteTx>,
    info: &TokenInfo,
    hash: &str,
) -> Result<Vec<Event>, StoreError> {
    let now = tx.now().await?;
    let stored = TokenInfo {
        created_at: now,
        ..info.clone()
    };
    if !tx.token_insert(&stored, hash).await? {
        return Err(StoreError::Conflict(format!(
            "a token named '{}' already exists",
            info.name
        )));
    }
    let (events, audit) = token_change(kinds::TOKEN_CREATED, info);
    let events = tx.append_and_commit(&events, &audit, now).await?;
    Ok(events)
}

/// Revokes the live token `name` on behalf of `actor`; `None` when there is none.
pub async fn revoke(
    mut tx: Box<dyn WriteTx>,
    name: &str,
    actor: &str,
) -> Result<Option<Vec<Event>>, StoreError> {
    let now = tx.now().await?;
    let Some(mut info) = tx.token_revoke(name, now).await? else {
        return Ok(None);
    };
    info.revoked_at = Some(now);
    info.created_by = actor.to_owned();
    let (events, audit) = token_change(kinds::TOKEN_REVOKED, &info);
    let events = tx.append_and_commit(&events, &audit, now).await?;
    Ok(Some(events))
}
