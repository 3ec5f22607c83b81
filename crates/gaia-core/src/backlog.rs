//! The backlog: stories, their todolists and tasks, and follow-ups waiting for triage. The
//! types, the input rules and the pure decisions (what is ready, whether a list ends with its
//! final task, whether a caller's claim lets it touch a task). The state changes are the use
//! cases of [`crate::usecase::backlog`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::claims::ClaimRow;
use crate::error::ValidationError;
use crate::names::{ClaimKey, check_name};
use crate::text::check_text;

/// Longest title of a story or task, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest description or task body (acceptance criteria), in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most labels on a story.
pub const MAX_LABELS: usize = 20;
/// Most tasks a task may wait for.
pub const MAX_BLOCKED_BY: usize = 50;
/// Words that mark a todolist's last task as its final one (the final-task rule).
pub const FINAL_MARKERS: [&str; 3] = ["MANDATORY", "FINAL", "FINALIZATION"];

/// Whether a story is being worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoryStatus {
    Open,
    Closed,
}

impl StoryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Todo,
    InProgress,
    Done,
    Blocked,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Todo => "todo",
            Self::InProgress => "in_progress",
            Self::Done => "done",
            Self::Blocked => "blocked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "todo" => Some(Self::Todo),
            "in_progress" => Some(Self::InProgress),
            "done" => Some(Self::Done),
            "blocked" => Some(Self::Blocked),
            _ => None,
        }
    }
}

/// A story: a unit of work with one current todolist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Story {
    pub slug: String,
    pub title: String,
    pub description: String,
    pub status: StoryStatus,
    pub labels: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The name of the current todolist.
    pub todolist: String,
    /// When the current todolist was finalized (nothing more is appended to it).
    pub finalized_at: Option<DateTime<Utc>>,
}

impl Story {
    /// The claim key of the current todolist.
    pub fn key(&self) -> ClaimKey {
        ClaimKey {
            story: self.slug.clone(),
            todolist: self.todolist.clone(),
        }
    }
}

/// A task of a todolist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: i64,
    pub story: String,
    pub todolist: String,
    pub title: String,
    pub body: String,
    pub status: TaskStatus,
    /// Why it is blocked (status `blocked`).
    pub reason: Option<String>,
    /// The agent working on it (status `in_progress`, and who finished it once `done`).
    pub worker: Option<String>,
    pub position: i64,
    pub blocked_by: Vec<i64>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Task {
    pub fn key(&self) -> ClaimKey {
        ClaimKey {
            story: self.story.clone(),
            todolist: self.todolist.clone(),
        }
    }

    /// Whether the title or body marks it as a list's final task.
    pub fn is_final(&self) -> bool {
        has_final_marker(&self.title)
    }
}

/// Whether `title` carries one of [`FINAL_MARKERS`] as a whole word.
pub fn has_final_marker(title: &str) -> bool {
    title
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| FINAL_MARKERS.contains(&w))
}

/// A todolist of a story: the current one, or an archived one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Todolist {
    pub story: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub finalized_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
}

/// Whether a follow-up was triaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowupStatus {
    Pending,
    Accepted,
    Rejected,
}

impl FollowupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "accepted" => Some(Self::Accepted),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// A follow-up child doc waiting in its parent story's triage list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Followup {
    pub id: i64,
    /// The doc's path as collected (its identity, with the content hash).
    pub path: String,
    pub hash: String,
    pub story: String,
    pub agent: String,
    pub task: String,
    pub title: String,
    pub body: String,
    pub status: FollowupStatus,
    pub reason: Option<String>,
    /// The task an accepted follow-up became.
    pub task_id: Option<i64>,
    pub decided_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Longest follow-up doc path, in characters.
pub const MAX_PATH_CHARS: usize = 4096;

/// A follow-up doc to collect: what its file says, identified by its path and compared by the
/// hash of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFollowup {
    pub path: String,
    pub hash: String,
    pub story: String,
    pub agent: String,
    pub task: String,
    pub title: String,
    pub body: String,
}

impl NewFollowup {
    pub fn check(&self) -> Result<(), ValidationError> {
        if self.path.is_empty()
            || self.path.chars().any(char::is_control)
            || self.path.chars().take(MAX_PATH_CHARS + 1).count() > MAX_PATH_CHARS
        {
            return Err(ValidationError::new(format!(
                "path must be 1 to {MAX_PATH_CHARS} characters without control characters"
            )));
        }
        check_name("hash", &self.hash)?;
        check_slug("story", &self.story)?;
        check_name("agent id", &self.agent)?;
        check_name("task", &self.task)?;
        check_title(&self.title)?;
        check_body("body", &self.body)
    }

