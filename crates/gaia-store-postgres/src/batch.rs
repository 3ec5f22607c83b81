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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gaia_core::StoreError;
use gaia_core::claims::{ClaimResult, ClaimRow, Request, decide};
use gaia_core::event::Event;
use gaia_core::time::{Clock, from_micros, to_micros};
use sqlx::{FromRow, PgPool};
use tokio::sync::{mpsc, oneshot};

use crate::NOW_US;
use crate::claims::COLUMNS;
use crate::error::{Db, boundary};
use crate::log::append_log;
use crate::notify::Notifications;
use gaia_store_sql::rows;

/// Most claims committed in one transaction.
const MAX_BATCH: usize = 64;
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

/// The server's clock, returned with each locked claim row.
#[derive(FromRow)]
struct Now {
    now_us: i64,
}

impl ClaimBatcher {
    pub(crate) fn start(writer: Writer) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Request, Reply)>(QUEUE);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                writer.commit(batch).await;
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
        // Lock every key of the batch, in key order.
        let keys: BTreeSet<String> = reqs.iter().map(|r| r.key().to_string()).collect();
        let mut rows: BTreeMap<String, Option<ClaimRow>> = BTreeMap::new();
        let mut now_us = i64::MIN;
        for key in &keys {
            let r = reqs
                .iter()
                .map(Request::key)
                .find(|k| k.to_string() == *key);
            let Some(k) = r else { continue };
            let locked = sqlx::query(&format!(
                "INSERT INTO claims (key, story, todolist, token, ttl_ms) VALUES ($1, $2, $3, 0, 0)
                 ON CONFLICT (key) DO UPDATE SET key = claims.key
                 RETURNING {COLUMNS}, {NOW_US} AS now_us"
            ))
            .bind(key)
            .bind(&k.story)
            .bind(&k.todolist)
            .fetch_one(&mut *tx)
            .await?;
            now_us = now_us.max(rows::decode::<Now, _>("claims", &locked)?.now_us);
            let row = rows::claim(&locked)?;
            // A freshly created placeholder row means "never claimed".
            rows.insert(
                key.clone(),
                (row.token > 0 || row.holder.is_some()).then_some(row),
            );
        }
        // One time for the whole batch, read after every lock is held.
        let now = match &self.clock {
            Some(c) => c.now(),
            None => from_micros(now_us),
        };
        let mut results = Vec::with_capacity(reqs.len());
        let mut spans = Vec::with_capacity(reqs.len());
        let (mut events, mut audit) = (Vec::new(), Vec::new());
        let mut dirty = BTreeSet::new();
        for req in reqs {
            let key = req.key().to_string();
            let current = rows.get(&key).cloned().flatten();
            let d = decide(current, req, now);
            let start = events.len();
            if let Some(new) = d.row {
                rows.insert(key.clone(), Some(new));
                dirty.insert(key);
                events.extend(d.events);
                audit.extend(d.audit);
            }
            spans.push(start..events.len());
            results.push(d.result);
        }
        if events.is_empty() {
            tx.rollback().await?;
            return Ok(results.into_iter().map(|r| (r, vec![])).collect());
        }
        for key in &dirty {
            let Some(Some(new)) = rows.get(key) else {
                continue;
            };
            let holder = new.holder.as_ref();
            sqlx::query(
                "UPDATE claims SET agent = $2, operator = $3, fingerprint = $4, token = $5,
                    acquired_at_us = $6, expires_at_us = $7, ttl_ms = $8, principal = $9
                 WHERE key = $1",
            )
            .bind(key)
            .bind(holder.map(|h| h.agent.as_str()))
            .bind(holder.map(|h| h.operator.as_str()))
            .bind(holder.map(|h| h.fingerprint.as_str()))
            .bind(new.token)
            .bind(new.acquired_at.map(to_micros))
            .bind(new.expires_at.map(to_micros))
            .bind(i64::try_from(new.ttl.as_millis()).unwrap_or(i64::MAX))
            .bind(holder.and_then(|h| h.principal.as_deref()))
            .execute(&mut *tx)
            .await?;
        }
        let committed = append_log(&mut tx, &events, &audit, now).await?;
        // Announce inside the batch's own transaction: commits are already ordered by the
        // `log_head` lock, so NOTIFY adds no serialisation here, and it saves the separate
        // announcing transaction (and its flush) per batch.
        if let Some(last) = committed.last() {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::notify::CHANNEL)
                .bind(last.seq.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if let Some(last) = committed.last() {
            self.notifications.seen(last.seq);
        }
        Ok(results
            .into_iter()
            .zip(spans)
            .map(|(r, span)| {
                (
                    r,
                    committed
                        .get(span)
                        .map(<[Event]>::to_vec)
                        .unwrap_or_default(),
                )
            })
            .collect())
    }
}
