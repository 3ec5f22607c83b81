//! Maps sqlx/SQLite errors onto [`StoreError`], once: functions that talk to the database
//! return [`Db`] (see [`gaia_store_sql::error`]); this is the part that knows SQLite.

use gaia_core::StoreError;
use gaia_store_sql::error::{Classify, classify_driver};

/// SQLITE_BUSY and SQLITE_LOCKED (primary codes): the busy timeout ran out.
const BUSY: i64 = 5;
const LOCKED: i64 = 6;
const NOTADB: i64 = 26;
const CORRUPT: i64 = 11;

/// This backend's reading of driver errors.
#[derive(Debug)]
pub(crate) enum Sqlite {}

/// A failure inside the backend, already classified as the [`StoreError`] it becomes.
pub(crate) type DbError = gaia_store_sql::error::DbError<Sqlite>;

/// The result of a function that talks to the database.
pub(crate) type Db<T> = Result<T, DbError>;

impl Classify for Sqlite {
    fn classify(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(db) => {
                let code = db
                    .code()
                    .and_then(|c| c.parse::<i64>().ok())
                    .map(|c| c & 0xff);
                match code {
                    Some(BUSY | LOCKED) => StoreError::LockTimeout,
                    Some(NOTADB | CORRUPT) => StoreError::NotADatabase(db.message().to_owned()),
                    _ => StoreError::Backend(db.message().to_owned()),
                }
            }
            _ => classify_driver(e),
        }
    }
}

/// Runs a backend operation and hands its result to the storage traits.
pub(crate) async fn boundary<T>(op: impl Future<Output = Db<T>>) -> Result<T, StoreError> {
    gaia_store_sql::error::boundary(op).await
}
