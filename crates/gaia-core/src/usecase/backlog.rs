//! The backlog's state changes: stories, todolists, tasks and follow-ups. Each is one
//! transaction with its `story.*`, `todo.*` or `followup.*` event and audit record. Changing a
//! task's work state is fenced by the claim on its todolist: the use case locks the claim row
//! first, then the task (the same order everywhere, so two of them never wait on each other).

use std::time::Duration;

use serde_json::{Value, json};

use crate::audit::NewAudit;
use crate::backlog::{
    Followup, FollowupStatus, NewFollowup, NewStory, NewTask, Story, StoryStatus, Taken, Task,
    TaskStatus, Template, Todolist, archived_name, check_fence, has_final_marker,
};
use crate::claims::{Holder, Request, decide};
use crate::error::{Error, StoreError, ValidationError};
use crate::event::{Event, NewEvent, kinds};
use crate::names::ClaimKey;
use crate::tx::{TryLock, WriteTx};

/// Ready tasks read per `take`: enough to reach many lists when each has many tasks.
const TAKE_CANDIDATES: u32 = 256;
/// Lists tried per `take` (each list's first ready task) before giving up on a busy backlog.
const TAKE_LISTS: usize = 32;

/// Who changes a task's work state: the agent and the fencing token of its claim. `None`
/// (only for operators, on the actions that allow it) changes it without holding the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    pub agent: String,
    pub token: i64,
    /// The API token acting, when the caller must be the one that took the claim (an agent's
    /// token: any token could name any agent). `None` for trusted callers (direct store
    /// access, operators acting for an agent).
    pub principal: Option<String>,
}

/// What a task action does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskAction {
    Start,
    Done,
    Block(String),
    Unblock,
    /// Moves the task to `position` (1-based) within its list.
    Move(i64),
}

impl TaskAction {
    fn kind(&self) -> &'static str {
        match self {
            Self::Start => kinds::TODO_STARTED,
            Self::Done => kinds::TODO_DONE,
            Self::Block(_) => kinds::TODO_BLOCKED,
            Self::Unblock => kinds::TODO_UNBLOCKED,
            Self::Move(_) => kinds::TODO_MOVED,
        }
    }

    /// Whether the action needs the caller to hold the list's claim whoever the caller is.
    pub fn needs_claim(&self) -> bool {
        matches!(self, Self::Start | Self::Done)
    }
}

/// The event and audit record of one backlog change.
fn change(kind: &str, actor: &str, subject: &str, data: &Value) -> (Vec<NewEvent>, Vec<NewAudit>) {
    (
        vec![NewEvent::new(kind, actor, subject, data.clone())],
        vec![NewAudit::new(actor, kind, subject, "ok", data.clone())],
    )
}

