//! Calls still running, by a key the transport chooses (the request id on stdio; the token and
//! the request id on HTTP), so that `notifications/cancelled` can drop the one it names.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::task::{AbortHandle, JoinHandle};

/// The registry of running calls.
#[derive(Debug, Default)]
pub struct InFlight {
    calls: Mutex<HashMap<String, AbortHandle>>,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, AbortHandle>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts `call` under `key`; it leaves the registry when it ends (or is cancelled). A
    /// call started under a key already running replaces it there (the older one still runs).
    pub fn spawn<F>(self: &std::sync::Arc<Self>, key: String, call: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let registry = self.clone();
        let done = key.clone();
        // Locked until the handle is in the map, so the task's removal comes after it.
        let mut calls = self.lock();
        let task = tokio::spawn(async move {
            call.await;
            registry.lock().remove(&done);
        });
        calls.insert(key, task.abort_handle());
        task
    }

    /// Drops the call running under `key`; false when there is none.
    pub fn cancel(&self, key: &str) -> bool {
        match self.lock().remove(key) {
            Some(h) => {
                h.abort();
                true
            }
            None => false,
        }
    }

    /// How many calls are running.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_cancelled_call_stops_and_a_finished_one_leaves() {
        let reg = Arc::new(InFlight::default());
        let done = reg.spawn("a".into(), async {});
        let _ = done.await;
        assert!(reg.is_empty());
        let long = reg.spawn("b".into(), tokio::time::sleep(Duration::from_secs(60)));
        assert_eq!(reg.len(), 1);
        assert!(reg.cancel("b"));
        assert!(long.await.is_err_and(|e| e.is_cancelled()));
        assert!(!reg.cancel("b"));
    }
}
