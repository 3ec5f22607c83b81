//! The control flow of embedded migrations, once: read the version a database is at, refuse
//! one a newer Gaia migrated, apply the missing migrations in order and record each. The SQL
//! and the lock that makes concurrent first opens apply each migration exactly once are the
//! backend's.

use gaia_core::StoreError;
use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use crate::error::{Classify, Db};

/// An embedded migration: (version, name, SQL).
pub type Migration = (i64, &'static str, &'static str);

/// Every migration, in order, as `(version, name, file)`, handed to the macro `$then`: one list
/// for every backend, so that a schema version means the same tables everywhere. Each backend
/// holds its own SQL for each, in `migrations/` beside its `Cargo.toml`, under the same name.
#[macro_export]
macro_rules! migration_list {
    ($($then:ident)::+) => {
        $($then)::+!(
            (1, "init", "0001_init.sql"),
            (2, "tokens", "0002_tokens_reaper.sql"),
            (3, "settings", "0003_settings.sql"),
            (4, "commands", "0004_commands.sql"),
            (5, "outbox", "0005_outbox.sql"),
            (6, "claim principal", "0006_claim_principal.sql"),
            (7, "outbox pacing", "0007_outbox_pacing.sql"),
            (8, "backlog", "0008_backlog.sql"),
            (9, "github sync", "0009_github_sync.sql"),
            (10, "delivery", "0010_delivery.sql"),
            (11, "claim writer", "0011_claim_writer.sql"),
            (12, "append", "0012_append.sql"),
        )
    };
}

/// The calling backend's migrations as [`Migration`]s, its SQL embedded from its own
/// `migrations/` folder.
#[macro_export]
macro_rules! migrations {
    () => {
        $crate::migration_list!($crate::embed_migrations)
    };
}

/// Embeds the files [`migration_list!`] names (used by [`migrations!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! embed_migrations {
    ($(($version:literal, $name:literal, $file:literal)),* $(,)?) => {
        &[$((
            $version,
            $name,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $file)),
        )),*]
    };
}

/// The versions [`migration_list!`] names (used for [`SCHEMA_VERSION`]).
#[doc(hidden)]
#[macro_export]
macro_rules! migration_versions {
    ($(($version:literal, $name:literal, $file:literal)),* $(,)?) => {
        &[$($version),*]
    };
}

/// The schema version this build writes, on every backend.
pub const SCHEMA_VERSION: i64 = {
    let versions: &[i64] = crate::migration_list!(crate::migration_versions);
    versions[versions.len() - 1]
};

/// Creates the table that records applied migrations, if it does not exist (the same SQL on
/// every backend).
const CREATE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS gaia_schema (
        version       BIGINT PRIMARY KEY,
        name          TEXT   NOT NULL,
        applied_at_us BIGINT NOT NULL
    )";

/// Records an applied migration.
const RECORD: &str = "INSERT INTO gaia_schema (version, name, applied_at_us) VALUES ($1, $2, $3)";

/// Reads the highest version recorded in `gaia_schema` (0 when empty).
pub const CURRENT: &str = "SELECT COALESCE(MAX(version), 0) FROM gaia_schema";

/// `found`, the version a database is at, unless a newer Gaia migrated it past `supported`.
pub fn refuse_newer(found: i64, supported: i64) -> Result<i64, StoreError> {
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    Ok(found)
}

/// Brings the database behind `conn` up to the last of `migrations`. Runs inside the caller's
/// transaction, which holds whatever lock keeps other processes from migrating at once.
pub async fn apply<DB, C>(conn: &mut DB::Connection, migrations: &[Migration]) -> Db<(), C>
where
    DB: Database,
    C: Classify,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB> + sqlx::Decode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    sqlx::raw_sql(CREATE_SCHEMA).execute(&mut *conn).await?;
    let found: i64 = sqlx::query_scalar(CURRENT).fetch_one(&mut *conn).await?;
    let found = refuse_newer(found, SCHEMA_VERSION)?;
    for (version, name, migration) in migrations.iter().filter(|(v, _, _)| *v > found) {
        sqlx::raw_sql(migration).execute(&mut *conn).await?;
        sqlx::query(RECORD)
            .bind(*version)
            .bind(*name)
            .bind(chrono::Utc::now().timestamp_micros())
            .execute(&mut *conn)
            .await?;
        tracing::info!(version, name, "applied migration");
    }
    Ok(())
}

/// The version the database behind `pool` is at, refusing one a newer Gaia migrated.
pub async fn current_version<DB, C>(pool: &sqlx::Pool<DB>) -> Db<i64, C>
where
    DB: Database,
    C: Classify,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let found: i64 = sqlx::query_scalar(CURRENT).fetch_one(pool).await?;
    Ok(refuse_newer(found, SCHEMA_VERSION)?)
}
