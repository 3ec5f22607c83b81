//! Background workers of `gaia serve`. Each is a loop with the server's cancellation token and
//! a timer; on shutdown they are awaited (bounded by the drain timeout).
//!
//! - the hub poller: notices commits made by other processes and nodes;
//! - the claim reaper: emits `claim.expired` once for each lease whose TTL passed.

use tokio::task::JoinSet;

use crate::AppState;

/// Most expiries reported per reaper round.
const REAP_BATCH: u32 = 100;

/// The running workers.
#[derive(Debug)]
pub struct Workers {
    set: JoinSet<()>,
}

impl Workers {
    /// Waits for every worker to finish.
    pub async fn join(mut self) {
        while self.set.join_next().await.is_some() {}
    }
}

pub fn spawn(state: &AppState) -> Workers {
    let mut set = JoinSet::new();
    set.spawn(state.hub.clone().poll(
        state.gaia.store().clone(),
        state.opts.poll_interval,
        state.shutdown.clone(),
    ));
    set.spawn(reaper(state.clone()));
    Workers { set }
}

async fn reaper(state: AppState) {
    let mut tick = tokio::time::interval(state.opts.reap_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        loop {
            match state.gaia.reap_claims(REAP_BATCH).await {
                // A full batch may mean more are due: go again without waiting.
                Ok(events) if events.len() == REAP_BATCH as usize => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "claim reaper failed; retrying later");
                    break;
                }
            }
        }
    }
}
