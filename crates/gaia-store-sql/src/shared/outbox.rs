//! The notification outbox: the outbox and pacing primitives of `gaia_core::usecase::outbox`
//! and the [`OutboxStore`] reads.
//!
//! [`OutboxStore`]: gaia_core::store::OutboxStore

/// Adds the `outbox::*` primitives on `$conn` and `OutboxStore` for `$store` to the calling
/// backend. Dialect: `for_update` ends a read that locks the row it returns, `skip_locked` the
/// lease query (rows another sender is leasing are skipped), `greatest` names the two-argument
/// maximum, and `outcome` reads `events.data`'s `outcome` field as text.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! outbox_sql {
    (
        store = $store:ty,
        conn = $conn:ty,
        for_update = $for_update:literal,
        skip_locked = $skip_locked:literal,
        greatest = $greatest:literal,
        outcome = $outcome:literal $(,)?
    ) => {
        pub(crate) async fn write(
            conn: &mut $conn,
            m: &::gaia_core::outbox::Message,
        ) -> crate::error::Db<()> {
            ::sqlx::query(
                "UPDATE outbox SET status = $1, attempts = $2, requeues = $3,
                    next_attempt_at_us = $4, leased_until_us = 0, last_error = $5,
                    sent_at_us = $6, dead_at_us = $7, result = $8
                 WHERE id = $9",
            )
            .bind(m.status.as_str())
            .bind(i64::from(m.attempts))
            .bind(i64::from(m.requeues))
            .bind(::gaia_core::time::to_micros(m.next_attempt_at))
            .bind(&m.last_error)
            .bind(m.sent_at.map(::gaia_core::time::to_micros))
            .bind(m.dead_at.map(::gaia_core::time::to_micros))
            .bind(m.result.as_ref().map($crate::serde_json::Value::to_string))
            .bind(m.id)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Leases due messages until `until_us`, each under a new token: only the head of
        /// each chat (its oldest pending message), so that a chat's messages go out in order
        /// whichever sender or node leases them, and one chat never takes more than one lane.
        pub(crate) async fn lease_due(
            conn: &mut $conn,
            now_us: i64,
            until_us: i64,
            limit: u32,
        ) -> crate::error::Db<Vec<::gaia_core::outbox::Leased>> {
            let found = ::sqlx::query(concat!(
                "UPDATE outbox SET leased_until_us = $1, lease_token = lease_token + 1
                 WHERE id IN (SELECT o.id FROM outbox o
                              WHERE o.status = 'pending' AND o.next_attempt_at_us <= $2
                                AND o.leased_until_us <= $2
                                AND NOT EXISTS (
                                    SELECT 1 FROM outbox e
                                    WHERE e.status = 'pending' AND e.channel = o.channel
                                      AND e.target = o.target AND e.id < o.id)
                              ORDER BY o.next_attempt_at_us, o.id LIMIT $3",
                $skip_locked,
                ") RETURNING *"
            ))
            .bind(until_us)
            .bind(now_us)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            Ok($crate::rows::all(&found, $crate::rows::leased)?)
        }

        /// Leases the head of one chat until `until_us` under a new token, if it is due by
        /// `now_us` and not leased (the chat's pending messages are found by the partial
        /// index `outbox_chat_pending`).
        pub(crate) async fn lease_chat(
            conn: &mut $conn,
            channel: &str,
            target: &str,
            now_us: i64,
            until_us: i64,
        ) -> crate::error::Db<Option<::gaia_core::outbox::Leased>> {
            let found = ::sqlx::query(
                "UPDATE outbox SET leased_until_us = $1, lease_token = lease_token + 1
                 WHERE id = (SELECT h.id FROM outbox h
                             WHERE h.status = 'pending' AND h.channel = $2 AND h.target = $3
                             ORDER BY h.id LIMIT 1)
                   AND status = 'pending' AND next_attempt_at_us <= $4
                   AND leased_until_us <= $4
                 RETURNING *",
            )
            .bind(until_us)
            .bind(channel)
            .bind(target)
            .bind(now_us)
            .fetch_optional(&mut *conn)
            .await?;
            Ok($crate::rows::maybe(found, $crate::rows::leased)?)
        }

        /// Message `id` with its lease token, locked.
        pub(crate) async fn lock(
            conn: &mut $conn,
            id: i64,
        ) -> crate::error::Db<Option<::gaia_core::outbox::Leased>> {
            let found = ::sqlx::query(concat!("SELECT * FROM outbox WHERE id = $1", $for_update))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            Ok($crate::rows::maybe(found, $crate::rows::leased)?)
        }

        pub(crate) async fn set_lease(
            conn: &mut $conn,
            id: i64,
            until_us: i64,
            keep_later: bool,
        ) -> crate::error::Db<()> {
            let sql = if keep_later {
                concat!(
                    "UPDATE outbox SET leased_until_us = ",
                    $greatest,
                    "(leased_until_us, $1) WHERE id = $2"
                )
            } else {
                "UPDATE outbox SET leased_until_us = $1 WHERE id = $2"
            };
            ::sqlx::query(sql)
                .bind(until_us)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        pub(crate) async fn defer(conn: &mut $conn, id: i64, at_us: i64) -> crate::error::Db<()> {
            ::sqlx::query(
                "UPDATE outbox SET next_attempt_at_us = $1, leased_until_us = 0 WHERE id = $2",
            )
            .bind(at_us)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// The pacing row of `key`, created empty when missing, locked until the transaction
        /// ends.
        pub(crate) async fn pacing_lock(
            conn: &mut $conn,
            key: &str,
        ) -> crate::error::Db<::gaia_core::tx::PacingRow> {
            // One statement: the upsert creates the row or, on conflict, locks it (a no-op
            // update) and returns it as it stands.
            let row = ::sqlx::query(
                "INSERT INTO outbox_pacing (chat) VALUES ($1)
                 ON CONFLICT (chat) DO UPDATE SET chat = excluded.chat
                 RETURNING held_until_us, last_sent_us, sending_id, sending_token,
                    sending_until_us",
            )
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
            Ok($crate::rows::pacing(&row)?)
        }

        pub(crate) async fn pacing_nth_send(
            conn: &mut $conn,
            chat: Option<&str>,
            n: u32,
            after_us: i64,
        ) -> crate::error::Db<Option<::chrono::DateTime<::chrono::Utc>>> {
            let at: Option<i64> = ::sqlx::query_scalar(
                "SELECT at_us FROM outbox_sends
                 WHERE (CAST($1 AS TEXT) IS NULL OR chat = $1) AND at_us > $2
                 ORDER BY at_us DESC LIMIT 1 OFFSET $3",
            )
            .bind(chat)
            .bind(after_us)
            .bind(i64::from(n.max(1) - 1))
            .fetch_optional(&mut *conn)
            .await?;
            Ok(at.map(::gaia_core::time::from_micros))
        }

        pub(crate) async fn pacing_start(
            conn: &mut $conn,
            s: &::gaia_core::tx::PacingStart<'_>,
        ) -> crate::error::Db<()> {
            let at = ::gaia_core::time::to_micros(s.at);
            ::sqlx::query(
                "UPDATE outbox_pacing SET last_sent_us = $1, sending_id = $2, sending_token = $3,
                    sending_until_us = $4
                 WHERE chat = $5",
            )
            .bind(at)
            .bind(s.id)
            .bind(s.token)
            .bind(::gaia_core::time::to_micros(s.until))
            .bind(s.key)
            .execute(&mut *conn)
            .await?;
            if s.paced {
                ::sqlx::query("INSERT INTO outbox_sends (chat, at_us) VALUES ($1, $2)")
                    .bind(s.key)
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
                ::sqlx::query("DELETE FROM outbox_sends WHERE at_us <= $1")
                    .bind(::gaia_core::time::to_micros(s.forget_before))
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }

        pub(crate) async fn pacing_finish(
            conn: &mut $conn,
            key: &str,
            reserved_us: i64,
            at_us: i64,
        ) -> crate::error::Db<()> {
            ::sqlx::query("UPDATE outbox_sends SET at_us = $1 WHERE chat = $2 AND at_us = $3")
                .bind(at_us)
                .bind(key)
                .bind(reserved_us)
                .execute(&mut *conn)
                .await?;
            ::sqlx::query(concat!(
                "UPDATE outbox_pacing SET last_sent_us = ",
                $greatest,
                "(last_sent_us, $1), sending_id = NULL, sending_token = NULL,
                    sending_until_us = 0
                 WHERE chat = $2"
            ))
            .bind(at_us)
            .bind(key)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        pub(crate) async fn pacing_hold(
            conn: &mut $conn,
            key: &str,
            until_us: i64,
        ) -> crate::error::Db<()> {
            ::sqlx::query(concat!(
                "INSERT INTO outbox_pacing (chat, held_until_us) VALUES ($1, $2)
                 ON CONFLICT (chat) DO UPDATE SET held_until_us = ",
                $greatest,
                "(outbox_pacing.held_until_us, excluded.held_until_us)"
            ))
            .bind(key)
            .bind(until_us)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Inserts a pending message due at `now_us`; `None` when its dedupe key was seen
        /// before.
        pub(crate) async fn insert(
            conn: &mut $conn,
            m: &::gaia_core::outbox::NewMessage,
            now_us: i64,
        ) -> crate::error::Db<Option<i64>> {
            Ok(::sqlx::query_scalar(
                "INSERT INTO outbox (channel, target, kind, payload, dedupe_key, status, attempts,
                    requeues, created_at_us, next_attempt_at_us)
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, 0, $6, $6)
                 ON CONFLICT (dedupe_key) DO NOTHING
                 RETURNING id",
            )
            .bind(m.channel.as_str())
            .bind(&m.target)
            .bind(&m.kind)
            .bind(m.payload.to_string())
            .bind(&m.dedupe_key)
            .bind(now_us)
            .fetch_optional(&mut *conn)
            .await?)
        }

        #[::async_trait::async_trait]
        impl ::gaia_core::store::OutboxStore for $store {
            async fn outbox_get(
                &self,
                id: i64,
            ) -> Result<Option<::gaia_core::outbox::Message>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query("SELECT * FROM outbox WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok($crate::rows::maybe(found, $crate::rows::message)?)
                })
                .await
            }

            async fn outbox_by_key(
                &self,
                dedupe_key: &str,
            ) -> Result<Option<::gaia_core::outbox::Message>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query("SELECT * FROM outbox WHERE dedupe_key = $1")
                        .bind(dedupe_key)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok($crate::rows::maybe(found, $crate::rows::message)?)
                })
                .await
            }

            async fn outbox_list(
                &self,
                status: Option<::gaia_core::outbox::Status>,
                limit: u32,
            ) -> Result<Vec<::gaia_core::outbox::Message>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(
                        "SELECT * FROM outbox WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
                         ORDER BY id DESC LIMIT $2",
                    )
                    .bind(status.map(::gaia_core::outbox::Status::as_str))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok($crate::rows::all(&found, $crate::rows::message)?)
                })
                .await
            }

            async fn notify_event_counts(
                &self,
            ) -> Result<Vec<(String, String, u64)>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(concat!(
                        "SELECT type, COALESCE(",
                        $outcome,
                        ", '') AS outcome, COUNT(*) AS n FROM events
                         WHERE type LIKE 'notify.%' GROUP BY 1, 2"
                    ))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok($crate::rows::all(&found, $crate::rows::event_count)?)
                })
                .await
            }

            async fn outbox_counts(
                &self,
            ) -> Result<::gaia_core::store::OutboxCounts, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found =
                        ::sqlx::query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
                            .fetch_all(&self.pool)
                            .await?;
                    let mut counts = ::gaia_core::store::OutboxCounts::default();
                    for row in &found {
                        $crate::rows::add_status_count(&mut counts, row)?;
                    }
                    Ok(counts)
                })
                .await
            }
        }
    };
}
