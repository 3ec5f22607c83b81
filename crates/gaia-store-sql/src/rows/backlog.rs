//! Backlog rows: stories, todolists, tasks and follow-ups.

use gaia_core::StoreError;
use gaia_core::backlog::{
    Followup, FollowupStatus, Story, StoryStatus, Task, TaskStatus, Todolist,
};
use gaia_core::time::from_micros;
use sqlx::{FromRow, Row};

use super::{corrupt, decode};

/// A JSON list as stored in a text column.
fn json_list<T: serde::de::DeserializeOwned>(
    table: &str,
    column: &str,
    text: &str,
) -> Result<Vec<T>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(table, column, e))
}

/// A list as stored in a text column (JSON).
pub fn list_text<T: serde::Serialize>(list: &[T]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

#[derive(Debug, FromRow)]
pub struct StoryColumns {
    slug: String,
    title: String,
    description: String,
    status: String,
    labels: String,
    created_by: String,
    created_at_us: i64,
    updated_at_us: i64,
    todolist: String,
    finalized_at_us: Option<i64>,
}

/// A row of `stories`.
pub fn story<R: Row>(row: &R) -> Result<Story, StoreError>
where
    for<'r> StoryColumns: FromRow<'r, R>,
{
    let c = decode::<StoryColumns, _>("stories", row)?;
    Ok(Story {
        status: StoryStatus::parse(&c.status)
            .ok_or_else(|| corrupt("stories", "status", &c.status))?,
        labels: json_list("stories", "labels", &c.labels)?,
        slug: c.slug,
        title: c.title,
        description: c.description,
        created_by: c.created_by,
        created_at: from_micros(c.created_at_us),
        updated_at: from_micros(c.updated_at_us),
        todolist: c.todolist,
        finalized_at: c.finalized_at_us.map(from_micros),
    })
}

#[derive(Debug, FromRow)]
pub struct TodolistColumns {
    story: String,
    name: String,
    created_at_us: i64,
    finalized_at_us: Option<i64>,
    archived_at_us: Option<i64>,
}

/// A row of `todolists`.
pub fn todolist<R: Row>(row: &R) -> Result<Todolist, StoreError>
where
    for<'r> TodolistColumns: FromRow<'r, R>,
{
    let c = decode::<TodolistColumns, _>("todolists", row)?;
    Ok(Todolist {
        story: c.story,
        name: c.name,
        created_at: from_micros(c.created_at_us),
        finalized_at: c.finalized_at_us.map(from_micros),
        archived_at: c.archived_at_us.map(from_micros),
    })
}

#[derive(Debug, FromRow)]
pub struct TaskColumns {
    id: i64,
    story: String,
    todolist: String,
    title: String,
    body: String,
    status: String,
    reason: Option<String>,
    worker: Option<String>,
    position: i64,
    blocked_by: String,
    created_by: String,
    created_at_us: i64,
    updated_at_us: i64,
}

/// A row of `tasks`.
pub fn task<R: Row>(row: &R) -> Result<Task, StoreError>
where
    for<'r> TaskColumns: FromRow<'r, R>,
{
    let c = decode::<TaskColumns, _>("tasks", row)?;
    Ok(Task {
        status: TaskStatus::parse(&c.status)
            .ok_or_else(|| corrupt("tasks", "status", &c.status))?,
        blocked_by: json_list("tasks", "blocked_by", &c.blocked_by)?,
        id: c.id,
        story: c.story,
        todolist: c.todolist,
        title: c.title,
        body: c.body,
        reason: c.reason,
        worker: c.worker,
        position: c.position,
        created_by: c.created_by,
        created_at: from_micros(c.created_at_us),
        updated_at: from_micros(c.updated_at_us),
    })
}

#[derive(Debug, FromRow)]
pub struct FollowupColumns {
    id: i64,
    path: String,
    hash: String,
    story: String,
    agent: String,
    task: String,
    title: String,
    body: String,
    status: String,
    reason: Option<String>,
    task_id: Option<i64>,
    decided_by: Option<String>,
    created_at_us: i64,
    updated_at_us: i64,
}

/// A row of `followups`.
pub fn followup<R: Row>(row: &R) -> Result<Followup, StoreError>
where
    for<'r> FollowupColumns: FromRow<'r, R>,
{
    let c = decode::<FollowupColumns, _>("followups", row)?;
    Ok(Followup {
        status: FollowupStatus::parse(&c.status)
            .ok_or_else(|| corrupt("followups", "status", &c.status))?,
        id: c.id,
        path: c.path,
        hash: c.hash,
        story: c.story,
        agent: c.agent,
        task: c.task,
        title: c.title,
        body: c.body,
        reason: c.reason,
        task_id: c.task_id,
        decided_by: c.decided_by,
        created_at: from_micros(c.created_at_us),
        updated_at: from_micros(c.updated_at_us),
    })
}
