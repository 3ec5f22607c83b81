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

impl SqliteStore {
    /// Writes a consistent copy of the database to `path` (`VACUUM INTO`) while other
    /// connections keep writing: it reads one snapshot, as a read transaction does. `path`
    /// must not exist.
    pub async fn backup_into(&self, path: &std::path::Path) -> Result<(), gaia_core::StoreError> {
        let target = path.to_string_lossy().into_owned();
        crate::error::boundary(async {
            sqlx::query("VACUUM INTO $1")
                .bind(target)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }
}
