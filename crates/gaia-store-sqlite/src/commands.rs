//! Command approval requests on SQLite.

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::commands::{CommandRecord, Status};
use gaia_core::store::CommandStore;
use gaia_core::time::to_micros;
use sqlx::SqliteConnection;

use crate::SqliteStore;
use crate::error::{Db, boundary};
use gaia_store_sql::rows;

/// Writes every mutable column of `r` (the row exists).
pub(crate) async fn update(conn: &mut SqliteConnection, r: &CommandRecord) -> Db<()> {
    let execution = r
        .execution
        .as_ref()
        .map(|e| serde_json::to_string(e).unwrap_or_default());
    sqlx::query(
        "UPDATE commands SET status = ?, test_allowed = ?, decided_by = ?, decided_via = ?,
            decided_at_us = ?, decision_reason = ?, execution = ?
         WHERE id = ?",
    )
    .bind(r.status.as_str())
    .bind(r.test_allowed)
    .bind(&r.decided_by)
    .bind(&r.decided_via)
    .bind(r.decided_at.map(to_micros))
    .bind(&r.decision_reason)
    .bind(execution)
    .bind(&r.id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The request `id`. Inside a write transaction the write lock already excludes every other
/// writer, so reading it is locking it.
pub(crate) async fn get(conn: &mut SqliteConnection, id: &str) -> Db<Option<CommandRecord>> {
    let found = sqlx::query("SELECT * FROM commands WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(rows::maybe(found, rows::command)?)
}

/// The request `id`, locked: the write lock already excludes every other writer, so reading
/// it inside a write transaction is locking it.
pub(crate) async fn lock(conn: &mut SqliteConnection, id: &str) -> Db<Option<CommandRecord>> {
    get(conn, id).await
}

/// Pending requests expired by `now_us`, oldest expiry first.
pub(crate) async fn due(
    conn: &mut SqliteConnection,
    now_us: i64,
    limit: u32,
) -> Db<Vec<CommandRecord>> {
    let found = sqlx::query(
        "SELECT * FROM commands WHERE status = 'pending' AND expires_at_us <= ?
         ORDER BY expires_at_us LIMIT ?",
    )
    .bind(now_us)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows::all(&found, rows::command)?)
}

/// Inserts a new request; `false` when its id is taken.
pub(crate) async fn insert(conn: &mut SqliteConnection, r: &CommandRecord) -> Db<bool> {
    let spec = rows::spec_text(&r.spec)?;
    let inserted = sqlx::query(
        "INSERT INTO commands (id, spec, cwd, story, todolist, reason, requester, is_test,
            test_allowed, created_at_us, expires_at_us, status, binding)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&r.id)
    .bind(spec)
    .bind(&r.cwd)
    .bind(&r.story)
    .bind(&r.todolist)
    .bind(&r.reason)
    .bind(&r.requester)
    .bind(r.is_test)
    .bind(r.test_allowed)
    .bind(to_micros(r.created_at))
    .bind(to_micros(r.expires_at))
    .bind(r.status.as_str())
    .bind(&r.binding)
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

#[async_trait]
impl CommandStore for SqliteStore {
    async fn command_get(&self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        boundary(async {
            let mut conn = self.pool.acquire().await?;
            get(&mut conn, id).await
        })
        .await
    }

    async fn command_list(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        boundary(async {
            let found = sqlx::query(
                "SELECT * FROM commands WHERE (?1 IS NULL OR status = ?1)
                 ORDER BY created_at_us DESC, id LIMIT ?2",
            )
            .bind(status.map(Status::as_str))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows::all(&found, rows::command)?)
        })
        .await
    }

    /// A read without the write lock: the reaper asks every second, and most of the time
    /// nothing is due.
    async fn command_any_due(&self) -> Result<bool, StoreError> {
        boundary(async {
            let due: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM commands WHERE status = 'pending' AND expires_at_us <= ?",
            )
            .bind(to_micros(self.now_value()))
            .fetch_one(&self.pool)
            .await?;
            Ok(due > 0)
        })
        .await
    }
}
