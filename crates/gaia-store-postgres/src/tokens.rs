//! API tokens on PostgreSQL: the shared SQL, nothing of its own.

use sqlx::PgConnection;

use crate::PgStore;

gaia_store_sql::tokens_sql!(store = PgStore, conn = PgConnection);
