//! Whole-store copies, independent of the backend: a store hands out its rows table by table
//! from one consistent snapshot ([`Dump::dump`]) and takes them into an empty store in one
//! transaction ([`Dump::load`]). `gaia store copy` moves a deployment from SQLite to
//! PostgreSQL this way, and `gaia events import` loads an export the same way. Rows travel as
//! plain typed values, so that the two dialects' column types (SQLite's integer booleans,
//! PostgreSQL's `BOOLEAN`) meet in the middle; which tables and columns there are is the SQL
//! backends' shared knowledge (`gaia_store_sql::shared::dump`).

use async_trait::async_trait;

use crate::StoreError;
use crate::event::Event;

/// A column's type as the copy carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
    Bool,
}

/// One column's value; `None` is SQL `NULL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

/// A row: its columns' values in the table's column order.
pub type Row = Vec<Value>;

/// Where dumped rows go: a [`Loader`], or anything that counts or checks them.
#[async_trait]
pub trait RowSink: Send {
    /// Takes the next rows of `table` (in the table's key order).
    async fn rows(&mut self, table: &'static str, rows: Vec<Row>) -> Result<(), StoreError>;
}

/// A load into an empty store, in one transaction: nothing is visible until [`Loader::commit`],
/// and a loader dropped without it leaves the store as empty as it was.
#[async_trait]
pub trait Loader: RowSink {
    /// Makes the loaded rows visible. When no `log_head` row was loaded (an events import),
    /// the head is set after the newest loaded event; identity sequences continue after the
    /// largest loaded ids.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// A store's raw rows, for whole-store copies.
#[async_trait]
pub trait Dump: Send + Sync {
    /// Every table the copy carries, in copy order, with its row count.
    async fn dump_counts(&self) -> Result<Vec<(&'static str, u64)>, StoreError>;

    /// Hands every row of every table to `sink`, table by table in copy order (parents before
    /// the rows referring to them), all read from one snapshot, so a store that is being
    /// written to still dumps a consistent state.
    async fn dump(&self, sink: &mut dyn RowSink) -> Result<(), StoreError>;

    /// Begins a load; [`StoreError::Conflict`] naming a table when the store is not empty
    /// (anything beyond what migrating a new store writes).
    async fn load(&self) -> Result<Box<dyn Loader>, StoreError>;
}

/// The `events` table's name, for loading events on their own.
pub const EVENTS: &str = "events";

/// An event as a row of the `events` table: `seq, ts_us, type, actor, subject, data`.
pub fn event_row(e: &Event) -> Row {
    vec![
        Value::Int(Some(e.seq)),
        Value::Int(Some(crate::time::to_micros(e.ts))),
        Value::Text(Some(e.kind.clone())),
        Value::Text(Some(e.actor.clone())),
        Value::Text(Some(e.subject.clone())),
        Value::Text(Some(e.data.to_string())),
    ]
}

/// Reports progress: the table rows were just written to, and how many.
pub type Progress<'a> = &'a mut (dyn FnMut(&'static str, u64) + Send);

/// Hands rows on to a loader, reporting each batch.
struct Forward<'a, 'p> {
    loader: &'a mut dyn Loader,
    progress: Progress<'p>,
}

#[async_trait]
impl RowSink for Forward<'_, '_> {
    async fn rows(&mut self, table: &'static str, rows: Vec<Row>) -> Result<(), StoreError> {
        let n = rows.len() as u64;
        self.loader.rows(table, rows).await?;
        (self.progress)(table, n);
        Ok(())
    }
}

/// Copies every row of `from` into the empty store `to`, in one transaction on `to`: either
/// all of it is there afterwards, or nothing.
pub async fn copy(
    from: &dyn Dump,
    to: &dyn Dump,
    progress: Progress<'_>,
) -> Result<(), StoreError> {
    let mut loader = to.load().await?;
    from.dump(&mut Forward {
        loader: loader.as_mut(),
        progress,
    })
    .await?;
    loader.commit().await
}

/// Why an events import stopped: a line that is not an event, or the store.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {reason}")]
    Line { line: u64, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Events loaded per batch.
const IMPORT_BATCH: usize = 1000;

/// Loads the events NDJSON `lines` into the empty store `to`, keeping every seq (which must
/// increase), in one transaction: a bad line leaves the store empty. Blank lines are skipped.
pub async fn import_events<I>(
    to: &dyn Dump,
    lines: I,
    progress: Progress<'_>,
) -> Result<u64, ImportError>
where
    I: Iterator<Item = std::io::Result<String>> + Send,
{
    let mut loader = to.load().await?;
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut last_seq = 0;
    let mut total = 0;
    for (i, line) in lines.enumerate() {
        let line_no = i as u64 + 1;
        let bad = |reason: String| ImportError::Line {
            line: line_no,
            reason,
        };
        let line = line.map_err(|e| bad(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let e: Event =
            serde_json::from_str(&line).map_err(|e| bad(format!("not an event: {e}")))?;
        if e.seq <= last_seq {
            return Err(bad(format!(
                "seq {} does not follow seq {last_seq}: events must be in increasing seq order",
                e.seq
            )));
        }
        crate::names::check_event_type(&e.kind).map_err(|v| bad(v.to_string()))?;
        last_seq = e.seq;
        batch.push(event_row(&e));
        if batch.len() == IMPORT_BATCH {
            total += batch.len() as u64;
            progress(EVENTS, batch.len() as u64);
            loader.rows(EVENTS, std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        total += batch.len() as u64;
        progress(EVENTS, batch.len() as u64);
        loader.rows(EVENTS, batch).await?;
    }
    loader.commit().await?;
    Ok(total)
}
