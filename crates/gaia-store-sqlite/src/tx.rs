//! The [`WriteTx`] primitives on SQLite: a `BEGIN IMMEDIATE` transaction (SQLite's write lock,
//! so nothing read inside it can change before it commits) and this machine's clock (or the
//! injected one), shared by every process using the file.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::audit::NewAudit;
use gaia_core::commands::CommandRecord;
use gaia_core::event::{Event, NewEvent};
use gaia_core::outbox::NewMessage;
use gaia_core::store::{Transact, WriteTx};
use gaia_core::time::{Clock, to_micros};
use gaia_core::tokens::TokenInfo;
use sqlx::{Sqlite, Transaction};

use crate::SqliteStore;
use crate::error::map_err;

/// One write transaction holding SQLite's write lock.
pub(crate) struct SqliteTx {
    pub(crate) tx: Transaction<'static, Sqlite>,
    clock: Option<Arc<dyn Clock>>,
}

#[async_trait]
impl Transact for SqliteStore {
    async fn begin_write(&self) -> Result<Box<dyn WriteTx>, StoreError> {
        Ok(Box::new(SqliteTx {
            tx: crate::begin_write(&self.pool).await?,
            clock: self.clock.clone(),
        }))
    }
}

#[async_trait]
impl WriteTx for SqliteTx {
    async fn now(&mut self) -> Result<DateTime<Utc>, StoreError> {
        Ok(self.clock.as_ref().map_or_else(Utc::now, |c| c.now()))
    }

    async fn append(
        &mut self,
        events: &[NewEvent],
        audit: &[NewAudit],
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        crate::log::append_log(&mut self.tx, events, audit, now).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(map_err)
    }

    async fn command_lock(&mut self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        crate::commands::get(&mut self.tx, id).await
    }

    async fn command_due(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        crate::commands::due(&mut self.tx, to_micros(now), limit).await
    }

    async fn command_insert(&mut self, r: &CommandRecord) -> Result<bool, StoreError> {
        crate::commands::insert(&mut self.tx, r).await
    }

    async fn command_update(&mut self, r: &CommandRecord) -> Result<(), StoreError> {
        crate::commands::update(&mut self.tx, r).await
    }

    async fn outbox_insert(
        &mut self,
        m: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        crate::outbox::insert(&mut self.tx, m, to_micros(now)).await
    }

    async fn token_insert(&mut self, info: &TokenInfo, hash: &str) -> Result<bool, StoreError> {
        crate::tokens::insert(&mut self.tx, info, hash).await
    }

    async fn token_revoke(
        &mut self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenInfo>, StoreError> {
        crate::tokens::revoke(&mut self.tx, name, to_micros(now)).await
    }
}
