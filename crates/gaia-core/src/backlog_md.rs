//! A story as one markdown file, and back: what `gaia backlog export` writes and `gaia backlog
//! import` reads, plus the todolist template file of `[backlog] template`.
//!
//! ```text
//! # Login with OAuth
//!
//! Story: auth
//! Status: open
//! Labels: backend, security
//! Todolist: default
//! Finalized: 2026-12-07T09:00:00.000000Z
//!
//! Why it matters, as many lines as it takes.
//!
//! ## Tasks
//!
//! - [x] #12 write the login
//!     - [ ] it works
//! - [ ] #13 test the login (in progress: agent-1) (after #12)
//! - [ ] #14 FINAL: verify the acceptance criteria
//! ```
//!
//! The front matter after the title names the story; `Status`, `Todolist` and `Finalized`
//! only inform (import does not change them). The description runs from the blank line after
//! the front matter to the last `## Tasks` line. Each task is one line (`[x]` when done, its
//! `#id`, its title, then markers in parentheses: `(in progress: AGENT)`, `(blocked: REASON)`,
//! `(after #3, #4)`) and its body indented by four spaces under it.
//!
//! In a title, `\`, `(`, `)` and `#` may be escaped with a backslash, as markdown does; export
//! escapes only what would otherwise be read back differently (a closing parenthesis at the
//! end, a backslash before one of those), so that [`export`] then [`parse`] then [`export`] is
//! byte-identical. Descriptions and bodies compare without their leading blank lines and
//! trailing whitespace, which editors add and remove freely.
//!
//! [`changes`] turns an edited file into the differences against the stored story: edited
//! story fields, edited tasks, new tasks (lines without `#id`) and checkbox changes. A task
//! removed from the file is not deleted, and reordering lines moves nothing.

use chrono::{DateTime, Utc};

use crate::backlog::{
    NewStory, NewTask, Story, StoryStatus, Task, TaskStatus, Template, check_body, check_labels,
    check_slug, check_title, has_final_marker,
};
use crate::time::rfc3339;

/// The heading that starts the tasks.
const TASKS_HEADING: &str = "## Tasks";
/// How far a task's body is indented.
const BODY_INDENT: &str = "    ";

/// A story file as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoryDoc {
    pub slug: String,
    pub title: String,
    pub status: Option<StoryStatus>,
    pub labels: Vec<String>,
    pub todolist: Option<String>,
    pub finalized_at: Option<DateTime<Utc>>,
    /// Normalized (see [`normalize`]).
    pub description: String,
    pub tasks: Vec<TaskLine>,
    /// The line of `Todolist:` (1 when absent), for errors about it.
    pub todolist_line: usize,
}

/// One task line and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLine {
    /// 1-based line number in the file.
    pub line: usize,
    /// `None` for a task the file adds.
    pub id: Option<i64>,
    pub done: bool,
    pub title: String,
    /// Normalized (see [`normalize`]).
    pub body: String,
    /// The tasks of `(after #3, #4)`.
    pub after: Vec<i64>,
    /// The status marker as written, e.g. `in progress: agent-1` (informative only).
    pub note: Option<String>,
}

/// A file that does not parse: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        message: message.into(),
    })
}

/// A text without its leading blank lines and trailing whitespace: how descriptions and
/// bodies are written and compared.
pub fn normalize(text: &str) -> &str {
    let mut start = 0;
    for piece in text.split_inclusive('\n') {
        if !piece.trim().is_empty() {
            break;
        }
        start += piece.len();
    }
    text[start..].trim_end()
}

/// The file of a story and its current todolist's tasks (in position order).
pub fn export(story: &Story, tasks: &[Task]) -> String {
    let mut out = format!("# {}\n\nStory: {}\n", story.title, story.slug);
    out.push_str(&format!("Status: {}\n", story.status.as_str()));
    if story.labels.is_empty() {
        out.push_str("Labels:\n");
    } else {
        out.push_str(&format!("Labels: {}\n", story.labels.join(", ")));
    }
    out.push_str(&format!("Todolist: {}\n", story.todolist));
    if let Some(at) = story.finalized_at {
        out.push_str(&format!("Finalized: {}\n", rfc3339(at)));
    }
    out.push('\n');
    let description = normalize(&story.description);
    if !description.is_empty() {
        out.push_str(description);
        out.push_str("\n\n");
    }
    out.push_str(TASKS_HEADING);
    out.push_str("\n\n");
    for t in tasks {
        out.push_str(&task_line(t));
        out.push('\n');
        push_body(&mut out, &t.body);
    }
    out
}

