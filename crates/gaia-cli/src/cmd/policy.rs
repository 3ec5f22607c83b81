//! `gaia policy check`: what the rules decide for a command, without recording anything.

use gaia_core::commands::CommandSpec;

use crate::cli::PolicyCommand;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

pub fn run(c: PolicyCommand, config: &Config) -> CliResult {
    let PolicyCommand::Check { shell, json, argv } = c;
    let spec = match shell {
        Some(text) => CommandSpec::Shell(text),
        None if !argv.is_empty() => CommandSpec::Argv(argv),
        None => {
            return Err(CliError::bad_input(
                "give a command after -- (or --shell TEXT)",
            ));
        }
    };
    let d = config.policy.check(&spec);
    if json {
        super::out(&serde_json::to_string(&d).unwrap_or_default())?;
    } else {
        super::out(&format!(
            "{}  {}  ({})",
            d.verdict.as_str(),
            spec.display(),
            d.reason
        ))?;
    }
    Ok(exit::OK)
}
