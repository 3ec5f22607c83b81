//! The backlog: stories, todolists, tasks, ready work and follow-ups.

use std::time::Duration;

use super::Gaia;
use crate::backlog::check_slug;
use crate::backlog::{
    Followup, FollowupStatus, NewFollowup, NewStory, NewTask, RuleBreak, Story, StoryStatus, Taken,
    Task, Template, Todolist, final_rule,
};
use crate::claims::Holder;
use crate::error::Error;
use crate::names::check_name;
use crate::usecase::backlog::{self as uc, Attempt, Collected, Fenced, TaskAction};

/// Attempts at taking ready work while every ready list is busy (5 ms, 10 ms, … apart).
const TAKE_ATTEMPTS: u32 = 6;

/// Most rows a list call returns.
pub const MAX_LIST: u32 = 10_000;

/// A story with its current todolist's tasks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoryView {
    #[serde(flatten)]
    pub story: Story,
    pub tasks: Vec<Task>,
    pub lists: Vec<Todolist>,
}

impl Gaia {
    pub async fn create_story(
        &self,
        new: &NewStory,
        template: &Template,
        actor: &str,
    ) -> Result<Story, Error> {
        let (story, events) =
            crate::write_in!(self.store, tx => uc::create_story(tx, new, template, actor).await)?;
        self.mirror(&events);
        Ok(story)
    }

    pub async fn set_story_status(
        &self,
        slug: &str,
        status: StoryStatus,
        actor: &str,
    ) -> Result<Story, Error> {
        let (story, events) = crate::write_in!(self.store, tx => uc::set_story_status(tx, slug, status, actor).await)?;
        self.mirror(&events);
        Ok(story)
    }

    pub async fn edit_story(&self, edit: &NewStory, actor: &str) -> Result<Story, Error> {
        let (story, events) =
            crate::write_in!(self.store, tx => uc::edit_story(tx, edit, actor).await)?;
        self.mirror(&events);
        Ok(story)
    }

    pub async fn get_story(&self, slug: &str) -> Result<StoryView, Error> {
        let story = self
            .store
            .story_get(slug)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no story '{slug}'")))?;
        let tasks = self.store.task_list(slug, &story.todolist).await?;
        let lists = self.store.todolist_list(slug).await?;
        Ok(StoryView {
            story,
            tasks,
            lists,
        })
    }

    pub async fn list_stories(&self, status: Option<StoryStatus>) -> Result<Vec<Story>, Error> {
        Ok(self.store.story_list(status, MAX_LIST).await?)
    }

    /// The tasks of a story's todolist (its current one when `name` is `None`).
    pub async fn list_tasks(&self, slug: &str, name: Option<&str>) -> Result<Vec<Task>, Error> {
        let name = match name {
            Some(n) => n.to_owned(),
            None => self.get_story(slug).await?.story.todolist,
        };
        Ok(self.store.task_list(slug, &name).await?)
    }

    pub async fn get_task(&self, id: i64) -> Result<Task, Error> {
        self.store
            .task_get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no task {id}")))
    }

    pub async fn add_task(&self, slug: &str, new: &NewTask, actor: &str) -> Result<Task, Error> {
        let (task, events) =
            crate::write_in!(self.store, tx => uc::add_task(tx, slug, new, actor).await)?;
        self.mirror(&events);
        Ok(task)
    }

    pub async fn edit_task(
        &self,
        id: i64,
        title: &str,
        body: &str,
        actor: &str,
    ) -> Result<Task, Error> {
        let (task, events) =
            crate::write_in!(self.store, tx => uc::edit_task(tx, id, title, body, actor).await)?;
        self.mirror(&events);
        Ok(task)
    }

    pub async fn act_on_task(
        &self,
        id: i64,
        action: &TaskAction,
        fenced: Option<&Fenced>,
        actor: &str,
    ) -> Result<Task, Error> {
        let (task, events) = crate::write_in!(self.store, tx => uc::act_on_task(tx, id, action, fenced, actor).await)?;
        self.mirror(&events);
        Ok(task)
    }

