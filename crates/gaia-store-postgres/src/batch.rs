//! Group commit for claims. Every commit that appends to the log holds the `log_head` row lock
//! through its flush, so on PostgreSQL one transaction per claim caps throughput at one flush
//! per claim. Claims that arrive while a transaction is committing are instead gathered and
//! committed together: each is decided exactly as it would be alone (its key's row locked, the
//! server's clock read after every lock of the batch is held, the rules applied in arrival
//! order), and the batch appends all events and audit records at once. Nothing is weakened:
//! each claim's row, events and audit records still commit in one transaction, seqs stay
//! gap-free, and a failing batch is retried claim by claim so one bad call cannot fail others.
//!
//! Row locks are taken in key order, so batches on different nodes cannot deadlock.
//!
//! Two batches may be in flight at once, the second locking and deciding while the first
//! commits. A batch costs two round trips however many claims it holds: `BEGIN` with one
//! upsert that locks every key's row and reads the clock; then one statement that writes
//! every changed row, the events and audit records numbered from the predicted log head, the
//! new head and the NOTIFY, checking the head under its lock (see [`Predicted`]), with
//! `COMMIT` (both messages in [`simple`]'s way). The `log_head` lock is held for that message
//! only, with no round trip to this process inside it. A head that moved fails the statement,
//! so the `COMMIT` does not run: the batch rolls back and runs again unforeseen. When the head
//! is not foreseen (at start, after another node or writer moved it) the second message
//! writes the rows, then appends the log where its head is (`gaia_append`, migration 12, as
//! every other write does, see `tx.rs`), announces and commits: the lock is then held for the
//! append and the commit, still with no round trip inside it.
//!
//! The round trips a batch does not need are avoided: the writer keeps its connections
//! between batches instead of borrowing from the pool, which checks each loan with a round
//! trip ([`Kept`]); and a claim that finds the writer idle runs as a batch of its own in its
//! caller's task, sparing the hand-off to the writer task and back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Utc};
use gaia_core::StoreError;
use gaia_core::claims::{ClaimResult, ClaimRow, Request, decide};
use gaia_core::event::Event;
use gaia_core::time::{Clock, from_micros, to_micros};
use gaia_core::usecase::log::{Appended, LogHead};
use sqlx::pool::PoolConnection;
use sqlx::{FromRow, PgPool, Postgres};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::NOW_US;
use crate::error::{Db, DbError, boundary};
use crate::log::{PREDICTED_HEAD, bind_log, log_rows, number_at};
use crate::notify::Notifications;
use crate::simple::{self, Literals, Prepared, Sink};
use gaia_store_sql::kept::Kept;
use gaia_store_sql::rows;
use gaia_store_sql::shared::claims::CLAIM_COLUMNS as COLUMNS;

/// Most claims committed in one transaction.
const MAX_BATCH: usize = 64;
/// Batches committing at once.
const IN_FLIGHT: usize = 2;
/// Permits a batch takes while the log is shared with other writers: all of them, so that
/// one batch is in flight at a time.
const IN_FLIGHT_SHARED: u32 = IN_FLIGHT as u32;
/// Claims waiting for the writer before callers wait to enqueue.
const QUEUE: usize = 1024;

type Reply = oneshot::Sender<Result<(ClaimResult, Vec<Event>), StoreError>>;

/// The handle that claim calls go through; one writer task per store.
#[derive(Debug, Clone)]
pub(crate) struct ClaimBatcher {
    tx: mpsc::Sender<(Request, Reply)>,
    pub(crate) writer: Writer,
    in_flight: Arc<Semaphore>,
}

/// What the writer needs (not the store itself, so that dropping the store ends the writer).
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    pub(crate) pool: PgPool,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) notifications: Arc<Notifications>,
    pub(crate) predicted: Arc<Mutex<Predicted>>,
    /// Connections the writer keeps between batches (see [`Kept`]).
    pub(crate) kept: Arc<Kept<Postgres>>,
}

/// Connections the writer keeps for its next batches instead of handing them back to the
/// pool (see [`gaia_store_sql::kept`]): the pool checks a connection with a round trip, which
/// at one claimer would be a third of a claim's round trips. A kept connection that turns out
/// dead fails with the batch's first message, before anything is written, and the batch then
/// begins again on one from the pool (see [`Writer::run`]). Up to one per batch in flight, when the pool has room for
/// the store's other work besides (a quarter of the pool at most).
pub(crate) fn kept_for_pool(max_connections: u32) -> Kept<Postgres> {
    Kept::new((usize::try_from(max_connections).unwrap_or(0) / 4).min(IN_FLIGHT))
}