/// Appends the event and audit record of one change and commits the transaction.
async fn commit_change(
    tx: Box<dyn WriteTx>,
    kind: &str,
    actor: &str,
    subject: &str,
    data: &Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Event>, Error> {
    let (events, audit) = change(kind, actor, subject, data);
    let events = tx.append_and_commit(&events, &audit, now).await?;
    Ok(events)
}

fn conflict(msg: impl Into<String>) -> Error {
    Error::Store(StoreError::Conflict(msg.into()))
}

fn story_subject(slug: &str) -> String {
    format!("story/{slug}")
}

fn task_data(task: &Task) -> Value {
    json!({
        "id": task.id,
        "story": task.story,
        "todolist": task.todolist,
        "title": task.title,
        "status": task.status.as_str(),
        "worker": task.worker,
        "reason": task.reason,
        "position": task.position,
    })
}

async fn locked_story(tx: &mut Box<dyn WriteTx>, slug: &str) -> Result<Story, Error> {
    tx.story_lock(slug)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no story '{slug}'")))
}

async fn locked_task(tx: &mut Box<dyn WriteTx>, id: i64) -> Result<Task, Error> {
    tx.task_lock(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no task {id}")))
}

/// Builds the tasks of a template for `story`'s list `name`, positions from 1.
fn template_tasks(story: &Story, name: &str, template: &Template, actor: &str) -> Vec<Task> {
    template
        .0
        .iter()
        .zip(1..)
        .map(|(t, position)| Task {
            id: 0,
            story: story.slug.clone(),
            todolist: name.to_owned(),
            title: t.title.clone(),
            body: t.body.clone(),
            status: TaskStatus::Todo,
            reason: None,
            worker: None,
            position,
            blocked_by: vec![],
            created_by: actor.to_owned(),
            created_at: story.updated_at,
            updated_at: story.updated_at,
        })
        .collect()
}

/// Starts `story`'s list `name` from `template`: the list row and its tasks.
async fn start_list(
    tx: &mut Box<dyn WriteTx>,
    story: &Story,
    name: &str,
    template: &Template,
    actor: &str,
) -> Result<Vec<Task>, Error> {
    let list = Todolist {
        story: story.slug.clone(),
        name: name.to_owned(),
        created_at: story.updated_at,
        finalized_at: None,
        archived_at: None,
    };
    if !tx.todolist_insert(&list).await? {
        return Err(conflict(format!(
            "story '{}' already has a todolist named '{name}'",
            story.slug
        )));
    }
    let mut tasks = template_tasks(story, name, template, actor);
    for t in &mut tasks {
        t.id = tx.task_insert(t).await?;
    }
    Ok(tasks)
}

/// Creates a story with its current todolist `default`, started from `template`.
pub async fn create_story(
    mut tx: Box<dyn WriteTx>,
    new: &NewStory,
    template: &Template,
    actor: &str,
) -> Result<(Story, Vec<Event>), Error> {
    new.check()?;
    let now = tx.now().await?;
    let story = Story {
        slug: new.slug.clone(),
        title: new.title.clone(),
        description: new.description.clone(),
        status: StoryStatus::Open,
        labels: new.labels.clone(),
        created_by: actor.to_owned(),
        created_at: now,
        updated_at: now,
        todolist: ClaimKey::DEFAULT_TODOLIST.to_owned(),
        finalized_at: None,
    };
    if !tx.story_insert(&story).await? {
        return Err(conflict(format!("a story '{}' already exists", story.slug)));
    }
    let tasks = start_list(&mut tx, &story, &story.todolist, template, actor).await?;
    let data = json!({
        "slug": story.slug, "title": story.title, "labels": story.labels,
        "todolist": story.todolist, "tasks": tasks.len(),
    });
    let events = commit_change(
        tx,
        kinds::STORY_CREATED,
        actor,
        &story_subject(&story.slug),
        &data,
        now,
    )
    .await?;
    Ok((story, events))
}

/// Closes or reopens a story. Setting the status it already has changes nothing.
pub async fn set_story_status(
    mut tx: Box<dyn WriteTx>,
    slug: &str,
    status: StoryStatus,
    actor: &str,
) -> Result<(Story, Vec<Event>), Error> {
    let mut story = locked_story(&mut tx, slug).await?;
    if story.status == status {
        return Ok((story, vec![]));
    }
    let now = tx.now().await?;
    story.status = status;
    story.updated_at = now;
    tx.story_update(&story).await?;
    let kind = match status {
        StoryStatus::Open => kinds::STORY_REOPENED,
        StoryStatus::Closed => kinds::STORY_CLOSED,
    };
    let data = json!({ "slug": slug, "status": status.as_str() });
    let events = commit_change(tx, kind, actor, &story_subject(slug), &data, now).await?;
    Ok((story, events))
}

/// Edits a story's title, description and labels (what `backlog import` applies).
pub async fn edit_story(
    mut tx: Box<dyn WriteTx>,
    edit: &NewStory,
    actor: &str,
) -> Result<(Story, Vec<Event>), Error> {
    edit.check()?;
    let mut story = locked_story(&mut tx, &edit.slug).await?;
    if story.title == edit.title
        && story.description == edit.description
        && story.labels == edit.labels
    {
        return Ok((story, vec![]));
    }
    let now = tx.now().await?;
    story.title.clone_from(&edit.title);
    story.description.clone_from(&edit.description);
    story.labels.clone_from(&edit.labels);
    story.updated_at = now;
    tx.story_update(&story).await?;
    let data = json!({ "slug": story.slug, "title": story.title, "labels": story.labels });
    let events = commit_change(
        tx,
        kinds::STORY_UPDATED,
        actor,
        &story_subject(&story.slug),
        &data,
        now,
    )
    .await?;
    Ok((story, events))
}

/// Checks that every task `new` waits for exists in `story`.
async fn check_blockers(
    tx: &mut Box<dyn WriteTx>,
    story: &str,
    blocked_by: &[i64],
) -> Result<(), Error> {
    for id in blocked_by {
        match tx.task_lock(*id).await? {
            Some(t) if t.story == story => {}
            Some(_) => {
                return Err(
                    ValidationError::new(format!("task {id} belongs to another story")).into(),
                );
            }
            None => return Err(ValidationError::new(format!("no task {id}")).into()),
        }
    }
    Ok(())
}

/// Appends a task to the story's current todolist, before its final task when it has one.
/// Refused when the list is finalized or the story closed.
pub async fn add_task(
    mut tx: Box<dyn WriteTx>,
    slug: &str,
    new: &NewTask,
    actor: &str,
) -> Result<(Task, Vec<Event>), Error> {
    new.check()?;
    let story = locked_story(&mut tx, slug).await?;
    if story.status == StoryStatus::Closed {
        return Err(conflict(format!(
            "story '{slug}' is closed; reopen it first"
        )));
    }
    if story.finalized_at.is_some() {
        return Err(conflict(format!(
            "todolist {}/{} is finalized; nothing more is appended to it",
            slug, story.todolist
        )));
    }
    check_blockers(&mut tx, slug, &new.blocked_by).await?;
    let now = tx.now().await?;
    let task = add_task_in(&mut tx, &story, new, actor, now).await?;
    let events = commit_change(
        tx,
        kinds::TODO_ADDED,
        actor,
        &task.key().to_string(),
        &task_data(&task),
        now,
    )
    .await?;
    Ok((task, events))
}

/// Edits a task's title and body (what `backlog import` applies).
pub async fn edit_task(
    mut tx: Box<dyn WriteTx>,
    id: i64,
    title: &str,
    body: &str,
    actor: &str,
) -> Result<(Task, Vec<Event>), Error> {
    NewTask {
        title: title.to_owned(),
        body: body.to_owned(),
        blocked_by: vec![],
    }
    .check()?;
    let mut task = locked_task(&mut tx, id).await?;
    if task.title == title && task.body == body {
        return Ok((task, vec![]));
    }
    let now = tx.now().await?;
    title.clone_into(&mut task.title);
    body.clone_into(&mut task.body);
    task.updated_at = now;
    tx.task_update(&task).await?;
    let events = commit_change(
        tx,
        kinds::TODO_EDITED,
        actor,
        &task.key().to_string(),
        &task_data(&task),
        now,
    )
    .await?;
    Ok((task, events))
}

/// Applies `action` to task `id`. With `fenced`, the caller must hold the live claim on the
/// task's list under exactly that token (a holder whose lease expired and was taken over is
/// refused); without, only the actions that do not need the claim are allowed.
pub async fn act_on_task(
    mut tx: Box<dyn WriteTx>,
    id: i64,
    action: &TaskAction,
    fenced: Option<&Fenced>,
    actor: &str,
) -> Result<(Task, Vec<Event>), Error> {
    // Lock order in every backlog use case: the claim, then the story, then its tasks (a
    // follow-up before its story), so that two transactions never wait on each other.
    let peek = tx
        .task_get(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no task {id}")))?;
    let key = peek.key();
    match fenced {
        Some(f) => {
            let row = tx.claim_lock(&key).await?;
            // The clock after the lock, so that the fence is judged in the claim's order.
            let now = tx.now().await?;
            check_fence(row.as_ref(), &f.agent, f.token, f.principal.as_deref(), now)
                .map_err(|refusal| conflict(refusal.message(&key)))?;
        }
        None if action.needs_claim() => {
            return Err(conflict(format!(
                "{} needs the claim on {key}: pass the agent and its fencing token",
                action.kind()
            )));
        }
        None => {}
    }
    let story = locked_story(&mut tx, &peek.story).await?;
    let mut task = locked_task(&mut tx, id).await?;
    if task.todolist != story.todolist || task.key() != key {
        return Err(conflict(format!(
            "task {id} is in the archived list {}; it does not change any more",
            task.key()
        )));
    }
    let now = tx.now().await?;
    apply_action(&mut tx, &mut task, action, fenced, now).await?;
    task.updated_at = now;
    tx.task_update(&task).await?;
    let mut data = task_data(&task);
    if let Some(f) = fenced {
        data["token"] = json!(f.token);
    }
    let events = commit_change(
        tx,
        action.kind(),
        actor,
        &task.key().to_string(),
        &data,
        now,
    )
    .await?;
    Ok((task, events))
}

/// Changes `task` as `action` says, or refuses a change its state does not allow.
async fn apply_action(
    tx: &mut Box<dyn WriteTx>,
    task: &mut Task,
    action: &TaskAction,
    fenced: Option<&Fenced>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    let id = task.id;
    match action {
        TaskAction::Start => {
            if matches!(task.status, TaskStatus::Done | TaskStatus::Blocked) {
                return Err(conflict(format!(
                    "task {id} is {}; it cannot be started",
                    task.status.as_str()
                )));
            }
            task.status = TaskStatus::InProgress;
            task.worker = fenced.map(|f| f.agent.clone());
        }
        TaskAction::Done => {
            if task.status == TaskStatus::Blocked {
                return Err(conflict(format!("task {id} is blocked; unblock it first")));
            }
            task.status = TaskStatus::Done;
            task.worker = fenced.map(|f| f.agent.clone()).or(task.worker.take());
        }
        TaskAction::Block(reason) => {
            crate::text::check_text("reason", reason, crate::text::MAX_REASON_CHARS)?;
            if reason.trim().is_empty() {
                return Err(ValidationError::new("a blocked task needs a reason").into());
            }
            if task.status == TaskStatus::Done {
                return Err(conflict(format!("task {id} is done")));
            }
            task.status = TaskStatus::Blocked;
            task.reason = Some(reason.clone());
        }
        TaskAction::Unblock => {
            if task.status != TaskStatus::Blocked {
                return Err(conflict(format!("task {id} is not blocked")));
            }
            task.status = TaskStatus::Todo;
            task.reason = None;
            task.worker = None;
        }
        TaskAction::Move(to) => move_within(tx, task, *to, now).await?,
    }
    Ok(())
}

/// Moves `task` to 1-based `to` in its list, shifting the others; the final task stays last.
async fn move_within(
    tx: &mut Box<dyn WriteTx>,
    task: &mut Task,
    to: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    let mut list = tx.tasks_in(&task.story, &task.todolist).await?;
    let count = i64::try_from(list.len()).unwrap_or(i64::MAX);
    if to < 1 || to > count {
        return Err(ValidationError::new(format!("position must be between 1 and {count}")).into());
    }
    let from = list.iter().position(|t| t.id == task.id).unwrap_or(0);
    let moved = list.remove(from);
    let at = usize::try_from(to - 1).unwrap_or(0).min(list.len());
    list.insert(at, moved);
    if list.len() > 1
        && list.last().is_some_and(|t| !t.is_final())
        && list.iter().any(Task::is_final)
    {
        return Err(conflict("the final task must stay last in its list"));
    }
    for (t, position) in list.iter_mut().zip(1..) {
        if t.id == task.id {
            task.position = position;
        } else if t.position != position {
            t.position = position;
            t.updated_at = now;
            tx.task_update(t).await?;
        }
    }
    Ok(())
}

/// Archives the story's current todolist under a timestamped name and starts a fresh list,
/// named `name` (the same name when `None`), from `template`.
pub async fn replace_list(
    mut tx: Box<dyn WriteTx>,
    slug: &str,
    name: Option<&str>,
    template: &Template,
    actor: &str,
) -> Result<(Story, Vec<Event>), Error> {
    if let Some(n) = name {
        crate::names::check_name("todolist", n)?;
        if n.contains('@') {
            return Err(ValidationError::new("a todolist name must not contain '@'").into());
        }
    }
    let mut story = locked_story(&mut tx, slug).await?;
    let now = tx.now().await?;
    let old = story.todolist.clone();
    let mut archived = archived_name(&old, now, 0);
    for attempt in 1..100 {
        if tx.tasks_in(slug, &archived).await?.is_empty() {
            break;
        }
        archived = archived_name(&old, now, attempt);
    }
    tx.todolist_archive(slug, &old, &archived, now).await?;
    story.todolist = name.unwrap_or(&old).to_owned();
    story.finalized_at = None;
    story.updated_at = now;
    tx.story_update(&story).await?;
    let tasks = start_list(&mut tx, &story, &story.todolist.clone(), template, actor).await?;
    let data = json!({
        "slug": slug, "archived": archived, "todolist": story.todolist, "tasks": tasks.len(),
    });
    let subject = story_subject(slug);
    let (mut events, mut audit) = change(kinds::TODO_ARCHIVED, actor, &subject, &data);
    let (e2, a2) = change(kinds::TODO_LIST_CREATED, actor, &subject, &data);
    events.extend(e2);
    audit.extend(a2);
    let events = tx.append_and_commit(&events, &audit, now).await?;
    Ok((story, events))
}

/// Marks the story's current todolist finalized: nothing more is appended to it.
pub async fn finalize_list(
    mut tx: Box<dyn WriteTx>,
    slug: &str,
    actor: &str,
) -> Result<(Story, Vec<Event>), Error> {
    let mut story = locked_story(&mut tx, slug).await?;
    if story.finalized_at.is_some() {
        return Ok((story, vec![]));
    }
    let now = tx.now().await?;
    tx.todolist_finalize(slug, &story.todolist, now).await?;
    story.finalized_at = Some(now);
    story.updated_at = now;
    tx.story_update(&story).await?;
    let data = json!({ "slug": slug, "todolist": story.todolist });
    let events = commit_change(
        tx,
        kinds::TODO_FINALIZED,
        actor,
        &story_subject(slug),
        &data,
        now,
    )
    .await?;
    Ok((story, events))
}

/// What one attempt to take ready work came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Taken, or nothing ready (see [`Taken`]), with the events committed.
    Done(Taken, Vec<Event>),
    /// Nothing taken, but some ready task's list was being decided on by another transaction
    /// at that moment: worth another attempt.
    Busy,
}

/// Takes the first ready task `holder` can get: acquires (or renews) the claim on its list
/// and marks it in progress, in one transaction. `Nothing` when no ready task is free.
pub async fn take_ready(
    mut tx: Box<dyn WriteTx>,
    story: Option<&str>,
    holder: &Holder,
    ttl: Duration,
    actor: &str,
) -> Result<Attempt, Error> {
    let now = tx.now().await?;
    let candidates = tx
        .ready_for(story, &holder.agent, now, TAKE_CANDIDATES)
        .await?;
    let mut busy = false;
    let mut lists = std::collections::HashSet::new();
    // Each list's first ready task, in order: the others in a list wait behind it anyway.
    let firsts = candidates
        .into_iter()
        .filter(|t| lists.insert(t.key()))
        .take(TAKE_LISTS);
    for candidate in firsts {
        let key = candidate.key();
        let req = Request::Acquire {
            key: key.clone(),
            holder: holder.clone(),
            ttl,
        };
        // A list someone is deciding on right now is left to them: waiting for their
        // commit would only queue every agent behind the same first candidate.
        let TryLock::Locked(current) = tx.claim_try_lock(&key).await? else {
            busy = true;
            continue;
        };
        // The clock after the lock, so that decisions on this key are ordered by it.
        let now = tx.now().await?;
        let held = current.clone();
        let decision = decide(current, &req, now);
        if !decision.result.outcome.is_success() {
            continue;
        }
        let Some(mut task) = tx.task_lock(candidate.id).await? else {
            continue;
        };
        if task.status != TaskStatus::Todo || task.todolist != candidate.todolist {
            continue;
        }
        // The agent may hold the list already (its own earlier take): the claim stays as it is.
        let row = match (decision.row, held) {
            (Some(row), _) => {
                tx.claim_write(&row).await?;
                row
            }
            (None, Some(row)) => row,
            (None, None) => continue,
        };
        task.status = TaskStatus::InProgress;
        task.worker = Some(holder.agent.clone());
        task.updated_at = now;
        tx.task_update(&task).await?;
        let mut data = task_data(&task);
        data["token"] = json!(row.token);
        let (e, a) = change(kinds::TODO_STARTED, actor, &key.to_string(), &data);
        let mut events = decision.events;
        let mut audit = decision.audit;
        events.extend(e);
        audit.extend(a);
        let events = tx.append_and_commit(&events, &audit, now).await?;
        let taken = Taken::Took {
            task: Box::new(task),
            claim: Box::new(row),
        };
        return Ok(Attempt::Done(taken, events));
    }
    tx.rollback().await?;
    if busy {
        return Ok(Attempt::Busy);
    }
    Ok(Attempt::Done(Taken::Nothing, vec![]))
}

/// What collecting one follow-up doc did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Collected {
    Added,
    Updated,
    Unchanged,
}

/// Adds the follow-up doc `doc` (identified by its path) to its story's triage list, or
/// updates its entry when its content changed; a doc seen with the same content is left alone.
pub async fn collect_followup(
    mut tx: Box<dyn WriteTx>,
    doc: &NewFollowup,
    actor: &str,
) -> Result<(Collected, Followup, Vec<Event>), Error> {
    doc.check()?;
    let mut found = tx.followup_lock_path(&doc.path).await?;
    locked_story(&mut tx, &doc.story).await?;
    let now = tx.now().await?;
    if found.is_none() {
        let mut new = doc.pending(now);
        if let Some(id) = tx.followup_insert(&new).await? {
            new.id = id;
            return finish_collect(
                tx,
                Collected::Added,
                new,
                kinds::FOLLOWUP_COLLECTED,
                actor,
                now,
            )
            .await;
        }
        // A concurrent run collected the same path first; its row is committed now.
        found = tx.followup_lock_path(&doc.path).await?;
    }
    let (outcome, stored, kind) = match found {
        Some(old) if old.hash == doc.hash => return Ok((Collected::Unchanged, old, vec![])),
        Some(mut old) => {
            old.hash.clone_from(&doc.hash);
            old.story.clone_from(&doc.story);
            old.agent.clone_from(&doc.agent);
            old.task.clone_from(&doc.task);
            old.title.clone_from(&doc.title);
            old.body.clone_from(&doc.body);
            old.updated_at = now;
            tx.followup_update(&old).await?;
            (Collected::Updated, old, kinds::FOLLOWUP_UPDATED)
        }
        None => {
            return Err(Error::Store(StoreError::Corrupt(format!(
                "follow-up {} vanished while being collected",
                doc.path
            ))));
        }
    };
    finish_collect(tx, outcome, stored, kind, actor, now).await
}

/// Appends the event of a collected follow-up and commits.
async fn finish_collect(
    tx: Box<dyn WriteTx>,
    outcome: Collected,
    stored: Followup,
    kind: &str,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Collected, Followup, Vec<Event>), Error> {
    let data = json!({
        "id": stored.id, "path": stored.path, "story": stored.story, "agent": stored.agent,
        "task": stored.task, "title": stored.title, "hash": stored.hash,
    });
    let events = commit_change(tx, kind, actor, &story_subject(&stored.story), &data, now).await?;
    Ok((outcome, stored, events))
}

/// Accepts follow-up `id` (it becomes a task of its story's current list) or, with a reason,
/// rejects it. A follow-up is triaged once.
pub async fn triage_followup(
    mut tx: Box<dyn WriteTx>,
    id: i64,
    reject: Option<&str>,
    actor: &str,
) -> Result<(Followup, Vec<Event>), Error> {
    let mut f = tx
        .followup_lock(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no follow-up {id}")))?;
    if f.status != FollowupStatus::Pending {
        return Err(conflict(format!(
            "follow-up {id} is already {}",
            f.status.as_str()
        )));
    }
    let now = tx.now().await?;
    let kind = if let Some(reason) = reject {
        crate::text::check_text("reason", reason, crate::text::MAX_REASON_CHARS)?;
        if reason.trim().is_empty() {
            return Err(ValidationError::new("a rejection needs a reason").into());
        }
        f.status = FollowupStatus::Rejected;
        f.reason = Some(reason.to_owned());
        kinds::FOLLOWUP_REJECTED
    } else {
        let story = locked_story(&mut tx, &f.story).await?;
        if story.finalized_at.is_some() || story.status == StoryStatus::Closed {
            return Err(conflict(format!(
                "story '{}' takes no new tasks (closed or its list finalized)",
                f.story
            )));
        }
        let new = NewTask {
            title: f.title.clone(),
            body: f.body.clone(),
            blocked_by: vec![],
        };
        let task = add_task_in(&mut tx, &story, &new, actor, now).await?;
        f.status = FollowupStatus::Accepted;
        f.task_id = Some(task.id);
        kinds::FOLLOWUP_ACCEPTED
    };
    f.decided_by = Some(actor.to_owned());
    f.updated_at = now;
    tx.followup_update(&f).await?;
    let data = json!({
        "id": f.id, "path": f.path, "story": f.story, "status": f.status.as_str(),
        "reason": f.reason, "task_id": f.task_id,
    });
    let events = commit_change(tx, kind, actor, &story_subject(&f.story), &data, now).await?;
    Ok((f, events))
}

/// Inserts `new` at the end of `story`'s current list, inside the caller's transaction. A
/// task goes before the list's final task, which must stay last (unless it is final itself).
async fn add_task_in(
    tx: &mut Box<dyn WriteTx>,
    story: &Story,
    new: &NewTask,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Task, Error> {
    new.check()?;
    let mut list = tx.tasks_in(&story.slug, &story.todolist).await?;
    let mut position = list.last().map_or(1, |t| t.position + 1);
    let before_final = !has_final_marker(&new.title);
    if let Some(last) = list.last_mut().filter(|t| t.is_final() && before_final) {
        position = last.position;
        last.position += 1;
        last.updated_at = now;
        tx.task_update(last).await?;
    }
    let mut task = Task {
        id: 0,
        story: story.slug.clone(),
        todolist: story.todolist.clone(),
        title: new.title.clone(),
        body: new.body.clone(),
        status: TaskStatus::Todo,
        reason: None,
        worker: None,
        position,
        blocked_by: new.blocked_by.clone(),
        created_by: actor.to_owned(),
        created_at: now,
        updated_at: now,
    };
    task.id = tx.task_insert(&task).await?;
    Ok(task)
}
