//! `gaia mcp`: the MCP server on stdin/stdout over the configured store. stdout carries only
//! protocol messages; logs go to stderr.

use gaia_core::time::parse_duration;
use gaia_core::tokens::Role;
use gaia_mcp::{Caller, Session, Tools, Waits};

use crate::cli::McpArgs;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

pub async fn run(args: McpArgs, config: &Config) -> CliResult {
    if config.remote.is_some() {
        return Err(CliError::bad_input(
            "gaia mcp opens the store directly; for a server, connect the agent to its /mcp",
        ));
    }
    let role: Role = args.role.parse().map_err(|_| {
        CliError::bad_input(format!(
            "unknown role '{}': use agent or operator",
            args.role
        ))
    })?;
    if role == Role::Admin {
        return Err(CliError::bad_input(
            "gaia mcp acts as agent or operator, not admin",
        ));
    }
    gaia_core::names::check_name("agent", &args.agent)?;
    let given = |text: Option<&str>, default| text.map_or(Ok(default), parse_duration);
    let waits = Waits {
        wait: given(args.approval_wait.as_deref(), config.mcp_waits.wait)?,
        progress_every: given(
            args.progress_every.as_deref(),
            config.mcp_waits.progress_every,
        )?,
    };
    let gaia = crate::open::gaia(config).await?;
    let tools = Tools {
        gaia: gaia.clone(),
        caller: Caller::local(args.agent, role),
        default_ttl: config.default_ttl,
        waits,
        refusals: None,
    };
    gaia_mcp::stdio::serve_std(Session::new(tools))
        .await
        .map_err(|e| CliError::new(exit::FAILURE, format!("mcp: {e}")))?;
    gaia.store().close().await;
    Ok(exit::OK)
}