fn lock_any<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The log head as the batches already sent will leave it, when it can be foreseen: a node
/// whose batches are the only writers to the log knows where the next batch starts before
/// the previous one commits. A batch numbered from that prediction writes its rows, its
/// events and audit records and the new head in one statement that checks the head under
/// its lock, and so holds the `log_head` lock for that statement and the commit only (with
/// no function call to plan and run inside the lock, as an unforeseen batch's append is). A
/// wrong prediction (another node or writer moved the head, or an earlier batch failed)
/// fails the statement: the batch rolls back and runs again unforeseen; after a miss,
/// predictions pause for a growing number of batches, so that nodes sharing the log do not
/// pay for misses on every batch.
#[derive(Debug, Default)]
pub(crate) struct Predicted {
    /// Where the next batch starts, if known.
    next: Option<LogHead>,
    /// Batches in flight that are numbered under the lock: until they commit, the head
    /// they leave is not known, so no batch is predicted.
    unforeseen: usize,
    /// The newest head such a batch committed, where predictions resume once none is left.
    resume: Option<LogHead>,
    /// Batches still to go the usual way after a miss.
    pause: u32,
    /// The pause after the next miss.
    backoff: u32,
    /// Whether the newest predicted batch has sent its statement.
    last: Option<watch::Receiver<bool>>,
}

/// A batch numbered from the predicted head.
struct Prediction {
    start: LogHead,
    done: Appended,
    /// Whether the batch predicted before this one has sent its statement.
    after: Option<watch::Receiver<bool>>,
    /// Set once this batch's statement has been answered.
    sent: watch::Sender<bool>,
}

/// The longest pause after misses, in batches.
const MAX_PAUSE: u32 = 64;

impl Predicted {
    /// The head to number a batch after, and the batch numbered from it (which the next
    /// batch then starts after); `None` when the head is not foreseen, and the batch is to
    /// be numbered under the lock (see [`Unforeseen`]).
    fn start(&mut self, decided: &Decided, now: DateTime<Utc>) -> Option<Prediction> {
        let start = if self.pause > 0 {
            self.pause -= 1;
            None
        } else if self.unforeseen > 0 {
            None
        } else {
            self.next.take()
        };
        let Some(start) = start else {
            self.next = None;
            return None;
        };
        let done = number_at(start.clone(), &decided.events, &decided.audit, now);
        self.next = Some(done.head.clone());
        let (sent, after) = watch::channel(false);
        Some(Prediction {
            start,
            done,
            after: self.last.replace(after),
            sent,
        })
    }

    /// Whether predictions missed lately (and none hit since): others write to the log.
    fn shared(&self) -> bool {
        self.backoff > 0
    }

    fn hit(&mut self) {
        self.backoff = 0;
    }

    fn missed(&mut self) {
        self.next = None;
        self.backoff = (self.backoff * 2).clamp(1, MAX_PAUSE);
        self.pause = self.backoff;
    }

    /// An unforeseen batch ended, having committed `head` (`None`: it failed).
    fn finished(&mut self, head: Option<LogHead>) {
        self.unforeseen = self.unforeseen.saturating_sub(1);
        if let Some(head) = head {
            // Every claim batch appends at least one event, so the newest head has the
            // highest seq, whichever of two batches reports first.
            if self
                .resume
                .as_ref()
                .is_none_or(|r| r.event_seq < head.event_seq)
            {
                self.resume = Some(head);
            }
        }
        if self.unforeseen == 0 {
            self.next = self.resume.take();
        }
    }

    fn forget(&mut self) {
        self.next = None;
    }
}

/// A batch numbered under the lock (`gaia_append`); counted in [`Predicted::unforeseen`] until
/// dropped, when the head it committed (if it did) is reported.
struct Unforeseen<'a> {
    predicted: &'a Mutex<Predicted>,
    committed: Option<LogHead>,
}

impl<'a> Unforeseen<'a> {
    fn new(predicted: &'a Mutex<Predicted>) -> Self {
        lock(predicted).unforeseen += 1;
        Self {
            predicted,
            committed: None,
        }
    }
}

