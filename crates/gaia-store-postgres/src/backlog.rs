//! The backlog on PostgreSQL: the shared SQL, with row locks (`FOR UPDATE`) on locking reads
//! and `SKIP LOCKED` where a taker passes over a list another is deciding on.

use sqlx::PgConnection;

use crate::PgStore;

gaia_store_sql::backlog_sql!(
    store = PgStore,
    conn = PgConnection,
    for_update = " FOR UPDATE",
    skip_locked = " FOR UPDATE SKIP LOCKED",
);
