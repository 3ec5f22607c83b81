//! Exit codes shared by every command family, and the one-line error a failed command prints.

use gaia_core::StoreError;
use gaia_core::error::{Error as CoreError, ValidationError};

/// The call did what was asked.
pub const OK: u8 = 0;
/// Something failed that is not the caller's mistake (a database error, a broken audit chain).
pub const FAILURE: u8 = 1;
/// Bad input: unknown flags, malformed values, an unusable database path or URL.
pub const BAD_INPUT: u8 = 2;
/// The state forbids it: held by another agent, not held.
pub const CONFLICT: u8 = 3;
/// The store could not be locked in time; retry.
pub const LOCK_TIMEOUT: u8 = 4;
/// The server or the database could not be reached (refused, timed out, shut down); retry
/// later. Not bad input: a retry wrapper can tell an outage from a mistake.
pub const UNAVAILABLE: u8 = 5;
/// A command request was denied.
pub const DENIED: u8 = 10;
/// A command request expired, or waiting for it timed out.
pub const EXPIRED: u8 = 11;
/// A command request was cancelled.
pub const CANCELLED: u8 = 12;

/// A failed command: its exit code and a one-line message.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl std::fmt::Display) -> Self {
        // One line, always: scripts read the first line, people read one sentence.
        let message = message.to_string().replace(['\n', '\r'], " ");
        Self { code, message }
    }

    pub fn bad_input(message: impl std::fmt::Display) -> Self {
        Self::new(BAD_INPUT, message)
    }
}

impl From<ValidationError> for CliError {
    fn from(e: ValidationError) -> Self {
        Self::bad_input(e)
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::LockTimeout => LOCK_TIMEOUT,
            StoreError::Conflict(_) => CONFLICT,
            StoreError::Unavailable(_) => UNAVAILABLE,
            StoreError::NotADatabase(_)
            | StoreError::SchemaTooNew { .. }
            | StoreError::BadUrl(_) => BAD_INPUT,
            StoreError::Corrupt(_) | StoreError::Backend(_) => FAILURE,
        };
        Self::new(code, e)
    }
}

impl From<CoreError> for CliError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Invalid(v) => v.into(),
            CoreError::Store(s) => s.into(),
            CoreError::NotFound(m) => Self::new(CONFLICT, m),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::new(FAILURE, e)
    }
}

pub type CliResult<T = u8> = Result<T, CliError>;
