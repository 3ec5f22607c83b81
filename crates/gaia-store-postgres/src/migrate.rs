//! Embedded migrations, applied on open under a transaction-scoped advisory lock so that nodes
//! starting together apply each exactly once. A database migrated by a newer Gaia is refused.

use sqlx::PgPool;

use gaia_store_sql::migrate::{self, Migration, SCHEMA_VERSION};

use crate::error::{self, Db};

const MIGRATIONS: &[Migration] = gaia_store_sql::migrations!();

/// Arbitrary, fixed key of the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x6761_6961_6d69_6772;

pub(crate) async fn run(pool: &PgPool) -> Db<()> {
    if current_version(pool).await.ok() == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    migrate::apply::<sqlx::Postgres, error::Postgres>(&mut tx, MIGRATIONS).await?;
    Ok(tx.commit().await?)
}

pub(crate) async fn current_version(pool: &PgPool) -> Db<i64> {
    migrate::current_version(pool).await
}
