//! Embedded migrations, applied on open under a transaction-scoped advisory lock so that nodes
//! starting together apply each exactly once. A database migrated by a newer Gaia is refused.

use sqlx::PgPool;

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

/// Arbitrary, fixed key of the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x6761_6961_6d69_6772;

/// Where applied migrations are recorded.
const SCHEMA: SchemaSql = SchemaSql {
    create: "CREATE TABLE IF NOT EXISTS gaia_schema (
            version       BIGINT PRIMARY KEY,
            name          TEXT   NOT NULL,
            applied_at_us BIGINT NOT NULL
        )",
    record: "INSERT INTO gaia_schema (version, name, applied_at_us) VALUES ($1, $2, $3)",
};

pub(crate) async fn run(pool: &PgPool) -> Db<()> {
    if current_version(pool).await.ok() == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    migrate::apply::<sqlx::Postgres, error::Postgres>(&mut tx, MIGRATIONS, &SCHEMA).await?;
    Ok(tx.commit().await?)
}

pub(crate) async fn current_version(pool: &PgPool) -> Db<i64> {
    let found: i64 = sqlx::query_scalar(migrate::CURRENT).fetch_one(pool).await?;
    Ok(migrate::refuse_newer(found, SCHEMA_VERSION)?)
}
