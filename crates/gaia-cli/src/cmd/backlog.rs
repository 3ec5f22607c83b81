//! `gaia backlog export|import`: each story with its current todolist as one markdown file
//! (`DIR/<slug>.md`, see [`gaia_core::backlog_md`]), and the edits made to those files
//! applied back as the service calls that make them, each with its event.
//!
//! Import reads and checks every file, and everything it can check against the store (the
//! story exists, each `#id` is in its current list, the claim for tasks checked done, the
//! tasks new ones wait for), before it changes anything. A file that changed something is
//! then written again as the story now stands, so that its new tasks carry their `#id` and a
//! second import changes nothing.

use std::path::{Path, PathBuf};

use gaia_core::backlog::{Story, check_slug};
use gaia_core::backlog_md::{self, Changes, StoryDoc};
use gaia_core::claims::Outcome;
use gaia_core::usecase::backlog::{Fenced, TaskAction};
use serde_json::{Value, json};

use crate::cli::BacklogCommand;
use crate::client::Client;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

pub async fn run(c: BacklogCommand, config: &Config, token: Option<String>) -> CliResult {
    match c {
        BacklogCommand::Export { dir, story, json } => {
            export(config, &dir, story.as_deref(), json).await
        }
        BacklogCommand::Import {
            dir,
            agent,
            dry_run,
            json,
        } => {
            let fenced = super::todo::fence(agent.agent, token, false)?;
            import(config, &dir, fenced.as_ref(), dry_run, json).await
        }
    }
}

/// Writes `text` to `path` through a temporary file, so that no half-written file is left.
fn write_file(path: &Path, text: &str) -> Result<(), CliError> {
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| CliError::new(exit::FAILURE, format!("writing {}: {e}", path.display())))
}

/// `gaia backlog export`.
async fn export(config: &Config, dir: &Path, story: Option<&str>, json: bool) -> CliResult {
    if let Some(s) = story {
        check_slug("story", s)?;
    }
    let client = crate::client::connect(config).await?;
    let slugs = match story {
        Some(s) => vec![s.to_owned()],
        None => client
            .stories(None)
            .await?
            .into_iter()
            .map(|s| s.slug)
            .collect(),
    };
    let mut views = Vec::with_capacity(slugs.len());
    for slug in &slugs {
        views.push(client.story(slug).await?);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::bad_input(format!("cannot create {}: {e}", dir.display())))?;
    let mut written = Vec::new();
    for view in views {
        let path = dir.join(format!("{}.md", view.story.slug));
        write_file(&path, &backlog_md::export(&view.story, &view.tasks))?;
        written.push(json!({ "story": view.story.slug, "file": path.display().to_string() }));
    }
    if json {
        super::out_json(&Value::Array(written))?;
    } else {
        for w in &written {
            super::out(&format!("exported {}", w["file"].as_str().unwrap_or("")))?;
        }
        super::out(&format!("{} stories exported", written.len()))?;
    }
    Ok(exit::OK)
}

