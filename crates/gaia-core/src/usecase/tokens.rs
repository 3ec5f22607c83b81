//! Creating and revoking API tokens.

use crate::error::StoreError;
use crate::event::Event;
use crate::service::token_change;
use crate::tokens::TokenInfo;
use crate::tx::WriteTx;

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
    let (events, audit) = token_change(crate::event::kinds::TOKEN_CREATED, info);
    let events = tx.append(&events, &audit, now).await?;
    tx.commit().await?;
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
    let (events, audit) = token_change(crate::event::kinds::TOKEN_REVOKED, &info);
    let events = tx.append(&events, &audit, now).await?;
    tx.commit().await?;
    Ok(Some(events))
}