impl Drop for Unforeseen<'_> {
    fn drop(&mut self) {
        lock(self.predicted).finished(self.committed.take());
    }
}

fn lock(m: &Mutex<Predicted>) -> std::sync::MutexGuard<'_, Predicted> {
    lock_any(m)
}

/// The key and the server's clock, returned with each locked claim row.
#[derive(FromRow)]
struct Locked {
    key: String,
    now_us: i64,
}

impl ClaimBatcher {
    pub(crate) fn start(writer: Writer) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Request, Reply)>(QUEUE);
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        let handle = Self {
            tx,
            writer: writer.clone(),
            in_flight: in_flight.clone(),
        };
        tokio::spawn(async move {
            // Up to `IN_FLIGHT` batches at once: the next batch locks its rows and decides
            // while the previous one waits for `log_head` and its flush. Rows are locked in key
            // order and `log_head` last, so batches cannot deadlock (as on several nodes), and
            // a claim's caller waits for its reply, so one caller's claims are never in two
            // batches at once. A batch is gathered only once it may start, so claims arriving
            // meanwhile join it.
            //
            // When other nodes (or writers) share the log, as predictions missing shows, a
            // second batch of this node would only queue for `log_head` behind the first and
            // commit half of this node's claims in a flush of its own; one batch at a time
            // then gathers them all, so the flushes the nodes take turns at carry more claims.
            loop {
                let permits = if lock(&writer.predicted).shared() {
                    IN_FLIGHT_SHARED
                } else {
                    1
                };
                let Ok(permit) = in_flight.clone().acquire_many_owned(permits).await else {
                    break;
                };
                let Some(first) = rx.recv().await else { break };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer.commit(batch).await;
                    drop(permit);
                });
            }
        });
        handle
    }

    pub(crate) async fn submit(
        &self,
        req: Request,
    ) -> Result<(ClaimResult, Vec<Event>), StoreError> {
        let (reply, answer) = oneshot::channel();
        match self.idle() {
            // Nothing is queued and a batch may start: this claim is a batch of its own, so
            // it runs here rather than through the writer task (two task wake-ups fewer). It
            // takes a permit like any batch, so batches in flight stay bounded and numbered
            // in order. It runs to the end even if the caller goes away (see [`Detached`]):
            // a batch abandoned between its statements would cost the next ones a miss.
            Some(permit) => {
                let writer = self.writer.clone();
                Detached::new(async move {
                    writer.commit(vec![(req, reply)]).await;
                    drop(permit);
                })
                .await;
            }
            None => self
                .tx
                .send((req, reply))
                .await
                .map_err(|_| StoreError::Unavailable("the claim writer stopped".into()))?,
        }
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the claim writer stopped".into()))?
    }

    /// A batch's permit, if a claim can run as a batch of its own now: no claim is waiting
    /// for the writer, a permit is free (the writer task waits for its next claim holding one,
    /// and a permit freed while it waits for one goes to it first), and the log is not shared
    /// with other writers, where one batch at a time gathers more claims per flush.
    fn idle(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if self.tx.capacity() < QUEUE || lock(&self.writer.predicted).shared() {
            return None;
        }
        self.in_flight.clone().try_acquire_owned().ok()
    }
}

/// A future that, dropped before it finished, finishes on a task of its own.
struct Detached<F: std::future::Future<Output = ()> + Send + 'static>(
    Option<std::pin::Pin<Box<F>>>,
);

impl<F: std::future::Future<Output = ()> + Send + 'static> Detached<F> {
    fn new(f: F) -> Self {
        Self(Some(Box::pin(f)))
    }
}

impl<F: std::future::Future<Output = ()> + Send + 'static> std::future::Future for Detached<F> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if let Some(f) = self.0.as_mut() {
            std::task::ready!(f.as_mut().poll(cx));
            self.0 = None;
        }
        std::task::Poll::Ready(())
    }
}

impl<F: std::future::Future<Output = ()> + Send + 'static> Drop for Detached<F> {
    fn drop(&mut self) {
        if let (Some(f), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(f);
        }
    }
}

