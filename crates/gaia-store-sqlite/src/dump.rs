//! Whole-store copies on SQLite: the shared SQL of `gaia_store_sql::shared::dump`. A read
//! transaction in WAL mode is a snapshot; a load holds the write lock from its start; rowids
//! continue after the largest copied id by themselves.

use crate::SqliteStore;

gaia_store_sql::dump_sql!(
    store = SqliteStore,
    db = ::sqlx::Sqlite,
    snapshot = "BEGIN",
    load = "BEGIN IMMEDIATE",
    tables = "SELECT name FROM sqlite_master WHERE type = 'table'",
    columns = "SELECT name FROM pragma_table_info($1)",
    overriding = "",
    continue_identity = "",
);
