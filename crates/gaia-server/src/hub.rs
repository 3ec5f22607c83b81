//! The event hub: knows the newest committed seq and wakes stream subscribers when it moves.
//!
//! It learns of commits two ways: at once from this node's own writes (the service's commit
//! hook), and by polling the store's head for writes made elsewhere (a CLI in direct mode,
//! other nodes). Subscribers never receive events from the hub itself: they read them from the
//! store after the seq they last sent, so a slow subscriber costs no server memory and can
//! never be silently skipped.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Shares the newest known seq.
#[derive(Debug, Clone)]
pub struct EventHub {
    latest: watch::Sender<i64>,
}

impl EventHub {
    pub fn new(start: i64) -> Self {
        Self {
            latest: watch::Sender::new(start),
        }
    }

    /// Records that `seq` is committed (ignored when not newer).
    pub fn committed(&self, seq: i64) {
        self.latest.send_if_modified(|cur| {
            if seq > *cur {
                *cur = seq;
                true
            } else {
                false
            }
        });
    }

    pub fn latest(&self) -> i64 {
        *self.latest.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.latest.subscribe()
    }

    /// Follows commits made by other processes and nodes until cancelled: the store wakes it
    /// (PostgreSQL's LISTEN) or it polls the head row at least every `every`.
    pub async fn poll(
        self,
        store: std::sync::Arc<dyn gaia_core::store::Store>,
        every: Duration,
        cancel: CancellationToken,
    ) {
        loop {
            let after = self.latest();
            let res = tokio::select! {
                () = cancel.cancelled() => break,
                res = store.wait_for_commit(after, every) => res,
            };
            match res {
                Ok(seq) => self.committed(seq),
                Err(e) => {
                    tracing::warn!(error = %e, "event hub could not read the log head");
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(every) => {}
                    }
                }
            }
        }
    }
}
