//! `gaia audit tail|verify`, and `verify --archive FILE` for a cleanup archive.

use gaia_core::time::rfc3339;
use serde_json::json;

use gaia_core::service::Join;

use crate::cli::AuditCommand;
use crate::client::Client;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

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
        AuditCommand::Verify {
            json,
            archive: Some(path),
        } => verify_archive(&gaia, &path, json).await,
        AuditCommand::Verify {
            json,
            archive: None,
        } => {
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

/// Verifies a cleanup archive on its own and against the live chain: exit 0 when it verifies
/// and joins (or is an older archive the next one continues), 1 otherwise.
async fn verify_archive(gaia: &Client, path: &std::path::Path, json: bool) -> CliResult {
    let Client::Direct(gaia) = gaia else {
        return Err(CliError::bad_input(
            "gaia audit verify --archive reads the store directly: unset GAIA_URL/--url",
        ));
    };
    let (ok, text, report) = match gaia.verify_archive(path).await {
        Err(gaia_core::service::CleanupError::Store(e)) => return Err(e.into()),
        Err(e) => (
            false,
            format!("archive does not verify: {e}"),
            json!({"intact": false, "error": e.to_string()}),
        ),
        Ok(check) => {
            let m = &check.manifest;
            let audit = m.audit.as_ref().map_or_else(
                || "no audit records".to_owned(),
                |a| format!("audit records #{}..#{}", a.first, a.last),
            );
            let (joins, how) = match &check.join {
                Join::Live => (
                    true,
                    "the live chain continues from its last record".to_owned(),
                ),
                Join::NoAudit => (true, "nothing to join".to_owned()),
                Join::Earlier { anchor_id } => (
                    true,
                    format!(
                        "an older archive: the live chain starts after #{anchor_id}, verify the archives after it"
                    ),
                ),
                Join::Broken(reason) => (false, reason.clone()),
            };
            (
                joins,
                format!(
                    "archive {} intact ({}; sha256 {}): {how}",
                    m.archive, audit, m.sha256
                ),
                json!({
                    "intact": true,
                    "joins": joins,
                    "join": how,
                    "job": m.job,
                    "sha256": m.sha256,
                    "counts": m.counts,
                    "audit": m.audit.as_ref().map(|a| json!({"first": a.first, "last": a.last})),
                }),
            )
        }
    };
    if json {
        super::out(&report.to_string())?;
    } else {
        super::out(&text)?;
    }
    Ok(if ok { exit::OK } else { exit::FAILURE })
}
