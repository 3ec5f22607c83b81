//! The HTTP API's handlers, one module per resource. Each handler checks the caller's role,
//! calls [`gaia_core::Gaia`], and answers with a wire type or a problem document.

pub mod audit;
pub mod backlog;
pub mod claims;
pub mod commands;
pub mod events;
pub mod github;
pub mod health;
pub mod metrics;
pub mod queue;
pub mod tokens;
