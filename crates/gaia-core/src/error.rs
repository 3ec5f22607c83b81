//! Typed errors shared by every layer: what a backend can fail with, and what bad input is.

use thiserror::Error;

/// A storage operation failed. Backends map their driver errors onto these variants so that
/// callers can react (retry on `LockTimeout`, tell the user on `Unavailable`) without knowing
/// which database is behind the trait.
#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// The store could not be locked in time (SQLite busy, PostgreSQL `lock_timeout`).
    #[error("the store could not be locked in time; retry")]
    LockTimeout,
    /// The database cannot be reached or opened (refused, timed out, unreadable path).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The file or database is not a Gaia store (not a database at all, or a foreign schema).
    #[error("not a usable database: {0}")]
    NotADatabase(String),
    /// The database was migrated by a newer Gaia than this binary.
    #[error(
        "database schema version {found} is newer than this gaia supports ({supported}); upgrade gaia"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    /// The URL does not name a supported backend or is malformed.
    #[error("bad database URL: {0}")]
    BadUrl(String),
    /// Stored data violates an invariant (for example the log head row is missing).
    #[error("store is inconsistent: {0}")]
    Corrupt(String),
    /// The change conflicts with what is stored (a name already taken).
    #[error("{0}")]
    Conflict(String),
    /// Any other driver failure.
    #[error("database error: {0}")]
    Backend(String),
}

/// Input that breaks a rule: an empty name, a bad duration, malformed JSON. Always the caller's
/// mistake, never retried; transports turn it into exit code 2 or an HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

impl ValidationError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// Anything a [`crate::Gaia`] call can fail with.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
}
