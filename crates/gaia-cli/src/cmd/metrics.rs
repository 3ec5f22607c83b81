//! `gaia metrics` and `gaia alert check` (direct mode: computed from the store).

use gaia_core::metrics::Threshold;

use crate::cli::AlertCommand;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

fn direct(config: &Config) -> Result<(), CliError> {
    if config.remote.is_some() {
        return Err(CliError::bad_input(
            "metrics and alerts read the store: unset GAIA_URL, or read GET /metrics on the server",
        ));
    }
    Ok(())
}

pub async fn metrics(json: bool, config: &Config) -> CliResult {
    direct(config)?;
    let gaia = crate::open::gaia(config).await?;
    let snapshot = gaia.get_metrics().await?;
    if json {
        super::out_json(&serde_json::to_value(&snapshot.0).unwrap_or_default())?;
    } else {
        let width = snapshot.0.keys().map(String::len).max().unwrap_or(0);
        for (name, value) in &snapshot.0 {
            super::out(&format!("{name:width$}  {value}"))?;
        }
    }
    Ok(exit::OK)
}

pub async fn alert(c: AlertCommand, config: &Config) -> CliResult {
    let AlertCommand::Check {
        thresholds,
        dry_run,
        json,
    } = c;
    let thresholds: Vec<Threshold> = if thresholds.is_empty() {
        config.thresholds.clone()
    } else {
        thresholds
            .iter()
            .map(|t| t.parse())
            .collect::<Result<_, _>>()?
    };
    direct(config)?;
    let gaia = crate::open::gaia(config).await?;
    let checks = gaia.check_alerts(&thresholds, dry_run).await?;
    gaia.store().close().await;
    if json {
        super::out(&serde_json::to_string(&checks).unwrap_or_default())?;
    } else {
        for c in &checks {
            let state = if c.breached { "BREACHED" } else { "ok" };
            super::out(&format!(
                "{state:8} {} = {} (threshold {})",
                c.metric, c.value, c.threshold
            ))?;
        }
    }
    Ok(if checks.iter().any(|c| c.breached) {
        exit::FAILURE
    } else {
        exit::OK
    })
}
