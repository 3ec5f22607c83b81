//! Claims: acquiring, refreshing and releasing keys, reading their state, reaping expired ones.

use std::time::Duration;

use super::Gaia;
use crate::claims::{ClaimResult, ClaimRow, Outcome, Request};
use crate::error::{Error, StoreError};
use crate::event::Event;
use crate::names::ClaimKey;

impl Gaia {
    /// Acquires, refreshes or releases a claim, as the request says. A lock timeout is an
    /// outcome, not an error: the caller is expected to retry.
    pub async fn apply_claim(&self, req: &Request) -> Result<ClaimResult, Error> {
        match self.store.claim(req).await {
            Ok((result, events)) => {
                self.mirror(&events);
                Ok(result)
            }
            Err(StoreError::LockTimeout) => Ok(ClaimResult::lock_timeout(req.key().clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// The state of one key (`free` when it was never claimed).
    pub async fn get_claim(&self, key: &ClaimKey) -> Result<ClaimResult, Error> {
        let now = self.store.now().await?;
        let row = self
            .store
            .claim_get(key)
            .await?
            .unwrap_or_else(|| ClaimRow::vacant(key.clone()));
        Ok(ClaimResult::observe(&row, now))
    }

    /// Live claims; with `all`, also those whose TTL passed without a release.
    pub async fn list_claims(&self, all: bool) -> Result<Vec<ClaimResult>, Error> {
        let now = self.store.now().await?;
        Ok(self
            .store
            .claim_list()
            .await?
            .iter()
            .filter(|row| all || row.is_live(now))
            .map(|row| ClaimResult::observe(row, now))
            .collect())
    }

    /// Emits `claim.expired` for acquisitions whose TTL passed without a release.
    pub async fn reap_claims(&self, limit: u32) -> Result<Vec<Event>, Error> {
        let events = self.store.claim_reap(limit).await?;
        self.mirror(&events);
        Ok(events)
    }

    /// Takes the claim `key` as a leader lease for `holder` (a node's name), or renews it when
    /// `held`: whether `holder` holds it now. One node of a deployment runs a singleton worker
    /// (the Telegram poller, the scheduled GitHub sync) while it holds the lease; a holder that
    /// stops renewing loses it after `ttl`.
    pub async fn hold_lease(
        &self,
        key: &ClaimKey,
        holder: &str,
        ttl: Duration,
        held: bool,
    ) -> Result<bool, Error> {
        let req = if held {
            Request::refresh(key.clone(), holder, None, Some(ttl))?
        } else {
            Request::acquire(key.clone(), holder, Some("gaia"), Some(holder), Some(ttl))?
        };
        let res = self.apply_claim(&req).await?;
        Ok(matches!(
            res.outcome,
            Outcome::Acquired | Outcome::AlreadyHeld | Outcome::TakenOver | Outcome::Refreshed
        ))
    }

    /// Lets go of the lease `holder` holds on `key`, so another node need not wait for it to
    /// lapse.
    pub async fn release_lease(&self, key: &ClaimKey, holder: &str) -> Result<(), Error> {
        self.apply_claim(&Request::release(key.clone(), holder, None)?)
            .await?;
        Ok(())
    }
}
