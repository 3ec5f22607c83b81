//! `gaia doctor [--json]`.

use crate::cli::DoctorArgs;
use crate::config::Config;
use crate::exit::{CliError, CliResult};

pub async fn run(_args: DoctorArgs, _config: &Config) -> CliResult {
    Err(CliError::bad_input("not yet"))
}
