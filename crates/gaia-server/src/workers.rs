//! The server's workers: the runtime's (see `gaia_runtime::workers`: hub poller, reaper,
//! outbox delivery, Telegram listener, alerts, automatic requeue, auto-execution) and its own
//! refusal flusher, which summarises refusals the audit gate only counted.

pub use gaia_runtime::workers::Workers;

use crate::AppState;

/// Starts every worker of a running server.
pub fn spawn(state: &AppState) -> Workers {
    let mut workers = gaia_runtime::workers::spawn(&state.runtime);
    workers.spawn(refusal_flusher(state.clone()));
    workers
}

/// Writes the summary of refusals a window suppressed once that window has ended, so a
/// flood is on record even when nothing follows it.
async fn refusal_flusher(state: AppState) {
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = tokio::time::sleep(state.refusals.window() / 4) => {}
        }
        crate::refusals::flush(&state).await;
    }
}
