//! Validation of the names people and agents type: stories, todolists, agent ids, event types.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// Longest story, todolist, agent or operator name.
pub const MAX_NAME_LEN: usize = 128;

/// Checks a free-form identifier: not empty, at most [`MAX_NAME_LEN`] characters, no `/` (it
/// separates story and todolist in a claim key), no control characters, no surrounding spaces.
pub fn check_name(what: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(format!("{what} must not be empty")));
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(ValidationError::new(format!(
            "{what} is longer than {MAX_NAME_LEN} characters"
        )));
    }
    if value.contains('/') {
        return Err(ValidationError::new(format!(
            "{what} '{}' must not contain '/'",
            value.escape_debug()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(format!(
            "{what} '{}' must not contain control characters",
            value.escape_debug()
        )));
    }
    if value.trim() != value {
        return Err(ValidationError::new(format!(
            "{what} '{value}' must not start or end with spaces"
        )));
    }
    Ok(())
}

/// The unit a claim is held on: a story's todolist, shown as `STORY/TODOLIST`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClaimKey {
    pub story: String,
    pub todolist: String,
}

impl ClaimKey {
    pub const DEFAULT_TODOLIST: &'static str = "default";

    pub fn new(story: &str, todolist: &str) -> Result<Self, ValidationError> {
        check_name("story", story)?;
        check_name("todolist", todolist)?;
        Ok(Self {
            story: story.to_owned(),
            todolist: todolist.to_owned(),
        })
    }

    /// Parses `STORY/TODOLIST` (or `STORY`, meaning the default todolist).
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        match text.split_once('/') {
            Some((story, todolist)) => Self::new(story, todolist),
            None => Self::new(text, Self::DEFAULT_TODOLIST),
        }
    }
}

impl fmt::Display for ClaimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.story, self.todolist)
    }
}

/// Longest event type.
pub const MAX_EVENT_TYPE_LEN: usize = 96;

/// Event types are dotted lowercase names: `claim.acquired`, `command.executed.dryrun`.
pub fn check_event_type(value: &str) -> Result<(), ValidationError> {
    let bad = || {
        ValidationError::new(format!(
            "invalid event type '{}': use dotted lowercase words such as chat.message or story.updated",
            value.escape_debug()
        ))
    };
    if value.is_empty() || value.len() > MAX_EVENT_TYPE_LEN {
        return Err(bad());
    }
    for part in value.split('.') {
        let ok = !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

/// Subjects name what an event is about (`claim/story/todolist`, `command/ab12`); any printable
/// text up to this many characters.
pub const MAX_SUBJECT_LEN: usize = 300;

pub fn check_subject(value: &str) -> Result<(), ValidationError> {
    if value.chars().count() > MAX_SUBJECT_LEN {
        return Err(ValidationError::new(format!(
            "subject is longer than {MAX_SUBJECT_LEN} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(
            "subject must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["story-1", "Story One", "ü", &"x".repeat(MAX_NAME_LEN)] {
            assert!(check_name("story", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "a\nb",
            "tab\there",
            " lead",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(check_name("story", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ClaimKey::parse("s").map(|k| k.to_string()).ok(),
            Some("s/default".into())
        );
        assert!(ClaimKey::parse("a/b/c").is_err());
    }

    #[test]
    fn event_types() {
        for ok in [
            "chat.message",
            "claim.acquired",
            "command.executed.dryrun",
            "x",
            "a_b.c-d.9",
        ] {
            assert!(check_event_type(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "a..b", "A.b", "a b", "a.", ".a", "ä"] {
            assert!(check_event_type(bad).is_err(), "{bad:?}");
        }
    }
}
