//! Embedded migrations, applied on open under the write lock so that concurrent first opens
//! apply each exactly once. A database migrated by a newer Gaia is refused.

use gaia_core::StoreError;
use sqlx::SqlitePool;

use gaia_store_sql::migrate::{self, Migration, SCHEMA_VERSION};

use crate::error::{self, Db};

const MIGRATIONS: &[Migration] = gaia_store_sql::migrations!();

pub(crate) async fn run(pool: &SqlitePool) -> Db<()> {
    // Fast path without the write lock, in one statement: an up-to-date database needs
    // nothing. Any failure (a new file has no `gaia_schema` table yet) is looked at again
    // below, under the lock, where it is reported.
    if migrate::current_version::<_, error::Sqlite>(pool)
        .await
        .ok()
        == Some(SCHEMA_VERSION)
    {
        return Ok(());
    }
    let mut tx = crate::begin_write(pool).await?;
    let foreign: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'
           AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> 'gaia_schema'
           AND NOT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'gaia_schema')",
    )
    .fetch_one(&mut *tx)
    .await?;
    if foreign > 0 {
        return Err(StoreError::NotADatabase(
            "the file is a SQLite database of another application (it has tables but no Gaia schema)"
                .into(),
        )
        .into());
    }
    migrate::apply::<sqlx::Sqlite, error::Sqlite>(&mut tx, MIGRATIONS).await?;
    Ok(tx.commit().await?)
}

pub(crate) async fn current_version(reads: &crate::reads::Reads) -> Db<i64> {
    migrate::current_version(reads.pool()).await
}
