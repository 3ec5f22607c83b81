//! Cleanup's deletions and reads on PostgreSQL: the shared SQL.

use sqlx::PgConnection;

use crate::PgStore;

gaia_store_sql::retention_sql!(store = PgStore, conn = PgConnection);
