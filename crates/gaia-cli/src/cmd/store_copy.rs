//! `gaia store copy --from URL --to URL`.

use crate::config::Config;
use crate::exit::{CliError, CliResult};

pub async fn run(_from: &str, _to: &str, _config: &Config) -> CliResult {
    Err(CliError::bad_input("not yet"))
}

pub async fn import_events(_file: &std::path::Path, _config: &Config) -> CliResult {
    Err(CliError::bad_input("not yet"))
}
