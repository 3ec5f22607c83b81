//! Background workers of `gaia serve` and `gaia telegram listen`. Each is a loop with the
//! runtime's cancellation token and a timer; on shutdown they are awaited (bounded by the
//! caller's drain timeout).
//!
//! - the hub poller: notices commits made by other processes and nodes;
//! - the reaper: emits `claim.expired` once for each lease whose TTL passed, and expires
//!   command requests nobody decided in time;
//! - with `continue_on_approve`, the auto-executor: runs approved argv commands;
//! - with senders, the outbox worker: delivers notifications (see `senders`);
//! - with Telegram, the listener: decisions from buttons, replies and chat commands;
//! - with thresholds, the alert checker; with a schedule, the automatic requeue;
//! - with a GitHub repository configured, the scheduled sync (see `github`).

use tokio::task::JoinSet;

use crate::Runtime;

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

    /// Runs one more worker alongside (a transport's own, such as the server's).
    pub fn spawn(&mut self, worker: impl std::future::Future<Output = ()> + Send + 'static) {
        self.set.spawn(worker);
    }
}

pub fn spawn(state: &Runtime) -> Workers {
    let mut set = JoinSet::new();
    set.spawn(state.hub.clone().poll(
        state.gaia.store().clone(),
        state.opts.poll_interval,
        state.shutdown.clone(),
    ));
    set.spawn(reaper(state.clone()));
    if !state.opts.thresholds.is_empty() {
        set.spawn(alert_checker(state.clone()));
    }
    if let Some(every) = state.opts.auto_requeue_every {
        set.spawn(auto_requeuer(state.clone(), every));
    }
    if let Some(listener) = state.telegram.clone() {
        set.spawn(listener.run(state.shutdown.clone()));
    }
    if let Some(sync) = state.github.clone() {
        let cancel = state.shutdown.clone();
        set.spawn(async move {
            sync.run(cancel).await;
        });
    }
    if let Some(senders) = state.senders.clone() {
        set.spawn(crate::senders::worker(
            state.gaia.clone(),
            state.hub.clone(),
            senders,
            state
                .opts
                .poll_interval
                .max(std::time::Duration::from_secs(1)),
            state.shutdown.clone(),
        ));
    }
    if state.opts.continue_on_approve {
        set.spawn(auto_executor(state.clone()));
    }
    Workers { set }
}

/// Runs approved argv commands as soon as they are approved. Execution stays at most once:
/// every run starts with the `BeginExecution` transition, which only one executor (on any
/// node) can commit.
async fn auto_executor(state: Runtime) {
    use gaia_core::commands::{CommandSpec, Status};
    let mut wake = state.hub.subscribe();
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            _ = wake.changed() => {}
            () = tokio::time::sleep(state.opts.reap_interval) => {}
        }
        let approved = match state.gaia.list_commands(Some(Status::Approved), 20).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "auto-executor could not list approved commands");
                continue;
            }
        };
        for cmd in approved {
            if !matches!(cmd.spec, CommandSpec::Argv(_)) || (cmd.is_test && !cmd.test_allowed) {
                continue;
            }
            let limits = gaia_exec::Limits {
                timeout: state.opts.exec_timeout,
                ..gaia_exec::Limits::default()
            };
            let really = state.opts.allow_execution;
            match crate::exec::execute(&state.gaia, &cmd.id, "gaia", really, limits).await {
                Ok(gaia_core::commands::Decided::Done(r)) => {
                    tracing::info!(id = %r.id, status = r.status.as_str(), "auto-executed")
                }
                // Another executor took it first: nothing to do.
                Ok(gaia_core::commands::Decided::Refused(_)) => {}
                Err(e) => tracing::warn!(id = %cmd.id, error = %e, "auto-execution failed"),
            }
        }
    }
}

async fn reaper(state: Runtime) {
    let mut tick = tokio::time::interval(state.opts.reap_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = state.gaia.expire_commands(REAP_BATCH).await {
            tracing::warn!(error = %e, "could not expire command requests; retrying later");
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

async fn alert_checker(state: Runtime) {
    let mut tick = tokio::time::interval(state.opts.alert_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = state.gaia.check_alerts(&state.opts.thresholds, false).await {
            tracing::warn!(error = %e, "alert check failed; retrying later");
        }
    }
}

async fn auto_requeuer(state: Runtime, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; wait a full period so a restart loop cannot requeue fast.
    tick.tick().await;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        match state
            .gaia
            .auto_requeue_messages(&state.opts.auto_requeue, false, "auto-requeue")
            .await
        {
            Ok(list) if !list.is_empty() => {
                tracing::info!(count = list.len(), "auto-requeued dead messages")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "auto-requeue failed; retrying later"),
        }
    }
}
