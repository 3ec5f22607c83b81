//! `gaia followups collect|list|accept|reject`: follow-up child docs
//! (`doc/<Story>.<Agent>.<Task>.extra.md`, see [`gaia_core::followup_doc`]) collected into
//! their story's triage list, then accepted (a task of the story) or rejected.
//!
//! `collect` reads every doc first; each valid one is collected once (the store keeps its
//! path and content hash, so a second run, or one running at the same time, adds nothing).
//! Malformed docs, and docs whose story does not exist, are listed as `FILE:LINE: MESSAGE` on
//! stderr and make the exit code 2, while the valid ones are still collected.

use std::io::Read;
use std::path::{Path, PathBuf};

use gaia_core::backlog::{Followup, FollowupStatus};
use gaia_core::followup_doc::{self, DocError, FollowupDoc, MAX_DOC_BYTES};
use gaia_core::usecase::backlog::Collected;
use serde_json::json;

use crate::cli::FollowupsCommand;
use crate::client::Client;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

/// Deepest directory level `collect` descends to.
const MAX_DEPTH: usize = 16;
/// Attempts at collecting one doc while the store is busy.
const BUSY_ATTEMPTS: u32 = 5;

pub async fn run(c: FollowupsCommand, config: &Config) -> CliResult {
    match c {
        FollowupsCommand::Collect { dir, dry_run, json } => {
            collect(config, &dir, dry_run, json).await
        }
        FollowupsCommand::List { status, json } => {
            let status = status.as_deref().and_then(FollowupStatus::parse);
            list(config, status, json).await
        }
        FollowupsCommand::Accept { id, json } => triage(config, id, None, json).await,
        FollowupsCommand::Reject { id, reason, json } => {
            gaia_core::text::check_text("reason", &reason, gaia_core::text::MAX_REASON_CHARS)?;
            if reason.trim().is_empty() {
                return Err(CliError::bad_input("--reason must not be empty"));
            }
            triage(config, id, Some(&reason), json).await
        }
    }
}

/// One line for people.
fn line(f: &Followup) -> String {
    let mut line = format!(
        "#{:<4} {:8} {} {} \"{}\"",
        f.id,
        f.status.as_str(),
        f.story,
        f.path,
        f.title
    );
    if let Some(t) = f.task_id {
        line.push_str(&format!(" -> task #{t}"));
    }
    if let Some(r) = &f.reason {
        line.push_str(&format!(" ({})", r.replace(['\n', '\r'], " ")));
    }
    line
}

/// Every `*.extra.md` under `dir`, in name order; directories reached through symbolic links
/// are not entered.
fn find(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let name = e.file_name();
        if e.file_type()?.is_dir() {
            if depth < MAX_DEPTH {
                find(&e.path(), depth + 1, out)?;
            }
        } else if name.to_str().is_some_and(followup_doc::is_followup_doc)
            // Regular files only (a symlink counts by what it names): opening a FIFO or a
            // device would wait or read without end.
            && std::fs::metadata(e.path()).is_ok_and(|m| m.is_file())
        {
            out.push(e.path());
        }
    }
    Ok(())
}

/// The path a doc is collected under: `--dir` as given (without `./`) and the path below it.
fn shown_path(dir: &str, file: &Path, under: &Path) -> String {
    let rel: Vec<String> = file
        .strip_prefix(under)
        .unwrap_or(file)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let mut base = dir.trim_end_matches('/');
    while let Some(rest) = base.strip_prefix("./") {
        base = rest.trim_start_matches('/');
    }
    match base {
        "" | "." => rel.join("/"),
        b => format!("{b}/{}", rel.join("/")),
    }
}

/// Reads and parses one doc.
fn read_doc(file: &Path, path: &str) -> Result<FollowupDoc, DocError> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_DOC_BYTES).unwrap_or(u64::MAX) + 1;
    std::fs::File::open(file)
        .and_then(|f| f.take(limit).read_to_end(&mut bytes))
        .map_err(|e| DocError {
            path: path.to_owned(),
            line: 1,
            message: format!("cannot read: {e}"),
        })?;
    followup_doc::parse(path, &bytes)
}

/// The docs under `dir`: the valid ones and the malformed.
fn read_all(dir: &Path) -> Result<(Vec<FollowupDoc>, Vec<DocError>), CliError> {
    let text = dir
        .to_str()
        .ok_or_else(|| CliError::bad_input("--dir must be a UTF-8 path"))?;
    if !dir.is_dir() {
        return Err(CliError::bad_input(format!(
            "--dir {text}: no such directory"
        )));
    }
    let mut files = Vec::new();
    find(dir, 0, &mut files)
        .map_err(|e| CliError::new(exit::FAILURE, format!("reading {text}: {e}")))?;
    let (mut docs, mut malformed) = (Vec::new(), Vec::new());
    for file in files {
        match read_doc(&file, &shown_path(text, &file, dir)) {
            Ok(d) => docs.push(d),
            Err(e) => malformed.push(e),
        }
    }
    Ok((docs, malformed))
}

/// What happened to one doc: its path, outcome and follow-up id.
type Outcome = (String, Collected, i64);

