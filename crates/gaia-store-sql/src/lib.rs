//! What the SQL backends (`gaia-store-sqlite`, `gaia-store-postgres`) share: the stored rows and
//! their conversion to Gaia's types, the error type their database code returns, the control
//! flow of migrations, the connections kept out of the pool between uses ([`kept`]), and (in
//! [`shared`]) the SQL of every primitive and read that the two dialects can say alike. What
//! stays with each backend is its dialect: how it opens and locks, how it appends to the log,
//! how it classifies driver errors, and its migrations.

pub mod error;
pub mod group;
pub mod kept;
pub mod migrate;
pub mod rows;
pub mod shared;
pub mod tx;

/// For the macros in [`shared`], which expand in the backend crates: they reach JSON through
/// this crate, so a backend need not depend on it for them.
#[doc(hidden)]
pub use serde_json;
