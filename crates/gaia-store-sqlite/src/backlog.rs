//! The backlog on SQLite: the shared SQL. A write transaction holds SQLite's write lock, so a
//! locking read is a plain read and nothing is ever locked by someone else.

use sqlx::SqliteConnection;

use crate::SqliteStore;

gaia_store_sql::backlog_sql!(
    store = SqliteStore,
    conn = SqliteConnection,
    for_update = "",
    skip_locked = "",
);
