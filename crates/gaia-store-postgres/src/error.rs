//! Maps sqlx/PostgreSQL errors onto [`StoreError`], once: functions that talk to the database
//! return [`Db`], so `?` works on driver calls, and the storage traits convert at their edge.

use gaia_core::StoreError;

/// A failure inside the backend, already classified as the [`StoreError`] it becomes.
#[derive(Debug)]
pub(crate) struct DbError(StoreError);

/// The result of a function that talks to the database.
pub(crate) type Db<T> = Result<T, DbError>;

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        Self(classify(e))
    }
}

impl From<StoreError> for DbError {
    fn from(e: StoreError) -> Self {
        Self(e)
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        e.0
    }
}

fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // lock_not_available (lock_timeout), deadlock_detected, query_canceled
            Some("55P03" | "40P01" | "57014") => StoreError::LockTimeout,
            // A missing database or refused credentials: configuration, not an outage.
            Some("3D000") => {
                StoreError::NotADatabase(format!("{} (create it first)", db.message()))
            }
            Some("28000" | "28P01") => StoreError::NotADatabase(db.message().to_owned()),
            Some(c) if c.starts_with("08") || c.starts_with("57P") => {
                StoreError::Unavailable(db.message().to_owned())
            }
            _ => StoreError::Backend(db.message().to_owned()),
        },
        sqlx::Error::PoolTimedOut => StoreError::LockTimeout,
        sqlx::Error::PoolClosed => StoreError::Unavailable("the store was closed".into()),
        sqlx::Error::Io(io) => StoreError::Unavailable(io.to_string()),
        sqlx::Error::Tls(t) => StoreError::Unavailable(t.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// Runs a backend operation and hands its result to the storage traits.
pub(crate) async fn boundary<T>(op: impl Future<Output = Db<T>>) -> Result<T, StoreError> {
    Ok(op.await?)
}
