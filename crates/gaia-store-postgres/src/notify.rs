//! Change notification between nodes: after a commit, a node announces its newest seq with
//! `NOTIFY gaia_events`; every node LISTENs and wakes its stream readers.
//!
//! NOTIFY inside a writing transaction serialises the commits that notify, so ordinary writes
//! do not: a background task sends one NOTIFY per batch of commits, carrying only the newest
//! seq (a watch channel keeps just the latest value); readers fetch the events themselves.
//! Group-committed claims (see `batch`) are the exception: their commits are ordered by the
//! log head anyway, so each batch announces itself inside its own transaction.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The channel name.
pub(crate) const CHANNEL: &str = "gaia_events";

/// How long `close` waits for the last announcement to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(crate) struct Notifications {
    /// Newest seq committed by this process, to announce.
    committed: watch::Sender<i64>,
    /// Newest seq announced.
    sent: watch::Sender<i64>,
    /// Newest seq known committed by anyone (own commits and announcements heard).
    seen: watch::Sender<i64>,
    notifier: OnceLock<JoinHandle<()>>,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl Notifications {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            committed: watch::Sender::new(0),
            sent: watch::Sender::new(0),
            seen: watch::Sender::new(0),
            notifier: OnceLock::new(),
            listener: Mutex::new(None),
        })
    }

    /// Records a commit; the notifier task announces it.
    pub(crate) fn committed(self: &Arc<Self>, pool: &PgPool, seq: i64) {
        raise(&self.seen, seq);
        raise(&self.committed, seq);
        self.notifier.get_or_init(|| {
            let mut rx = self.committed.subscribe();
            let sent = self.sent.clone();
            let pool = pool.clone();
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let seq = *rx.borrow_and_update();
                    // The transaction that notifies holds nothing to keep: what it announces
                    // has committed, and a notification never outlives a crash anyway. So its
                    // commit does not wait for the WAL to reach the disk, where it would queue
                    // with the flushes of the writes that hold the log head.
                    let res = sqlx::query(
                        "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)",
                    )
                    .bind(CHANNEL)
                    .bind(seq.to_string())
                    .execute(&pool)
                    .await;
                    if let Err(e) = res {
                        // Readers fall back to polling the head row; nothing is lost.
                        tracing::debug!(error = %e, "could not announce a commit");
                    }
                    raise(&sent, seq);
                }
            })
        });
    }

    /// Records a commit that was already announced inside its own transaction.
    pub(crate) fn seen(&self, seq: i64) {
        raise(&self.seen, seq);
    }

    /// Subscribes to the newest known seq, starting the LISTEN task on first use.
    pub(crate) fn subscribe(self: &Arc<Self>, pool: &PgPool) -> watch::Receiver<i64> {
        let mut listener = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if listener.is_none() {
            let seen = self.seen.clone();
            let pool = pool.clone();
            *listener = Some(tokio::spawn(listen(pool, seen)));
        }
        self.seen.subscribe()
    }

    /// Waits (bounded) until every commit of this process has been announced.
    pub(crate) async fn flush(&self) {
        let target = *self.committed.borrow();
        let mut sent = self.sent.subscribe();
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, sent.wait_for(|s| *s >= target)).await;
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        if let Some(h) = self.notifier.get() {
            h.abort();
        }
        if let Some(h) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

fn raise(tx: &watch::Sender<i64>, seq: i64) {
    tx.send_if_modified(|cur| {
        if seq > *cur {
            *cur = seq;
            true
        } else {
            false
        }
    });
}

async fn listen(pool: PgPool, seen: watch::Sender<i64>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for commits; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "cannot LISTEN for commits; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    if let Ok(seq) = n.payload().parse::<i64>() {
                        raise(&seen, seq);
                    }
                }
                // The connection dropped: notifications may have been missed, which readers
                // cover by polling the head row; reconnect.
                Ok(None) => {}
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}
