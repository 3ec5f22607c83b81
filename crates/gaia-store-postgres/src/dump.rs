//! Whole-store copies on PostgreSQL: the shared SQL of `gaia_store_sql::shared::dump` with a
//! repeatable-read snapshot, the catalog of the current schema, and identity sequences
//! continued after the largest copied id.

use crate::PgStore;

gaia_store_sql::dump_sql!(
    store = PgStore,
    db = ::sqlx::Postgres,
    snapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    load = "BEGIN",
    tables = "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
              WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    columns = "SELECT CAST(column_name AS TEXT) FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = $1",
    overriding = "OVERRIDING SYSTEM VALUE",
    continue_identity =
        "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), MAX({column}))
                         FROM {table} HAVING MAX({column}) IS NOT NULL",
);
