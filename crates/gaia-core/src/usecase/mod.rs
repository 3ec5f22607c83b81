//! Every state change, written once over the [`WriteTx`](crate::tx::WriteTx) seam: lock and
//! load what the change depends on, read the store's clock, decide with the pure rules of the
//! domain modules, write, enqueue the notifications the change causes, append its events and
//! audit records, commit. Backends provide the primitives and keep only SQL.
//!
//! A new use case goes here (one file per area); if it needs a primitive the seam lacks, add
//! the primitive to `WriteTx` and implement it in each backend.

pub mod backlog;
pub mod claims;
pub mod cleanup;
pub mod commands;
pub mod github;
pub mod log;
pub mod outbox;
pub mod tokens;
