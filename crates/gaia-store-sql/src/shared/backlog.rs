//! The backlog: the primitives of `gaia_core::usecase::backlog` (with the claim primitives it
//! shares with other use cases) and the [`BacklogStore`] reads.
//!
//! [`BacklogStore`]: gaia_core::store::BacklogStore

/// The ready-work query with the story filter `$filter`: `$1` now (µs), `$2` the story (when
/// the filter names it), `$3` limit, `$4` the agent whose own claims count as free, or NULL.
///
/// Stories are walked in their order and each one's tasks looked up by index (`CROSS JOIN`
/// keeps SQLite to that order even before it has statistics), so the query stops after `$3`
/// rows however large the backlog.
macro_rules! ready_sql {
    ($filter:literal) => {
        concat!(
            "SELECT t.* FROM stories s
    CROSS JOIN tasks t
    LEFT JOIN claims c ON c.key = t.story || '/' || t.todolist
    WHERE t.story = s.slug AND t.todolist = s.todolist
      AND s.status = 'open' AND t.status = 'todo'
      AND (c.agent IS NULL OR c.expires_at_us <= $1 OR c.agent = $4)",
            $filter,
            "
      AND NOT EXISTS (SELECT 1 FROM task_deps d JOIN tasks b ON b.id = d.blocker
                      WHERE d.task = t.id AND b.status <> 'done')
      AND (NOT t.is_final OR NOT EXISTS (
            SELECT 1 FROM tasks o WHERE o.story = t.story AND o.todolist = t.todolist
              AND o.id <> t.id AND o.status <> 'done'))
    ORDER BY s.created_at_us, s.slug, t.position
    LIMIT $3"
        )
    };
}

/// Ready work in every story (`$2` is bound but unused: NULL).
pub const READY: &str = ready_sql!(" AND CAST($2 AS TEXT) IS NULL");

/// Ready work in the story `$2` (found by its key, not by walking the others).
pub const READY_IN_STORY: &str = ready_sql!(" AND s.slug = $2");