impl Writer {
    async fn commit(&self, batch: Vec<(Request, Reply)>) {
        let reqs: Vec<Request> = batch.iter().map(|(r, _)| r.clone()).collect();
        let ran = boundary(self.run(&reqs)).await;
        if ran.is_err() {
            // A batch that failed may have been predicted on: the head it would have left is
            // not the head now.
            lock(&self.predicted).forget();
        }
        match ran {
            Ok(results) => {
                for ((_, reply), result) in batch.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some((_, reply)) = batch.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
            // One claim's failure (say, a lock timeout on its key) must not fail the others.
            Err(_) => {
                for (req, reply) in batch {
                    let result = boundary(self.run(std::slice::from_ref(&req))).await;
                    let _ = reply.send(result.map(|mut r| r.remove(0)));
                }
            }
        }
    }

    async fn run(&self, reqs: &[Request]) -> Db<Vec<(ClaimResult, Vec<Event>)>> {
        if let Some(mut conn) = self.kept.take() {
            match self.run_on(&mut conn, reqs).await {
                Ok(out) => {
                    self.keep(conn, &out);
                    return out;
                }
                // Nothing was written: begin again on a connection the pool checked.
                Err(_) => conn.close_on_drop(),
            }
        }
        let mut conn = self.pool.acquire().await?;
        let out = self.run_on(&mut conn, reqs).await?;
        self.keep(conn, &out);
        out
    }

    /// Runs the batch in a transaction on `conn`. The outer error: the connection failed
    /// with the batch's first message, before anything ran.
    async fn run_on(
        &self,
        conn: &mut PoolConnection<Postgres>,
        reqs: &[Request],
    ) -> Db<Db<Vec<(ClaimResult, Vec<Event>)>>> {
        let mut predict = true;
        loop {
            let mut tx = Open { conn, open: true };
            let (mut rows, now_us) = match lock_rows(&mut tx, reqs).await {
                Ok(locked) => locked,
                Err(Failed::Connection(e)) => return Err(e.into()),
                Err(Failed::Db(e)) => {
                    tx.rollback().await;
                    return Ok(Err(e));
                }
            };
            match self.run_in(&mut tx, &mut rows, now_us, reqs, predict).await {
                Ok(Some(out)) => return Ok(Ok(out)),
                // The head moved: the batch was rolled back, and runs again unforeseen.
                Ok(None) => predict = false,
                Err(e) => {
                    tx.rollback().await;
                    return Ok(Err(e));
                }
            }
        }
    }

    /// Keeps the connection of a batch that ended well (see [`Kept`]).
    fn keep<T>(&self, conn: PoolConnection<Postgres>, out: &Db<T>) {
        if out.is_ok() {
            self.kept.put(conn);
        }
    }

    /// Decides the batch on its locked `rows` and writes and commits it. `None`: it was
    /// numbered from a predicted head that was not there, and rolled back.
    async fn run_in(
        &self,
        tx: &mut Open<'_>,
        rows: &mut Rows,
        now_us: i64,
        reqs: &[Request],
        predict: bool,
    ) -> Db<Option<Vec<(ClaimResult, Vec<Event>)>>> {
        // One time for the whole batch, read after every lock is held.
        let now = match &self.clock {
            Some(c) => c.now(),
            None => from_micros(now_us),
        };
        let decided = decide_all(reqs, rows, now);
        if decided.events.is_empty() {
            tx.rollback().await;
            return Ok(Some(
                decided.results.into_iter().map(|r| (r, vec![])).collect(),
            ));
        }
        let dirty: Vec<(&String, &ClaimRow)> = decided
            .dirty
            .iter()
            .filter_map(|key| match rows.get(key) {
                Some(Some(new)) => Some((key, new)),
                _ => None,
            })
            .collect();
        // Announce inside the batch's own transaction: commits are already ordered by the
        // `log_head` lock, so NOTIFY adds no serialisation here, and it saves the separate
        // announcing transaction (and its flush) per batch.
        let predicted = if predict {
            lock(&self.predicted).start(&decided, now)
        } else {
            lock(&self.predicted).forget();
            None
        };
        let committed = match predicted {
            Some(p) => {
                let sql = format!(
                    "{}; COMMIT",
                    WRITE_PREDICTED.execute(write_predicted(&dirty, &p.start, &p.done, now))?
                );
                // The batch predicted before this one sends its message first, or this one
                // could take the head's lock first and miss. The next one sends its own as
                // soon as this one is on its way (sqlx has written it once the call first
                // waits), so that it already waits at the lock when this one commits. Should
                // it overtake this one on the way to the lock all the same, it misses and
                // runs again.
                if let Some(mut before) = p.after.clone() {
                    let _ = before.wait_for(|sent| *sent).await;
                }
                let mut call = Box::pin(simple::run(tx.conn, &sql));
                let res = std::future::poll_fn(|cx| {
                    let polled = call.as_mut().poll(cx);
                    p.sent
                        .send_if_modified(|sent| !std::mem::replace(sent, true));
                    polled
                })
                .await;
                drop(call);
                match res {
                    Ok(_) => {
                        tx.open = false;
                        lock(&self.predicted).hit();
                        p.done
                    }
                    Err(e) if simple::code(&e).as_deref() == Some(HEAD_MOVED) => {
                        tx.rollback().await;
                        lock(&self.predicted).missed();
                        return Ok(None);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                // Until this batch commits, the head it leaves is not known. The rows, then
                // the log appended where its head is (`gaia_append`), the announcement and
                // the commit, in one message: `log_head` is held for the append and the
                // commit only.
                let mut unforeseen = Unforeseen::new(&self.predicted);
                let append = crate::tx::append_args(
                    Literals::default(),
                    to_micros(now),
                    &decided.events,
                    &decided.audit,
                )
                .finish()?;
                let sql = format!(
                    "{}; {}{append}; \
                     SELECT pg_notify({}, event_seq::TEXT) FROM log_head WHERE id = 1; COMMIT",
                    WRITE_ROWS.execute(bind_rows(Literals::default(), &dirty))?,
                    crate::tx::APPEND,
                    crate::simple::quoted(crate::notify::CHANNEL)?,
                );
                let answered = simple::run(tx.conn, &sql).await?;
                tx.open = false;
                let head = crate::tx::head_found(&answered)?;
                let done = number_at(head, &decided.events, &decided.audit, now);
                unforeseen.committed = Some(done.head.clone());
                done
            }
        };
        let committed = committed.events;
        if let Some(last) = committed.last() {
            self.notifications.seen(last.seq);
        }
        Ok(Some(
            decided
                .results
                .into_iter()
                .zip(decided.spans)
                .map(|(r, span)| {
                    let events = committed
                        .get(span)
                        .map(<[Event]>::to_vec)
                        .unwrap_or_default();
                    (r, events)
                })
                .collect(),
        ))
    }
}

/// A transaction the writer began itself, with its first statement: rolled back on every
/// way out but its commit, and its connection closed when that fails or when the batch is
/// dropped halfway (the pool would lend it out still in the transaction).
struct Open<'c> {
    conn: &'c mut PoolConnection<Postgres>,
    open: bool,
}

impl Open<'_> {
    async fn rollback(&mut self) {
        if std::mem::take(&mut self.open) && simple::run(self.conn, "ROLLBACK").await.is_err() {
            self.conn.close_on_drop();
        }
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

/// How a batch's first message failed.
enum Failed {
    /// The connection failed: nothing ran, and the batch may begin again on another.
    Connection(sqlx::Error),
    /// The database refused a statement, or the batch could not be written.
    Db(DbError),
}

/// SQLSTATE of `gaia_log_head_moved()` (migration 11): the head was not as predicted.
const HEAD_MOVED: &str = "GA001";

/// Each key's row as the batch starts (`None`: never claimed), keyed by `STORY/TODOLIST`.
type Rows = BTreeMap<String, Option<ClaimRow>>;

/// Begins the batch's transaction and, in the same message, locks every key of the batch in
/// one statement, in key order (byte order, so that concurrent batches cannot deadlock),
/// creating placeholder rows for keys never claimed; returns the rows and the server's time
/// read with the last lock held. Prepares the writer's statements on a connection that has
/// not got them yet.
async fn lock_rows(tx: &mut Open<'_>, reqs: &[Request]) -> Result<(Rows, i64), Failed> {
    let keys: BTreeMap<String, &gaia_core::names::ClaimKey> = reqs
        .iter()
        .map(|r| (r.key().to_string(), r.key()))
        .collect();
    let args = Literals::default()
        .arg(keys.keys().map(String::as_str).collect::<Vec<_>>())
        .arg(keys.values().map(|k| k.story.as_str()).collect::<Vec<_>>())
        .arg(
            keys.values()
                .map(|k| k.todolist.as_str())
                .collect::<Vec<_>>(),
        );
    let sql = format!(
        "BEGIN; {}",
        LOCK_ROWS.execute(args).map_err(|e| Failed::Db(e.into()))?
    );
    let locked = match simple::run(tx.conn, &sql).await {
        Err(e) if simple::code(&e).as_deref() == Some(simple::NOT_PREPARED) => {
            let again = async {
                simple::run(tx.conn, "ROLLBACK").await?;
                simple::prepare(tx.conn, &[&LOCK_ROWS, &WRITE_PREDICTED, &WRITE_ROWS]).await?;
                simple::run(tx.conn, &sql).await
            };
            again.await
        }
        other => other,
    };
    let locked = locked.map_err(|e| {
        // A session the server ended answers with an error of its own (class 08, or 57P
        // such as `pg_terminate_backend`'s) before anything ran.
        let ended = simple::code(&e).is_some_and(|c| c.starts_with("08") || c.starts_with("57P"));
        match e {
            sqlx::Error::Database(_) if !ended => Failed::Db(e.into()),
            e => Failed::Connection(e),
        }
    })?;
    let mut rows = Rows::new();
    let mut now_us = i64::MIN;
    for row in &locked {
        let decoded = rows::decode::<Locked, _>("claims", row)
            .and_then(|Locked { key, now_us: at }| Ok((key, at, rows::claim(row)?)));
        let (key, at, claim) = decoded.map_err(|e| Failed::Db(e.into()))?;
        now_us = now_us.max(at);
        // A freshly created placeholder row means "never claimed".
        rows.insert(
            key,
            (claim.token > 0 || claim.holder.is_some()).then_some(claim),
        );
    }
    Ok((rows, now_us))
}

/// See [`lock_rows`]: `$1..$3` are the keys, their stories and their todolists.
static LOCK_ROWS: Prepared = Prepared {
    name: "gaia_claim_lock",
    types: "TEXT[], TEXT[], TEXT[]",
    sql: &LOCK_ROWS_SQL,
};

static LOCK_ROWS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO claims (key, story, todolist, token, ttl_ms)
         SELECT key, story, todolist, 0, 0
         FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS u(key, story, todolist)
         ORDER BY key COLLATE \"C\"
         ON CONFLICT (key) DO UPDATE SET key = claims.key
         RETURNING key, {COLUMNS}, {NOW_US} AS now_us"
    )
});

