//! JSON bodies of the backlog API: stories, todolists, tasks, follow-ups and the answers of
//! taking ready work and collecting a follow-up. They mirror `gaia_core::backlog` field for
//! field, with times as RFC 3339 text like the rest of the API.

use gaia_core::backlog::{
    Followup, FollowupStatus, RuleBreak, Story, StoryStatus, Task, TaskStatus, Todolist,
};
use gaia_core::time::rfc3339;
use gaia_core::usecase::backlog::Collected;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whether a story is being worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoryStatusBody {
    Open,
    Closed,
}

impl From<StoryStatus> for StoryStatusBody {
    fn from(s: StoryStatus) -> Self {
        match s {
            StoryStatus::Open => Self::Open,
            StoryStatus::Closed => Self::Closed,
        }
    }
}

impl From<StoryStatusBody> for StoryStatus {
    fn from(s: StoryStatusBody) -> Self {
        match s {
            StoryStatusBody::Open => Self::Open,
            StoryStatusBody::Closed => Self::Closed,
        }
    }
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatusBody {
    Todo,
    InProgress,
    Done,
    Blocked,
}

impl From<TaskStatus> for TaskStatusBody {
    fn from(s: TaskStatus) -> Self {
        match s {
            TaskStatus::Todo => Self::Todo,
            TaskStatus::InProgress => Self::InProgress,
            TaskStatus::Done => Self::Done,
            TaskStatus::Blocked => Self::Blocked,
        }
    }
}

/// Whether a follow-up was triaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FollowupStatusBody {
    Pending,
    Accepted,
    Rejected,
}

impl From<FollowupStatus> for FollowupStatusBody {
    fn from(s: FollowupStatus) -> Self {
        match s {
            FollowupStatus::Pending => Self::Pending,
            FollowupStatus::Accepted => Self::Accepted,
            FollowupStatus::Rejected => Self::Rejected,
        }
    }
}

impl From<FollowupStatusBody> for FollowupStatus {
    fn from(s: FollowupStatusBody) -> Self {
        match s {
            FollowupStatusBody::Pending => Self::Pending,
            FollowupStatusBody::Accepted => Self::Accepted,
            FollowupStatusBody::Rejected => Self::Rejected,
        }
    }
}

/// A story: a unit of work with one current todolist.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoryBody {
    pub slug: String,
    pub title: String,
    pub description: String,
    pub status: StoryStatusBody,
    pub labels: Vec<String>,
    pub created_by: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
    /// The name of the current todolist.
    pub todolist: String,
    /// When the current todolist was finalized (nothing more is appended to it).
    pub finalized_at: Option<String>,
}

impl From<&Story> for StoryBody {
    fn from(s: &Story) -> Self {
        Self {
            slug: s.slug.clone(),
            title: s.title.clone(),
            description: s.description.clone(),
            status: s.status.into(),
            labels: s.labels.clone(),
            created_by: s.created_by.clone(),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
            todolist: s.todolist.clone(),
            finalized_at: s.finalized_at.map(rfc3339),
        }
    }
}

/// A task of a todolist.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskBody {
    pub id: i64,
    pub story: String,
    pub todolist: String,
    pub title: String,
    /// Its acceptance criteria, as Markdown.
    pub body: String,
    pub status: TaskStatusBody,
    /// Why it is blocked (status `blocked`).
    pub reason: Option<String>,
    /// The agent working on it (status `in_progress`), and who finished it once `done`.
    pub worker: Option<String>,
    /// 1-based, within its list.
    pub position: i64,
    /// The tasks it waits for.
    pub blocked_by: Vec<i64>,
    pub created_by: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

