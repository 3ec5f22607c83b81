//! The notification outbox on PostgreSQL. Row locks (`FOR UPDATE`, `SKIP LOCKED` when leasing)
//! keep senders on every node apart; the control flow is `gaia_core::usecase::outbox`.

use sqlx::PgConnection;

use crate::PgStore;

gaia_store_sql::outbox_sql!(
    store = PgStore,
    conn = PgConnection,
    for_update = " FOR UPDATE",
    skip_locked = " FOR UPDATE SKIP LOCKED",
    greatest = "GREATEST",
    outcome = "data::jsonb ->> 'outcome'",
);
