//! `gaia token create|list|revoke`.

use gaia_core::time::rfc3339;
use gaia_core::tokens::Role;
use serde_json::json;

use crate::cli::TokenCommand;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

pub async fn run(c: TokenCommand, config: &Config) -> CliResult {
    let gaia = crate::client::connect(config).await?;
    match c {
        TokenCommand::Create { role, name, json } => {
            let role: Role = role.parse()?;
            let (info, secret) = gaia
                .create_token(&name, role, &crate::client::cli_actor())
                .await?;
            gaia.close().await;
            if json {
                super::out(
                    &json!({"name": info.name, "role": info.role, "token": secret}).to_string(),
                )?;
            } else {
                super::out(&format!(
                    "created {} token '{}' (shown once, store it now):",
                    info.role, info.name
                ))?;
                super::out(&secret)?;
            }
            Ok(exit::OK)
        }
        TokenCommand::List { json } => {
            let tokens = gaia.list_tokens().await?;
            if json {
                super::out_json(&serde_json::to_value(&tokens).unwrap_or_default())?;
            } else if tokens.is_empty() {
                super::out("no tokens")?;
            } else {
                for t in tokens {
                    let state = t
                        .revoked_at
                        .map_or_else(|| "live".to_owned(), |r| format!("revoked {}", rfc3339(r)));
                    super::out(&format!(
                        "{:20} {:8} created {} by {} ({state})",
                        t.name,
                        t.role.as_str(),
                        rfc3339(t.created_at),
                        t.created_by
                    ))?;
                }
            }
            Ok(exit::OK)
        }
        TokenCommand::Revoke { name } => {
            let revoked = gaia
                .revoke_token(&name, &crate::client::cli_actor())
                .await?;
            gaia.close().await;
            if revoked {
                super::out(&format!("revoked '{name}'"))?;
                Ok(exit::OK)
            } else {
                Err(CliError::new(
                    exit::CONFLICT,
                    format!("no live token named '{name}'"),
                ))
            }
        }
    }
}
