//! Row mapping shared by the SQL backends (`gaia-store-sqlite`, `gaia-store-postgres`): the
//! stored rows and their conversion to Gaia's types, and the error type their database code
//! returns. Everything here is generic over the sqlx row type; the SQL itself, locking and the
//! classification of driver errors stay with each backend.

pub mod error;
pub mod migrate;
pub mod rows;
pub mod tx;