/// `- [ ] #12 title (markers)`.
fn task_line(t: &Task) -> String {
    let check = if t.status == TaskStatus::Done {
        'x'
    } else {
        ' '
    };
    let mut line = format!("- [{check}] #{} {}", t.id, escape_title(&t.title));
    match t.status {
        TaskStatus::InProgress => match &t.worker {
            Some(w) => line.push_str(&format!(" (in progress: {})", escape_value(w))),
            None => line.push_str(" (in progress)"),
        },
        TaskStatus::Blocked => match &t.reason {
            Some(r) => line.push_str(&format!(" (blocked: {})", escape_value(r))),
            None => line.push_str(" (blocked)"),
        },
        TaskStatus::Todo | TaskStatus::Done => {}
    }
    if !t.blocked_by.is_empty() {
        let ids: Vec<String> = t.blocked_by.iter().map(|id| format!("#{id}")).collect();
        line.push_str(&format!(" (after {})", ids.join(", ")));
    }
    line
}

/// The body, each line indented; empty lines stay empty.
fn push_body(out: &mut String, body: &str) {
    let body = normalize(body);
    if body.is_empty() {
        return;
    }
    for piece in body.split('\n') {
        if !piece.is_empty() {
            out.push_str(BODY_INDENT);
            out.push_str(piece);
        }
        out.push('\n');
    }
}

/// Characters a backslash escapes in a title.
const TITLE_ESCAPES: [char; 4] = ['\\', '(', ')', '#'];

/// Escapes a title so that [`parse`] reads it back unchanged: a backslash before a character
/// it would escape, and a closing parenthesis at the end (it would end a marker).
fn escape_title(title: &str) -> String {
    let mut out = String::with_capacity(title.len() + 2);
    let mut chars = title.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        match c {
            '\\' if next.is_some_and(|n| TITLE_ESCAPES.contains(&n)) => out.push_str("\\\\"),
            ')' if next.is_none() => out.push_str("\\)"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a marker's value: backslashes and parentheses, and control characters become
/// spaces (markers are informative; import never reads them back as values).
fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Undoes [`escape_title`]: `\\`, `\(`, `\)` and `\#` become the character; any other
/// backslash stays.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('\\', Some(n)) if TITLE_ESCAPES.contains(&n) => {
                out.push(n);
                chars.next();
            }
            (c, _) => out.push(c),
        }
    }
    out
}

/// A line without its carriage return, for matching structure in files edited on Windows.
fn bare(line: &str) -> &str {
    line.strip_suffix('\r').unwrap_or(line)
}

/// Parses a story file. Errors name the line.
pub fn parse(text: &str) -> Result<StoryDoc, ParseError> {
    let lines: Vec<&str> = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .split('\n')
        .collect();
    let title = match lines.first().copied().map(bare) {
        Some(l) if l.starts_with("# ") => l["# ".len()..].to_owned(),
        _ => return err(1, "expected the story's title as '# <title>'"),
    };
    check_title(&title).or_else(|e| err(1, e.0))?;
    let mut doc = StoryDoc {
        slug: String::new(),
        title,
        status: None,
        labels: vec![],
        todolist: None,
        finalized_at: None,
        description: String::new(),
        tasks: vec![],
        todolist_line: 1,
    };
    let Some(heading) = lines.iter().rposition(|l| bare(l) == TASKS_HEADING) else {
        return err(lines.len(), format!("no '{TASKS_HEADING}' heading"));
    };
    let mut i = 1;
    while i < heading && bare(lines[i]).trim().is_empty() {
        i += 1;
    }
    let start = i;
    let mut seen = Vec::new();
    while i < heading && !bare(lines[i]).trim().is_empty() {
        front_matter(&mut doc, &mut seen, bare(lines[i]), i + 1)?;
        i += 1;
    }
    if doc.slug.is_empty() {
        return err(start + 1, "no 'Story: <slug>' line after the title");
    }
    let description = lines[i.min(heading)..heading].join("\n");
    doc.description = normalize(&description).to_owned();
    check_body("description", &doc.description).or_else(|e| err(i + 1, e.0))?;
    doc.tasks = tasks(&lines, heading + 1)?;
    Ok(doc)
}

