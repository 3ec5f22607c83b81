//! Embedded migrations, applied on open under the write lock so that concurrent first opens
//! apply each exactly once. A database migrated by a newer Gaia is refused.

use gaia_core::StoreError;
use sqlx::SqlitePool;

use gaia_store_sql::migrate::{self, Migration, SchemaSql, latest};

use crate::error::{self, Db};

/// (version, name, SQL), in order.
const MIGRATIONS: &[Migration] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "tokens",
        include_str!("../migrations/0002_tokens_reaper.sql"),
    ),
    (
        3,
        "settings",
        include_str!("../migrations/0003_settings.sql"),
    ),
    (
        4,
        "commands",
        include_str!("../migrations/0004_commands.sql"),
    ),
    (5, "outbox", include_str!("../migrations/0005_outbox.sql")),
    (
        6,
        "claim principal",
        include_str!("../migrations/0006_claim_principal.sql"),
    ),
    (
        7,
        "outbox pacing",
        include_str!("../migrations/0007_outbox_pacing.sql"),
    ),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = latest(MIGRATIONS);

/// Where applied migrations are recorded.
const SCHEMA: SchemaSql = SchemaSql {
    create: "CREATE TABLE IF NOT EXISTS gaia_schema (
            version       INTEGER PRIMARY KEY,
            name          TEXT    NOT NULL,
            applied_at_us INTEGER NOT NULL
        )",
    record: "INSERT INTO gaia_schema (version, name, applied_at_us) VALUES (?, ?, ?)",
};

pub(crate) async fn run(pool: &SqlitePool) -> Db<()> {
    // Fast path without the write lock: an up-to-date database needs nothing.
    if table_exists(pool).await? && current_version(pool).await? == SCHEMA_VERSION {
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
    migrate::apply::<sqlx::Sqlite, error::Sqlite>(&mut tx, MIGRATIONS, &SCHEMA).await?;
    Ok(tx.commit().await?)
}

async fn table_exists(pool: &SqlitePool) -> Db<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'gaia_schema'",
    )
    .fetch_one(pool)
    .await?;
    Ok(n > 0)
}

pub(crate) async fn current_version(pool: &SqlitePool) -> Db<i64> {
    let found: i64 = sqlx::query_scalar(migrate::CURRENT).fetch_one(pool).await?;
    Ok(migrate::refuse_newer(found, SCHEMA_VERSION)?)
}
