//! Follow-up child docs: `doc/<Story>.<Agent>.<Task>.extra.md`, files an agent writes to
//! propose work without touching the parent story. Each has a `Parent: <Story>` header line
//! (the story of the file name), a title (its first `# ` heading, else the task part of the
//! name) and acceptance criteria (the rest). `gaia followups collect` reads them with
//! [`parse`] and adds each to its story's triage list once: a doc is identified by its path
//! and the SHA-256 of its content.
//!
//! A story slug may contain dots, so the file name is read with the `Parent` header: the name
//! must start with `<Parent>.`; what follows is `<Agent>.<Task>`, the agent up to the first
//! dot and the task the rest.

use sha2::{Digest, Sha256};

use crate::backlog::{MAX_BODY_BYTES, NewFollowup, check_body, check_slug, check_title};
use crate::names::check_name;

/// How a child doc's file name ends.
pub const SUFFIX: &str = ".extra.md";
/// Largest child doc read, in bytes: the body limit and room for the headers.
pub const MAX_DOC_BYTES: usize = MAX_BODY_BYTES + 4096;

/// A parsed child doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowupDoc {
    /// The path it was read from, as given (its identity, with `hash`).
    pub path: String,
    /// Lowercase hex SHA-256 of the content.
    pub hash: String,
    pub story: String,
    pub agent: String,
    pub task: String,
    pub title: String,
    pub body: String,
    /// The line of the `Parent` header (1-based), for errors about the story.
    pub parent_line: usize,
}

impl FollowupDoc {
    /// The follow-up to collect.
    pub fn to_new(&self) -> NewFollowup {
        NewFollowup {
            path: self.path.clone(),
            hash: self.hash.clone(),
            story: self.story.clone(),
            agent: self.agent.clone(),
            task: self.task.clone(),
            title: self.title.clone(),
            body: self.body.clone(),
        }
    }
}

/// A malformed child doc: the file, the line (1-based) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: {message}")]
pub struct DocError {
    pub path: String,
    pub line: usize,
    pub message: String,
}

/// Whether a file name looks like a child doc (`*.extra.md`).
pub fn is_followup_doc(file_name: &str) -> bool {
    file_name.len() > SUFFIX.len() && file_name.ends_with(SUFFIX)
}

