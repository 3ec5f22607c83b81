//! Command approval requests on PostgreSQL: locking reads take row locks (`FOR UPDATE`), and the
//! expiry reaper skips a request being decided right now (`SKIP LOCKED`).

use sqlx::PgConnection;

use crate::PgStore;

gaia_store_sql::commands_sql!(
    store = PgStore,
    conn = PgConnection,
    for_update = " FOR UPDATE",
    skip_locked = " FOR UPDATE SKIP LOCKED",
    {}
);
