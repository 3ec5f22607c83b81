//! The [`WriteTx`] primitives on PostgreSQL: a transaction whose `*_lock` reads take row locks
//! (`FOR UPDATE`), the database server's clock (or the injected one), and after commit one
//! NOTIFY so other nodes learn of the new events.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gaia_core::StoreError;

use gaia_core::event::Event;
use gaia_core::store::{Transact, WriteTx};

use crate::PgStore;

/// One write transaction.
pub(crate) struct PgTx {
    tx: crate::Writing,
    store: PgStore,
    /// The newest seq appended, announced to other nodes once committed.
    last_seq: Option<i64>,
}

#[async_trait]
impl Transact for PgStore {
    async fn begin_write(&self) -> Result<Box<dyn WriteTx>, StoreError> {
        Ok(Box::new(PgTx {
            tx: self.writers.begin().await?,
            store: self.clone(),
            last_seq: None,
        }))
    }
}

gaia_store_sql::write_tx!(PgTx {
    async fn now(&mut self) -> Result<DateTime<Utc>, StoreError> {
        Ok(self.store.now_in(&mut self.tx).await?)
    }

    /// The first append of a transaction goes through this process's queue of appends
    /// (numbered from the head the previous one leaves, see [`crate::log::Appends`]); a later
    /// one holds `log_head` already and takes it as it stands. The newest seq is remembered,
    /// to announce once committed.
    async fn append(
        &mut self,
        events: &[gaia_core::event::NewEvent],
        audit: &[gaia_core::audit::NewAudit],
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        let committed = if self.last_seq.is_some() {
            crate::log::append_log(&mut self.tx, events, audit, now).await?
        } else {
            self.store
                .appends
                .append(&mut self.tx, events, audit, now)
                .await?
        };
        if let Some(last) = committed.last() {
            self.last_seq = Some(last.seq);
        }
        Ok(committed)
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let Self {
            tx,
            store,
            last_seq,
        } = *self;
        tx.commit().await?;
        if let Some(seq) = last_seq {
            store.announce(seq);
        }
        Ok(())
    }
});