/// The keys of the front matter, in the order [`export`] writes them.
const KEYS: [&str; 5] = ["Story", "Status", "Labels", "Todolist", "Finalized"];

/// One `Key: value` line of the front matter; `seen` holds the keys read so far.
fn front_matter(
    doc: &mut StoryDoc,
    seen: &mut Vec<String>,
    line: &str,
    n: usize,
) -> Result<(), ParseError> {
    let expected =
        "expected 'Key: value' (Story, Status, Labels, Todolist, Finalized), then a blank line";
    let Some((key, value)) = line.split_once(':') else {
        return err(n, expected);
    };
    if !KEYS.contains(&key) {
        return err(
            n,
            format!("unknown key '{}': {expected}", key.escape_debug()),
        );
    }
    if seen.iter().any(|k| k == key) {
        return err(n, format!("'{key}' is given twice"));
    }
    seen.push(key.to_owned());
    let value = value.trim();
    match key {
        "Story" => {
            check_slug("story", value).or_else(|e| err(n, e.0))?;
            value.clone_into(&mut doc.slug);
        }
        "Status" => {
            let status = StoryStatus::parse(value);
            doc.status = Some(status.map_or_else(|| err(n, "Status must be open or closed"), Ok)?);
        }
        "Labels" => {
            doc.labels = value
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            check_labels(&doc.labels).or_else(|e| err(n, e.0))?;
        }
        "Todolist" => {
            doc.todolist = Some(value.to_owned());
            doc.todolist_line = n;
        }
        _ => {
            let at = DateTime::parse_from_rfc3339(value)
                .or_else(|_| err(n, "Finalized must be an RFC 3339 time"))?;
            doc.finalized_at = Some(at.with_timezone(&Utc));
        }
    }
    Ok(())
}

/// The task lines from line index `from` to the end.
fn tasks(lines: &[&str], from: usize) -> Result<Vec<TaskLine>, ParseError> {
    let mut out: Vec<TaskLine> = Vec::new();
    let mut body: Vec<&str> = Vec::new();
    let finish = |out: &mut Vec<TaskLine>, body: &mut Vec<&str>| -> Result<(), ParseError> {
        if let Some(last) = out.last_mut() {
            last.body = normalize(&body.join("\n")).to_owned();
            check_body("body", &last.body).or_else(|e| err(last.line, e.0))?;
        }
        body.clear();
        Ok(())
    };
    for (i, &raw) in lines.iter().enumerate().skip(from) {
        let n = i + 1;
        let line = bare(raw);
        if line.trim().is_empty() {
            body.push("");
        } else if let Some(rest) = checkbox(line) {
            finish(&mut out, &mut body)?;
            let t = task(rest, n)?;
            if let Some(id) = t.id.filter(|id| out.iter().any(|o| o.id == Some(*id))) {
                return err(n, format!("task #{id} appears twice"));
            }
            out.push(TaskLine {
                done: line.as_bytes().get(3).is_some_and(|c| *c != b' '),
                ..t
            });
        } else if raw.starts_with([' ', '\t']) {
            if out.is_empty() {
                return err(n, "an indented line before the first task");
            }
            body.push(dedent(raw));
        } else {
            return err(
                n,
                "expected a task ('- [ ] title', '- [x] #12 title') or its body indented under it",
            );
        }
    }
    finish(&mut out, &mut body)?;
    Ok(out)
}

/// What follows `- [ ] `, `- [x] ` or `- [X] `.
fn checkbox(line: &str) -> Option<&str> {
    ["- [ ] ", "- [x] ", "- [X] "]
        .iter()
        .find_map(|p| line.strip_prefix(p))
        .or_else(|| ["- [ ]", "- [x]", "- [X]"].contains(&line).then_some(""))
}

/// A body line without its indentation (four spaces, a tab, or what spaces there are).
fn dedent(line: &str) -> &str {
    line.strip_prefix(BODY_INDENT)
        .or_else(|| line.strip_prefix('\t'))
        .unwrap_or_else(|| line.trim_start_matches(' '))
}

