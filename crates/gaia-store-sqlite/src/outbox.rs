//! The notification outbox on SQLite. Every write runs under SQLite's write lock (`BEGIN
//! IMMEDIATE`), so a locking read is a plain read and a slot reservation sees every other
//! process's sends and holds; the control flow is `gaia_core::usecase::outbox`.

use sqlx::SqliteConnection;

use crate::SqliteStore;

gaia_store_sql::outbox_sql!(
    store = SqliteStore,
    conn = SqliteConnection,
    for_update = "",
    skip_locked = "",
    greatest = "MAX",
    outcome = "json_extract(data, '$.outcome')",
);
