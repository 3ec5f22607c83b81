//! Maps sqlx/SQLite errors onto [`StoreError`].

use gaia_core::StoreError;

/// SQLITE_BUSY and SQLITE_LOCKED (primary codes): the busy timeout ran out.
const BUSY: i64 = 5;
const LOCKED: i64 = 6;
const NOTADB: i64 = 26;
const CORRUPT: i64 = 11;

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
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
        sqlx::Error::PoolTimedOut => StoreError::LockTimeout,
        sqlx::Error::PoolClosed => StoreError::Unavailable("the store was closed".into()),
        sqlx::Error::Io(io) => StoreError::Unavailable(io.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}