    /// Archives the current list and starts a fresh one (named `name`, or the same name).
    pub async fn replace_list(
        &self,
        slug: &str,
        name: Option<&str>,
        template: &Template,
        actor: &str,
    ) -> Result<Story, Error> {
        let (story, events) = crate::write_in!(self.store, tx => uc::replace_list(tx, slug, name, template, actor).await)?;
        self.mirror(&events);
        Ok(story)
    }

    pub async fn finalize_list(&self, slug: &str, actor: &str) -> Result<Story, Error> {
        let (story, events) =
            crate::write_in!(self.store, tx => uc::finalize_list(tx, slug, actor).await)?;
        self.mirror(&events);
        Ok(story)
    }

    /// Every open story's current list that breaks the final-task rule.
    pub async fn validate_lists(&self, slug: Option<&str>) -> Result<Vec<RuleBreak>, Error> {
        let stories = match slug {
            Some(s) => vec![self.get_story(s).await?.story],
            None => self.list_stories(Some(StoryStatus::Open)).await?,
        };
        let mut breaks = Vec::new();
        for story in stories {
            let tasks = self.store.task_list(&story.slug, &story.todolist).await?;
            breaks.extend(final_rule(&story, &tasks));
        }
        Ok(breaks)
    }

    /// Ready work nobody holds.
    pub async fn list_ready(&self, story: Option<&str>, limit: u32) -> Result<Vec<Task>, Error> {
        self.check_story_exists(story).await?;
        let now = self.store.now().await?;
        Ok(self.store.ready(story, now, limit.min(MAX_LIST)).await?)
    }

    /// Takes the first ready task `holder` can get (see [`uc::take_ready`]). When every ready
    /// list was being decided on by someone else at that moment, tries again a few times
    /// before answering that nothing is free.
    pub async fn take_ready(
        &self,
        story: Option<&str>,
        holder: &Holder,
        ttl: Duration,
        actor: &str,
    ) -> Result<Taken, Error> {
        self.check_story_exists(story).await?;
        // Every transport builds the holder; the names are checked here, once.
        check_name("agent id", &holder.agent)?;
        check_name("operator", &holder.operator)?;
        check_name("fingerprint", &holder.fingerprint)?;
        for attempt in 0..TAKE_ATTEMPTS {
            match crate::write_in!(self.store, tx => uc::take_ready(tx, story, holder, ttl, actor).await)?
            {
                Attempt::Done(taken, events) => {
                    self.mirror(&events);
                    return Ok(taken);
                }
                Attempt::Busy => {
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                }
            }
        }
        Ok(Taken::Nothing)
    }

    pub async fn collect_followup(
        &self,
        doc: &NewFollowup,
        actor: &str,
    ) -> Result<(Collected, Followup), Error> {
        let (outcome, f, events) =
            crate::write_in!(self.store, tx => uc::collect_followup(tx, doc, actor).await)?;
        self.mirror(&events);
        Ok((outcome, f))
    }

    pub async fn list_followups(
        &self,
        status: Option<FollowupStatus>,
    ) -> Result<Vec<Followup>, Error> {
        Ok(self.store.followup_list(status, MAX_LIST).await?)
    }

    pub async fn get_followup(&self, id: i64) -> Result<Followup, Error> {
        self.store
            .followup_get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no follow-up {id}")))
    }

    /// Accepts (no reason) or rejects (with one) follow-up `id`.
    pub async fn triage_followup(
        &self,
        id: i64,
        reject: Option<&str>,
        actor: &str,
    ) -> Result<Followup, Error> {
        let (f, events) =
            crate::write_in!(self.store, tx => uc::triage_followup(tx, id, reject, actor).await)?;
        self.mirror(&events);
        Ok(f)
    }

    /// A story filter that names no story is a mistake, not an empty answer.
    async fn check_story_exists(&self, story: Option<&str>) -> Result<(), Error> {
        if let Some(slug) = story {
            check_slug("story", slug)?;
            if self.store.story_get(slug).await?.is_none() {
                return Err(Error::NotFound(format!("no story '{slug}'")));
            }
        }
        Ok(())
    }
}
