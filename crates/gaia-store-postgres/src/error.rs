//! Maps sqlx/PostgreSQL errors onto [`StoreError`], once: functions that talk to the database
//! return [`Db`] (see [`gaia_store_sql::error`]); this is the part that knows PostgreSQL.

use gaia_core::StoreError;
use gaia_store_sql::error::{Classify, classify_driver};

gaia_store_sql::backend_errors!(Postgres);

impl Classify for Postgres {
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
            _ => classify_driver(e),
        }
    }
}
