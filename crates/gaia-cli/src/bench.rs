//! `gaia bench`: Gaia's claim path measured beside raw SQL doing the same work in the same run.

use clap::Subcommand;

use crate::config::Config;
use crate::exit::CliResult;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Claims per second and latency, Gaia against a raw-SQL baseline.
    Claims,
}

pub async fn run(_cmd: BenchCommand, _config: &Config) -> CliResult {
    Err(crate::exit::CliError::new(
        crate::exit::FAILURE,
        "gaia bench claims is being written",
    ))
}
