//! The notification outbox: enqueueing (inside the transaction of the change that causes the
//! messages, so no change commits without them, or on its own), leasing due messages to a
//! sender, reserving a send slot under Telegram's limits, recording attempts under the lease
//! (fencing), and requeueing dead messages.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::audit::NewAudit;
use crate::error::StoreError;
use crate::event::{Event, NewEvent, kinds};
use crate::outbox::{
    Attempt, GLOBAL_WINDOW, GROUP_WINDOW, Leased, Message, NewMessage, Next, PaceState, Recorded,
    RetryPolicy, Slot, SlotRequest, Status, after_attempt, is_group_chat, pacing_key, slot_for,
};
use crate::tx::{PacingRow, PacingStart, WriteTx};

/// Inserts `messages` due at `now` inside `tx`. A message whose dedupe key was seen before is
/// skipped and becomes a `notify.duplicate_skipped` event, for the caller to append.
pub async fn enqueue_in(
    tx: &mut dyn WriteTx,
    messages: &[NewMessage],
    now: DateTime<Utc>,
) -> Result<(Vec<i64>, Vec<NewEvent>), StoreError> {
    let mut ids = Vec::new();
    let mut skipped = Vec::new();
    for m in messages {
        match tx.outbox_insert(m, now).await? {
            Some(id) => ids.push(id),
            None => skipped.push(NewEvent::new(
                crate::event::kinds::NOTIFY_DUPLICATE_SKIPPED,
                "gaia",
                "outbox",
                json!({ "dedupe_key": m.dedupe_key, "kind": m.kind, "channel": m.channel.as_str() }),
            )),
        }
    }
    Ok((ids, skipped))
}

/// Enqueues messages in one transaction; returns the ids enqueued and the events committed.
pub async fn enqueue(
    mut tx: Box<dyn WriteTx>,
    messages: &[NewMessage],
) -> Result<(Vec<i64>, Vec<Event>), StoreError> {
    let now = tx.now().await?;
    let (ids, skipped) = enqueue_in(&mut *tx, messages, now).await?;
    let events = tx.append_and_commit(&skipped, &[], now).await?;
    Ok((ids, events))
}

/// Where reservations under an overall limit lock first (PostgreSQL), so that limit is judged
/// one reservation at a time. Reservations without one (no `global_per_second`) judge nothing
/// overall and do not queue here: every sender sharing a store is meant to apply the same
/// limits.
const GLOBAL_KEY: &str = "*";

