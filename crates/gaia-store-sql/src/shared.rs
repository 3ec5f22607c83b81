//! What the SQL backends run alike, written once: the SQL of each use case's primitives and of
//! the storage traits' reads, with the sqlx calls that bind and read it. Each area is a macro
//! that a backend invokes in its module of the same name, naming its store and connection types
//! and the few words of SQL in which the dialects differ (row locks, `GREATEST`/`MAX`, JSON
//! access). Parameters are written `$1`, `$2`, … which both PostgreSQL and SQLite (through
//! sqlx) read by number; nullable text parameters are compared after `CAST(… AS TEXT)`, which
//! both accept and which gives PostgreSQL the type it cannot infer.
//!
//! The macros expand inside the backend crate: they call its `crate::error::{Db, boundary}`
//! and expect `$store` to have a `pool` field.

pub mod backlog;
pub mod claims;
pub mod commands;
pub mod dump;
pub mod github;
pub mod log;
pub mod outbox;
pub mod retention;
pub mod store;
pub mod tokens;
