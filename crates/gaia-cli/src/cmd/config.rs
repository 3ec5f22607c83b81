//! `gaia config show`.

use crate::cli::ConfigCommand;
use crate::config::Config;
use crate::exit::{self, CliResult};

pub fn run(c: ConfigCommand, config: &Config) -> CliResult {
    let ConfigCommand::Show { json } = c;
    let shown = config.show();
    if json {
        super::out_json(&serde_json::to_value(&shown).unwrap_or_default())?;
        return Ok(exit::OK);
    }
    let width = shown.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in shown {
        let value = s.value.as_deref().unwrap_or("(unset)");
        super::out(&format!("{:width$} = {value}    # {}", s.name, s.source))?;
    }
    Ok(exit::OK)
}
