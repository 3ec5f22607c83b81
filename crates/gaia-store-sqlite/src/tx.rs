//! The [`WriteTx`] primitives on SQLite: a `BEGIN IMMEDIATE` transaction (SQLite's write lock,
//! so nothing read inside it can change before it commits) and this machine's clock (or the
//! injected one), shared by every process using the file.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::audit::NewAudit;
use gaia_core::claims::ClaimRow;
use gaia_core::commands::CommandRecord;
use gaia_core::event::{Event, NewEvent};
use gaia_core::names::ClaimKey;
use gaia_core::outbox::{Leased, Message, NewMessage};
use gaia_core::store::{Transact, WriteTx};
use gaia_core::time::{Clock, to_micros};
use gaia_core::tokens::TokenInfo;
use gaia_core::tx::{PacingRow, PacingStart};
use sqlx::{Sqlite, Transaction};

use crate::SqliteStore;
use crate::error::boundary;

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
        Ok(crate::log::append_log(&mut self.tx, events, audit, now).await?)
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        boundary(async move { Ok(self.tx.commit().await?) }).await
    }

    async fn claim_expired(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClaimRow>, StoreError> {
        Ok(crate::claims::expired(&mut self.tx, to_micros(now), limit).await?)
    }

    async fn claim_mark_reported(&mut self, key: &ClaimKey) -> Result<(), StoreError> {
        Ok(crate::claims::mark_reported(&mut self.tx, key).await?)
    }

    async fn command_lock(&mut self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        Ok(crate::commands::get(&mut self.tx, id).await?)
    }

    async fn command_due(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        Ok(crate::commands::due(&mut self.tx, to_micros(now), limit).await?)
    }

    async fn command_insert(&mut self, r: &CommandRecord) -> Result<bool, StoreError> {
        Ok(crate::commands::insert(&mut self.tx, r).await?)
    }

    async fn command_update(&mut self, r: &CommandRecord) -> Result<(), StoreError> {
        Ok(crate::commands::update(&mut self.tx, r).await?)
    }

    async fn outbox_insert(
        &mut self,
        m: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        Ok(crate::outbox::insert(&mut self.tx, m, to_micros(now)).await?)
    }

    async fn outbox_lease_due(
        &mut self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Leased>, StoreError> {
        Ok(crate::outbox::lease_due(&mut self.tx, to_micros(now), to_micros(until), limit).await?)
    }

    async fn outbox_lock(&mut self, id: i64) -> Result<Option<Leased>, StoreError> {
        Ok(crate::outbox::lock(&mut self.tx, id).await?)
    }

    async fn outbox_write(&mut self, m: &Message) -> Result<(), StoreError> {
        Ok(crate::outbox::write(&mut self.tx, m).await?)
    }

    async fn outbox_set_lease(
        &mut self,
        id: i64,
        until: DateTime<Utc>,
        keep_later: bool,
    ) -> Result<(), StoreError> {
        Ok(crate::outbox::set_lease(&mut self.tx, id, to_micros(until), keep_later).await?)
    }

    async fn outbox_defer(&mut self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        Ok(crate::outbox::defer(&mut self.tx, id, to_micros(at)).await?)
    }

    async fn pacing_lock(&mut self, key: &str) -> Result<PacingRow, StoreError> {
        Ok(crate::outbox::pacing_lock(&mut self.tx, key).await?)
    }

    async fn pacing_nth_send(
        &mut self,
        chat: Option<&str>,
        n: u32,
        after: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(crate::outbox::pacing_nth_send(&mut self.tx, chat, n, to_micros(after)).await?)
    }

    async fn pacing_start(&mut self, start: &PacingStart<'_>) -> Result<(), StoreError> {
        Ok(crate::outbox::pacing_start(&mut self.tx, start).await?)
    }

    async fn pacing_finish(
        &mut self,
        key: &str,
        reserved: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let reserved = reserved.map_or(0, to_micros);
        Ok(crate::outbox::pacing_finish(&mut self.tx, key, reserved, to_micros(at)).await?)
    }

    async fn pacing_hold(&mut self, key: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        Ok(crate::outbox::pacing_hold(&mut self.tx, key, to_micros(until)).await?)
    }

    async fn token_insert(&mut self, info: &TokenInfo, hash: &str) -> Result<bool, StoreError> {
        Ok(crate::tokens::insert(&mut self.tx, info, hash).await?)
    }

    async fn token_revoke(
        &mut self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenInfo>, StoreError> {
        Ok(crate::tokens::revoke(&mut self.tx, name, to_micros(now)).await?)
    }
}
