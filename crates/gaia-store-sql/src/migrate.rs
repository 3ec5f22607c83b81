//! The control flow of embedded migrations, once: read the version a database is at, refuse
//! one a newer Gaia migrated, apply the missing migrations in order and record each. The SQL
//! and the lock that makes concurrent first opens apply each migration exactly once are the
//! backend's.

use gaia_core::StoreError;
use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use crate::error::{Classify, Db};

/// An embedded migration: (version, name, SQL).
pub type Migration = (i64, &'static str, &'static str);

/// The backend's SQL for the `gaia_schema` table that records applied migrations.
#[derive(Debug)]
pub struct SchemaSql {
    /// Creates `gaia_schema (version, name, applied_at_us)` if it does not exist.
    pub create: &'static str,
    /// Inserts a row of `gaia_schema`, binding version, name and applied_at_us in that order.
    pub record: &'static str,
}

/// Reads the highest version recorded in `gaia_schema` (0 when empty).
pub const CURRENT: &str = "SELECT COALESCE(MAX(version), 0) FROM gaia_schema";

/// The version the last of `migrations` brings a database to.
pub const fn latest(migrations: &[Migration]) -> i64 {
    migrations[migrations.len() - 1].0
}

/// `found`, the version a database is at, unless a newer Gaia migrated it past `supported`.
pub fn refuse_newer(found: i64, supported: i64) -> Result<i64, StoreError> {
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    Ok(found)
}

/// Brings the database behind `conn` up to the last of `migrations`. Runs inside the caller's
/// transaction, which holds whatever lock keeps other processes from migrating at once.
pub async fn apply<DB, C>(
    conn: &mut DB::Connection,
    migrations: &[Migration],
    sql: &SchemaSql,
) -> Db<(), C>
where
    DB: Database,
    C: Classify,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB> + sqlx::Decode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    sqlx::raw_sql(sql.create).execute(&mut *conn).await?;
    let found: i64 = sqlx::query_scalar(CURRENT).fetch_one(&mut *conn).await?;
    let found = refuse_newer(found, latest(migrations))?;
    for (version, name, migration) in migrations.iter().filter(|(v, _, _)| *v > found) {
        sqlx::raw_sql(migration).execute(&mut *conn).await?;
        sqlx::query(sql.record)
            .bind(*version)
            .bind(*name)
            .bind(chrono::Utc::now().timestamp_micros())
            .execute(&mut *conn)
            .await?;
        tracing::info!(version, name, "applied migration");
    }
    Ok(())
}
