//! GitHub sync records on SQLite: the shared SQL. A write transaction holds SQLite's write
//! lock, so a locking read is a plain read.

use sqlx::SqliteConnection;

use crate::SqliteStore;

gaia_store_sql::github_sql!(
    store = SqliteStore,
    conn = SqliteConnection,
    for_update = ""
);
