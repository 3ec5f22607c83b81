//! `gaia audit tail|verify`.

use gaia_core::time::rfc3339;
use serde_json::json;

use crate::cli::AuditCommand;
use crate::config::Config;
use crate::exit::{self, CliResult};

pub async fn run(c: AuditCommand, config: &Config) -> CliResult {
    let gaia = crate::client::connect(config).await?;
    match c {
        AuditCommand::Tail { limit, ndjson } => {
            for r in gaia.audit_tail(limit).await? {
                if ndjson {
                    super::out(&serde_json::to_string(&r).unwrap_or_default())?;
                } else {
                    super::out(&format!(
                        "#{} {} {} {} {} -> {} {}",
                        r.id,
                        rfc3339(r.ts),
                        r.actor,
                        r.action,
                        r.subject,
                        r.outcome,
                        r.details
                    ))?;
                }
            }
            Ok(exit::OK)
        }
        AuditCommand::Verify { json } => {
            let report = gaia.audit_verify().await?;
            if json {
                super::out(
                    &json!({
                        "intact": report.first_break.is_none(),
                        "checked": report.checked,
                        "first_broken": report.first_break.as_ref().map(|b| json!({"id": b.id, "reason": b.reason})),
                    })
                    .to_string(),
                )?;
            }
            match report.first_break {
                None => {
                    if !json {
                        super::out(&format!(
                            "audit chain intact: {} records verified",
                            report.checked
                        ))?;
                    }
                    Ok(exit::OK)
                }
                Some(b) => {
                    if !json {
                        super::out(&format!(
                            "audit chain broken at record #{}: {}",
                            b.id, b.reason
                        ))?;
                    }
                    Ok(exit::FAILURE)
                }
            }
        }
    }
}
