//! `gaia backup FILE` and `gaia restore FILE`.

use crate::cli::{BackupArgs, RestoreArgs};
use crate::config::Config;
use crate::exit::{CliError, CliResult};

pub async fn backup(_args: BackupArgs, _config: &Config) -> CliResult {
    Err(CliError::bad_input("not yet"))
}

pub async fn restore(_args: RestoreArgs, _config: &Config) -> CliResult {
    Err(CliError::bad_input("not yet"))
}
