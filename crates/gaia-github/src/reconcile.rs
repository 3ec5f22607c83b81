//! Finding an issue a create made even though its answer was lost (a 5xx, a timeout, a
//! killed run): list the repository's issues the viewer created since the intent (every
//! page, pull requests left out) and, because listings lag behind creates, fetch the issue
//! numbers above the highest one seen before the intent. An issue is ours when its decoded
//! body carries the sync key's marker on a line of its own. Never the search API, whose
//! index lags by minutes.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use gaia_core::github::has_marker;
use serde_json::Value;

use crate::error::GhError;
use crate::runner::Gh;

/// How many missing numbers in a row end a scan above the last seen number.
pub const SCAN_GAP: u32 = 3;
/// The most numbers one scan fetches (numbers already seen are skipped, not counted).
const SCAN_MAX: i64 = 2_000;

/// An issue as listed or fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub number: i64,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub state: String,
    pub state_reason: Option<String>,
    pub creator: String,
    pub is_pull: bool,
}

impl Issue {
    /// Reads an issue object of the REST API.
    pub fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            number: v.get("number")?.as_i64()?,
            title: v
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            body: v
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            labels: v
                .get("labels")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|l| {
                            l.get("name")
                                .and_then(Value::as_str)
                                .or_else(|| l.as_str())
                                .map(str::to_owned)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            state: v
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or("open")
                .to_owned(),
            state_reason: v
                .get("state_reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
            creator: v
                .pointer("/user/login")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            is_pull: v.get("pull_request").is_some_and(|p| !p.is_null()),
        })
    }
}

/// The sync keys whose marker lines `body` carries (each line that is exactly a marker).
pub fn marker_keys(body: &str) -> impl Iterator<Item = &str> {
    body.lines().filter_map(|line| {
        line.trim()
            .strip_prefix("<!-- gaia-sync: ")?
            .strip_suffix(" -->")
            .filter(|k| !k.is_empty() && !k.contains(char::is_whitespace))
    })
}

/// What a reconcile saw: the issues carrying a marker, by key (the lowest number when
/// several carry the same key), and the highest issue number seen (pull requests included,
/// as they share the numbering).
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub by_key: HashMap<String, Issue>,
    pub highest: i64,
    /// Every number seen (a scan fetches only the others).
    pub numbers: HashSet<i64>,
}

impl Seen {
    /// Adds what another reconcile saw (the lowest number still wins per key).
    pub fn merge(&mut self, other: Seen) {
        self.highest = self.highest.max(other.highest);
        self.numbers.extend(other.numbers);
        for (key, issue) in other.by_key {
            match self.by_key.get(&key) {
                Some(have) if have.number <= issue.number => {}
                _ => {
                    self.by_key.insert(key, issue);
                }
            }
        }
    }

    fn add(&mut self, issue: Issue, viewer: &str) {
        self.highest = self.highest.max(issue.number);
        self.numbers.insert(issue.number);
        if issue.is_pull || issue.creator != viewer {
            return;
        }
        let keys: Vec<String> = marker_keys(&issue.body).map(str::to_owned).collect();
        for key in keys {
            if !has_marker(&issue.body, &key) {
                continue;
            }
            match self.by_key.get(&key) {
                Some(have) if have.number <= issue.number => {}
                _ => {
                    self.by_key.insert(key, issue.clone());
                }
            }
        }
    }
}

/// Lists every issue of `repo` created by `viewer` and updated since `since`, page by page,
/// into `seen`. Returns the number of pages read.
pub async fn list_since(
    gh: &Gh,
    repo: &str,
    viewer: &str,
    since: DateTime<Utc>,
    seen: &mut Seen,
) -> Result<u32, GhError> {
    let mut path = Some(format!(
        "repos/{repo}/issues?state=all&creator={viewer}&since={}&per_page=100",
        since.to_rfc3339_opts(SecondsFormat::Secs, true)
    ));
    let mut pages = 0;
    while let Some(p) = path.take() {
        let page = gh.get(&p).await?;
        pages += 1;
        for v in page.body.as_array().map(Vec::as_slice).unwrap_or_default() {
            if let Some(issue) = Issue::from_json(v) {
                seen.add(issue, viewer);
            }
        }
        path = page.next_page();
    }
    Ok(pages)
}

