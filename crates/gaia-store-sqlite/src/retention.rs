//! Cleanup's deletions and reads on SQLite: the shared SQL.

use sqlx::SqliteConnection;

use crate::SqliteStore;

gaia_store_sql::retention_sql!(store = SqliteStore, conn = SqliteConnection);
