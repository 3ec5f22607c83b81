//! The [`WriteTx`] primitives on SQLite: a `BEGIN IMMEDIATE` transaction (SQLite's write lock,
//! so nothing read inside it can change before it commits) and this machine's clock (or the
//! injected one), shared by every process using the file.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gaia_core::StoreError;

use gaia_core::event::Event;
use gaia_core::store::{Transact, WriteTx};
use gaia_core::time::Clock;

use crate::SqliteStore;

/// One write transaction holding SQLite's write lock.
pub(crate) struct SqliteTx {
    pub(crate) tx: crate::Writing,
    clock: Option<Arc<dyn Clock>>,
}

#[async_trait]
impl Transact for SqliteStore {
    async fn begin_write(&self) -> Result<Box<dyn WriteTx>, StoreError> {
        Ok(Box::new(SqliteTx {
            tx: self.begin_writing().await?,
            clock: self.clock.clone(),
        }))
    }
}

gaia_store_sql::write_tx!(SqliteTx {
    async fn now(&mut self) -> Result<DateTime<Utc>, StoreError> {
        Ok(self.clock.as_ref().map_or_else(Utc::now, |c| c.now()))
    }

    /// On the transaction's connection, then the commit; other processes see the file
    /// itself change. With nothing to log, the log head is left alone.
    async fn append_and_commit(
        mut self: Box<Self>,
        events: &[gaia_core::event::NewEvent],
        audit: &[gaia_core::audit::NewAudit],
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        if events.is_empty() && audit.is_empty() {
            self.tx.commit().await?;
            return Ok(Vec::new());
        }
        let events = crate::log::append_log(&mut self.tx, events, audit, now).await?;
        self.tx.commit().await?;
        Ok(events)
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await
    }
});