/// What deciding a batch came to: each request's result and the span of its events, the
/// events and audit records to append, and the keys whose rows changed.
struct Decided {
    results: Vec<ClaimResult>,
    spans: Vec<std::ops::Range<usize>>,
    events: Vec<gaia_core::event::NewEvent>,
    audit: Vec<gaia_core::audit::NewAudit>,
    dirty: BTreeSet<String>,
}

/// Decides the requests in arrival order, each seeing the rows as the earlier ones left them.
fn decide_all(reqs: &[Request], rows: &mut Rows, now: chrono::DateTime<chrono::Utc>) -> Decided {
    let mut d = Decided {
        results: Vec::with_capacity(reqs.len()),
        spans: Vec::with_capacity(reqs.len()),
        events: Vec::new(),
        audit: Vec::new(),
        dirty: BTreeSet::new(),
    };
    for req in reqs {
        let key = req.key().to_string();
        let current = rows.get(&key).cloned().flatten();
        let decision = decide(current, req, now);
        let start = d.events.len();
        if let Some(new) = decision.row {
            rows.insert(key.clone(), Some(new));
            d.dirty.insert(key);
            d.events.extend(decision.events);
            d.audit.extend(decision.audit);
        }
        d.spans.push(start..d.events.len());
        d.results.push(decision.result);
    }
    d
}

