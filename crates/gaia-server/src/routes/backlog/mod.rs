//! The backlog over HTTP: stories and their todolists (`stories.rs`), tasks (`tasks.rs`), ready
//! work (`ready.rs`) and follow-ups (`followups.rs`), with their JSON bodies in `wire.rs`.
//!
//! Roles: any token reads; agents add tasks and follow-ups, take ready work and change the tasks
//! of lists they hold (fenced by the claim's token); operators also create, edit, close and
//! reopen stories, archive, replace and finalize todolists, change tasks without holding the
//! claim (except start and done, which are always fenced), and accept or reject follow-ups.
//! Each change commits its event and audit record in the core; the handlers validate what
//! reaches the store, check the role and map errors to problem documents.

pub mod followups;
pub mod ready;
pub mod stories;
pub mod tasks;
pub mod wire;

use crate::problem::ApiError;

/// Checks a story slug from a path, a query or a body before it reaches the store: anything
/// that could not be a slug is refused as invalid rather than looked up.
pub(crate) fn check_story(slug: &str) -> Result<(), ApiError> {
    gaia_core::backlog::check_slug("story", slug)?;
    Ok(())
}
