//! The [`WriteTx`] primitives on PostgreSQL: a transaction whose `*_lock` reads take row locks
//! (`FOR UPDATE`), the database server's clock (or the injected one), and after commit one
//! NOTIFY so other nodes learn of the new events.

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
use gaia_core::time::to_micros;
use gaia_core::tokens::TokenInfo;
use gaia_core::tx::{PacingRow, PacingStart};
use sqlx::{Postgres, Transaction};

use crate::PgStore;
use crate::error::boundary;

/// One write transaction.
pub(crate) struct PgTx {
    tx: Transaction<'static, Postgres>,
    store: PgStore,
    /// The events appended, announced to other nodes once committed.
    appended: Vec<Event>,
}

#[async_trait]
impl Transact for PgStore {
    async fn begin_write(&self) -> Result<Box<dyn WriteTx>, StoreError> {
        Ok(Box::new(PgTx {
            tx: boundary(async { Ok(self.pool.begin().await?) }).await?,
            store: self.clone(),
            appended: Vec::new(),
        }))
    }
}

#[async_trait]
impl WriteTx for PgTx {
    async fn now(&mut self) -> Result<DateTime<Utc>, StoreError> {
        Ok(self.store.now_in(&mut self.tx).await?)
    }

    async fn append(
        &mut self,
        events: &[NewEvent],
        audit: &[NewAudit],
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        let committed = crate::log::append_log(&mut self.tx, events, audit, now).await?;
        self.appended.extend(committed.iter().cloned());
        Ok(committed)
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let Self {
            tx,
            store,
            appended,
        } = *self;
        boundary(async { Ok(tx.commit().await?) }).await?;
        store.announce(&appended);
        Ok(())
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
        Ok(crate::commands::lock(&mut self.tx, id).await?)
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
