//! The event hub: knows the newest committed seq and wakes stream subscribers when it moves.
//!
//! It learns of commits two ways: at once from this node's own writes (the service's commit
//! hook), and by polling the store's head for writes made elsewhere (a CLI in direct mode,
//! other nodes). Subscribers never receive events pushed by the hub: each pulls the events
//! after the seq it last sent, so a slow subscriber costs no server memory and can never be
//! silently skipped. The newest events are kept in memory as shared [`SharedEvent`]s: however
//! many subscribers wait at the same point, the store is read once (one reader at a time
//! fills the tail) and each event is rendered for the wire once, its bytes shared by all. A
//! subscriber that fell behind the memory window reads from the store after its last seq.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use gaia_core::event::{Event, EventFilter};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Recent events kept in memory, so that stream subscribers waiting at the same point share
/// one read of the store instead of one each.
const CACHE_EVENTS: usize = 4096;

/// One committed event, shared by every subscriber that sends it, with its wire form
/// rendered once on first use.
#[derive(Debug)]
pub struct SharedEvent {
    pub event: Event,
    frame: OnceLock<Bytes>,
}

impl SharedEvent {
    pub fn new(event: Event) -> Self {
        Self {
            event,
            frame: OnceLock::new(),
        }
    }

    /// The event's wire form: `render` runs for the first caller only, later callers (on any
    /// thread) share its bytes.
    pub fn frame(&self, render: impl FnOnce(&Event) -> Bytes) -> Bytes {
        self.frame.get_or_init(|| render(&self.event)).clone()
    }
}

/// Where a read after some seq stands against the memory window.
#[derive(Debug)]
enum Lookup {
    /// Served from memory.
    Hit(Vec<Arc<SharedEvent>>),
    /// Older than the window: read from the store, the window stays as it is.
    Behind,
    /// At or past the window's newest event (or nothing is held): a read that extends it.
    Tail,
}

/// A contiguous run of the newest events, read from the store or handed over by this node's
/// commits.
#[derive(Debug, Default)]
struct Recent {
    events: VecDeque<Arc<SharedEvent>>,
    /// Events this node committed that do not follow the run yet (a commit's hook can run
    /// before an earlier commit's, and other processes' events come only from the store):
    /// joined once the events before them are in the run.
    early: BTreeMap<i64, Arc<SharedEvent>>,
}

impl Recent {
    /// The events after `after`, at most `limit`, when the run holds `after + 1`.
    fn after(&self, after: i64, limit: usize) -> Lookup {
        let (Some(first), Some(last)) = (self.events.front(), self.events.back()) else {
            return Lookup::Tail;
        };
        let (first, last) = (first.event.seq, last.event.seq);
        if after >= last {
            return Lookup::Tail;
        }
        if after + 1 < first {
            return Lookup::Behind;
        }
        let Ok(skip) = usize::try_from(after + 1 - first) else {
            return Lookup::Behind;
        };
        let end = self.events.len().min(skip.saturating_add(limit));
        Lookup::Hit(self.events.range(skip..end).cloned().collect())
    }

    /// Adds a page read from the store after `after`; keeps the run contiguous.
    fn add(&mut self, after: i64, page: &[Arc<SharedEvent>]) {
        let Some(first) = page.first().map(|e| e.event.seq) else {
            return;
        };
        let joins = self
            .events
            .back()
            .is_some_and(|b| b.event.seq == after && first == after + 1);
        let newer = self.events.back().is_none_or(|b| first > b.event.seq + 1);
        if joins {
            self.events.extend(page.iter().cloned());
        } else if newer && first == after + 1 {
            self.events = page.iter().cloned().collect();
        } else {
            return;
        }
        self.join_early();
    }