fn later(now: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn earlier(now: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Leases up to `limit` due messages for `lease`, each under a new fencing token, oldest due
/// first.
pub async fn lease(
    mut tx: Box<dyn WriteTx>,
    limit: u32,
    lease: std::time::Duration,
) -> Result<Vec<Leased>, StoreError> {
    let now = tx.now().await?;
    let mut list = tx.outbox_lease_due(now, later(now, lease), limit).await?;
    tx.commit().await?;
    list.sort_by_key(|l| (l.message.next_attempt_at, l.message.id));
    Ok(list)
}

/// A send slot for a leased message, judged right before sending: the lease must still be
/// this sender's; the chat's hold, a send in flight and the pacing limits decide whether it
/// goes now, waits a little, or goes back to the queue.
pub async fn reserve(mut tx: Box<dyn WriteTx>, req: &SlotRequest) -> Result<Slot, StoreError> {
    let Some(Leased { message: m, token }) = tx.outbox_lock(req.id).await? else {
        return Ok(Slot::LostLease);
    };
    if token != req.token || m.status != Status::Pending {
        return Ok(Slot::LostLease);
    }
    let slot = reserve_in(&mut *tx, &m, req, true).await?;
    tx.commit().await?;
    Ok(slot)
}

/// [`reserve`] inside `tx`, for message `m`, locked and leased under `req.token`. Without
/// `wait`, a [`Slot::Wait`] releases the lease (the message keeps its place in the queue), so
/// that the sender can go on with a chat whose turn has come.
async fn reserve_in(
    tx: &mut dyn WriteTx,
    m: &Message,
    req: &SlotRequest,
    wait: bool,
) -> Result<Slot, StoreError> {
    let key = pacing_key(m.channel, &m.target);
    if req.pacing.is_some_and(|p| p.global_per_second.is_some()) {
        tx.pacing_lock(GLOBAL_KEY).await?;
    }
    let chat = tx.pacing_lock(&key).await?;
    // The time is read with every lock held, so it orders after every send it judges.
    let now = tx.now().await?;
    let state = pace_state(
        tx,
        &chat,
        &key,
        is_group_chat(m.channel, &m.target),
        req,
        now,
    )
    .await?;
    let slot = slot_for(&state, req, now);
    let lease_until = later(now, req.lease);
    match slot {
        Slot::Go => {
            tx.pacing_start(&PacingStart {
                key: &key,
                at: now,
                id: req.id,
                token: req.token,
                until: lease_until,
                paced: req.pacing.is_some(),
                forget_before: earlier(now, GROUP_WINDOW),
            })
            .await?;
            tx.outbox_set_lease(req.id, lease_until, false).await?;
        }
        Slot::Wait(_) if !wait => tx.outbox_defer(req.id, m.next_attempt_at).await?,
        Slot::Wait(_) | Slot::LostLease => {
            tx.outbox_set_lease(req.id, lease_until, true).await?;
        }
        Slot::Deferred(wait) => tx.outbox_defer(req.id, later(now, wait)).await?,
    }
    Ok(slot)
}

async fn pace_state(
    tx: &mut dyn WriteTx,
    chat: &PacingRow,
    key: &str,
    group: bool,
    req: &SlotRequest,
    now: DateTime<Utc>,
) -> Result<PaceState, StoreError> {
    let mut st = PaceState {
        held_until: chat.held_until,
        last_sent: chat.last_sent,
        busy_until: chat.sending_until,
        ..PaceState::default()
    };
    if let Some(p) = &req.pacing {
        if let (true, Some(n)) = (group, p.group_per_minute) {
            st.group_nth = tx
                .pacing_nth_send(Some(key), n, earlier(now, GROUP_WINDOW))
                .await?;
        }
        if let Some(n) = p.global_per_second {
            st.global_nth = tx
                .pacing_nth_send(None, n, earlier(now, GLOBAL_WINDOW))
                .await?;
        }
    }
    Ok(st)
}

/// Records the outcome of an attempt on message `id`. With `token` (a sender's lease), only
/// while the message is still leased under it: `None` when it is not, and nothing is
/// recorded. Without one (attempts recorded by hand), whatever its lease. Either way the
/// chat's send in flight is over and a `retry_after` holds the chat.
pub async fn record(
    mut tx: Box<dyn WriteTx>,
    id: i64,
    token: Option<i64>,
    attempt: &Attempt,
    policy: &RetryPolicy,
    unit: f64,
) -> Result<Option<(Message, Vec<Event>)>, StoreError> {
    let Some(done) = record_in(&mut *tx, id, token, attempt, policy, unit).await? else {
        tx.commit().await?;
        return Ok(None);
    };
    let events = done.append_and_commit(tx).await?;
    Ok(Some((done.message, events)))
}

/// Records an attempt made under the lease `token` like [`record`] and, in the same
/// transaction, when it was recorded, leases the chat's next message (its new head, if due
/// and not leased) for `next.lease` and reserves its send slot with the request `next.request`
/// makes for it; it stays leased only when the slot is [`Slot::Go`]. A lane that keeps working
/// its chat thus costs one write transaction per message instead of three (a share of a
/// lease, a reservation, a record).
pub async fn record_next(
    mut tx: Box<dyn WriteTx>,
    id: i64,
    token: i64,
    attempt: &Attempt,
    policy: &RetryPolicy,
    unit: f64,
    next: &Next<'_>,
) -> Result<Recorded, StoreError> {
    let Some(done) = record_in(&mut *tx, id, Some(token), attempt, policy, unit).await? else {
        tx.commit().await?;
        return Ok(Recorded::default());
    };
    let mut after = None;
    if done.recorded {
        let m = &done.message;
        let lease_until = later(done.now, next.lease);
        if let Some(leased) = tx
            .outbox_lease_chat(m.channel, &m.target, done.now, lease_until)
            .await?
        {
            let req = (next.request)(&leased);
            // Only a message that can go now stays with the lane: one paced for a moment is
            // released for the next lease, which may hand the lane a chat whose turn has
            // come (as a lane that ends after its record would), and one put back in the
            // queue is not the lane's any more.
            if reserve_in(&mut *tx, &leased.message, &req, false).await? == Slot::Go {
                after = Some(leased);
            }
        }
    }
    // The events last, so that the log head's lock is the last one taken.
    let events = done.append_and_commit(tx).await?;
    Ok(Recorded {
        attempt: Some((done.message, events)),
        next: after,
    })
}

/// An attempt written inside a transaction, its event and audit record still to append.
struct Done {
    message: Message,
    /// Whether the attempt was recorded (not when the message had already ended).
    recorded: bool,
    now: DateTime<Utc>,
    events: Vec<NewEvent>,
    audit: Vec<NewAudit>,
}

impl Done {
    /// Appends the attempt's event and audit record, if it has them, and commits.
    async fn append_and_commit(&self, tx: Box<dyn WriteTx>) -> Result<Vec<Event>, StoreError> {
        tx.append_and_commit(&self.events, &self.audit, self.now)
            .await
    }
}

/// [`record`] inside `tx`, all but the append: `None` when the lease is not `token`'s (the
/// send in flight is over all the same, for the caller to commit).
async fn record_in(
    tx: &mut dyn WriteTx,
    id: i64,
    token: Option<i64>,
    attempt: &Attempt,
    policy: &RetryPolicy,
    unit: f64,
) -> Result<Option<Done>, StoreError> {
    let Some(Leased {
        message: current,
        token: held,
    }) = tx.outbox_lock(id).await?
    else {
        return Ok(None);
    };
    let now = tx.now().await?;
    if token.is_some_and(|t| held != t || current.status != Status::Pending) {
        // Not this sender's any more: nothing to record, but its send is over and
        // Telegram's hold stands.
        finish_send(tx, &current, token, attempt, now).await?;
        return Ok(None);
    }
    if current.status != Status::Pending {
        return Ok(Some(Done {
            message: current,
            recorded: false,
            now,
            events: vec![],
            audit: vec![],
        }));
    }
    finish_send(tx, &current, token, attempt, now).await?;
    let o = after_attempt(&current, attempt, policy, now, unit);
    tx.outbox_write(&o.message).await?;
    let subject = format!("outbox/{id}");
    let event = NewEvent::new(o.event, "gaia", &subject, o.data.clone());
    let audit: Vec<_> = (o.event == kinds::NOTIFY_DEAD)
        .then(|| NewAudit::new("gaia", kinds::NOTIFY_DEAD, &subject, "dead", o.data))
        .into_iter()
        .collect();
    Ok(Some(Done {
        message: o.message,
        recorded: true,
        now,
        events: vec![event],
        audit,
    }))
}

/// After an attempt on `m` (made under `token`, when known): the chat's send in flight, if it
/// is this one, is over, and the chat's pacing counts from now, after the answer, so arrivals
/// keep the interval whatever the latency; a `retry_after` holds the chat.
async fn finish_send(
    tx: &mut dyn WriteTx,
    m: &Message,
    token: Option<i64>,
    attempt: &Attempt,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let key = pacing_key(m.channel, &m.target);
    let chat = tx.pacing_lock(&key).await?;
    if chat.sending_id == Some(m.id) && token.is_none_or(|t| chat.sending_token == Some(t)) {
        tx.pacing_finish(&key, chat.last_sent, now).await?;
    }
    if let Attempt::RetryAfter(wait) = attempt {
        tx.pacing_hold(&key, later(now, *wait)).await?;
    }
    Ok(())
}

/// Puts a dead message back in the queue on behalf of `actor` (`auto`: the automatic
/// requeue). `None` when there is no such message or it is not dead.
pub async fn requeue(
    mut tx: Box<dyn WriteTx>,
    id: i64,
    actor: &str,
    auto: bool,
) -> Result<Option<(Message, Vec<Event>)>, StoreError> {
    let Some(Leased { message, .. }) = tx.outbox_lock(id).await? else {
        return Ok(None);
    };
    let now = tx.now().await?;
    let Some(back) = crate::outbox::requeue(&message, now) else {
        return Ok(None);
    };
    tx.outbox_write(&back).await?;
    let data = json!({
        "id": id,
        "requeues": back.requeues,
        "kind": back.kind,
        "channel": back.channel.as_str(),
        "outcome": if auto { "auto" } else { "manual" },
    });
    let subject = format!("outbox/{id}");
    let events = tx
        .append_and_commit(
            &[NewEvent::new(
                kinds::NOTIFY_REQUEUED,
                actor,
                &subject,
                data.clone(),
            )],
            &[NewAudit::new(
                actor,
                "notify.requeue",
                &subject,
                "requeued",
                data,
            )],
            now,
        )
        .await?;
    Ok(Some((back, events)))
}
