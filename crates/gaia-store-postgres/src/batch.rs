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
//! commits. A batch costs five round trips however many claims it holds: BEGIN; one upsert that locks
//! every key's row and reads the clock; one statement that writes every changed row and
//! reserves the seqs (taking the `log_head` lock); one that inserts the events and audit
//! records and queues the NOTIFY; COMMIT.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};

use gaia_core::StoreError;
use gaia_core::claims::{ClaimResult, ClaimRow, Request, decide};
use gaia_core::event::Event;
use gaia_core::time::{Clock, from_micros, to_micros};
use sqlx::{FromRow, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use crate::NOW_US;
use crate::error::{Db, boundary};
use crate::log::{RESERVE, count, write_log};
use crate::notify::Notifications;
use gaia_store_sql::rows;
use gaia_store_sql::shared::claims::CLAIM_COLUMNS as COLUMNS;

/// Most claims committed in one transaction.
const MAX_BATCH: usize = 64;
/// Batches committing at once.
const IN_FLIGHT: usize = 2;
/// Claims waiting for the writer before callers wait to enqueue.
const QUEUE: usize = 1024;

type Reply = oneshot::Sender<Result<(ClaimResult, Vec<Event>), StoreError>>;

/// The handle that claim calls go through; one writer task per store.
#[derive(Debug, Clone)]
pub(crate) struct ClaimBatcher {
    tx: mpsc::Sender<(Request, Reply)>,
}

/// What the writer needs (not the store itself, so that dropping the store ends the writer).
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    pub(crate) pool: PgPool,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) notifications: Arc<Notifications>,
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
        let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        tokio::spawn(async move {
            // Up to `IN_FLIGHT` batches at once: the next batch locks its rows and decides
            // while the previous one waits for `log_head` and its flush. Rows are locked in key
            // order and `log_head` last, so batches cannot deadlock (as on several nodes), and
            // a claim's caller waits for its reply, so one caller's claims are never in two
            // batches at once. A batch is gathered only once it may start, so claims arriving
            // meanwhile join it.
            loop {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
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
        Self { tx }
    }

    pub(crate) async fn submit(
        &self,
        req: Request,
    ) -> Result<(ClaimResult, Vec<Event>), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((req, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the claim writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the claim writer stopped".into()))?
    }
}

impl Writer {
    async fn commit(&self, batch: Vec<(Request, Reply)>) {
        let reqs: Vec<Request> = batch.iter().map(|(r, _)| r.clone()).collect();
        match boundary(self.run(&reqs)).await {
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
        let mut tx = self.pool.begin().await?;
        let (mut rows, now_us) = lock_rows(&mut tx, reqs).await?;
        // One time for the whole batch, read after every lock is held.
        let now = match &self.clock {
            Some(c) => c.now(),
            None => from_micros(now_us),
        };
        let decided = decide_all(reqs, &mut rows, now);
        if decided.events.is_empty() {
            tx.rollback().await?;
            return Ok(decided.results.into_iter().map(|r| (r, vec![])).collect());
        }
        let dirty: Vec<(&String, &ClaimRow)> = decided
            .dirty
            .iter()
            .filter_map(|key| match rows.get(key) {
                Some(Some(new)) => Some((key, new)),
                _ => None,
            })
            .collect();
        let head = write_rows(&dirty, &decided)
            .fetch_optional(&mut *tx)
            .await?;
        // Announce inside the batch's own transaction: commits are already ordered by the
        // `log_head` lock, so NOTIFY adds no serialisation here, and it saves the separate
        // announcing transaction (and its flush) per batch.
        let committed =
            write_log(&mut tx, head, &decided.events, &decided.audit, now, true).await?;
        tx.commit().await?;
        if let Some(last) = committed.last() {
            self.notifications.seen(last.seq);
        }
        Ok(decided
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
            .collect())
    }
}

/// Each key's row as the batch starts (`None`: never claimed), keyed by `STORY/TODOLIST`.
type Rows = BTreeMap<String, Option<ClaimRow>>;

/// Locks every key of the batch in one statement, in key order (byte order, so that
/// concurrent batches cannot deadlock), creating placeholder rows for keys never claimed;
/// returns the rows and the server's time read with the last lock held.
async fn lock_rows(tx: &mut PgConnection, reqs: &[Request]) -> Db<(Rows, i64)> {
    let keys: BTreeMap<String, &gaia_core::names::ClaimKey> = reqs
        .iter()
        .map(|r| (r.key().to_string(), r.key()))
        .collect();
    let locked = sqlx::query(&format!(
        "INSERT INTO claims (key, story, todolist, token, ttl_ms)
         SELECT key, story, todolist, 0, 0
         FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS u(key, story, todolist)
         ORDER BY key COLLATE \"C\"
         ON CONFLICT (key) DO UPDATE SET key = claims.key
         RETURNING key, {COLUMNS}, {NOW_US} AS now_us"
    ))
    .bind(keys.keys().map(String::as_str).collect::<Vec<_>>())
    .bind(keys.values().map(|k| k.story.as_str()).collect::<Vec<_>>())
    .bind(
        keys.values()
            .map(|k| k.todolist.as_str())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut rows = Rows::new();
    let mut now_us = i64::MIN;
    for row in &locked {
        let Locked { key, now_us: at } = rows::decode::<Locked, _>("claims", row)?;
        now_us = now_us.max(at);
        let claim = rows::claim(row)?;
        // A freshly created placeholder row means "never claimed".
        rows.insert(
            key,
            (claim.token > 0 || claim.holder.is_some()).then_some(claim),
        );
    }
    Ok((rows, now_us))
}

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

/// The statement that writes every changed claim row as decided and then reserves the seqs
/// of the batch's events and audit records ([`RESERVE`], which returns the log head).
fn write_rows<'q>(
    dirty: &[(&'q String, &'q ClaimRow)],
    decided: &Decided,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let text = |f: fn(&'q gaia_core::claims::Holder) -> Option<&'q str>| {
        dirty
            .iter()
            .map(|(_, r)| r.holder.as_ref().and_then(f))
            .collect::<Vec<_>>()
    };
    let int = |f: fn(&ClaimRow) -> Option<i64>| dirty.iter().map(|(_, r)| f(r)).collect::<Vec<_>>();
    sqlx::query(WRITE_ROWS.as_str())
        .bind(count(&decided.events))
        .bind(count(&decided.audit))
        .bind(dirty.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
        .bind(text(|h| Some(h.agent.as_str())))
        .bind(text(|h| Some(h.operator.as_str())))
        .bind(text(|h| Some(h.fingerprint.as_str())))
        .bind(int(|r| Some(r.token)))
        .bind(int(|r| r.acquired_at.map(to_micros)))
        .bind(int(|r| r.expires_at.map(to_micros)))
        .bind(int(|r| {
            Some(i64::try_from(r.ttl.as_millis()).unwrap_or(i64::MAX))
        }))
        .bind(text(|h| h.principal.as_deref()))
}

/// Writes the changed rows (`$3..$11`, one array per column) and reserves the seqs (`$1`,
/// `$2`): one round trip, the `log_head` lock taken last.
static WRITE_ROWS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH w AS (
            UPDATE claims SET agent = u.agent, operator = u.operator,
                fingerprint = u.fingerprint, token = u.token, acquired_at_us = u.acquired_at_us,
                expires_at_us = u.expires_at_us, ttl_ms = u.ttl_ms, principal = u.principal
            FROM UNNEST($3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::BIGINT[],
                        $8::BIGINT[], $9::BIGINT[], $10::BIGINT[], $11::TEXT[])
                AS u(key, agent, operator, fingerprint, token, acquired_at_us, expires_at_us,
                     ttl_ms, principal)
            WHERE claims.key = u.key
         ) {RESERVE}"
    )
});
