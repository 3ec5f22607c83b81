//! Exit codes of `gaia-bench` and the one-line error a failed benchmark prints.

use gaia_core::StoreError;
use gaia_core::error::{Error as CoreError, ValidationError};

/// The benchmark ran.
pub const OK: u8 = 0;
/// Something failed that is not the caller's mistake (a database error, a broken audit chain,
/// a child process that would not start).
pub const FAILURE: u8 = 1;
/// Bad input: malformed flags, an unusable URL, no `gaia` binary where one was named.
pub const BAD_INPUT: u8 = 2;

/// A failed benchmark: its exit code and a one-line message.
#[derive(Debug)]
pub struct BenchError {
    pub code: u8,
    pub message: String,
}

impl BenchError {
    pub fn new(code: u8, message: impl std::fmt::Display) -> Self {
        let message = message.to_string().replace(['\n', '\r'], " ");
        Self { code, message }
    }

    pub fn bad_input(message: impl std::fmt::Display) -> Self {
        Self::new(BAD_INPUT, message)
    }
}

/// A failure of `what`, with its cause.
pub fn bench_error(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::new(FAILURE, format!("{what}: {e}"))
}

impl From<ValidationError> for BenchError {
    fn from(e: ValidationError) -> Self {
        Self::bad_input(e)
    }
}

impl From<StoreError> for BenchError {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::NotADatabase(_) | StoreError::BadUrl(_) => BAD_INPUT,
            _ => FAILURE,
        };
        Self::new(code, e)
    }
}

impl From<CoreError> for BenchError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Invalid(v) => v.into(),
            CoreError::Store(s) => s.into(),
            CoreError::NotFound(m) => Self::new(FAILURE, m),
        }
    }
}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        Self::new(FAILURE, e)
    }
}

pub type BenchResult<T = u8> = Result<T, BenchError>;