/// The part of a task line after its checkbox: `#id`, title, markers.
fn task(rest: &str, n: usize) -> Result<TaskLine, ParseError> {
    let (id, rest) = match rest.strip_prefix('#') {
        Some(after) if after.starts_with(|c: char| c.is_ascii_digit()) => {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let id: i64 = after[..digits]
                .parse()
                .or_else(|_| err(n, "the task id is too large"))?;
            let rest = &after[digits..];
            if !(rest.is_empty() || rest.starts_with(' ')) {
                return err(n, "expected a space after the task id");
            }
            (Some(id), rest.strip_prefix(' ').unwrap_or(rest))
        }
        _ => (None, rest),
    };
    let (title, markers) = split_markers(rest);
    let mut t = TaskLine {
        line: n,
        id,
        done: false,
        title: unescape(title),
        body: String::new(),
        after: vec![],
        note: None,
    };
    for m in markers {
        if let Some(list) = m.strip_prefix("after ") {
            t.after = after_ids(list).map_or_else(|| err(n, "expected (after #3, #4)"), Ok)?;
        } else {
            t.note = Some(unescape(m));
        }
    }
    check_title(&t.title).or_else(|e| err(n, e.0))?;
    Ok(t)
}

/// `#3, #4` as ids.
fn after_ids(list: &str) -> Option<Vec<i64>> {
    list.split(',')
        .map(|p| p.trim().strip_prefix('#').and_then(|d| d.parse().ok()))
        .collect()
}

/// Whether the character at byte `at` is escaped (an odd number of backslashes before it).
fn escaped(text: &str, at: usize) -> bool {
    text[..at].bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1
}

/// Splits `title (m1) (m2)` into the title and its known markers, from the end: a group
/// counts when it closes the line and starts with `in progress`, `blocked` or `after #`.
fn split_markers(text: &str) -> (&str, Vec<&str>) {
    let mut rest = text;
    let mut markers = Vec::new();
    while rest.ends_with(')') && !escaped(rest, rest.len() - 1) {
        let Some(open) = rest[..rest.len() - 1]
            .rmatch_indices('(')
            .map(|(i, _)| i)
            .find(|i| !escaped(rest, *i))
        else {
            break;
        };
        let inner = &rest[open + 1..rest.len() - 1];
        let known = ["in progress", "blocked", "after #"]
            .iter()
            .any(|p| inner.starts_with(p));
        if !known || open == 0 || !rest[..open].ends_with(' ') {
            break;
        }
        markers.push(inner);
        rest = &rest[..open - 1];
    }
    markers.reverse();
    (rest, markers)
}

/// What an edited file changes on the stored story.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The story's new title, description and labels, when any of them changed.
    pub story: Option<NewStory>,
    pub edits: Vec<TaskEdit>,
    pub adds: Vec<TaskAdd>,
    pub checks: Vec<Check>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.story.is_none()
            && self.edits.is_empty()
            && self.adds.is_empty()
            && self.checks.is_empty()
    }
}

/// A task whose title or body changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEdit {
    pub line: usize,
    pub id: i64,
    pub title: String,
    pub body: String,
}

/// A task the file adds; `done` when its box is checked too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskAdd {
    pub line: usize,
    pub task: NewTask,
    pub done: bool,
}

/// A checkbox that changed: `done` true when checked, false when unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub line: usize,
    pub id: i64,
    pub done: bool,
}

/// Why an edited file cannot be applied: the stored story moved on (`conflict`), or the file
/// itself is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ImportError {
    pub line: usize,
    pub message: String,
    pub conflict: bool,
}

/// The differences between `doc` and the stored `story` with its current list's `tasks`.
pub fn changes(doc: &StoryDoc, story: &Story, tasks: &[Task]) -> Result<Changes, ImportError> {
    let conflict = |line: usize, message: String| ImportError {
        line,
        message,
        conflict: true,
    };
    if let Some(name) = doc.todolist.as_deref().filter(|n| *n != story.todolist) {
        return Err(conflict(
            doc.todolist_line,
            format!(
                "the file is of todolist '{name}' but story '{}' now works on '{}'; export again",
                story.slug, story.todolist
            ),
        ));
    }
    let mut out = Changes {
        story: story_edit(doc, story),
        ..Changes::default()
    };
    for line in &doc.tasks {
        let Some(id) = line.id else {
            out.adds.push(TaskAdd {
                line: line.line,
                task: NewTask {
                    title: line.title.clone(),
                    body: line.body.clone(),
                    blocked_by: line.after.clone(),
                },
                done: line.done,
            });
            continue;
        };
        let Some(stored) = tasks.iter().find(|t| t.id == id) else {
            return Err(conflict(
                line.line,
                format!(
                    "task #{id} is not in the current todolist of story '{}'; export again",
                    story.slug
                ),
            ));
        };
        let same_body = line.body == normalize(&stored.body);
        if line.title != stored.title || !same_body {
            out.edits.push(TaskEdit {
                line: line.line,
                id,
                title: line.title.clone(),
                body: if same_body {
                    stored.body.clone()
                } else {
                    line.body.clone()
                },
            });
        }
        if line.done != (stored.status == TaskStatus::Done) {
            out.checks.push(Check {
                line: line.line,
                id,
                done: line.done,
            });
        }
    }
    Ok(out)
}

