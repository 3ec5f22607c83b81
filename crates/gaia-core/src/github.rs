//! GitHub sync records: which backlog item is (or is being made) which issue in which
//! repository, the sync key that never changes and that the issue body carries as a marker
//! line, and a hash of what was last pushed, so that an unchanged item is never sent again.
//!
//! A record without an issue number is a write-ahead intent: committed before the create is
//! sent, so a crash between the create and recording its number leaves a key to look for
//! (see [`has_marker`]) instead of a duplicate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ValidationError;

/// What kind of backlog item a record links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Story,
    Task,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Story => "story",
            Self::Task => "task",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "story" => Some(Self::Story),
            "task" => Some(Self::Task),
            _ => None,
        }
    }
}

/// One item's link to one repository's issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecord {
    /// `owner/name`.
    pub repo: String,
    pub kind: ItemKind,
    /// The story slug, or the task id as text.
    pub item: String,
    /// Carried by the issue's marker line; never changes.
    pub sync_key: String,
    /// The issue number; `None` while only the intent to create is recorded.
    pub issue: Option<i64>,
    /// The hash of the content last pushed (see [`content_hash`]).
    pub pushed_hash: Option<String>,
    /// When the intent was first recorded: issues carrying the key were created after it.
    pub intent_at: DateTime<Utc>,
    /// When a create was last about to be sent.
    pub attempt_at: DateTime<Utc>,
    /// The highest issue number the repository's listing showed before the first attempt:
    /// an issue created for this intent has a higher one.
    pub last_seen: i64,
    pub updated_at: DateTime<Utc>,
}

/// The deployment-wide setting holding the scheduled sync's [`WorkerState`].
pub const WORKER_STATE_SETTING: &str = "github.worker.state";

/// What the scheduled sync of `gaia serve` last did, kept as a deployment-wide setting by the
/// node holding its lease, so that every node (and the dashboard behind any of them) shows
/// the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerState {
    /// `owner/name`.
    pub repo: String,
    /// The node holding the leader lease (the one that syncs).
    pub holder: String,
    /// Whether tasks are synced too.
    pub tasks: bool,
    /// When the last run started and ended (RFC 3339); `None` before the first.
    pub last_started: Option<String>,
    pub last_finished: Option<String>,
    /// Items per outcome of the last run (`created`, `updated`, `closed`, `unchanged`,
    /// `pending`, `failed`), and closed issues pulled back.
    pub counts: std::collections::BTreeMap<String, u64>,
    /// Why the last run stopped or which items failed; `None` when it went through.
    pub last_error: Option<String>,
    /// When the holder runs next (RFC 3339).
    pub next_run: Option<String>,
    /// How many runs the holder made since it took the lease.
    pub runs: u64,
    /// When this state was written (RFC 3339).
    pub updated_at: String,
}

/// The marker line an issue body ends with.
pub fn marker(sync_key: &str) -> String {
    format!("<!-- gaia-sync: {sync_key} -->")
}

/// Whether `body` (decoded text) carries the marker of `sync_key` on a line of its own
/// (surrounding whitespace and a `\r` aside). A marker quoted inside another line, or the
/// marker of a longer key, does not count.
pub fn has_marker(body: &str, sync_key: &str) -> bool {
    let wanted = marker(sync_key);
    body.lines().any(|line| line.trim() == wanted)
}

/// The sync key of `item` in `repo`: derived from them, so it is the same however often the
/// intent is recorded, and unlike any other item's.
pub fn sync_key(repo: &str, kind: ItemKind, item: &str) -> String {
    let digest = Sha256::digest(format!("{repo}\n{}\n{item}", kind.as_str()).as_bytes());
    format!("gaia-{}", hex_prefix(&digest, 20))
}

/// The hash of what would be pushed (title, body, labels, state), to compare with
/// [`SyncRecord::pushed_hash`].
pub fn content_hash(title: &str, body: &str, labels: &[String], state: &str) -> String {
    let mut h = Sha256::new();
    for part in [title, body, state] {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    for l in labels {
        h.update(l.len().to_le_bytes());
        h.update(l.as_bytes());
    }
    hex_prefix(&h.finalize(), 64)
}

fn hex_prefix(bytes: &[u8], len: usize) -> String {
    let mut s = hex::encode(bytes);
    s.truncate(len);
    s
}

/// Checks an `owner/name` repository argument.
pub fn check_repo(repo: &str) -> Result<(), ValidationError> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 100
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if ok_part(owner) && ok_part(name) => Ok(()),
        _ => Err(ValidationError::new(format!(
            "invalid repository '{repo}': use OWNER/NAME"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_matches_only_on_its_own_line() {
        let key = sync_key("a/b", ItemKind::Story, "s1");
        let m = marker(&key);
        assert!(has_marker(&format!("text\n\n{m}"), &key));
        assert!(has_marker(&format!("text\r\n  {m}  \r\n"), &key));
        assert!(!has_marker(&format!("quoted: {m}"), &key));
        assert!(!has_marker(&format!("> {m}"), &key));
        let longer = marker(&format!("{key}0"));
        assert!(!has_marker(&longer, &key));
        assert!(!has_marker("", &key));
    }

    #[test]
    fn keys_are_stable_and_distinct() {
        let a = sync_key("a/b", ItemKind::Story, "s1");
        assert_eq!(a, sync_key("a/b", ItemKind::Story, "s1"));
        assert_ne!(a, sync_key("a/b", ItemKind::Task, "s1"));
        assert_ne!(a, sync_key("a/c", ItemKind::Story, "s1"));
        assert!(a.starts_with("gaia-") && a.len() == 25);
    }

    #[test]
    fn hash_changes_with_any_part() {
        let l = vec!["x".to_owned()];
        let h = content_hash("t", "b", &l, "open");
        assert_eq!(h, content_hash("t", "b", &l, "open"));
        assert_ne!(h, content_hash("t", "b", &l, "closed"));
        assert_ne!(h, content_hash("tb", "", &l, "open"));
        assert_ne!(h, content_hash("t", "b", &[], "open"));
    }

    #[test]
    fn repos_are_checked() {
        assert!(check_repo("acme/widgets").is_ok());
        assert!(check_repo("a-b_c/d.e").is_ok());
        for bad in ["", "acme", "acme/", "/x", "a/b/c", "a/..", "a b/c", "-F/x;"] {
            assert!(check_repo(bad).is_err(), "{bad}");
        }
    }
}
