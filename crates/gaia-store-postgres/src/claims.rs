//! Claims on PostgreSQL: the key's row is locked (created when missing) by one upsert, then the
//! decision is written with its events and audit records in the same transaction. Concurrent
//! claim calls are committed together (see [`crate::batch`]).

use gaia_core::StoreError;
use gaia_core::claims::{ClaimResult, Request};
use gaia_core::event::Event;
use sqlx::PgConnection;

use crate::PgStore;

gaia_store_sql::claims_sql!(
    store = PgStore,
    conn = PgConnection,
    skip_locked = " FOR UPDATE SKIP LOCKED",
    {
        async fn claim(&self, req: &Request) -> Result<(ClaimResult, Vec<Event>), StoreError> {
            self.batcher().submit(req.clone()).await
        }
    }
);
