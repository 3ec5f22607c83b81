//! The backlog's calls in either mode: the [`gaia_core::Gaia`] service on the store, or the
//! server's `/api/v1` backlog routes. In direct mode the CLI's user acts (see
//! [`super::cli_actor`]), or the agent for changes made under its claim; over the API the
//! token's name does, and the server's own template starts new todolists.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gaia_core::backlog::{
    Followup, FollowupStatus, NewFollowup, NewStory, NewTask, RuleBreak, Story, StoryStatus, Taken,
    Task, Template, Todolist,
};
use gaia_core::claims::Holder;
use gaia_core::usecase::backlog::{Collected, Fenced, TaskAction};

use super::{Client, cli_actor};
use crate::exit::CliError;

/// A story with its current todolist's tasks and all its lists (the API's `StoryView`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoryView {
    #[serde(flatten)]
    pub story: Story,
    pub tasks: Vec<Task>,
    pub lists: Vec<Todolist>,
}

/// Ready work taken: the task, now in progress, and the claim's fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Took {
    pub task: Task,
    pub token: i64,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Who acts on a task: the fenced agent, else the CLI's user.
fn actor(fenced: Option<&Fenced>) -> String {
    fenced.map_or_else(cli_actor, |f| f.agent.clone())
}

impl Client {
    pub async fn create_story(
        &self,
        new: &NewStory,
        template: &Template,
    ) -> Result<Story, CliError> {
        match self {
            Self::Direct(g) => Ok(g.create_story(new, template, &cli_actor()).await?),
            Self::Remote(r) => r.create_story(new).await,
        }
    }

    pub async fn stories(&self, status: Option<StoryStatus>) -> Result<Vec<Story>, CliError> {
        match self {
            Self::Direct(g) => Ok(g.list_stories(status).await?),
            Self::Remote(r) => r.stories(status).await,
        }
    }

    pub async fn story(&self, slug: &str) -> Result<StoryView, CliError> {
        match self {
            Self::Direct(g) => {
                let v = g.get_story(slug).await?;
                Ok(StoryView {
                    story: v.story,
                    tasks: v.tasks,
                    lists: v.lists,
                })
            }
            Self::Remote(r) => r.story(slug).await,
        }
    }

    pub async fn edit_story(&self, edit: &NewStory) -> Result<Story, CliError> {
        match self {
            Self::Direct(g) => Ok(g.edit_story(edit, &cli_actor()).await?),
            Self::Remote(r) => r.edit_story(edit).await,
        }
    }

    pub async fn set_story_status(
        &self,
        slug: &str,
        status: StoryStatus,
    ) -> Result<Story, CliError> {
        match self {
            Self::Direct(g) => Ok(g.set_story_status(slug, status, &cli_actor()).await?),
            Self::Remote(r) => r.set_story_status(slug, status).await,
        }
    }

    pub async fn add_task(&self, slug: &str, new: &NewTask) -> Result<Task, CliError> {
        match self {
            Self::Direct(g) => Ok(g.add_task(slug, new, &cli_actor()).await?),
            Self::Remote(r) => r.add_task(slug, new).await,
        }
    }

    pub async fn tasks(&self, slug: &str, todolist: Option<&str>) -> Result<Vec<Task>, CliError> {
        match self {
            Self::Direct(g) => Ok(g.list_tasks(slug, todolist).await?),
            Self::Remote(r) => r.tasks(slug, todolist).await,
        }
    }

    pub async fn task(&self, id: i64) -> Result<Task, CliError> {
        match self {
            Self::Direct(g) => Ok(g.get_task(id).await?),
            Self::Remote(r) => r.task(id).await,
        }
    }

    pub async fn edit_task(&self, id: i64, title: &str, body: &str) -> Result<Task, CliError> {
        match self {
            Self::Direct(g) => Ok(g.edit_task(id, title, body, &cli_actor()).await?),
            Self::Remote(r) => r.edit_task(id, title, body).await,
        }
    }

    pub async fn act_on_task(
        &self,
        id: i64,
        action: &TaskAction,
        fenced: Option<&Fenced>,
    ) -> Result<Task, CliError> {
        match self {
            Self::Direct(g) => Ok(g.act_on_task(id, action, fenced, &actor(fenced)).await?),
            Self::Remote(r) => r.act_on_task(id, action, fenced).await,
        }
    }

    /// Archives the current todolist and starts a fresh one (named `name`, or the same name).
    pub async fn replace_list(
        &self,
        slug: &str,
        name: Option<&str>,
        template: &Template,
    ) -> Result<Story, CliError> {
        match self {
            Self::Direct(g) => Ok(g.replace_list(slug, name, template, &cli_actor()).await?),
            Self::Remote(r) => r.replace_list(slug, name).await,
        }
    }

    pub async fn finalize_list(&self, slug: &str) -> Result<Story, CliError> {
        match self {
            Self::Direct(g) => Ok(g.finalize_list(slug, &cli_actor()).await?),
            Self::Remote(r) => r.finalize_list(slug).await,
        }
    }

    pub async fn validate_lists(&self, slug: Option<&str>) -> Result<Vec<RuleBreak>, CliError> {
        match self {
            Self::Direct(g) => Ok(g.validate_lists(slug).await?),
            Self::Remote(r) => r.validate_lists(slug).await,
        }
    }

    pub async fn ready(&self, story: Option<&str>, limit: u32) -> Result<Vec<Task>, CliError> {
        match self {
            Self::Direct(g) => Ok(g.list_ready(story, limit).await?),
            Self::Remote(r) => r.ready(story, limit).await,
        }
    }

    /// Takes the first ready task `holder` can get; `None` when there is none.
    pub async fn take_ready(
        &self,
        story: Option<&str>,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<Option<Took>, CliError> {
        match self {
            Self::Direct(g) => match g.take_ready(story, holder, ttl, &holder.agent).await? {
                Taken::Took { task, claim } => Ok(Some(Took {
                    task: *task,
                    token: claim.token,
                    expires_at: claim.expires_at,
                })),
                Taken::Nothing => Ok(None),
            },
            Self::Remote(r) => r.take_ready(story, holder, ttl).await,
        }
    }

    pub async fn collect_followup(
        &self,
        doc: &NewFollowup,
    ) -> Result<(Collected, Followup), CliError> {
        match self {
            Self::Direct(g) => Ok(g.collect_followup(doc, &cli_actor()).await?),
            Self::Remote(r) => r.collect_followup(doc).await,
        }
    }

    pub async fn followups(
        &self,
        status: Option<FollowupStatus>,
    ) -> Result<Vec<Followup>, CliError> {
        match self {
            Self::Direct(g) => Ok(g.list_followups(status).await?),
            Self::Remote(r) => r.followups(status).await,
        }
    }

    /// Accepts (no reason) or rejects (with one) a follow-up.
    pub async fn triage_followup(
        &self,
        id: i64,
        reject: Option<&str>,
    ) -> Result<Followup, CliError> {
        match self {
            Self::Direct(g) => Ok(g.triage_followup(id, reject, &cli_actor()).await?),
            Self::Remote(r) => r.triage_followup(id, reject).await,
        }
    }
}
