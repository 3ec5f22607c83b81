//! `gaia events emit|tail|export`.

use std::io::Write;
use std::time::Duration;

use gaia_core::event::{Event, EventFilter};
use gaia_core::names::{check_event_type, check_name, check_subject};
use gaia_core::time::rfc3339;

use crate::cli::EventsCommand;
use crate::config::Config;
use crate::exit::{self, CliError, CliResult};

/// Events fetched per query when paging through the log.
const PAGE: u32 = 500;
/// How often `--follow` looks for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Events `tail` shows when neither --since nor --limit is given.
const DEFAULT_TAIL: u32 = 10;

pub async fn run(c: EventsCommand, config: &Config) -> CliResult {
    match c {
        EventsCommand::Emit {
            kind,
            subject,
            data,
            actor,
            json,
        } => emit(config, &kind, &subject, &data, actor, json).await,
        EventsCommand::Tail {
            since,
            follow,
            type_prefix,
            subject,
            limit,
            ndjson,
            json,
        } => {
            let format = if json {
                Format::JsonArray(Vec::new())
            } else if ndjson {
                Format::Ndjson
            } else {
                Format::Human
            };
            let filter = EventFilter {
                type_prefix,
                subject,
            };
            tail_command(config, filter, since, follow, limit, format).await
        }
        EventsCommand::Export {
            ndjson: _,
            since,
            output,
        } => export(config, since, output.as_deref()).await,
        EventsCommand::Import { file } => super::store_copy::import_events(&file, config).await,
    }
}

/// `gaia events emit`.
async fn emit(
    config: &Config,
    kind: &str,
    subject: &str,
    data: &str,
    actor: Option<String>,
    json: bool,
) -> CliResult {
    check_event_type(kind)?;
    let data: serde_json::Value = serde_json::from_str(data)
        .map_err(|e| CliError::bad_input(format!("--data is not valid JSON: {e}")))?;
    let actor = actor
        .or_else(|| std::env::var("GAIA_AGENT").ok())
        .unwrap_or_else(|| "cli".into());
    // Validate before opening the store: bad input must not even create the database.
    check_name("actor", &actor)?;
    check_subject(subject)?;
    let gaia = crate::client::connect(config).await?;
    let e = gaia.emit(kind, &actor, subject, data).await?;
    gaia.close().await;
    if json {
        super::out(&e.to_ndjson())?;
    } else {
        super::out(&e.seq.to_string())?;
    }
    Ok(exit::OK)
}

/// `gaia events tail`: checks the arguments before connecting.
async fn tail_command(
    config: &Config,
    filter: EventFilter,
    since: Option<i64>,
    follow: bool,
    limit: Option<u64>,
    format: Format,
) -> CliResult {
    if let Some(p) = &filter.type_prefix {
        check_event_type(p)?;
    }
    if since.is_some_and(|s| s < 0) {
        return Err(CliError::bad_input(
            "--since must be 0 or a positive event seq",
        ));
    }
    if limit == Some(0) {
        return Err(CliError::bad_input("--limit must be at least 1"));
    }
    let gaia = crate::client::connect(config).await?;
    tail(&gaia, &filter, since, follow, limit, format).await
}

/// `gaia events export`: every event after `since`, as NDJSON, to `output` or stdout.
async fn export(config: &Config, since: i64, output: Option<&std::path::Path>) -> CliResult {
    if since < 0 {
        return Err(CliError::bad_input(
            "--since must be 0 or a positive event seq",
        ));
    }
    let gaia = crate::client::connect(config).await?;
    let mut sink: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| {
                CliError::bad_input(format!("cannot write {}: {e}", path.display()))
            })?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let newest = gaia.last_seq().await?;
    let mut bar = crate::progress::Progress::new(
        "events export",
        "events",
        Some(u64::try_from(newest - since).unwrap_or(0)),
    );
    let mut last = since;
    loop {
        let page = gaia
            .events_after(last, &EventFilter::default(), PAGE)
            .await?;
        let Some(tail) = page.last() else { break };
        last = tail.seq;
        for e in &page {
            writeln!(sink, "{}", e.to_ndjson())?;
        }
        bar.add(page.len() as u64);
    }
    bar.finish();
    sink.flush()?;
    Ok(exit::OK)
}

enum Format {
    Human,
    Ndjson,
    JsonArray(Vec<serde_json::Value>),
}

impl Format {
    fn emit(&mut self, e: &Event) -> std::io::Result<()> {
        match self {
            Self::Human => super::out(&format!(
                "#{} {} {} actor={} subject={} {}",
                e.seq,
                rfc3339(e.ts),
                e.kind,
                e.actor,
                if e.subject.is_empty() {
                    "-"
                } else {
                    &e.subject
                },
                e.data
            )),
            Self::Ndjson => super::out(&e.to_ndjson()),
            Self::JsonArray(items) => {
                items.push(serde_json::to_value(e).unwrap_or_default());
                Ok(())
            }
        }
    }
}

async fn tail(
    gaia: &crate::client::Client,
    filter: &EventFilter,
    since: Option<i64>,
    follow: bool,
    limit: Option<u64>,
    mut format: Format,
) -> CliResult {
    let mut printed: u64 = 0;
    let remaining = |printed: u64| limit.map_or(u64::MAX, |l| l.saturating_sub(printed));
    // Where to start: after --since, or just before the newest few matching events.
    let mut last = match since {
        Some(s) => s,
        None => {
            let n = if follow {
                DEFAULT_TAIL
            } else {
                limit.map_or(DEFAULT_TAIL, |l| u32::try_from(l).unwrap_or(u32::MAX))
            };
            let newest = gaia.events_before(i64::MAX, filter, n).await?;
            match newest.first() {
                Some(e) => e.seq - 1,
                None => gaia.last_seq().await?,
            }
        }
    };
    let mut stdout_closed = false;
    loop {
        let want = u32::try_from(remaining(printed).min(u64::from(PAGE))).unwrap_or(PAGE);
        if want == 0 {
            break;
        }
        let page = gaia.events_after(last, filter, want).await?;
        for e in &page {
            last = e.seq;
            if let Err(err) = format.emit(e) {
                if err.kind() == std::io::ErrorKind::BrokenPipe {
                    stdout_closed = true;
                    break;
                }
                return Err(err.into());
            }
            printed += 1;
        }
        if stdout_closed {
            break;
        }
        if page.len() < want as usize {
            if !follow {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    }
    if let Format::JsonArray(items) = format {
        super::out_json(&serde_json::Value::Array(items))?;
    }
    Ok(exit::OK)
}