/// Lowercase hex SHA-256 of `content`.
pub fn hash(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

/// Parses the child doc at `path` (a `/`-separated path whose last part is the file name).
pub fn parse(path: &str, content: &[u8]) -> Result<FollowupDoc, DocError> {
    let fail = |line: usize, message: String| DocError {
        path: path.to_owned(),
        line,
        message,
    };
    if content.len() > MAX_DOC_BYTES {
        return Err(fail(
            1,
            format!("the file is larger than {MAX_DOC_BYTES} bytes"),
        ));
    }
    let text = std::str::from_utf8(content).map_err(|e| {
        let line = 1 + content[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        fail(line, "not valid UTF-8".into())
    })?;
    let lines: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
    if let Some(n) = lines
        .iter()
        .position(|l| l.chars().any(|c| c.is_control() && c != '\t'))
    {
        return Err(fail(n + 1, "contains control characters".into()));
    }
    let (parent_at, story) = parent(&lines).map_err(|(n, m)| fail(n, m))?;
    let (agent, task) = name_parts(path, &story).map_err(|m| fail(parent_at + 1, m))?;
    let title_at = lines.iter().position(|l| l.starts_with("# "));
    let title = match title_at {
        Some(n) => lines[n]["# ".len()..].trim().to_owned(),
        None => task.clone(),
    };
    check_title(&title).map_err(|e| fail(title_at.unwrap_or(parent_at) + 1, e.0))?;
    let rest: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(n, _)| *n != parent_at && Some(*n) != title_at)
        .map(|(_, l)| *l)
        .collect();
    let body = crate::backlog_md::normalize(&rest.join("\n")).to_owned();
    if body.is_empty() {
        return Err(fail(
            parent_at + 1,
            "no acceptance criteria after the headers".into(),
        ));
    }
    check_body("acceptance criteria", &body).map_err(|e| fail(1, e.0))?;
    Ok(FollowupDoc {
        path: path.to_owned(),
        hash: hash(content),
        story,
        agent,
        task,
        title,
        body,
        parent_line: parent_at + 1,
    })
}

/// The `Parent: <Story>` line: its index and the story. A second one must agree.
fn parent(lines: &[&str]) -> Result<(usize, String), (usize, String)> {
    let mut found: Option<(usize, String)> = None;
    for (n, line) in lines.iter().enumerate() {
        let Some(value) = line.strip_prefix("Parent:") else {
            continue;
        };
        let value = value.trim();
        match &found {
            None => {
                check_slug("Parent", value).map_err(|e| (n + 1, e.0))?;
                found = Some((n, value.to_owned()));
            }
            Some((first, story)) if story != value => {
                return Err((
                    n + 1,
                    format!(
                        "a second Parent header ('{value}') disagrees with line {} ('{story}')",
                        first + 1
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    found.ok_or_else(|| (1, "missing the 'Parent: <Story>' header".to_owned()))
}

/// The agent and task of a file name `<story>.<Agent>.<Task>.extra.md`.
fn name_parts(path: &str, story: &str) -> Result<(String, String), String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let expected = format!("the file name must be {story}.<Agent>.<Task>{SUFFIX}");
    let rest = name
        .strip_suffix(SUFFIX)
        .and_then(|stem| stem.strip_prefix(story))
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or_else(|| format!("Parent '{story}' does not match the file name: {expected}"))?;
    let Some((agent, task)) = rest.split_once('.') else {
        return Err(expected);
    };
    check_name("agent", agent).map_err(|e| format!("{e} ({expected})"))?;
    check_name("task", task).map_err(|e| format!("{e} ({expected})"))?;
    Ok((agent.to_owned(), task.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_doc_with_headers_title_and_criteria() {
        let text = "# Document the setup\nParent: S-1.auth\n\n- [ ] README explains it\n- [ ] example config\n";
        let d = parse("doc/S-1.auth.agent-1.T3.1.extra.md", text.as_bytes()).unwrap();
        assert_eq!(d.story, "S-1.auth");
        assert_eq!(d.agent, "agent-1");
        assert_eq!(d.task, "T3.1");
        assert_eq!(d.title, "Document the setup");
        assert_eq!(d.body, "- [ ] README explains it\n- [ ] example config");
        assert_eq!(d.hash, hash(text.as_bytes()));
        assert_eq!(d.hash.len(), 64);
        assert_eq!(d.parent_line, 2);
        let f = d.to_new();
        assert!(f.check().is_ok());
        assert_eq!(f.path, "doc/S-1.auth.agent-1.T3.1.extra.md");

        // Without a heading the task names it; CRLF lines are read as lines.
        let d = parse(
            "auth.a.fix-it.extra.md",
            b"Parent: auth\r\n\r\ncriteria\r\n",
        )
        .unwrap();
        assert_eq!(d.title, "fix-it");
        assert_eq!(d.body, "criteria");
        assert!(is_followup_doc("auth.a.t.extra.md"));
        assert!(!is_followup_doc(".extra.md"));
        assert!(!is_followup_doc("auth.md"));
    }

    #[test]
    fn malformed_docs_name_file_and_line() {
        let cases: Vec<(&str, &[u8], usize, &str)> = vec![
            (
                "doc/a.b.c.extra.md",
                b"# T\n\ncriteria\n",
                1,
                "missing the 'Parent",
            ),
            (
                "doc/a.b.c.extra.md",
                b"# T\nParent: zz\ncrit\n",
                2,
                "does not match",
            ),
            (
                "doc/a.b.extra.md",
                b"Parent: a\ncrit\n",
                1,
                "a.<Agent>.<Task>",
            ),
            (
                "doc/a.b.c.extra.md",
                b"x\nParent: a b\n",
                2,
                "may hold only",
            ),
            (
                "doc/a.b.c.extra.md",
                b"Parent: a\n\n  \n",
                1,
                "no acceptance criteria",
            ),
            (
                "doc/a.b.c.extra.md",
                b"Parent: a\ncrit\nParent: b\n",
                3,
                "disagrees with line 1",
            ),
            (
                "doc/a.b.c.extra.md",
                b"Parent: a\nok\nbell \x07\n",
                3,
                "control characters",
            ),
            ("doc/a.b.c.extra.md", b"Parent: a\nok\n\xff\n", 3, "UTF-8"),
            (
                "doc/a.b.c.extra.md",
                b"Parent: a\n# \ncrit\n",
                2,
                "title must not be empty",
            ),
        ];
        for (path, content, line, msg) in cases {
            let e = parse(path, content).unwrap_err();
            assert_eq!(e.path, path);
            assert_eq!(e.line, line, "{e}");
            assert!(e.message.contains(msg), "{e}");
            assert!(e.to_string().starts_with(&format!("{path}:{line}: ")));
        }
        let big = format!("Parent: a\n{}", "x".repeat(MAX_DOC_BYTES));
        assert!(
            parse("a.b.c.extra.md", big.as_bytes())
                .unwrap_err()
                .message
                .contains("larger")
        );
        let long = format!("Parent: a\n{}", "x".repeat(MAX_BODY_BYTES + 1));
        assert!(
            parse("a.b.c.extra.md", long.as_bytes())
                .unwrap_err()
                .message
                .contains("longer")
        );
    }
}
