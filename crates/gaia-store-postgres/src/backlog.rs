//! The backlog on PostgreSQL: the shared SQL, with row locks (`FOR UPDATE`) on locking reads.

use sqlx::PgConnection;

use crate::PgStore;

gaia_store_sql::backlog_sql!(
    store = PgStore,
    conn = PgConnection,
    for_update = " FOR UPDATE"
);
