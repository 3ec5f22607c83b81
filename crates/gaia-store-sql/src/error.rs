//! The error type of a backend's database code: functions that talk to the database return
//! [`Db`], so `?` works on driver calls, and the storage traits convert at their edge
//! ([`boundary`]). Which driver errors mean what is the backend's [`Classify`].

use std::fmt;
use std::marker::PhantomData;

use gaia_core::StoreError;

/// How a backend reads a driver error as a [`StoreError`].
pub trait Classify {
    /// The [`StoreError`] that `e` becomes.
    fn classify(e: sqlx::Error) -> StoreError;
}

/// A failure inside the backend `C`, already classified as the [`StoreError`] it becomes.
pub struct DbError<C>(StoreError, PhantomData<fn() -> C>);

/// The result of a function of backend `C` that talks to the database.
pub type Db<T, C> = Result<T, DbError<C>>;

impl<C> fmt::Debug for DbError<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DbError").field(&self.0).finish()
    }
}

impl<C: Classify> From<sqlx::Error> for DbError<C> {
    fn from(e: sqlx::Error) -> Self {
        Self(C::classify(e), PhantomData)
    }
}

impl<C> From<StoreError> for DbError<C> {
    fn from(e: StoreError) -> Self {
        Self(e, PhantomData)
    }
}

impl<C> From<DbError<C>> for StoreError {
    fn from(e: DbError<C>) -> Self {
        e.0
    }
}

/// What a driver error that is not the database's own answer means on every backend: the pool
/// ran out of time or was closed, or the connection failed. A backend classifies
/// `sqlx::Error::Database` itself and hands every other error here.
pub fn classify_driver(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => StoreError::LockTimeout,
        sqlx::Error::PoolClosed => StoreError::Unavailable("the store was closed".into()),
        sqlx::Error::Io(io) => StoreError::Unavailable(io.to_string()),
        sqlx::Error::Tls(t) => StoreError::Unavailable(t.to_string()),
        other => StoreError::Backend(other.to_string()),
    }
}

/// Runs a backend operation and hands its result to the storage traits.
pub async fn boundary<T, C>(op: impl Future<Output = Db<T, C>>) -> Result<T, StoreError> {
    Ok(op.await?)
}

/// Declares the calling backend's error plumbing: the marker type `$name` (whose
/// [`Classify`] impl the backend writes), `DbError` and `Db<T>` for it, and `boundary`, which
/// runs a backend operation and hands its result to the storage traits.
#[macro_export]
macro_rules! backend_errors {
    ($name:ident) => {
        /// This backend's reading of driver errors.
        #[derive(Debug)]
        pub(crate) enum $name {}

        /// A failure inside the backend, already classified as the `StoreError` it becomes.
        pub(crate) type DbError = $crate::error::DbError<$name>;

        /// The result of a function that talks to the database.
        pub(crate) type Db<T> = Result<T, DbError>;

        /// Runs a backend operation and hands its result to the storage traits.
        pub(crate) async fn boundary<T>(
            op: impl Future<Output = Db<T>>,
        ) -> Result<T, ::gaia_core::StoreError> {
            $crate::error::boundary(op).await
        }
    };
}
