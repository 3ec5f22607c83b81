//! The event hub: knows the newest committed seq and wakes stream subscribers when it moves.
//!
//! It learns of commits two ways: at once from this node's own writes (the service's commit
//! hook), and by polling the store's head for writes made elsewhere (a CLI in direct mode,
//! other nodes). Subscribers never receive events from the hub itself: they read them from the
//! store after the seq they last sent, so a slow subscriber costs no server memory and can
//! never be silently skipped. Pages they read are kept briefly in memory, so that many
//! subscribers at the same point cost one read of the store.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gaia_core::event::{Event, EventFilter};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Recent events kept in memory, so that stream subscribers waiting at the same point share
/// one read of the store instead of one each.
const CACHE_EVENTS: usize = 4096;

/// A contiguous run of the newest events read from the store.
#[derive(Debug, Default)]
struct Recent {
    events: VecDeque<Event>,
}

impl Recent {
    /// The events after `after`, at most `limit`, if the run starts at or before `after + 1`.
    fn after(&self, after: i64, limit: usize) -> Option<Vec<Event>> {
        let first = self.events.front()?.seq;
        let last = self.events.back()?.seq;
        if after + 1 < first || after >= last {
            return None;
        }
        let skip = usize::try_from(after + 1 - first).ok()?;
        Some(self.events.iter().skip(skip).take(limit).cloned().collect())
    }

    /// Adds a page read from the store after `after`; keeps the run contiguous.
    fn add(&mut self, after: i64, page: &[Event]) {
        let Some(first) = page.first() else { return };
        let joins = self
            .events
            .back()
            .is_some_and(|b| b.seq == after && first.seq == after + 1);
        let newer = self.events.back().is_none_or(|b| first.seq > b.seq + 1);
        if joins {
            self.events.extend(page.iter().cloned());
        } else if newer && first.seq == after + 1 {
            self.events = page.iter().cloned().collect();
        } else {
            return;
        }
        while self.events.len() > CACHE_EVENTS {
            self.events.pop_front();
        }
    }
}

/// Shares the newest known seq, and the recent events.
#[derive(Debug, Clone)]
pub struct EventHub {
    latest: watch::Sender<i64>,
    recent: Arc<Mutex<Recent>>,
}

impl EventHub {
    pub fn new(start: i64) -> Self {
        Self {
            latest: watch::Sender::new(start),
            recent: Arc::default(),
        }
    }

    /// Committed events after `after`, at most `limit`, all of them (unfiltered), oldest
    /// first: from memory when another subscriber already read them, else from the store.
    /// Seqs are gap-free, so a page is always a contiguous run starting at `after + 1`.
    pub async fn read_after(
        &self,
        store: &Arc<dyn gaia_core::store::Store>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>, gaia_core::StoreError> {
        let cached = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .after(after, limit as usize);
        if let Some(events) = cached.filter(|e| !e.is_empty()) {
            return Ok(events);
        }
        let page = store
            .events_after(after, &EventFilter::default(), limit)
            .await?;
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(after, &page);
        Ok(page)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: i64) -> Event {
        Event {
            seq,
            ts: gaia_core::time::from_micros(0),
            kind: "x".into(),
            actor: "a".into(),
            subject: String::new(),
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_cache_stays_contiguous() {
        let mut r = Recent::default();
        assert!(r.after(0, 10).is_none());
        r.add(0, &[ev(1), ev(2), ev(3)]);
        assert_eq!(r.after(0, 10).map(|v| v.len()), Some(3));
        assert_eq!(r.after(1, 1).map(|v| v[0].seq), Some(2));
        assert!(r.after(3, 10).is_none(), "nothing newer is known");
        r.add(3, &[ev(4)]);
        assert_eq!(
            r.after(2, 10)
                .map(|v| v.iter().map(|e| e.seq).collect::<Vec<_>>()),
            Some(vec![3, 4])
        );
        // A page that does not join is not mixed in.
        r.add(10, &[ev(12)]);
        assert_eq!(r.events.back().map(|e| e.seq), Some(4));
        // A newer contiguous page from elsewhere replaces the run.
        r.add(20, &[ev(21), ev(22)]);
        assert_eq!(r.after(20, 10).map(|v| v.len()), Some(2));
        assert!(
            r.after(3, 10).is_none(),
            "older events are read from the store"
        );
    }
}
