//! `gaia setup claude-code|codex`: registers Gaia with a coding agent by merging its entries
//! into the agent's own configuration files. Merging is idempotent (a second run changes
//! nothing), never drops or reorders what the user wrote, and `--dry-run` shows the diff
//! instead of writing.

mod claude;
mod codex;
mod diff;
mod json;

use std::path::{Path, PathBuf};

use crate::cli::SetupCommand;
use crate::exit::{self, CliError, CliResult};

pub async fn run(c: SetupCommand) -> CliResult {
    let (changes, dry_run) = match c {
        SetupCommand::ClaudeCode {
            dir,
            command,
            dry_run,
        } => (
            claude::plan(&dir.unwrap_or_else(|| PathBuf::from(".")), &command)?,
            dry_run,
        ),
        SetupCommand::Codex {
            file,
            command,
            dry_run,
        } => (codex::plan(&codex::config_path(file)?, &command)?, dry_run),
    };
    for change in &changes {
        change.apply(dry_run)?;
    }
    Ok(exit::OK)
}

/// One file: what it holds now (`None` when absent) and what it should hold.
#[derive(Debug)]
pub struct Change {
    path: PathBuf,
    old: Option<String>,
    new: String,
}

impl Change {
    /// Writes the file (or, with `dry_run`, prints the diff); reports what it did.
    fn apply(&self, dry_run: bool) -> Result<(), CliError> {
        let shown = self.path.display();
        if self.old.as_deref() == Some(self.new.as_str()) {
            super::out(&format!("unchanged {shown}"))?;
            return Ok(());
        }
        if dry_run {
            super::out(&format!("--- {shown}\n+++ {shown} (after gaia setup)"))?;
            let d = diff::lines(self.old.as_deref().unwrap_or(""), &self.new);
            super::out(d.trim_end_matches('\n'))?;
            return Ok(());
        }
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io_error(parent, &e))?;
        }
        write_atomic(&self.path, &self.new)?;
        let verb = if self.old.is_some() {
            "updated"
        } else {
            "created"
        };
        super::out(&format!("{verb} {shown}"))?;
        Ok(())
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> CliError {
    CliError::new(exit::FAILURE, format!("{}: {e}", path.display()))
}

/// The file's text, `None` when it does not exist.
fn read(path: &Path) -> Result<Option<String>, CliError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, &e)),
    }
}

/// Writes through a temporary file beside it, so that a crash leaves the old file whole.
fn write_atomic(path: &Path, text: &str) -> Result<(), CliError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".gaia-tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(|e| io_error(&tmp, &e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, &e))
}
