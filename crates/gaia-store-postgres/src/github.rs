//! GitHub sync records on PostgreSQL: the shared SQL, locking rows with `FOR UPDATE`.

use sqlx::PgConnection;

use crate::PgStore;

gaia_store_sql::github_sql!(
    store = PgStore,
    conn = PgConnection,
    for_update = " FOR UPDATE"
);
