//! Gaia's domain: the event log, the audit chain and claims, the rules that govern them, the
//! storage traits every backend implements, and the [`Gaia`] service that transports call.
//!
//! Nothing here speaks SQL, HTTP or a terminal: backends implement [`store::Store`], and the
//! transports (CLI, server, bots) call [`Gaia`].

pub mod archive;
pub mod audit;
pub mod backlog;
pub mod backlog_md;
pub mod claims;
pub mod commands;
pub mod dump;
pub mod error;
pub mod event;
pub mod followup_doc;
pub mod github;
pub mod metrics;
pub mod names;
pub mod outbox;
pub mod policy;
pub mod redact;
pub mod retention;
pub mod service;
pub mod store;
pub mod text;
pub mod time;
pub mod tokens;
pub mod tx;
pub mod usecase;

pub use error::{StoreError, ValidationError};
pub use service::Gaia;
