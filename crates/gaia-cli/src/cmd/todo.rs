//! `gaia todo add|list|show|start|done|block|unblock|move|new|archive|validate|finalize`: the
//! tasks of a story's todolist. Start and done need the agent's live claim on the list (its
//! fencing token as `--token`); block, unblock and move take it when given.

use std::io::Read;
use std::path::Path;

use gaia_core::backlog::{MAX_BODY_BYTES, NewTask, RuleBreak, Task, TaskStatus, check_slug};
use gaia_core::names::check_name;
use gaia_core::text::{MAX_REASON_CHARS, check_text};
use gaia_core::usecase::backlog::{Fenced, TaskAction};

use crate::cli::TodoCommand;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

pub async fn run(c: TodoCommand, config: &Config, token: Option<String>) -> CliResult {
    use TodoCommand as T;
    match c {
        T::Add {
            story,
            title,
            body,
            body_file,
            after,
            json,
        } => {
            let body = read_body(body, body_file.as_deref())?;
            let new = NewTask {
                title,
                body,
                blocked_by: after,
            };
            add(config, &story, &new, json).await
        }
        T::List {
            story,
            todolist,
            json,
        } => list(config, &story, todolist.as_deref(), json).await,
        T::Show { id, json } => show(config, id, json).await,
        T::Start { id, agent, json } => {
            let f = fence(Some(agent), token, true)?;
            act(config, id, &TaskAction::Start, f, json).await
        }
        T::Done { id, agent, json } => {
            let f = fence(Some(agent), token, true)?;
            act(config, id, &TaskAction::Done, f, json).await
        }
        T::Block {
            id,
            reason,
            agent,
            json,
        } => {
            check_reason(&reason)?;
            let f = fence(agent.agent, token, false)?;
            act(config, id, &TaskAction::Block(reason), f, json).await
        }
        T::Unblock { id, agent, json } => {
            let f = fence(agent.agent, token, false)?;
            act(config, id, &TaskAction::Unblock, f, json).await
        }
        T::Move {
            id,
            to,
            agent,
            json,
        } => {
            let f = fence(agent.agent, token, false)?;
            act(config, id, &TaskAction::Move(to), f, json).await
        }
        T::New { story, name, json } => replace(config, &story, Some(&name), json).await,
        T::Archive { story, json } => replace(config, &story, None, json).await,
        T::Validate { story, json } => validate(config, story.as_deref(), json).await,
        T::Finalize { story, json } => finalize(config, &story, json).await,
    }
}

/// One line for people: id, status, list, title and what holds it up.
pub fn line(t: &Task) -> String {
    let mut line = format!(
        "#{:<5} {:11} {}/{} {}",
        t.id,
        t.status.as_str(),
        t.story,
        t.todolist,
        t.title
    );
    if let (TaskStatus::InProgress | TaskStatus::Done, Some(w)) = (t.status, &t.worker) {
        line.push_str(&format!(" [by {w}]"));
    }
    if let Some(r) = &t.reason {
        line.push_str(&format!(" [blocked: {}]", r.replace(['\n', '\r'], " ")));
    }
    if !t.blocked_by.is_empty() {
        let ids: Vec<String> = t.blocked_by.iter().map(|id| format!("#{id}")).collect();
        line.push_str(&format!(" [after {}]", ids.join(", ")));
    }
    line
}

/// Prints a task as JSON, or its line and body.
pub fn print(t: &Task, json: bool) -> CliResult {
    if json {
        super::out_serde(t)?;
    } else {
        super::out(&line(t))?;
        for l in gaia_core::backlog_md::normalize(&t.body).lines() {
            super::out(&format!("    {l}"))?;
        }
    }
    Ok(exit::OK)
}

/// The caller's claim: `--agent` with the fencing token `--token`, both or neither
/// (`required`: both).
pub fn fence(
    agent: Option<String>,
    token: Option<String>,
    required: bool,
) -> Result<Option<Fenced>, CliError> {
    let hint = "the fencing token of its claim (from gaia claim acquire or gaia ready --take)";
    match (agent, token) {
        (Some(agent), Some(token)) => {
            check_name("agent id", &agent)?;
            let token = token
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|t| *t > 0)
                .ok_or_else(|| {
                    CliError::bad_input(format!("--token must be {hint}, a positive whole number"))
                })?;
            Ok(Some(Fenced {
                agent,
                token,
                principal: None,
            }))
        }
        (Some(_), None) => Err(CliError::bad_input(format!(
            "--agent needs --token, {hint}"
        ))),
        (None, Some(_)) => Err(CliError::bad_input(
            "--token needs --agent: here --token is the claim's fencing token (remote mode reads the API token from $GAIA_TOKEN)",
        )),
        (None, None) if required => Err(CliError::bad_input(format!(
            "this needs --agent and --token, {hint}"
        ))),
        (None, None) => Ok(None),
    }
}

