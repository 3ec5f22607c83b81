//! Maps sqlx/SQLite errors onto [`StoreError`], once: functions that talk to the database
//! return [`Db`] (see [`gaia_store_sql::error`]); this is the part that knows SQLite.

use gaia_core::StoreError;
use gaia_store_sql::error::{Classify, classify_driver};

/// SQLITE_BUSY and SQLITE_LOCKED (primary codes): the busy timeout ran out.
const BUSY: i64 = 5;
const LOCKED: i64 = 6;
const NOTADB: i64 = 26;
const CORRUPT: i64 = 11;

gaia_store_sql::backend_errors!(Sqlite);

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