/// The story's new fields, when the file changes any of them. A description that compares
/// equal stays as stored.
fn story_edit(doc: &StoryDoc, story: &Story) -> Option<NewStory> {
    let same_description = doc.description == normalize(&story.description);
    if doc.title == story.title && same_description && doc.labels == story.labels {
        return None;
    }
    Some(NewStory {
        slug: story.slug.clone(),
        title: doc.title.clone(),
        description: if same_description {
            story.description.clone()
        } else {
            doc.description.clone()
        },
        labels: doc.labels.clone(),
    })
}

/// Parses a todolist template: each `- [ ] title` line (at the start of a line) is a task,
/// the lines indented under it its body; anything else (headings, prose) is ignored. The
/// last task must be a final one (see [`crate::backlog::FINAL_MARKERS`]).
pub fn parse_template(text: &str) -> Result<Template, ParseError> {
    let mut found: Vec<(usize, NewTask, Vec<&str>)> = Vec::new();
    let mut in_task = false;
    for (i, raw) in text.split('\n').enumerate() {
        let line = bare(raw);
        if let Some(rest) = checkbox(line) {
            let title = rest.trim().to_owned();
            check_title(&title).or_else(|e| err(i + 1, e.0))?;
            found.push((
                i + 1,
                NewTask {
                    title,
                    body: String::new(),
                    blocked_by: vec![],
                },
                vec![],
            ));
            in_task = true;
        } else if in_task && (line.trim().is_empty() || raw.starts_with([' ', '\t'])) {
            if let Some((_, _, body)) = found.last_mut() {
                body.push(line);
            }
        } else {
            in_task = false;
        }
    }
    let mut tasks = Vec::with_capacity(found.len());
    for (n, mut task, body) in found {
        let indent = body
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start().len())
            .min()
            .unwrap_or(0);
        let lines: Vec<&str> = body.iter().map(|l| l.get(indent..).unwrap_or("")).collect();
        task.body = normalize(&lines.join("\n")).to_owned();
        check_body("body", &task.body).or_else(|e| err(n, e.0))?;
        tasks.push((n, task));
    }
    match tasks.last() {
        None => err(1, "no '- [ ] title' task lines"),
        Some((n, last)) if !has_final_marker(&last.title) => err(
            *n,
            "the last task must be marked MANDATORY, FINAL or FINALIZATION (the final-task rule)",
        ),
        Some(_) => Ok(Template(tasks.into_iter().map(|(_, t)| t).collect())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn story() -> Story {
        Story {
            slug: "auth".into(),
            title: "Login with OAuth (v2)".into(),
            description: "\nWhy it matters.\n\n## Tasks\n- [ ] not a task\n  \n".into(),
            status: StoryStatus::Open,
            labels: vec!["backend".into(), "security".into()],
            created_by: "op".into(),
            created_at: at("2026-12-07T09:00:00Z"),
            updated_at: at("2026-12-07T09:00:00Z"),
            todolist: "default".into(),
            finalized_at: Some(at("2026-12-07T10:00:00.5Z")),
        }
    }

    fn task(id: i64, title: &str, status: TaskStatus) -> Task {
        Task {
            id,
            story: "auth".into(),
            todolist: "default".into(),
            title: title.into(),
            body: String::new(),
            status,
            reason: None,
            worker: None,
            position: id,
            blocked_by: vec![],
            created_by: "op".into(),
            created_at: at("2026-12-07T09:00:00Z"),
            updated_at: at("2026-12-07T09:00:00Z"),
        }
    }

    fn tasks() -> Vec<Task> {
        let mut a = task(12, "write the login (draft)", TaskStatus::Done);
        a.body = "- [ ] it works\n\n  nested\r\n\ttab\n\n".into();
        let mut b = task(
            13,
            r"test \( the (in progress: x) login\",
            TaskStatus::InProgress,
        );
        b.worker = Some("agent-1".into());
        b.blocked_by = vec![12];
        let mut c = task(14, "blocked on #12 ", TaskStatus::Blocked);
        c.reason = Some("waits (for)\nreview \\".into());
        let d = task(15, "FINAL: verify everything", TaskStatus::Todo);
        vec![a, b, c, d]
    }

    #[test]
    fn export_parse_export_is_byte_identical() {
        let text = export(&story(), &tasks());
        let doc = parse(&text).unwrap();
        assert_eq!(doc.slug, "auth");
        assert_eq!(doc.title, "Login with OAuth (v2)");
        assert_eq!(
            doc.description,
            "Why it matters.\n\n## Tasks\n- [ ] not a task"
        );
        assert_eq!(doc.tasks.len(), 4);
        assert_eq!(doc.tasks[1].title, r"test \( the (in progress: x) login\");
        assert_eq!(doc.tasks[1].after, vec![12]);
        assert_eq!(doc.tasks[1].note.as_deref(), Some("in progress: agent-1"));
        assert_eq!(doc.tasks[2].title, "blocked on #12 ");
        assert_eq!(doc.tasks[0].body, "- [ ] it works\n\n  nested\r\n\ttab");
        assert!(doc.tasks[0].done && !doc.tasks[1].done);
        assert_eq!(
            changes(&doc, &story(), &tasks()).unwrap(),
            Changes::default()
        );

        // Rebuild the stored state from the file and export again.
        let mut s = story();
        s.title.clone_from(&doc.title);
        s.description.clone_from(&doc.description);
        let mut ts = tasks();
        for (t, l) in ts.iter_mut().zip(&doc.tasks) {
            t.title.clone_from(&l.title);
            t.body.clone_from(&l.body);
        }
        assert_eq!(export(&s, &ts), text);
    }

    #[test]
    fn titles_survive_escaping() {
        for title in [
            r"a\",
            r"a\)",
            "(x)",
            r"\\",
            r"\(",
            r"C:\dir",
            r"a\#b",
            "x (after #3)",
            "y (blocked: r)",
            "#5 first",
            "ends with ( ",
            "a) b (c",
            r"\\\)",
        ] {
            let escaped = escape_title(title);
            let (rest, markers) = split_markers(&escaped);
            assert!(markers.is_empty(), "{title:?} -> {escaped:?}");
            assert_eq!(unescape(rest), title, "{title:?} -> {escaped:?}");
            let line = format!("{escaped} (after #1) (in progress: a\\)b)");
            let (rest, markers) = split_markers(&line);
            assert_eq!(unescape(rest), title, "{line:?}");
            assert_eq!(markers, vec!["after #1", "in progress: a\\)b"]);
        }
    }

    #[test]
    fn an_edited_file_yields_only_its_differences() {
        let text = export(&story(), &tasks())
            .replace("# Login with OAuth (v2)", "# Login with OAuth")
            .replace("Labels: backend, security", "Labels: backend")
            .replace("#13 test", "#13 test well")
            .replace("- [x] #12", "- [ ] #12")
            .replace(
                "- [ ] #15",
                "- [ ] a new task (after #12)\n    - [ ] crit\n- [x] #15",
            );
        let text = format!("{text}\n\n");
        let doc = parse(&text).unwrap();
        let c = changes(&doc, &story(), &tasks()).unwrap();
        let edit = c.story.unwrap();
        assert_eq!(edit.title, "Login with OAuth");
        assert_eq!(edit.labels, vec!["backend".to_owned()]);
        assert_eq!(
            edit.description,
            story().description,
            "unchanged stays as stored"
        );
        assert_eq!(c.edits.len(), 1);
        assert_eq!(c.edits[0].id, 13);
        assert!(c.edits[0].title.starts_with("test well"));
        assert_eq!(
            c.checks,
            vec![
                Check {
                    line: doc.tasks[0].line,
                    id: 12,
                    done: false
                },
                Check {
                    line: doc.tasks[4].line,
                    id: 15,
                    done: true
                },
            ]
        );
        assert_eq!(c.adds.len(), 1);
        assert_eq!(c.adds[0].task.title, "a new task");
        assert_eq!(c.adds[0].task.body, "- [ ] crit");
        assert_eq!(c.adds[0].task.blocked_by, vec![12]);
        assert!(!c.adds[0].done);

        // A task of another list is a conflict.
        let stale = parse(&export(&story(), &tasks()).replace("#14", "#99")).unwrap();
        let e = changes(&stale, &story(), &tasks()).unwrap_err();
        assert!(e.conflict && e.message.contains("#99"), "{e}");
        let mut moved = story();
        moved.todolist = "next".into();
        assert!(
            changes(
                &parse(&export(&story(), &tasks())).unwrap(),
                &moved,
                &tasks()
            )
            .unwrap_err()
            .conflict
        );
    }

    #[test]
    fn parse_errors_name_the_line() {
        let good = export(&story(), &tasks());
        let cases: Vec<(String, usize, &str)> = vec![
            ("Login\n".into(), 1, "title"),
            (good.replace("Story: auth", "Story: a b"), 3, "story 'a b'"),
            (
                good.replace("Status: open", "Status: maybe"),
                4,
                "open or closed",
            ),
            (
                good.replace("Labels: backend", "Labls: backend"),
                5,
                "unknown key",
            ),
            (
                good.replace("Todolist: default", "Status: open"),
                6,
                "twice",
            ),
            (good.replace("## Tasks\n", "## Task\n"), 23, "no '## Tasks'"),
            (
                good.replace("- [ ] #15", "* [ ] #15"),
                23,
                "expected a task",
            ),
            (
                good.replace("- [ ] #13", "- [ ] #12"),
                21,
                "#12 appears twice",
            ),
            (
                good.replace("#15 FINAL: verify everything", "#15 "),
                23,
                "title must not be empty",
            ),
            (
                good.replace("(after #12)", "(after #x)"),
                21,
                "(after #3, #4)",
            ),
            (
                good.replace("\n## Tasks\n\n", "\n## Tasks\n\n  stray\n"),
                16,
                "indented",
            ),
            (
                good.replace("Finalized: 2026", "Finalized: 1999x"),
                7,
                "RFC 3339",
            ),
            (good.replace("Story: auth\n", ""), 3, "no 'Story: <slug>'"),
        ];
        for (text, line, msg) in cases {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line, line, "{e} in\n{text}");
            assert!(e.message.contains(msg), "{e}");
        }
        let big = format!("{good}- [ ] huge\n    {}\n", "x".repeat(70 * 1024));
        assert!(parse(&big).unwrap_err().message.contains("longer than"));
    }

    #[test]
    fn a_story_without_description_labels_or_tasks() {
        let mut s = story();
        s.description = " \n".into();
        s.labels = vec![];
        s.finalized_at = None;
        let text = export(&s, &[]);
        assert_eq!(
            text,
            "# Login with OAuth (v2)\n\nStory: auth\nStatus: open\nLabels:\nTodolist: default\n\n## Tasks\n\n"
        );
        let doc = parse(&text).unwrap();
        assert!(doc.tasks.is_empty() && doc.labels.is_empty() && doc.description.is_empty());
        assert!(changes(&doc, &s, &[]).unwrap().is_empty());
    }

    #[test]
    fn templates_are_task_lines_with_bodies() {
        let text = "# Template\n\nSome prose.\n\n- [ ] Plan the work\n  - [ ] outline\n\n    - [ ] deeper\n- [ ] Build it\nnot a body\n- [ ] FINAL: check everything\n\t- [ ] tests pass\n";
        let t = parse_template(text).unwrap();
        assert_eq!(t.0.len(), 3);
        assert_eq!(t.0[0].title, "Plan the work");
        assert_eq!(t.0[0].body, "- [ ] outline\n\n  - [ ] deeper");
        assert_eq!(t.0[1].body, "");
        assert_eq!(t.0[2].body, "- [ ] tests pass");
        let e = parse_template("- [ ] only\n- [ ] not final\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("FINAL"));
        assert_eq!(parse_template("# nothing\n").unwrap_err().line, 1);
        assert_eq!(parse_template("- [ ] \u{7}bell\n").unwrap_err().line, 1);
    }
}
