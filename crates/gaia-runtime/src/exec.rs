//! Executing an approved command: claim the execution (committed with its audit record before
//! anything runs), run it off the async threads, record the result. Shared by the server and
//! the CLI's direct mode.

use gaia_core::Gaia;
use gaia_core::commands::{Action, Decided, Execution, binding};
use gaia_core::error::Error;
use gaia_exec::Limits;

/// Executes request `id` as `executor`. With `really` false, records a dry run. The
/// `BeginExecution` transition commits first: if it cannot be written, or another executor got
/// there first, nothing runs.
pub async fn execute(
    gaia: &Gaia,
    id: &str,
    executor: &str,
    really: bool,
    limits: Limits,
) -> Result<Decided, Error> {
    let rec = gaia.get_command(id).await?;
    let begin = Action::BeginExecution {
        executor: executor.to_owned(),
        dry_run: !really,
        binding: binding(&rec.spec, rec.cwd.as_deref()),
    };
    let rec = match gaia.apply_command(id, &begin).await? {
        Decided::Done(r) if really => r,
        other => return Ok(other),
    };
    let (spec, cwd, who) = (rec.spec.clone(), rec.cwd.clone(), executor.to_owned());
    let execution =
        tokio::task::spawn_blocking(move || gaia_exec::run(&spec, cwd.as_deref(), &limits, &who))
            .await
            .unwrap_or_else(|e| Execution {
                executor: executor.to_owned(),
                dry_run: false,
                started_at: chrono::Utc::now(),
                exit_code: None,
                timed_out: false,
                duration_ms: 0,
                stdout: String::new(),
                stderr: String::new(),
                stdout_truncated: false,
                stderr_truncated: false,
                error: Some(format!("the executor failed: {e}")),
            });
    gaia.apply_command(id, &Action::FinishExecution { execution })
        .await
}
