//! The notification outbox: enqueueing messages, listing them, requeueing dead ones.

use super::Gaia;
use crate::error::Error;
use crate::outbox::{AutoRequeuePolicy, Message, NewMessage, Status};

/// Dead messages considered by one automatic requeue run.
const AUTO_REQUEUE_SCAN: u32 = 10_000;

impl Gaia {
    /// Enqueues notifications (duplicates by dedupe key are skipped and counted).
    pub async fn enqueue_messages(&self, messages: &[NewMessage]) -> Result<Vec<i64>, Error> {
        let (ids, events) = self.store.outbox_enqueue(messages).await?;
        self.mirror(&events);
        Ok(ids)
    }

    /// Outbox messages, newest first.
    pub async fn list_messages(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        Ok(self.store.outbox_list(status, limit).await?)
    }

    /// Requeues one dead message. `NotFound` when there is no such dead message.
    pub async fn requeue_message(&self, id: i64, actor: &str) -> Result<Message, Error> {
        match self.store.outbox_requeue(id, actor, false).await? {
            Some((m, events)) => {
                self.mirror(&events);
                Ok(m)
            }
            None => Err(Error::NotFound(format!("no dead message #{id}"))),
        }
    }

    /// Requeues the dead messages the policy allows (oldest first, at most `max_per_run`).
    /// With `dry_run`, only says which.
    pub async fn auto_requeue_messages(
        &self,
        policy: &AutoRequeuePolicy,
        dry_run: bool,
        actor: &str,
    ) -> Result<Vec<Message>, Error> {
        let now = self.store.now().await?;
        let mut dead = self
            .store
            .outbox_list(Some(Status::Dead), AUTO_REQUEUE_SCAN)
            .await?;
        dead.reverse();
        let chosen: Vec<Message> = dead
            .into_iter()
            .filter(|m| policy.eligible(m, now))
            .take(policy.max_per_run as usize)
            .collect();
        if dry_run {
            return Ok(chosen);
        }
        let mut done = Vec::with_capacity(chosen.len());
        for m in chosen {
            // Another requeue may have got there first: skip it.
            if let Some((back, events)) = self.store.outbox_requeue(m.id, actor, true).await? {
                self.mirror(&events);
                done.push(back);
            }
        }
        Ok(done)
    }
}