    /// The follow-up as first collected at `now`: pending, not triaged.
    pub fn pending(&self, now: DateTime<Utc>) -> Followup {
        Followup {
            id: 0,
            path: self.path.clone(),
            hash: self.hash.clone(),
            story: self.story.clone(),
            agent: self.agent.clone(),
            task: self.task.clone(),
            title: self.title.clone(),
            body: self.body.clone(),
            status: FollowupStatus::Pending,
            reason: None,
            task_id: None,
            decided_by: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Checks a story slug: a name (see [`check_name`]) of letters, digits, `-`, `_` and `.`.
pub fn check_slug(what: &str, slug: &str) -> Result<(), ValidationError> {
    check_name(what, slug)?;
    if !slug
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ValidationError::new(format!(
            "{what} '{}' may hold only letters, digits, '-', '_' and '.'",
            slug.escape_debug()
        )));
    }
    Ok(())
}

/// Checks a title: one line, not empty, at most [`MAX_TITLE_CHARS`].
pub fn check_title(title: &str) -> Result<(), ValidationError> {
    if title.trim().is_empty() {
        return Err(ValidationError::new("title must not be empty"));
    }
    check_text("title", title, MAX_TITLE_CHARS)?;
    if title.chars().any(char::is_control) {
        return Err(ValidationError::new(
            "title must not contain control characters or line breaks",
        ));
    }
    Ok(())
}

/// Checks a body or description: at most [`MAX_BODY_BYTES`], no control characters other than
/// line breaks and tabs.
pub fn check_body(what: &str, body: &str) -> Result<(), ValidationError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ValidationError::new(format!(
            "{what} is longer than {MAX_BODY_BYTES} bytes"
        )));
    }
    if body
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(ValidationError::new(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

/// Checks labels: at most [`MAX_LABELS`], each a name without commas.
pub fn check_labels(labels: &[String]) -> Result<(), ValidationError> {
    if labels.len() > MAX_LABELS {
        return Err(ValidationError::new(format!(
            "a story has at most {MAX_LABELS} labels"
        )));
    }
    for l in labels {
        check_name("label", l)?;
        if l.contains(',') {
            return Err(ValidationError::new("a label must not contain ','"));
        }
    }
    Ok(())
}

/// A story to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewStory {
    pub slug: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub labels: Vec<String>,
}

impl NewStory {
    pub fn check(&self) -> Result<(), ValidationError> {
        check_slug("story", &self.slug)?;
        check_title(&self.title)?;
        check_body("description", &self.description)?;
        check_labels(&self.labels)
    }
}

/// A task to add to a story's current todolist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub blocked_by: Vec<i64>,
}

impl NewTask {
    pub fn check(&self) -> Result<(), ValidationError> {
        check_title(&self.title)?;
        check_body("body", &self.body)?;
        if self.blocked_by.len() > MAX_BLOCKED_BY {
            return Err(ValidationError::new(format!(
                "a task waits for at most {MAX_BLOCKED_BY} others"
            )));
        }
        Ok(())
    }
}

/// The template a new todolist starts from: its tasks, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<NewTask>);

impl Default for Template {
    /// One task: the final check that every new list must end with.
    fn default() -> Self {
        Self(vec![NewTask {
            title: "FINAL: verify the acceptance criteria, update docs, run the tests".into(),
            body: "- [ ] every task above is done\n- [ ] docs and changelog updated\n- [ ] the full test suite passes\n- [ ] follow-ups filed as child docs".into(),
            blocked_by: vec![],
        }])
    }
}

impl Template {
    pub fn check(&self) -> Result<(), ValidationError> {
        for t in &self.0 {
            t.check()?;
        }
        Ok(())
    }
}

/// The name an archived todolist is stored under: `NAME@YYYYMMDDTHHMMSSZ`, with a counter when
/// that is taken.
pub fn archived_name(name: &str, at: DateTime<Utc>, attempt: u32) -> String {
    let stamp = at.format("%Y%m%dT%H%M%SZ");
    if attempt == 0 {
        format!("{name}@{stamp}")
    } else {
        format!("{name}@{stamp}.{attempt}")
    }
}

