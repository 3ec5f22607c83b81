//! The backlog as issues: which stories and tasks to sync, what each one's issue should say,
//! and the sync of them in order (tasks first, so that each story's checklist can link its
//! tasks' issues). Shared by `gaia sync github` and the scheduled sync of `gaia serve`.
//!
//! A closed issue says why: `completed` for a done task or a story closed with every task of
//! its current todolist done; `not_planned` for a story closed with tasks left undone, and for
//! an unfinished task whose story was closed or whose todolist was archived (it will not be
//! done).

use std::collections::{HashMap, HashSet};

use gaia_core::Gaia;
use gaia_core::backlog::{Story, StoryStatus, Task, TaskStatus};
use gaia_core::github::ItemKind;

use crate::runner::Gh;
use crate::sync::{Desired, ItemResult, Summary, SyncError, SyncOptions, sync};

/// Which part of the backlog to sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// One story (by slug), or every story.
    pub story: Option<String>,
    /// Whether each task becomes an issue too.
    pub tasks: bool,
}

/// The stories in `scope`, each with every task of all its todolists.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub stories: Vec<(Story, Vec<Task>)>,
    pub tasks: bool,
}

impl Loaded {
    /// Reads the stories and tasks of `scope`: every task of each story's current todolist,
    /// and the tasks of its archived lists that already have an issue in `repo` (so that
    /// the issue is closed; an archived task never synced gets none).
    pub async fn read(
        gaia: &Gaia,
        scope: &Scope,
        repo: &str,
    ) -> Result<Self, gaia_core::error::Error> {
        let stories = match &scope.story {
            Some(slug) => vec![gaia.get_story(slug).await?.story],
            None => gaia.list_stories(None).await?,
        };
        let synced: HashSet<String> = if scope.tasks {
            gaia.github_sync_list(repo)
                .await?
                .into_iter()
                .filter(|r| r.kind == ItemKind::Task)
                .map(|r| r.item)
                .collect()
        } else {
            HashSet::new()
        };
        let mut out = Vec::with_capacity(stories.len());
        for s in stories {
            let view = gaia.get_story(&s.slug).await?;
            let mut list = view.tasks;
            if !synced.is_empty() {
                for old in view.lists.iter().filter(|l| l.name != s.todolist) {
                    let tasks = gaia.list_tasks(&s.slug, Some(&old.name)).await?;
                    list.extend(
                        tasks
                            .into_iter()
                            .filter(|t| synced.contains(&t.id.to_string())),
                    );
                }
            }
            out.push((s, list));
        }
        Ok(Self {
            stories: out,
            tasks: scope.tasks,
        })
    }

    /// How many items a sync of these goes through.
    pub fn items(&self) -> usize {
        self.stories
            .iter()
            .map(|(_, list)| if self.tasks { list.len() + 1 } else { 1 })
            .sum()
    }
}

/// Syncs `loaded` to `opts.repo`: the tasks (when asked), then the stories, whose checklists
/// link the tasks' issues.
pub async fn sync_backlog(
    gaia: &Gaia,
    gh: &Gh,
    opts: &SyncOptions,
    loaded: &Loaded,
    progress: &mut (dyn FnMut(&ItemResult) + Send),
) -> Result<Summary, SyncError> {
    let mut summary = Summary::default();
    if loaded.tasks {
        let desired: Vec<Desired> = loaded
            .stories
            .iter()
            .flat_map(|(s, list)| list.iter().map(move |t| task_issue(s, t)))
            .collect();
        let done = sync(gaia, gh, opts, &desired, progress).await?;
        summary.absorb(done);
    }
    let issues: HashMap<String, i64> = gaia
        .github_sync_list(&opts.repo)
        .await?
        .into_iter()
        .filter(|r| r.kind == ItemKind::Task)
        .filter_map(|r| Some((r.item, r.issue?)))
        .collect();
    let desired: Vec<Desired> = loaded
        .stories
        .iter()
        .map(|(s, list)| story_issue(s, list, &issues))
        .collect();
    let done = sync(gaia, gh, opts, &desired, progress).await?;
    summary.absorb(done);
    Ok(summary)
}