/// Adds the backlog and claim-lock primitives (`backlog::*` on `$conn`) and `BacklogStore`
/// for `$store` to the calling backend. `for_update` ends a read that locks what it returns,
/// `skip_locked` one that locks it unless someone else holds it.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! backlog_sql {
    (
        store = $store:ty,
        conn = $conn:ty,
        for_update = $for_update:literal,
        skip_locked = $skip_locked:literal $(,)?
    ) => {
        $crate::backlog_sql!(@claims $conn, $skip_locked);
        $crate::backlog_sql!(@stories $conn, $for_update);
        $crate::backlog_sql!(@tasks $conn, $for_update);
        $crate::backlog_sql!(@followups $conn, $for_update);
        $crate::backlog_sql!(@reads $store);
    };
    (@claims $conn:ty, $skip_locked:literal) => {
        /// The claim row of `key`, locked unless another transaction holds it.
        pub(crate) async fn claim_try_lock(
            conn: &mut $conn,
            key: &::gaia_core::names::ClaimKey,
        ) -> crate::error::Db<::gaia_core::tx::TryLock> {
            let select = format!(
                "SELECT {} FROM claims WHERE key = $1{}",
                $crate::shared::claims::CLAIM_COLUMNS,
                $skip_locked
            );
            let found = ::sqlx::query(&select)
                .bind(key.to_string())
                .fetch_optional(&mut *conn)
                .await?;
            let found = match found {
                Some(row) => Some(row),
                None => {
                    // Missing, or locked by someone else. A plain read tells which without
                    // waiting; only a missing row is created (an insert that meets a row
                    // another transaction is changing would wait for it, and could deadlock
                    // with a writer that locks several keys).
                    let exists: Option<i64> =
                        ::sqlx::query_scalar("SELECT token FROM claims WHERE key = $1")
                            .bind(key.to_string())
                            .fetch_optional(&mut *conn)
                            .await?;
                    if exists.is_some() {
                        return Ok(::gaia_core::tx::TryLock::Busy);
                    }
                    ::sqlx::query(
                        "INSERT INTO claims (key, story, todolist, token, ttl_ms)
                         VALUES ($1, $2, $3, 0, 0) ON CONFLICT (key) DO NOTHING",
                    )
                    .bind(key.to_string())
                    .bind(&key.story)
                    .bind(&key.todolist)
                    .execute(&mut *conn)
                    .await?;
                    ::sqlx::query(&select)
                        .bind(key.to_string())
                        .fetch_optional(&mut *conn)
                        .await?
                }
            };
            let Some(row) = found else {
                return Ok(::gaia_core::tx::TryLock::Busy);
            };
            let row = $crate::rows::claim(&row)?;
            // A placeholder row means "never claimed".
            Ok(::gaia_core::tx::TryLock::Locked(
                (row.token > 0 || row.holder.is_some()).then_some(row),
            ))
        }

        /// The claim row of `key`, created empty when missing and locked either way.
        pub(crate) async fn claim_lock(
            conn: &mut $conn,
            key: &::gaia_core::names::ClaimKey,
        ) -> crate::error::Db<Option<::gaia_core::claims::ClaimRow>> {
            let row = ::sqlx::query(&format!(
                "INSERT INTO claims (key, story, todolist, token, ttl_ms) VALUES ($1, $2, $3, 0, 0)
                 ON CONFLICT (key) DO UPDATE SET key = claims.key
                 RETURNING {}",
                $crate::shared::claims::CLAIM_COLUMNS
            ))
            .bind(key.to_string())
            .bind(&key.story)
            .bind(&key.todolist)
            .fetch_one(&mut *conn)
            .await?;
            let row = $crate::rows::claim(&row)?;
            // A freshly created placeholder row means "never claimed".
            Ok((row.token > 0 || row.holder.is_some()).then_some(row))
        }

        pub(crate) async fn claim_write(
            conn: &mut $conn,
            row: &::gaia_core::claims::ClaimRow,
        ) -> crate::error::Db<()> {
            let holder = row.holder.as_ref();
            ::sqlx::query(
                "INSERT INTO claims (key, story, todolist, agent, operator, fingerprint, token,
                    acquired_at_us, expires_at_us, ttl_ms, principal)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (key) DO UPDATE SET
                    agent = excluded.agent, operator = excluded.operator,
                    fingerprint = excluded.fingerprint, token = excluded.token,
                    acquired_at_us = excluded.acquired_at_us,
                    expires_at_us = excluded.expires_at_us,
                    ttl_ms = excluded.ttl_ms, principal = excluded.principal",
            )
            .bind(row.key.to_string())
            .bind(&row.key.story)
            .bind(&row.key.todolist)
            .bind(holder.map(|h| h.agent.as_str()))
            .bind(holder.map(|h| h.operator.as_str()))
            .bind(holder.map(|h| h.fingerprint.as_str()))
            .bind(row.token)
            .bind(row.acquired_at.map(::gaia_core::time::to_micros))
            .bind(row.expires_at.map(::gaia_core::time::to_micros))
            .bind(i64::try_from(row.ttl.as_millis()).unwrap_or(i64::MAX))
            .bind(holder.and_then(|h| h.principal.as_deref()))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
    };
    (@stories $conn:ty, $for_update:literal) => {
        pub(crate) async fn story_lock(
            conn: &mut $conn,
            slug: &str,
        ) -> crate::error::Db<Option<::gaia_core::backlog::Story>> {
            let found = ::sqlx::query(concat!("SELECT * FROM stories WHERE slug = $1", $for_update))
                .bind(slug)
                .fetch_optional(&mut *conn)
                .await?;
            Ok($crate::rows::maybe(found, $crate::rows::backlog::story)?)
        }

        pub(crate) async fn story_insert(
            conn: &mut $conn,
            s: &::gaia_core::backlog::Story,
        ) -> crate::error::Db<bool> {
            let done = ::sqlx::query(
                "INSERT INTO stories (slug, title, description, status, labels, created_by,
                    created_at_us, updated_at_us, todolist, finalized_at_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (slug) DO NOTHING",
            )
            .bind(&s.slug)
            .bind(&s.title)
            .bind(&s.description)
            .bind(s.status.as_str())
            .bind($crate::rows::backlog::list_text(&s.labels))
            .bind(&s.created_by)
            .bind(::gaia_core::time::to_micros(s.created_at))
            .bind(::gaia_core::time::to_micros(s.updated_at))
            .bind(&s.todolist)
            .bind(s.finalized_at.map(::gaia_core::time::to_micros))
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(crate) async fn story_update(
            conn: &mut $conn,
            s: &::gaia_core::backlog::Story,
        ) -> crate::error::Db<()> {
            ::sqlx::query(
                "UPDATE stories SET title = $2, description = $3, status = $4, labels = $5,
                    updated_at_us = $6, todolist = $7, finalized_at_us = $8
                 WHERE slug = $1",
            )
            .bind(&s.slug)
            .bind(&s.title)
            .bind(&s.description)
            .bind(s.status.as_str())
            .bind($crate::rows::backlog::list_text(&s.labels))
            .bind(::gaia_core::time::to_micros(s.updated_at))
            .bind(&s.todolist)
            .bind(s.finalized_at.map(::gaia_core::time::to_micros))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        pub(crate) async fn todolist_insert(
            conn: &mut $conn,
            l: &::gaia_core::backlog::Todolist,
        ) -> crate::error::Db<bool> {
            let done = ::sqlx::query(
                "INSERT INTO todolists (story, name, created_at_us, finalized_at_us, archived_at_us)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (story, name) DO NOTHING",
            )
            .bind(&l.story)
            .bind(&l.name)
            .bind(::gaia_core::time::to_micros(l.created_at))
            .bind(l.finalized_at.map(::gaia_core::time::to_micros))
            .bind(l.archived_at.map(::gaia_core::time::to_micros))
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(crate) async fn todolist_archive(
            conn: &mut $conn,
            story: &str,
            from: &str,
            to: &str,
            at_us: i64,
        ) -> crate::error::Db<()> {
            ::sqlx::query("UPDATE tasks SET todolist = $3 WHERE story = $1 AND todolist = $2")
                .bind(story)
                .bind(from)
                .bind(to)
                .execute(&mut *conn)
                .await?;
            ::sqlx::query(
                "UPDATE todolists SET name = $3, archived_at_us = $4 WHERE story = $1 AND name = $2",
            )
            .bind(story)
            .bind(from)
            .bind(to)
            .bind(at_us)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        pub(crate) async fn todolist_finalize(
            conn: &mut $conn,
            story: &str,
            name: &str,
            at_us: i64,
        ) -> crate::error::Db<()> {
            ::sqlx::query("UPDATE todolists SET finalized_at_us = $3 WHERE story = $1 AND name = $2")
                .bind(story)
                .bind(name)
                .bind(at_us)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }
    };
    (@tasks $conn:ty, $for_update:literal) => {
        pub(crate) async fn tasks_in(
            conn: &mut $conn,
            story: &str,
            name: &str,
        ) -> crate::error::Db<Vec<::gaia_core::backlog::Task>> {
            let found = ::sqlx::query(
                "SELECT * FROM tasks WHERE story = $1 AND todolist = $2 ORDER BY position, id",
            )
            .bind(story)
            .bind(name)
            .fetch_all(&mut *conn)
            .await?;
            Ok($crate::rows::all(&found, $crate::rows::backlog::task)?)
        }

        pub(crate) async fn task_get(
            conn: &mut $conn,
            id: i64,
        ) -> crate::error::Db<Option<::gaia_core::backlog::Task>> {
            let found = ::sqlx::query("SELECT * FROM tasks WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            Ok($crate::rows::maybe(found, $crate::rows::backlog::task)?)
        }

        pub(crate) async fn task_lock(
            conn: &mut $conn,
            id: i64,
        ) -> crate::error::Db<Option<::gaia_core::backlog::Task>> {
            let found = ::sqlx::query(concat!("SELECT * FROM tasks WHERE id = $1", $for_update))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            Ok($crate::rows::maybe(found, $crate::rows::backlog::task)?)
        }

        pub(crate) async fn task_insert(
            conn: &mut $conn,
            t: &::gaia_core::backlog::Task,
        ) -> crate::error::Db<i64> {
            let id: i64 = ::sqlx::query_scalar(
                "INSERT INTO tasks (story, todolist, title, body, status, reason, worker, position,
                    blocked_by, is_final, created_by, created_at_us, updated_at_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 RETURNING id",
            )
            .bind(&t.story)
            .bind(&t.todolist)
            .bind(&t.title)
            .bind(&t.body)
            .bind(t.status.as_str())
            .bind(&t.reason)
            .bind(&t.worker)
            .bind(t.position)
            .bind($crate::rows::backlog::list_text(&t.blocked_by))
            .bind(t.is_final())
            .bind(&t.created_by)
            .bind(::gaia_core::time::to_micros(t.created_at))
            .bind(::gaia_core::time::to_micros(t.updated_at))
            .fetch_one(&mut *conn)
            .await?;
            for blocker in &t.blocked_by {
                ::sqlx::query(
                    "INSERT INTO task_deps (task, blocker) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(*blocker)
                .execute(&mut *conn)
                .await?;
            }
            Ok(id)
        }

        pub(crate) async fn task_update(
            conn: &mut $conn,
            t: &::gaia_core::backlog::Task,
        ) -> crate::error::Db<()> {
            ::sqlx::query(
                "UPDATE tasks SET title = $2, body = $3, status = $4, reason = $5, worker = $6,
                    position = $7, is_final = $8, updated_at_us = $9
                 WHERE id = $1",
            )
            .bind(t.id)
            .bind(&t.title)
            .bind(&t.body)
            .bind(t.status.as_str())
            .bind(&t.reason)
            .bind(&t.worker)
            .bind(t.position)
            .bind(t.is_final())
            .bind(::gaia_core::time::to_micros(t.updated_at))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        pub(crate) async fn ready_for(
            conn: &mut $conn,
            story: Option<&str>,
            agent: Option<&str>,
            now_us: i64,
            limit: u32,
        ) -> crate::error::Db<Vec<::gaia_core::backlog::Task>> {
            let sql = if story.is_some() {
                $crate::shared::backlog::READY_IN_STORY
            } else {
                $crate::shared::backlog::READY
            };
            let found = ::sqlx::query(sql)
                .bind(now_us)
                .bind(story)
                .bind(i64::from(limit))
                .bind(agent)
                .fetch_all(&mut *conn)
                .await?;
            Ok($crate::rows::all(&found, $crate::rows::backlog::task)?)
        }
    };
    (@followups $conn:ty, $for_update:literal) => {
        pub(crate) async fn followup_lock_path(
            conn: &mut $conn,
            path: &str,
        ) -> crate::error::Db<Option<::gaia_core::backlog::Followup>> {
            let found = ::sqlx::query(concat!("SELECT * FROM followups WHERE path = $1", $for_update))
                .bind(path)
                .fetch_optional(&mut *conn)
                .await?;
            Ok($crate::rows::maybe(found, $crate::rows::backlog::followup)?)
        }

        pub(crate) async fn followup_lock(
            conn: &mut $conn,
            id: i64,
        ) -> crate::error::Db<Option<::gaia_core::backlog::Followup>> {
            let found = ::sqlx::query(concat!("SELECT * FROM followups WHERE id = $1", $for_update))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            Ok($crate::rows::maybe(found, $crate::rows::backlog::followup)?)
        }

        pub(crate) async fn followup_insert(
            conn: &mut $conn,
            f: &::gaia_core::backlog::Followup,
        ) -> crate::error::Db<Option<i64>> {
            Ok(::sqlx::query_scalar(
                "INSERT INTO followups (path, hash, story, agent, task, title, body, status,
                    reason, task_id, decided_by, created_at_us, updated_at_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (path) DO NOTHING
                 RETURNING id",
            )
            .bind(&f.path)
            .bind(&f.hash)
            .bind(&f.story)
            .bind(&f.agent)
            .bind(&f.task)
            .bind(&f.title)
            .bind(&f.body)
            .bind(f.status.as_str())
            .bind(&f.reason)
            .bind(f.task_id)
            .bind(&f.decided_by)
            .bind(::gaia_core::time::to_micros(f.created_at))
            .bind(::gaia_core::time::to_micros(f.updated_at))
            .fetch_optional(&mut *conn)
            .await?)
        }

        pub(crate) async fn followup_update(
            conn: &mut $conn,
            f: &::gaia_core::backlog::Followup,
        ) -> crate::error::Db<()> {
            ::sqlx::query(
                "UPDATE followups SET hash = $2, story = $3, agent = $4, task = $5, title = $6,
                    body = $7, status = $8, reason = $9, task_id = $10, decided_by = $11,
                    updated_at_us = $12
                 WHERE id = $1",
            )
            .bind(f.id)
            .bind(&f.hash)
            .bind(&f.story)
            .bind(&f.agent)
            .bind(&f.task)
            .bind(&f.title)
            .bind(&f.body)
            .bind(f.status.as_str())
            .bind(&f.reason)
            .bind(f.task_id)
            .bind(&f.decided_by)
            .bind(::gaia_core::time::to_micros(f.updated_at))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
    };
    (@reads $store:ty) => {
        #[::async_trait::async_trait]
        impl ::gaia_core::store::BacklogStore for $store {
            async fn story_get(
                &self,
                slug: &str,
            ) -> Result<Option<::gaia_core::backlog::Story>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query("SELECT * FROM stories WHERE slug = $1")
                        .bind(slug)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok($crate::rows::maybe(found, $crate::rows::backlog::story)?)
                })
                .await
            }

            async fn story_list(
                &self,
                status: Option<::gaia_core::backlog::StoryStatus>,
                limit: u32,
            ) -> Result<Vec<::gaia_core::backlog::Story>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(
                        "SELECT * FROM stories WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
                         ORDER BY created_at_us, slug LIMIT $2",
                    )
                    .bind(status.map(::gaia_core::backlog::StoryStatus::as_str))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok($crate::rows::all(&found, $crate::rows::backlog::story)?)
                })
                .await
            }

            async fn todolist_list(
                &self,
                story: &str,
            ) -> Result<Vec<::gaia_core::backlog::Todolist>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(
                        "SELECT * FROM todolists WHERE story = $1 ORDER BY created_at_us, name",
                    )
                    .bind(story)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok($crate::rows::all(&found, $crate::rows::backlog::todolist)?)
                })
                .await
            }

            async fn task_list(
                &self,
                story: &str,
                name: &str,
            ) -> Result<Vec<::gaia_core::backlog::Task>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let mut conn = self.pool.acquire().await?;
                    tasks_in(&mut conn, story, name).await
                })
                .await
            }

            async fn task_get(
                &self,
                id: i64,
            ) -> Result<Option<::gaia_core::backlog::Task>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let mut conn = self.pool.acquire().await?;
                    task_get(&mut conn, id).await
                })
                .await
            }

            async fn ready(
                &self,
                story: Option<&str>,
                now: ::chrono::DateTime<::chrono::Utc>,
                limit: u32,
            ) -> Result<Vec<::gaia_core::backlog::Task>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let mut conn = self.pool.acquire().await?;
                    ready_for(&mut conn, story, None, ::gaia_core::time::to_micros(now), limit)
                        .await
                })
                .await
            }

            async fn followup_list(
                &self,
                status: Option<::gaia_core::backlog::FollowupStatus>,
                limit: u32,
            ) -> Result<Vec<::gaia_core::backlog::Followup>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query(
                        "SELECT * FROM followups WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
                         ORDER BY id LIMIT $2",
                    )
                    .bind(status.map(::gaia_core::backlog::FollowupStatus::as_str))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    Ok($crate::rows::all(&found, $crate::rows::backlog::followup)?)
                })
                .await
            }

            async fn followup_get(
                &self,
                id: i64,
            ) -> Result<Option<::gaia_core::backlog::Followup>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let found = ::sqlx::query("SELECT * FROM followups WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok($crate::rows::maybe(found, $crate::rows::backlog::followup)?)
                })
                .await
            }
        }
    };
}