/// Fetches issue numbers above `last_seen` one by one until [`SCAN_GAP`] in a row are
/// missing, into `seen`: what a lagging listing does not show yet. Numbers `seen` holds
/// already (a listing read before) are not fetched again, so a scan after a listing costs
/// one call per issue the listing missed plus the gap.
pub async fn scan_above(
    gh: &Gh,
    repo: &str,
    viewer: &str,
    last_seen: i64,
    seen: &mut Seen,
) -> Result<(), GhError> {
    let mut missing = 0;
    let mut n = last_seen.max(0) + 1;
    let mut fetched = 0;
    while missing < SCAN_GAP && fetched < SCAN_MAX {
        if seen.numbers.contains(&n) {
            missing = 0;
            n += 1;
            continue;
        }
        fetched += 1;
        match gh.get(&format!("repos/{repo}/issues/{n}")).await {
            Ok(r) => {
                missing = 0;
                if let Some(issue) = Issue::from_json(&r.body) {
                    seen.add(issue, viewer);
                }
            }
            Err(GhError::NotFound { .. }) => missing += 1,
            Err(e) => return Err(e),
        }
        n += 1;
    }
    Ok(())
}

/// The highest issue (or pull request) number of `repo` its listing shows now.
pub async fn highest_number(gh: &Gh, repo: &str) -> Result<i64, GhError> {
    let r = gh
        .get(&format!("repos/{repo}/issues?state=all&per_page=1"))
        .await?;
    Ok(r.body
        .as_array()
        .and_then(|a| a.first())
        .and_then(|i| i.get("number"))
        .and_then(Value::as_i64)
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaia_core::github::marker;

    fn issue(number: i64, creator: &str, body: &str, is_pull: bool) -> Issue {
        Issue {
            number,
            title: String::new(),
            body: body.into(),
            labels: vec![],
            state: "open".into(),
            state_reason: None,
            creator: creator.into(),
            is_pull,
        }
    }

    #[test]
    fn only_the_viewers_issues_with_the_marker_on_its_own_line_count() {
        let m = marker("gaia-abc");
        let mut seen = Seen::default();
        seen.add(issue(9, "someone", &format!("copied\n{m}"), false), "bot");
        seen.add(
            issue(10, "bot", &format!("quoting {m} inline"), false),
            "bot",
        );
        seen.add(issue(11, "bot", &format!("x\n{m}"), true), "bot");
        assert!(seen.by_key.is_empty());
        assert_eq!(seen.highest, 11);
        seen.add(issue(14, "bot", &format!("later\n{m}"), false), "bot");
        seen.add(issue(12, "bot", &format!("desc\n\n{m}\r\n"), false), "bot");
        assert_eq!(seen.by_key["gaia-abc"].number, 12, "the first created wins");
    }

    #[test]
    fn marker_keys_are_read_from_whole_lines() {
        let body = "<!-- gaia-sync: a -->\n  <!-- gaia-sync: b -->  \nx <!-- gaia-sync: c -->\n<!-- gaia-sync:  -->";
        assert_eq!(marker_keys(body).collect::<Vec<_>>(), vec!["a", "b"]);
    }

    #[test]
    fn reads_issue_json() {
        let v = serde_json::json!({"number": 3, "title": "t", "body": null, "state": "closed",
            "state_reason": "completed", "labels": [{"name": "x"}], "user": {"login": "u"},
            "pull_request": {"url": "u"}});
        let i = Issue::from_json(&v).expect("issue");
        assert_eq!(i.number, 3);
        assert_eq!(i.body, "");
        assert_eq!(i.labels, vec!["x".to_owned()]);
        assert!(i.is_pull);
    }
}