/// Why a caller may not change a task: the claim on its todolist is not theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// Nobody holds the claim (never claimed, released or expired).
    NotHeld,
    /// Someone else holds it.
    HeldBy(String),
    /// The caller holds it under a newer token than it presented: a stale holder.
    StaleToken { presented: i64, current: i64 },
    /// The agent and token match, but another API token took the claim.
    OtherPrincipal,
}

impl Fence {
    pub fn message(&self, key: &ClaimKey) -> String {
        match self {
            Self::NotHeld => format!("you do not hold the claim on {key}; acquire it first"),
            Self::HeldBy(who) => format!("{key} is claimed by {who}"),
            Self::StaleToken { presented, current } => format!(
                "fencing token {presented} is stale: {key} was acquired again (token {current})"
            ),
            Self::OtherPrincipal => format!("the claim on {key} was taken with another token"),
        }
    }
}

/// Whether `agent`, presenting fencing `token`, holds the live claim `row` at `now`; with a
/// `principal`, a claim taken by another API token is not the caller's either.
pub fn check_fence(
    row: Option<&ClaimRow>,
    agent: &str,
    token: i64,
    principal: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), Fence> {
    let Some(row) = row.filter(|r| r.is_live(now)) else {
        return Err(Fence::NotHeld);
    };
    let holder = row.holder.as_ref().map_or("", |h| h.agent.as_str());
    if holder != agent {
        return Err(Fence::HeldBy(holder.to_owned()));
    }
    if row.token != token {
        return Err(Fence::StaleToken {
            presented: token,
            current: row.token,
        });
    }
    let taken_by = row.holder.as_ref().and_then(|h| h.principal.as_deref());
    if let (Some(p), Some(taken_by)) = (principal, taken_by) {
        if p != taken_by {
            return Err(Fence::OtherPrincipal);
        }
    }
    Ok(())
}

/// A todolist that breaks the final-task rule: its last task, if any, is not final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleBreak {
    pub story: String,
    pub todolist: String,
    pub last: Option<Task>,
}

/// Checks the final-task rule on one list's tasks (in position order).
pub fn final_rule(story: &Story, tasks: &[Task]) -> Option<RuleBreak> {
    let last = tasks.last();
    if last.is_some_and(Task::is_final) {
        return None;
    }
    Some(RuleBreak {
        story: story.slug.clone(),
        todolist: story.todolist.clone(),
        last: last.cloned(),
    })
}

/// A task that is ready: nobody holds its list, it is not blocked or done, and every task it
/// waits for is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ready {
    pub task: Task,
}

/// The outcome of taking ready work.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    /// The agent now holds the list's claim under `token` and the task is in progress.
    Took {
        task: Box<Task>,
        claim: Box<ClaimRow>,
    },
    /// Nothing is ready (or everything ready is held by others).
    Nothing,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_markers_are_whole_words() {
        assert!(has_final_marker("FINAL: check everything"));
        assert!(has_final_marker("[MANDATORY] release"));
        assert!(has_final_marker("do the FINALIZATION"));
        assert!(!has_final_marker("finalize the docs"));
        assert!(!has_final_marker("FINALLY done"));
        assert!(!has_final_marker(""));
    }

    #[test]
    fn titles_refuse_control_characters_and_size() {
        assert!(check_title("fix the bug").is_ok());
        assert!(check_title("a\nb").is_err());
        assert!(check_title("a\u{7}").is_err());
        assert!(check_title("  ").is_err());
        assert!(check_title(&"x".repeat(MAX_TITLE_CHARS + 1)).is_err());
        assert!(check_body("body", &"x".repeat(MAX_BODY_BYTES + 1)).is_err());
        assert!(check_body("body", "line\n- [ ] crit\ttab").is_ok());
    }

    #[test]
    fn slugs_are_plain() {
        assert!(check_slug("story", "S-1.auth_fix").is_ok());
        assert!(check_slug("story", "a b").is_err());
        assert!(check_slug("story", "a/b").is_err());
        assert!(check_slug("story", "").is_err());
    }

    #[test]
    fn archived_names_carry_the_time() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-07T01:02:03Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("time");
        assert_eq!(archived_name("default", at, 0), "default@20261207T010203Z");
        assert_eq!(
            archived_name("default", at, 2),
            "default@20261207T010203Z.2"
        );
        assert!(check_name("todolist", &archived_name("default", at, 1)).is_ok());
    }
}
