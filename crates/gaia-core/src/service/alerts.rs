//! Alerts: thresholds checked against the metrics, fired and resolved once across restarts
//! and nodes, and announced to the notify targets.

use serde_json::json;

use super::Gaia;
use crate::error::Error;
use crate::event::kinds;
use crate::metrics::{Check, Threshold, check};
use crate::outbox::NewMessage;

impl Gaia {
    /// Sends an alert to every notify target (Telegram first, console when Telegram is not
    /// configured). `payload` carries at least `text`.
    pub async fn notify_alert(&self, payload: serde_json::Value) -> Result<(), Error> {
        let messages: Vec<NewMessage> = self
            .notify
            .iter()
            .map(|t| NewMessage {
                channel: t.channel,
                target: t.target.clone(),
                kind: "alert".into(),
                payload: payload.clone(),
                dedupe_key: None,
            })
            .collect();
        self.enqueue_messages(&messages).await?;
        Ok(())
    }

    /// Checks the thresholds. Unless `dry_run`, a newly breached threshold fires once
    /// (`alert.fired`, an alert message to the notify targets) and a cleared one resolves
    /// (`alert.resolved`); the firing state is kept in the store, so restarts and several
    /// nodes do not fire twice.
    pub async fn check_alerts(
        &self,
        thresholds: &[Threshold],
        dry_run: bool,
    ) -> Result<Vec<Check>, Error> {
        let snapshot = self.get_metrics().await?;
        let checks = check(&snapshot, thresholds);
        if !dry_run {
            for c in &checks {
                self.update_alert(c).await?;
            }
        }
        Ok(checks)
    }

    /// Fires or resolves the alert of one check when its state changed.
    async fn update_alert(&self, c: &Check) -> Result<(), Error> {
        let key = format!("alert.firing.{}", c.metric);
        let firing = self.store.setting_get_or_init(&key, "0").await? == "1";
        let (kind, word) = match (c.breached, firing) {
            (true, false) => (kinds::ALERT_FIRED, "ALERT"),
            (false, true) => (kinds::ALERT_RESOLVED, "RESOLVED"),
            _ => return Ok(()),
        };
        let text = format!(
            "{word} {} = {} (threshold {})",
            c.metric, c.value, c.threshold
        );
        self.store
            .setting_set(&key, if c.breached { "1" } else { "0" })
            .await?;
        self.emit_event(kind, "gaia", &format!("alert/{}", c.metric), json!(c))
            .await?;
        self.notify_alert(json!({ "text": text, "metric": c.metric, "value": c.value }))
            .await?;
        Ok(())
    }
}
