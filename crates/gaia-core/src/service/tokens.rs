//! API tokens: creating, importing, listing, revoking and authenticating them.

use super::Gaia;
use crate::error::Error;
use crate::names::check_name;
use crate::tokens::{self, Role, TokenInfo};

impl Gaia {
    /// Creates a token and returns it with its secret, which is shown once and never stored.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        actor: &str,
    ) -> Result<(TokenInfo, String), Error> {
        let secret = tokens::generate(role);
        let info = self.import_token(name, role, &secret, actor).await?;
        Ok((info, secret))
    }

    /// Stores a token whose secret was chosen elsewhere (the admin token from configuration).
    pub async fn import_token(
        &self,
        name: &str,
        role: Role,
        secret: &str,
        actor: &str,
    ) -> Result<TokenInfo, Error> {
        check_name("token name", name)?;
        let info = TokenInfo {
            name: name.to_owned(),
            role,
            created_at: self.store.now().await?,
            created_by: actor.to_owned(),
            revoked_at: None,
        };
        let events = self
            .store
            .token_create(&info, &tokens::hash(secret))
            .await?;
        self.mirror(&events);
        Ok(info)
    }

    /// Every token, revoked ones included, by name.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        Ok(self.store.token_list().await?)
    }

    /// Revokes a token; `Ok(false)` when no live token has that name.
    pub async fn revoke_token(&self, name: &str, actor: &str) -> Result<bool, Error> {
        match self.store.token_revoke(name, actor).await? {
            Some(events) => {
                self.mirror(&events);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The live token a presented secret belongs to.
    pub async fn authenticate_token(&self, secret: &str) -> Result<Option<TokenInfo>, Error> {
        Ok(self.store.token_lookup(&tokens::hash(secret)).await?)
    }
}
