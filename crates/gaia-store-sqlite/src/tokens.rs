//! API tokens on SQLite: the shared SQL, nothing of its own.

use sqlx::SqliteConnection;

use crate::SqliteStore;

gaia_store_sql::tokens_sql!(store = SqliteStore, conn = SqliteConnection);
