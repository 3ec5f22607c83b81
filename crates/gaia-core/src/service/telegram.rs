//! Telegram updates delivered to the webhook: each `update_id` is taken by one handler at a
//! time and, once handled, is done for good, so an update Telegram delivers again (it does
//! when an answer is slow or lost) is applied once, on any node.

use std::time::Duration;

use super::Gaia;
use crate::error::Error;
use crate::store::UpdateTake;

/// How long a handled update is remembered: Telegram gives up redelivering after a day.
const REMEMBER: Duration = Duration::from_secs(2 * 24 * 3600);

impl Gaia {
    /// Takes update `update_id` for handling for up to `hold` (a handler that dies holding it
    /// lets a redelivery take it once `hold` has passed).
    pub async fn take_telegram_update(
        &self,
        update_id: i64,
        hold: Duration,
    ) -> Result<UpdateTake, Error> {
        let now = self.store.now().await?;
        let until = now + chrono::Duration::from_std(hold).unwrap_or(chrono::Duration::MAX);
        Ok(self
            .store
            .telegram_update_take(update_id, now, until)
            .await?)
    }

    /// Marks update `update_id` as handled: a redelivery of it is acknowledged and ignored.
    pub async fn finish_telegram_update(&self, update_id: i64) -> Result<(), Error> {
        let now = self.store.now().await?;
        let forget = now - chrono::Duration::from_std(REMEMBER).unwrap_or(chrono::Duration::MAX);
        Ok(self.store.telegram_update_done(update_id, forget).await?)
    }
}