/// Binds the changed claim rows, one array per column: key, agent, operator, fingerprint,
/// token, acquired, expires, TTL, principal.
fn bind_rows<'q, S: Sink<'q>>(query: S, dirty: &[(&'q String, &'q ClaimRow)]) -> S {
    let text = |f: fn(&'q gaia_core::claims::Holder) -> Option<&'q str>| {
        dirty
            .iter()
            .map(|(_, r)| r.holder.as_ref().and_then(f))
            .collect::<Vec<_>>()
    };
    let int = |f: fn(&ClaimRow) -> Option<i64>| dirty.iter().map(|(_, r)| f(r)).collect::<Vec<_>>();
    query
        .arg(dirty.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
        .arg(text(|h| Some(h.agent.as_str())))
        .arg(text(|h| Some(h.operator.as_str())))
        .arg(text(|h| Some(h.fingerprint.as_str())))
        .arg(int(|r| Some(r.token)))
        .arg(int(|r| r.acquired_at.map(to_micros)))
        .arg(int(|r| r.expires_at.map(to_micros)))
        .arg(int(|r| {
            Some(i64::try_from(r.ttl.as_millis()).unwrap_or(i64::MAX))
        }))
        .arg(text(|h| h.principal.as_deref()))
}

/// Writes the changed claim rows (`$1..$9`, one array per column: see [`bind_rows`]), before
/// the log is appended where its head is (`gaia_append`, for a batch not numbered from a
/// prediction).
static WRITE_ROWS: Prepared = Prepared {
    name: "gaia_claim_rows",
    types: "TEXT[], TEXT[], TEXT[], TEXT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], TEXT[]",
    sql: &WRITE_ROWS_SQL,
};

static WRITE_ROWS_SQL: LazyLock<String> = LazyLock::new(|| {
    "UPDATE claims SET agent = u.agent, operator = u.operator,
        fingerprint = u.fingerprint, token = u.token, acquired_at_us = u.acquired_at_us,
        expires_at_us = u.expires_at_us, ttl_ms = u.ttl_ms, principal = u.principal
     FROM UNNEST($1, $2, $3, $4, $5, $6, $7, $8, $9)
        AS u(key, agent, operator, fingerprint, token, acquired_at_us, expires_at_us,
             ttl_ms, principal)
     WHERE claims.key = u.key"
        .to_owned()
});

/// The arguments of a predicted batch's statement ([`WRITE_PREDICTED`]): the changed rows
/// (`$21..$29`); the events and audit records (`$1..$14`) and the new head (`$16`, `$17`,
/// `$15`), written if the head is still `$18..$20` once its lock is held; and the newest seq
/// to announce (`$30`, `$31`).
fn write_predicted<'q>(
    dirty: &[(&'q String, &'q ClaimRow)],
    start: &'q LogHead,
    done: &'q Appended,
    now: DateTime<Utc>,
) -> Literals {
    let last = done.events.last().map_or(done.head.event_seq, |e| e.seq);
    let logged = bind_log(Literals::default(), to_micros(now), done)
        .arg(done.head.event_seq)
        .arg(done.head.audit_id)
        .arg(start.event_seq)
        .arg(start.audit_id)
        .arg(start.audit_hash.as_str());
    bind_rows(logged, dirty)
        .arg(crate::notify::CHANNEL)
        .arg(last.to_string())
}

/// See [`write_predicted`]. The head moves only if it is as predicted ([`PREDICTED_HEAD`]:
/// judged on the head as the previous batch committed it, not on this statement's snapshot,
/// which would miss every prediction made while that batch was in flight), and every log
/// insert and the NOTIFY read `h` first, so a wrong prediction writes nothing to the log;
/// and it then fails (`gaia_log_head_moved()`), so that the `COMMIT` sent with it does not
/// run and the rows written are rolled back.
static WRITE_PREDICTED: Prepared = Prepared {
    name: "gaia_claim_write",
    types: concat!(
        crate::log::log_types!(),
        ", BIGINT, BIGINT, BIGINT, BIGINT, TEXT, \
         TEXT[], TEXT[], TEXT[], TEXT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], TEXT[], TEXT, TEXT"
    ),
    sql: &WRITE_PREDICTED_SQL,
};

static WRITE_PREDICTED_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH w AS (
            UPDATE claims SET agent = u.agent, operator = u.operator,
                fingerprint = u.fingerprint, token = u.token, acquired_at_us = u.acquired_at_us,
                expires_at_us = u.expires_at_us, ttl_ms = u.ttl_ms, principal = u.principal
            FROM UNNEST($21::TEXT[], $22::TEXT[], $23::TEXT[], $24::TEXT[], $25::BIGINT[],
                        $26::BIGINT[], $27::BIGINT[], $28::BIGINT[], $29::TEXT[])
                AS u(key, agent, operator, fingerprint, token, acquired_at_us, expires_at_us,
                     ttl_ms, principal)
            WHERE claims.key = u.key
         ), {PREDICTED_HEAD}, {}
         SELECT CASE WHEN EXISTS (SELECT 1 FROM h) THEN pg_notify($30, $31) IS NULL
             ELSE gaia_log_head_moved() END",
        log_rows("WHERE EXISTS (SELECT 1 FROM h)")
    )
});