    /// Adds events this node committed, each numbered as committed: where they follow the
    /// run they extend it (an empty run starts with them), else they wait aside for the
    /// events between. What the run holds is always a contiguous stretch of the log.
    fn committed(&mut self, events: &[Arc<SharedEvent>]) {
        for e in events {
            self.early.insert(e.event.seq, Arc::clone(e));
        }
        if self.events.is_empty() {
            if let Some((_, first)) = self.early.pop_first() {
                self.events.push_back(first);
            }
        }
        self.join_early();
        // Events whose predecessors never come this way wait for a read of the store.
        while self.early.len() > CACHE_EVENTS {
            self.early.pop_first();
        }
    }

    /// Moves the waiting events that now follow the run into it; drops those it already holds.
    fn join_early(&mut self) {
        if let Some(back) = self.events.back().map(|e| e.event.seq) {
            let mut next = back + 1;
            self.early = self.early.split_off(&next);
            while let Some(e) = self.early.remove(&next) {
                self.events.push_back(e);
                next += 1;
            }
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
    /// Held while the tail of `recent` is read from the store, so that subscribers woken
    /// together by one commit read it once between them.
    fill: Arc<tokio::sync::Mutex<()>>,
}

impl EventHub {
    pub fn new(start: i64) -> Self {
        Self {
            latest: watch::Sender::new(start),
            recent: Arc::default(),
            fill: Arc::default(),
        }
    }

    fn lookup(&self, after: i64, limit: u32) -> Lookup {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .after(after, limit as usize)
    }

    /// Committed events after `after`, at most `limit`, all of them (unfiltered), oldest
    /// first: from memory when another subscriber already read them, else from the store.
    /// Seqs are gap-free, so a page is always a contiguous run starting at `after + 1`.
    pub async fn read_after(
        &self,
        store: &Arc<dyn gaia_core::store::Store>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Arc<SharedEvent>>, gaia_core::StoreError> {
        let _filling = match self.lookup(after, limit) {
            Lookup::Hit(events) => return Ok(events),
            Lookup::Behind => None,
            Lookup::Tail => {
                let guard = self.fill.lock().await;
                // Another subscriber may have read it while this one waited.
                if let Lookup::Hit(events) = self.lookup(after, limit) {
                    return Ok(events);
                }
                Some(guard)
            }
        };
        let page: Vec<Arc<SharedEvent>> = store
            .events_after(after, &EventFilter::default(), limit)
            .await?
            .into_iter()
            .map(|e| Arc::new(SharedEvent::new(e)))
            .collect();
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(after, &page);
        Ok(page)
    }

    /// Returns once an event about `subject` has committed after `*seen`, moving `*seen` to
    /// the last event it scanned (that event, when it returns). The events are read as a
    /// stream subscriber reads them, from memory when another reader already fetched them, so
    /// however many callers wait, a commit costs one read of the store between them instead
    /// of one per caller. An event at or before `*seen` is committed already, so a caller
    /// that took `*seen` from [`Self::latest`] before reading what it waits on sees it there.
    /// Cancel-safe: `*seen` only ever moves past events that were scanned.
    pub async fn next_about(
        &self,
        store: &Arc<dyn gaia_core::store::Store>,
        seen: &mut i64,
        subject: &str,
    ) -> Result<(), gaia_core::StoreError> {
        const PAGE: u32 = 256;
        let mut wake = self.subscribe();
        loop {
            let known = *wake.borrow_and_update();
            if *seen < known {
                let page = self.read_after(store, *seen, PAGE).await?;
                for e in &page {
                    *seen = e.event.seq;
                    if e.event.subject == subject {
                        return Ok(());
                    }
                }
                if !page.is_empty() {
                    continue;
                }
            }
            if wake.changed().await.is_err() {
                // The hub is gone: nothing will commit through it any more.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Records the events one of this node's commits wrote: kept in memory for the readers
    /// it wakes, so that they need not read them back from the store.
    pub fn committed_events(&self, events: &[Event]) {
        let Some(last) = events.last().map(|e| e.seq) else {
            return;
        };
        let shared: Vec<_> = events
            .iter()
            .map(|e| Arc::new(SharedEvent::new(e.clone())))
            .collect();
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .committed(&shared);
        self.committed(last);
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

    fn ev(seq: i64) -> Arc<SharedEvent> {
        Arc::new(SharedEvent::new(Event {
            seq,
            ts: gaia_core::time::from_micros(0),
            kind: "x".into(),
            actor: "a".into(),
            subject: String::new(),
            data: serde_json::Value::Null,
        }))
    }

    fn seqs(l: Lookup) -> Option<Vec<i64>> {
        match l {
            Lookup::Hit(v) => Some(v.iter().map(|e| e.event.seq).collect()),
            Lookup::Behind | Lookup::Tail => None,
        }
    }

    #[test]
    fn the_cache_stays_contiguous() {
        let mut r = Recent::default();
        assert!(matches!(r.after(0, 10), Lookup::Tail));
        r.add(0, &[ev(1), ev(2), ev(3)]);
        assert_eq!(seqs(r.after(0, 10)), Some(vec![1, 2, 3]));
        assert_eq!(seqs(r.after(1, 1)), Some(vec![2]));
        assert!(
            matches!(r.after(3, 10), Lookup::Tail),
            "nothing newer is known"
        );
        r.add(3, &[ev(4)]);
        assert_eq!(seqs(r.after(2, 10)), Some(vec![3, 4]));
        // A page that does not join is not mixed in.
        r.add(10, &[ev(12)]);
        assert_eq!(r.events.back().map(|e| e.event.seq), Some(4));
        // A newer contiguous page from elsewhere replaces the run.
        r.add(20, &[ev(21), ev(22)]);
        assert_eq!(seqs(r.after(20, 10)), Some(vec![21, 22]));
        assert!(
            matches!(r.after(3, 10), Lookup::Behind),
            "older events are read from the store"
        );
    }

    #[test]
    fn committed_events_join_the_run_in_seq_order() {
        let mut r = Recent::default();
        // A later commit's hook runs first: it starts the run, the earlier one waits aside
        // (it cannot go in front of the run) and the events after it join as they come.
        r.committed(&[ev(5)]);
        assert_eq!(seqs(r.after(4, 10)), Some(vec![5]));
        r.committed(&[ev(7), ev(8)]);
        assert!(matches!(r.after(5, 10), Lookup::Tail), "6 is not known yet");
        r.committed(&[ev(6)]);
        assert_eq!(seqs(r.after(4, 10)), Some(vec![5, 6, 7, 8]));
        assert!(r.early.is_empty());
        // A gap (another process's commit) is filled by a read of the store, which the
        // waiting events then follow; events the run already holds are dropped.
        r.committed(&[ev(10)]);
        assert!(matches!(r.after(8, 10), Lookup::Tail));
        r.add(8, &[ev(9), ev(10)]);
        assert_eq!(seqs(r.after(8, 10)), Some(vec![9, 10]));
        r.committed(&[ev(3), ev(11)]);
        assert_eq!(seqs(r.after(9, 10)), Some(vec![10, 11]));
        assert!(r.early.is_empty());
        assert!(matches!(r.after(3, 10), Lookup::Behind));
    }

    #[test]
    fn the_window_keeps_the_newest_events() {
        let mut r = Recent::default();
        let n = i64::try_from(CACHE_EVENTS).unwrap() + 10;
        for seq in 1..=n {
            r.add(seq - 1, &[ev(seq)]);
        }
        assert_eq!(r.events.len(), CACHE_EVENTS);
        assert!(matches!(r.after(5, 10), Lookup::Behind));
        assert_eq!(seqs(r.after(n - 2, 10)), Some(vec![n - 1, n]));
    }

    #[test]
    fn an_event_is_rendered_once_for_all_its_readers() {
        let e = ev(7);
        let renders = std::sync::atomic::AtomicUsize::new(0);
        let frames: Vec<Bytes> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        e.frame(|e| {
                            renders.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            Bytes::from(format!("id: {}\n\n", e.seq))
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(renders.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(frames.iter().all(|f| f.as_ref() == b"id: 7\n\n"));
        // The same bytes, not copies.
        assert!(frames.windows(2).all(|w| w[0].as_ptr() == w[1].as_ptr()));
    }
}