fn check_reason(reason: &str) -> Result<(), CliError> {
    check_text("reason", reason, MAX_REASON_CHARS)?;
    if reason.trim().is_empty() {
        return Err(CliError::bad_input("--reason must not be empty"));
    }
    Ok(())
}

/// The body from `--body` or `--body-file` (read up to one byte past the limit).
fn read_body(body: Option<String>, file: Option<&Path>) -> Result<String, CliError> {
    let Some(path) = file else {
        return Ok(body.unwrap_or_default());
    };
    let shown = path.display();
    let f = std::fs::File::open(path)
        .map_err(|e| CliError::bad_input(format!("cannot read --body-file {shown}: {e}")))?;
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_BODY_BYTES).unwrap_or(u64::MAX) + 1;
    f.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::bad_input(format!("cannot read --body-file {shown}: {e}")))?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(CliError::bad_input(format!(
            "--body-file {shown} is larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| CliError::bad_input(format!("--body-file {shown} is not UTF-8 text")))
}

/// `gaia todo add`: checked before the store is opened.
async fn add(config: &Config, story: &str, new: &NewTask, json: bool) -> CliResult {
    check_slug("story", story)?;
    new.check()?;
    if let Some(id) = new.blocked_by.iter().find(|id| **id < 1) {
        return Err(CliError::bad_input(format!("--after {id}: no such task")));
    }
    let client = crate::client::connect(config).await?;
    let task = client.add_task(story, new).await?;
    client.close().await;
    print(&task, json)
}

/// `gaia todo list`.
async fn list(config: &Config, story: &str, todolist: Option<&str>, json: bool) -> CliResult {
    check_slug("story", story)?;
    if let Some(t) = todolist {
        check_name("todolist", t)?;
    }
    let client = crate::client::connect(config).await?;
    let tasks = client.tasks(story, todolist).await?;
    if json {
        super::out_serde(&tasks)?;
    } else if tasks.is_empty() {
        super::out("no tasks")?;
    } else {
        for t in &tasks {
            super::out(&line(t))?;
        }
    }
    Ok(exit::OK)
}

/// `gaia todo show`.
async fn show(config: &Config, id: i64, json: bool) -> CliResult {
    let client = crate::client::connect(config).await?;
    let task = client.task(id).await?;
    print(&task, json)
}

/// `gaia todo start|done|block|unblock|move`.
async fn act(
    config: &Config,
    id: i64,
    action: &TaskAction,
    fenced: Option<Fenced>,
    json: bool,
) -> CliResult {
    let client = crate::client::connect(config).await?;
    let task = client.act_on_task(id, action, fenced.as_ref()).await?;
    client.close().await;
    print(&task, json)
}

/// `gaia todo new|archive`: the current list is archived and a fresh one starts.
async fn replace(config: &Config, story: &str, name: Option<&str>, json: bool) -> CliResult {
    check_slug("story", story)?;
    if let Some(n) = name {
        check_name("todolist", n)?;
    }
    let client = crate::client::connect(config).await?;
    let s = client
        .replace_list(story, name, &config.backlog_template)
        .await?;
    client.close().await;
    if json {
        super::out_serde(&s)?;
    } else {
        super::out(&format!(
            "archived the previous todolist of {}; {} starts from the template",
            s.slug, s.todolist
        ))?;
    }
    Ok(exit::OK)
}

/// `gaia todo validate`: exit 1 when a current list breaks the final-task rule.
async fn validate(config: &Config, story: Option<&str>, json: bool) -> CliResult {
    if let Some(s) = story {
        check_slug("story", s)?;
    }
    let client = crate::client::connect(config).await?;
    let breaks = client.validate_lists(story).await?;
    if json {
        super::out_serde(&breaks)?;
    } else if breaks.is_empty() {
        super::out("every current todolist ends with its final task")?;
    }
    if !json {
        for b in &breaks {
            super::out(&rule_break(b))?;
        }
    }
    Ok(if breaks.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    })
}

fn rule_break(b: &RuleBreak) -> String {
    let rule = "is not marked MANDATORY, FINAL or FINALIZATION";
    match &b.last {
        Some(t) => format!(
            "{}/{}: its last task {rule}: {}",
            b.story,
            b.todolist,
            line(t)
        ),
        None => format!(
            "{}/{}: no tasks; the last task must be marked MANDATORY, FINAL or FINALIZATION",
            b.story, b.todolist
        ),
    }
}

/// `gaia todo finalize`.
async fn finalize(config: &Config, story: &str, json: bool) -> CliResult {
    check_slug("story", story)?;
    let client = crate::client::connect(config).await?;
    let s = client.finalize_list(story).await?;
    client.close().await;
    if json {
        super::out_serde(&s)?;
    } else {
        super::out(&format!(
            "finalized {}/{}: nothing more is appended to it",
            s.slug, s.todolist
        ))?;
    }
    Ok(exit::OK)
}
