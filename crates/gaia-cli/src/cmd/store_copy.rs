//! `gaia store copy --from URL --to URL` and `gaia events import FILE`: whole-store loads into
//! an empty store over [`gaia_core::dump`], with progress on stderr.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use gaia_core::StoreError;
use gaia_core::dump::{Dump, ImportError};
use gaia_core::store::Store;
use gaia_store_postgres::redact_url;

use crate::config::Config;
use crate::exit::{self, CliError, CliResult};
use crate::progress::Progress;

/// `gaia store copy`.
pub async fn run(from: &str, to: &str, config: &Config) -> CliResult {
    if from == to {
        return Err(CliError::bad_input("--from and --to name the same store"));
    }
    let source = crate::open::open_store(from, config).await?;
    let target = crate::open::open_store(to, config).await?;
    let copied = copy_between(source.as_ref(), target.as_ref()).await;
    source.close().await;
    target.close().await;
    let rows = copied?;
    super::out(&format!(
        "copied {rows} rows from {} to {}",
        redact_url(from),
        redact_url(to)
    ))?;
    Ok(exit::OK)
}

/// Copies every row of `source` into the empty `target`, with progress; the rows copied.
pub async fn copy_between(source: &dyn Store, target: &dyn Store) -> CliResult<u64> {
    let (from, to) = (dumpable(source)?, dumpable(target)?);
    let total: u64 = from.dump_counts().await?.iter().map(|(_, n)| n).sum();
    let mut bar = Progress::new("store copy", "rows", Some(total));
    let mut done = 0;
    let copied = gaia_core::dump::copy(from, to, &mut |_, n| {
        done += n;
        bar.add(n);
    })
    .await;
    bar.finish();
    copied.map_err(refused)?;
    Ok(done)
}

fn dumpable(store: &dyn Store) -> CliResult<&dyn Dump> {
    store
        .dump()
        .ok_or_else(|| CliError::bad_input("this store cannot be copied whole"))
}

/// A target that is not empty is the caller's mistake: exit 2 with the store's reason.
fn refused(e: StoreError) -> CliError {
    match e {
        StoreError::Conflict(m) => CliError::bad_input(m),
        other => other.into(),
    }
}

/// `gaia events import FILE`: the NDJSON `events export` writes, into an empty store.
pub async fn import_events(file: &Path, config: &Config) -> CliResult {
    let reader: Box<dyn BufRead + Send> = if file == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(file).map_err(
            |e| CliError::bad_input(format!("cannot read {}: {e}", file.display())),
        )?))
    };
    let store: Arc<dyn Store> = crate::open::open_store(&config.database_url, config).await?;
    let mut bar = Progress::new("events import", "events", None);
    let imported = match dumpable(store.as_ref()) {
        Ok(to) => gaia_core::dump::import_events(to, reader.lines(), &mut |_, n| bar.add(n)).await,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    bar.finish();
    store.close().await;
    let n = match imported {
        Ok(n) => n,
        Err(ImportError::Line { line, reason }) => {
            return Err(CliError::bad_input(format!(
                "{}: line {line}: {reason}; nothing was imported",
                file.display()
            )));
        }
        Err(ImportError::Store(e)) => return Err(refused(e)),
    };
    super::out(&format!("imported {n} events"))?;
    Ok(exit::OK)
}