/// Collects one doc, retrying while the store is busy. `Ok(Err(..))` is a problem of the doc
/// (its story does not exist, or the server refused its content).
async fn collect_one(client: &Client, doc: &FollowupDoc) -> CliResult<Result<Outcome, DocError>> {
    let f = doc.to_new();
    let mut attempt = 1;
    loop {
        match client.collect_followup(&f).await {
            Ok((outcome, stored)) => return Ok(Ok((doc.path.clone(), outcome, stored.id))),
            Err(e) if e.code == exit::LOCK_TIMEOUT && attempt < BUSY_ATTEMPTS => attempt += 1,
            Err(e) if matches!(e.code, exit::CONFLICT | exit::BAD_INPUT) => {
                return Ok(Err(DocError {
                    path: doc.path.clone(),
                    line: doc.parent_line,
                    message: e.message,
                }));
            }
            Err(e) => return Err(e),
        }
    }
}

/// What collecting would do, from the stored follow-ups and stories.
async fn would(client: &Client, docs: &[FollowupDoc]) -> CliResult<Vec<Result<Outcome, DocError>>> {
    let stored = client.followups(None).await?;
    let stories = client.stories(None).await?;
    Ok(docs
        .iter()
        .map(|d| {
            if !stories.iter().any(|s| s.slug == d.story) {
                return Err(DocError {
                    path: d.path.clone(),
                    line: d.parent_line,
                    message: format!("no story '{}'", d.story),
                });
            }
            Ok(match stored.iter().find(|f| f.path == d.path) {
                None => (d.path.clone(), Collected::Added, 0),
                Some(f) if f.hash == d.hash => (d.path.clone(), Collected::Unchanged, f.id),
                Some(f) => (d.path.clone(), Collected::Updated, f.id),
            })
        })
        .collect())
}

/// `gaia followups collect`.
async fn collect(config: &Config, dir: &Path, dry_run: bool, json: bool) -> CliResult {
    let (docs, mut malformed) = read_all(dir)?;
    let mut results = Vec::new();
    if !docs.is_empty() {
        let client = crate::client::connect(config).await?;
        if dry_run {
            results = would(&client, &docs).await?;
        } else {
            for doc in &docs {
                results.push(collect_one(&client, doc).await?);
            }
        }
        client.close().await;
    }
    let mut outcomes = Vec::new();
    for r in results {
        match r {
            Ok(o) => outcomes.push(o),
            Err(e) => malformed.push(e),
        }
    }
    for e in &malformed {
        eprintln!("{e}");
    }
    report(&outcomes, &malformed, dry_run, json)?;
    Ok(if malformed.is_empty() {
        exit::OK
    } else {
        exit::BAD_INPUT
    })
}

/// Prints each doc's outcome and the totals.
fn report(
    outcomes: &[Outcome],
    malformed: &[DocError],
    dry_run: bool,
    json: bool,
) -> CliResult<()> {
    let count = |c: Collected| outcomes.iter().filter(|o| o.1 == c).count();
    let (added, updated) = (count(Collected::Added), count(Collected::Updated));
    let unchanged = count(Collected::Unchanged);
    if json {
        let docs: Vec<_> = outcomes
            .iter()
            .map(|(path, o, id)| json!({ "path": path, "outcome": o, "id": id }))
            .collect();
        let bad: Vec<_> = malformed
            .iter()
            .map(|e| json!({ "path": e.path, "line": e.line, "message": e.message }))
            .collect();
        super::out_json(&json!({
            "dry_run": dry_run, "docs": docs, "added": added, "updated": updated,
            "unchanged": unchanged, "malformed": bad,
        }))?;
        return Ok(());
    }
    let would = if dry_run { "would be " } else { "" };
    for (path, o, id) in outcomes {
        let o = serde_json::to_value(o).unwrap_or_default();
        let id = if *id > 0 {
            format!(" (follow-up #{id})")
        } else {
            String::new()
        };
        super::out(&format!("{would}{} {path}{id}", o.as_str().unwrap_or("")))?;
    }
    super::out(&format!(
        "{} docs: {added} {would}added, {updated} {would}updated, {unchanged} unchanged, {} malformed",
        outcomes.len() + malformed.len(),
        malformed.len()
    ))?;
    Ok(())
}

/// `gaia followups list`.
async fn list(config: &Config, status: Option<FollowupStatus>, json: bool) -> CliResult {
    let client = crate::client::connect(config).await?;
    let list = client.followups(status).await?;
    if json {
        super::out_serde(&list)?;
    } else if list.is_empty() {
        super::out("no follow-ups")?;
    } else {
        for f in &list {
            super::out(&line(f))?;
        }
    }
    Ok(exit::OK)
}

/// `gaia followups accept|reject`. Exit 3 when already triaged.
async fn triage(config: &Config, id: i64, reject: Option<&str>, json: bool) -> CliResult {
    let client = crate::client::connect(config).await?;
    let f = client.triage_followup(id, reject).await?;
    client.close().await;
    if json {
        super::out_serde(&f)?;
    } else {
        super::out(&line(&f))?;
    }
    Ok(exit::OK)
}