impl From<&Task> for TaskBody {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id,
            story: t.story.clone(),
            todolist: t.todolist.clone(),
            title: t.title.clone(),
            body: t.body.clone(),
            status: t.status.into(),
            reason: t.reason.clone(),
            worker: t.worker.clone(),
            position: t.position,
            blocked_by: t.blocked_by.clone(),
            created_by: t.created_by.clone(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

/// A todolist of a story: the current one, or an archived one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TodolistBody {
    pub story: String,
    /// Archived lists are named `NAME@YYYYMMDDTHHMMSSZ`.
    pub name: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub finalized_at: Option<String>,
    pub archived_at: Option<String>,
}

impl From<&Todolist> for TodolistBody {
    fn from(l: &Todolist) -> Self {
        Self {
            story: l.story.clone(),
            name: l.name.clone(),
            created_at: rfc3339(l.created_at),
            finalized_at: l.finalized_at.map(rfc3339),
            archived_at: l.archived_at.map(rfc3339),
        }
    }
}

/// A story with its current todolist's tasks and all its todolists.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoryViewBody {
    #[serde(flatten)]
    pub story: StoryBody,
    /// The current todolist's tasks, in order.
    pub tasks: Vec<TaskBody>,
    /// Every todolist of the story, archived ones included.
    pub lists: Vec<TodolistBody>,
}

impl StoryViewBody {
    pub fn new(story: &Story, tasks: &[Task], lists: &[Todolist]) -> Self {
        Self {
            story: StoryBody::from(story),
            tasks: tasks.iter().map(TaskBody::from).collect(),
            lists: lists.iter().map(TodolistBody::from).collect(),
        }
    }
}

/// A todolist that breaks the final-task rule: its last task, if any, is not a final one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuleBreakBody {
    pub story: String,
    pub todolist: String,
    /// The list's last task; null when the list is empty.
    pub last: Option<TaskBody>,
}

impl From<&RuleBreak> for RuleBreakBody {
    fn from(r: &RuleBreak) -> Self {
        Self {
            story: r.story.clone(),
            todolist: r.todolist.clone(),
            last: r.last.as_ref().map(TaskBody::from),
        }
    }
}

/// A follow-up child doc waiting in its story's triage list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FollowupBody {
    pub id: i64,
    /// The doc's path as collected: its identity.
    pub path: String,
    /// The hash of the doc's content when it was last collected.
    pub hash: String,
    pub story: String,
    pub agent: String,
    pub task: String,
    pub title: String,
    pub body: String,
    pub status: FollowupStatusBody,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The task an accepted follow-up became.
    pub task_id: Option<i64>,
    pub decided_by: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

impl From<&Followup> for FollowupBody {
    fn from(f: &Followup) -> Self {
        Self {
            id: f.id,
            path: f.path.clone(),
            hash: f.hash.clone(),
            story: f.story.clone(),
            agent: f.agent.clone(),
            task: f.task.clone(),
            title: f.title.clone(),
            body: f.body.clone(),
            status: f.status.into(),
            reason: f.reason.clone(),
            task_id: f.task_id,
            decided_by: f.decided_by.clone(),
            created_at: rfc3339(f.created_at),
            updated_at: rfc3339(f.updated_at),
        }
    }
}

/// What collecting a follow-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CollectedBody {
    /// A new entry.
    Added,
    /// The doc's content changed: its entry now holds the new content.
    Updated,
    /// Seen before with the same content: nothing changed.
    Unchanged,
}

impl From<Collected> for CollectedBody {
    fn from(c: Collected) -> Self {
        match c {
            Collected::Added => Self::Added,
            Collected::Updated => Self::Updated,
            Collected::Unchanged => Self::Unchanged,
        }
    }
}

/// The answer to collecting a follow-up.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CollectBody {
    pub outcome: CollectedBody,
    pub followup: FollowupBody,
}

/// The answer to taking ready work: either nothing (`taken` false, no other field), or the task
/// now in progress with the fencing token and expiry of the claim on its list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TakenBody {
    pub taken: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskBody>,
    /// The fencing token to pass to start, done, block, unblock and move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<i64>,
    /// When the claim's lease ends unless refreshed (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}