/// A story's issue: its description, then its current todolist as a checklist (a task that
/// has its own issue is linked by number).
pub fn story_issue(s: &Story, tasks: &[Task], issues: &HashMap<String, i64>) -> Desired {
    let current: Vec<&Task> = tasks.iter().filter(|t| t.todolist == s.todolist).collect();
    let mut body = s.description.trim_end().to_owned();
    if !body.is_empty() {
        body.push_str("\n\n");
    }
    body.push_str(&format!("### Todolist `{}`\n", s.todolist));
    for t in &current {
        let mark = if t.status == TaskStatus::Done {
            "x"
        } else {
            " "
        };
        let link = issues
            .get(&t.id.to_string())
            .map_or_else(String::new, |n| format!(" #{n}"));
        body.push_str(&format!("\n- [{mark}] {}{link}", one_line(&t.title)));
    }
    let mut labels = vec![
        "gaia".to_owned(),
        "gaia:story".to_owned(),
        format!("status:{}", s.status.as_str()),
    ];
    labels.extend(s.labels.iter().cloned());
    let all_done = current.iter().all(|t| t.status == TaskStatus::Done);
    Desired {
        kind: ItemKind::Story,
        item: s.slug.clone(),
        title: s.title.clone(),
        body,
        labels,
        closed: (s.status == StoryStatus::Closed).then(|| reason(all_done).to_owned()),
    }
}

/// A task's issue: its body, the story it belongs to, its status as a label.
pub fn task_issue(s: &Story, t: &Task) -> Desired {
    let mut body = t.body.trim_end().to_owned();
    if !body.is_empty() {
        body.push_str("\n\n");
    }
    body.push_str(&format!("Story `{}`, todolist `{}`.", s.slug, t.todolist));
    let abandoned = s.status == StoryStatus::Closed || t.todolist != s.todolist;
    let closed = if t.status == TaskStatus::Done {
        Some(reason(true))
    } else if abandoned {
        Some(reason(false))
    } else {
        None
    };
    Desired {
        kind: ItemKind::Task,
        item: t.id.to_string(),
        title: t.title.clone(),
        body,
        labels: vec![
            "gaia".to_owned(),
            "gaia:task".to_owned(),
            format!("status:{}", t.status.as_str()),
        ],
        closed: closed.map(str::to_owned),
    }
}

/// GitHub's `state_reason` of a closed issue.
fn reason(done: bool) -> &'static str {
    if done { "completed" } else { "not_planned" }
}

/// A title as one checklist line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn story(status: StoryStatus) -> Story {
        Story {
            slug: "auth".into(),
            title: "Auth".into(),
            description: "why".into(),
            status,
            labels: vec![],
            created_by: "op".into(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            todolist: "main-2".into(),
            finalized_at: None,
        }
    }

    fn task(id: i64, todolist: &str, status: TaskStatus) -> Task {
        Task {
            id,
            story: "auth".into(),
            todolist: todolist.into(),
            title: format!("task {id}"),
            body: String::new(),
            status,
            reason: None,
            worker: None,
            position: id,
            blocked_by: vec![],
            created_by: "op".into(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_story_closed_with_its_tasks_done_is_completed_else_not_planned() {
        let none = HashMap::new();
        let done = [
            task(1, "main-2", TaskStatus::Done),
            // An archived list's unfinished task does not hold the story back.
            task(2, "main-1", TaskStatus::Todo),
        ];
        assert_eq!(
            story_issue(&story(StoryStatus::Open), &done, &none).closed,
            None
        );
        let closed = story_issue(&story(StoryStatus::Closed), &done, &none);
        assert_eq!(closed.closed.as_deref(), Some("completed"));
        assert!(
            !closed.body.contains("task 2"),
            "the checklist is the current list"
        );
        let undone = [
            task(1, "main-2", TaskStatus::Done),
            task(3, "main-2", TaskStatus::Blocked),
        ];
        let closed = story_issue(&story(StoryStatus::Closed), &undone, &none);
        assert_eq!(closed.closed.as_deref(), Some("not_planned"));
    }

    #[test]
    fn an_abandoned_task_is_not_planned_and_a_done_one_completed() {
        let open = story(StoryStatus::Open);
        let closed = story(StoryStatus::Closed);
        let reason = |s: &Story, t: &Task| task_issue(s, t).closed;
        assert_eq!(
            reason(&open, &task(1, "main-2", TaskStatus::InProgress)),
            None
        );
        assert_eq!(
            reason(&open, &task(1, "main-2", TaskStatus::Done)).as_deref(),
            Some("completed")
        );
        assert_eq!(
            reason(&open, &task(2, "main-1", TaskStatus::Todo)).as_deref(),
            Some("not_planned"),
            "left in an archived list"
        );
        assert_eq!(
            reason(&closed, &task(3, "main-2", TaskStatus::Todo)).as_deref(),
            Some("not_planned"),
            "its story closed without it"
        );
        assert_eq!(
            reason(&closed, &task(4, "main-1", TaskStatus::Done)).as_deref(),
            Some("completed")
        );
    }
}