/// The story files of `dir` (`*.md`, not child docs), in name order.
fn story_files(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let unreadable = |e: std::io::Error| CliError::bad_input(format!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable)?
        .into_iter()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file() && name.ends_with(".md") && !gaia_core::followup_doc::is_followup_doc(name)
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads and parses every file; the first that does not parse stops the import.
fn parse_all(files: &[PathBuf]) -> Result<Vec<(PathBuf, StoryDoc)>, CliError> {
    files
        .iter()
        .map(|p| {
            let file = p.display().to_string();
            let text = std::fs::read_to_string(p)
                .map_err(|e| CliError::bad_input(format!("{file}: {e}")))?;
            let doc = backlog_md::parse(&text)
                .map_err(|e| CliError::bad_input(format!("{file}:{}: {}", e.line, e.message)))?;
            Ok((p.clone(), doc))
        })
        .collect()
}

/// One file's changes to one story.
struct Plan {
    path: PathBuf,
    file: String,
    story: Story,
    changes: Changes,
}

/// An error about `file` at `line`.
fn at(file: &str, line: usize, code: u8, msg: impl std::fmt::Display) -> CliError {
    CliError::new(code, format!("{file}:{line}: {msg}"))
}

/// The changes of `doc`, checked against the store.
async fn plan(
    client: &Client,
    path: &Path,
    doc: &StoryDoc,
    fenced: Option<&Fenced>,
) -> CliResult<Plan> {
    let file = path.display().to_string();
    let view = client
        .story(&doc.slug)
        .await
        .map_err(|e| CliError::new(e.code, format!("{file}: {}", e.message)))?;
    let changes = backlog_md::changes(doc, &view.story, &view.tasks).map_err(|e| {
        let code = if e.conflict {
            exit::CONFLICT
        } else {
            exit::BAD_INPUT
        };
        at(&file, e.line, code, e.message)
    })?;
    if let Some(c) = changes.checks.iter().find(|c| !c.done) {
        let msg = format!(
            "task #{} is done and import does not reopen tasks; check its box again",
            c.id
        );
        return Err(at(&file, c.line, exit::CONFLICT, msg));
    }
    let checked = changes.checks.first().map(|c| c.line);
    if let Some(line) = checked.or_else(|| changes.adds.iter().find(|a| a.done).map(|a| a.line)) {
        check_claim(client, &view.story, fenced)
            .await
            .map_err(|e| at(&file, line, e.code, e.message))?;
    }
    for add in &changes.adds {
        for id in &add.task.blocked_by {
            if !view.tasks.iter().any(|t| t.id == *id) {
                check_blocker(client, &view.story.slug, *id)
                    .await
                    .map_err(|e| at(&file, add.line, e.code, e.message))?;
            }
        }
    }
    Ok(Plan {
        path: path.to_owned(),
        file,
        story: view.story,
        changes,
    })
}

/// Checking a task done needs the live claim on the story's list under the given token.
async fn check_claim(client: &Client, story: &Story, fenced: Option<&Fenced>) -> CliResult<()> {
    let key = story.key();
    let Some(f) = fenced else {
        return Err(CliError::bad_input(format!(
            "checking a task done needs the claim on {key}: pass --agent and --token"
        )));
    };
    let r = client.inspect(&key).await?;
    let holds = r.holder.as_ref().is_some_and(|h| h.agent == f.agent);
    if r.outcome == Outcome::Held && holds && r.token == f.token {
        return Ok(());
    }
    Err(CliError::new(
        exit::CONFLICT,
        format!(
            "{} with token {} does not hold the claim on {key}",
            f.agent, f.token
        ),
    ))
}

/// A task a new one waits for must be a task of the same story (any of its lists).
async fn check_blocker(client: &Client, slug: &str, id: i64) -> CliResult<()> {
    let story = match client.task(id).await {
        Ok(t) => Some(t.story),
        Err(e) if e.code == exit::CONFLICT => None,
        Err(e) => return Err(e),
    };
    if story.as_deref() == Some(slug) {
        return Ok(());
    }
    Err(CliError::bad_input(format!(
        "#{id} is not a task of story '{slug}'"
    )))
}

/// Applies one plan in order: the story, edited tasks, new tasks, then tasks checked done.
/// Returns what was done, one JSON object per change.
async fn apply(
    client: &Client,
    p: &Plan,
    fenced: Option<&Fenced>,
    dry_run: bool,
) -> CliResult<Vec<Value>> {
    let mut done = Vec::new();
    let note = |line: usize, change: &str, id: Option<i64>, title: &str| json!({ "file": p.file, "line": line, "story": p.story.slug, "change": change, "id": id, "title": title });
    if let Some(edit) = &p.changes.story {
        if !dry_run {
            client.edit_story(edit).await?;
        }
        done.push(note(1, "story", None, &edit.title));
    }
    for e in &p.changes.edits {
        if !dry_run {
            client.edit_task(e.id, &e.title, &e.body).await?;
        }
        done.push(note(e.line, "edit", Some(e.id), &e.title));
    }
    for a in &p.changes.adds {
        let id = if dry_run {
            None
        } else {
            Some(client.add_task(&p.story.slug, &a.task).await?.id)
        };
        done.push(note(a.line, "add", id, &a.task.title));
        if let (Some(id), true) = (id, a.done) {
            client.act_on_task(id, &TaskAction::Done, fenced).await?;
            done.push(note(a.line, "done", Some(id), &a.task.title));
        }
    }
    for c in &p.changes.checks {
        if !dry_run {
            client.act_on_task(c.id, &TaskAction::Done, fenced).await?;
        }
        done.push(note(c.line, "done", Some(c.id), ""));
    }
    Ok(done)
}

/// `gaia backlog import`.
async fn import(
    config: &Config,
    dir: &Path,
    fenced: Option<&Fenced>,
    dry_run: bool,
    json: bool,
) -> CliResult {
    let docs = parse_all(&story_files(dir)?)?;
    let client = crate::client::connect(config).await?;
    let mut plans = Vec::with_capacity(docs.len());
    for (path, doc) in &docs {
        plans.push(plan(&client, path, doc, fenced).await?);
    }
    let mut changes = Vec::new();
    for p in &plans {
        changes.extend(apply(&client, p, fenced, dry_run).await?);
        if !dry_run && !p.changes.is_empty() {
            let view = client.story(&p.story.slug).await?;
            write_file(&p.path, &backlog_md::export(&view.story, &view.tasks))?;
        }
    }
    client.close().await;
    if json {
        super::out_json(&json!({ "dry_run": dry_run, "files": docs.len(), "changes": changes }))?;
        return Ok(exit::OK);
    }
    let would = if dry_run { "would " } else { "" };
    for c in &changes {
        let id = c["id"]
            .as_i64()
            .map(|i| format!(" #{i}"))
            .unwrap_or_default();
        super::out(&format!(
            "{}:{}: {would}{}{id} {}",
            c["file"].as_str().unwrap_or(""),
            c["line"],
            c["change"].as_str().unwrap_or(""),
            c["title"].as_str().unwrap_or("")
        ))?;
    }
    super::out(&format!(
        "{} files, {} changes {would}applied",
        docs.len(),
        changes.len()
    ))?;
    Ok(exit::OK)
}
