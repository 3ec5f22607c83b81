//! `gaia story create|list|show|close|reopen`.

use gaia_core::backlog::{NewStory, Story, StoryStatus, check_slug};
use gaia_core::time::rfc3339;

use crate::cli::StoryCommand;
use crate::client::StoryView;
use crate::config::Config;
use crate::exit::{self, CliResult};

pub async fn run(c: StoryCommand, config: &Config) -> CliResult {
    match c {
        StoryCommand::Create {
            slug,
            title,
            description,
            labels,
            json,
        } => {
            let new = NewStory {
                slug,
                title,
                description,
                labels,
            };
            create(config, &new, json).await
        }
        StoryCommand::List { status, json } => {
            list(config, status.as_deref().and_then(StoryStatus::parse), json).await
        }
        StoryCommand::Show { slug, json } => show(config, &slug, json).await,
        StoryCommand::Close { slug, json } => {
            set_status(config, &slug, StoryStatus::Closed, json).await
        }
        StoryCommand::Reopen { slug, json } => {
            set_status(config, &slug, StoryStatus::Open, json).await
        }
    }
}

/// One line for people: slug, status, current todolist, title, labels.
pub fn line(s: &Story) -> String {
    let mut line = format!(
        "{} {} todolist={} \"{}\"",
        s.slug,
        s.status.as_str(),
        s.todolist,
        s.title
    );
    if !s.labels.is_empty() {
        line.push_str(&format!(" labels={}", s.labels.join(",")));
    }
    if let Some(at) = s.finalized_at {
        line.push_str(&format!(" finalized={}", rfc3339(at)));
    }
    line
}

/// Prints a story as JSON or as its line.
fn print(s: &Story, json: bool) -> CliResult {
    if json {
        super::out_serde(s)?;
    } else {
        super::out(&line(s))?;
    }
    Ok(exit::OK)
}

/// `gaia story create`: checked before the store is opened.
async fn create(config: &Config, new: &NewStory, json: bool) -> CliResult {
    new.check()?;
    let client = crate::client::connect(config).await?;
    let story = client.create_story(new, &config.backlog_template).await?;
    client.close().await;
    if !json {
        super::out(&format!("created story {}", story.slug))?;
    }
    print(&story, json)
}

/// `gaia story list`.
async fn list(config: &Config, status: Option<StoryStatus>, json: bool) -> CliResult {
    let client = crate::client::connect(config).await?;
    let stories = client.stories(status).await?;
    if json {
        super::out_serde(&stories)?;
    } else if stories.is_empty() {
        super::out("no stories")?;
    } else {
        for s in &stories {
            super::out(&line(s))?;
        }
    }
    Ok(exit::OK)
}

/// `gaia story show`.
async fn show(config: &Config, slug: &str, json: bool) -> CliResult {
    check_slug("story", slug)?;
    let client = crate::client::connect(config).await?;
    let view = client.story(slug).await?;
    if json {
        super::out_serde(&view)?;
        return Ok(exit::OK);
    }
    for l in details(&view) {
        super::out(&l)?;
    }
    Ok(exit::OK)
}

/// A story for people: its line, description, tasks and archived lists.
fn details(v: &StoryView) -> Vec<String> {
    let mut lines = vec![line(&v.story)];
    let description = gaia_core::backlog_md::normalize(&v.story.description);
    lines.extend(description.lines().map(|l| format!("  {l}")));
    let done = v
        .tasks
        .iter()
        .filter(|t| t.status == gaia_core::backlog::TaskStatus::Done)
        .count();
    lines.push(format!(
        "todolist {}: {} tasks, {done} done",
        v.story.todolist,
        v.tasks.len()
    ));
    lines.extend(
        v.tasks
            .iter()
            .map(|t| format!("  {}", super::todo::line(t))),
    );
    let archived: Vec<&str> = v
        .lists
        .iter()
        .filter(|l| l.archived_at.is_some())
        .map(|l| l.name.as_str())
        .collect();
    if !archived.is_empty() {
        lines.push(format!("archived: {}", archived.join(", ")));
    }
    lines
}

/// `gaia story close|reopen`.
async fn set_status(config: &Config, slug: &str, status: StoryStatus, json: bool) -> CliResult {
    check_slug("story", slug)?;
    let client = crate::client::connect(config).await?;
    let story = client.set_story_status(slug, status).await?;
    client.close().await;
    print(&story, json)
}
