//! GitHub sync through the user's `gh` login: every call is `gh api` as a subprocess, bodies
//! passed as JSON on stdin (`runner`), errors classified from its exit code and output
//! (`error`), mutating calls paced under GitHub's secondary limits (`limiter`), a lost create
//! found again by listing the repository's issues and matching the marker line (`reconcile`),
//! the sync itself: create, patch only what changed, close (`sync`), and closed issues brought
//! back as closed stories and done tasks (`pull`); which stories and tasks become which issues
//! (`backlog`).

pub mod backlog;
pub mod error;
pub mod limiter;
pub mod pull;
pub mod reconcile;
pub mod runner;
pub mod sync;

pub use error::GhError;
pub use runner::{Gh, Response};
pub use sync::{Desired, Outcome, Summary, SyncOptions, sync};
