//! `gaia backup FILE` and `gaia restore FILE`. SQLite: the backup is a database file written
//! by `VACUUM INTO` from one snapshot while the server keeps writing; restoring copies its rows
//! into the configured, empty store like `gaia store copy`. PostgreSQL: `pg_dump -Fc` and
//! `pg_restore` in one transaction, into an empty store only. A backup is written under a
//! temporary name and renamed when complete, so a failed one never looks like a backup.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use gaia_core::StoreError;
use gaia_store_postgres::redact_url;
use gaia_store_sqlite::SqliteStore;

use crate::cli::{BackupArgs, RestoreArgs};
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// `FILE.partial`, where the backup is written before it is complete.
fn partial(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

pub async fn backup(args: BackupArgs, config: &Config) -> CliResult {
    let file = &args.file;
    if file.exists() {
        return Err(CliError::bad_input(format!(
            "{} exists; choose a new file (a backup never overwrites one)",
            file.display()
        )));
    }
    let tmp = partial(file);
    let _ = std::fs::remove_file(&tmp);
    let url = &config.database_url;
    eprintln!(
        "backup: writing {} from {}",
        file.display(),
        redact_url(url)
    );
    let written = if is_sqlite(url) {
        sqlite_backup(url, config, &tmp).await
    } else {
        pg_tool(
            "pg_dump",
            url,
            &["--format=custom", "--no-owner", "--file"],
            &tmp,
        )
        .await
    };
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, file)?;
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    super::out(&format!(
        "backup written: {} ({size} bytes)",
        file.display()
    ))?;
    Ok(exit::OK)
}

async fn sqlite_backup(url: &str, config: &Config, tmp: &Path) -> CliResult<()> {
    let store = SqliteStore::open(url, &config.store_options()).await?;
    let done = store.backup_into(tmp).await;
    gaia_core::store::Store::close(&store).await;
    Ok(done?)
}

pub async fn restore(args: RestoreArgs, config: &Config) -> CliResult {
    let file = &args.file;
    if !file.is_file() {
        return Err(CliError::bad_input(format!(
            "{} is not a backup file",
            file.display()
        )));
    }
    let url = &config.database_url;
    let target = crate::open::open_store(url, config).await?;
    let Some(dump) = target.dump() else {
        return Err(CliError::bad_input("this store cannot be restored into"));
    };
    // Refused unless empty; the check's transaction is rolled back when the loader drops.
    let empty = dump.load().await.map(drop);
    if let Err(e) = empty {
        target.close().await;
        return Err(match e {
            StoreError::Conflict(m) => CliError::bad_input(format!("restore refused: {m}")),
            other => other.into(),
        });
    }
    let restored = if is_sqlite(url) {
        let backup_url = format!("sqlite://{}", file.display());
        let source = match SqliteStore::open(&backup_url, &config.store_options()).await {
            Ok(s) => s,
            Err(e) => {
                target.close().await;
                return Err(CliError::bad_input(format!(
                    "{} is not a SQLite backup: {e}",
                    file.display()
                )));
            }
        };
        let copied = super::store_copy::copy_between(&source, target.as_ref()).await;
        gaia_core::store::Store::close(&source).await;
        target.close().await;
        copied.map(|_| ())
    } else {
        target.close().await;
        // The empty store's tables are replaced by the backup's, all in one transaction.
        pg_tool(
            "pg_restore",
            url,
            &[
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
            ],
            file,
        )
        .await
    };
    restored?;
    super::out(&format!(
        "restored {} into {}",
        file.display(),
        redact_url(url)
    ))?;
    Ok(exit::OK)
}

/// Runs a PostgreSQL client tool on `url` with `args` and then `file`. The password travels in
/// `PGPASSWORD`, not in the arguments other users can read.
async fn pg_tool(tool: &str, url: &str, args: &[&str], file: &Path) -> CliResult<()> {
    let (url, password) = split_password(url);
    let mut cmd = tokio::process::Command::new(tool);
    cmd.arg(format!("--dbname={url}"))
        .args(args)
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = match cmd.output().await {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CliError::new(
                exit::FAILURE,
                format!(
                    "{tool} not found: install the PostgreSQL client tools \
                     (e.g. postgresql-client) of the server's version or newer, \
                     and put {tool} on PATH"
                ),
            ));
        }
        Err(e) => {
            return Err(CliError::new(
                exit::FAILURE,
                format!("cannot run {tool}: {e}"),
            ));
        }
    };
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    Err(CliError::new(
        exit::FAILURE,
        format!("{tool} failed ({}): {first}", out.status),
    ))
}

/// `url` without its password, and the password.
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return (url.to_owned(), None);
    };
    match userinfo.split_once(':') {
        Some((user, password)) => (
            format!("{scheme}://{user}@{host}"),
            Some(percent_decode(password)),
        ),
        None => (url.to_owned(), None),
    }
}

/// Decodes `%XX` escapes, as the tools do for a password in a URL.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::split_password;

    #[test]
    fn the_password_leaves_the_url() {
        assert_eq!(
            split_password("postgres://u:p%40ss@h:5432/db"),
            ("postgres://u@h:5432/db".to_owned(), Some("p@ss".to_owned()))
        );
        assert_eq!(
            split_password("postgres://u@h/db"),
            ("postgres://u@h/db".to_owned(), None)
        );
    }
}
