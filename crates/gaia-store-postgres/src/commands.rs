//! Command approval requests on PostgreSQL.

use async_trait::async_trait;
use gaia_core::StoreError;
use gaia_core::commands::{CommandRecord, Status};
use gaia_core::store::CommandStore;
use gaia_core::time::to_micros;
use sqlx::PgConnection;

use crate::PgStore;
use crate::error::{Db, boundary};
use gaia_store_sql::rows;

/// Writes every mutable column of `r` (the row exists).
pub(crate) async fn update(conn: &mut PgConnection, r: &CommandRecord) -> Db<()> {
    let execution = r
        .execution
        .as_ref()
        .map(|e| serde_json::to_string(e).unwrap_or_default());
    sqlx::query(
        "UPDATE commands SET status = $1, test_allowed = $2, decided_by = $3, decided_via = $4,
            decided_at_us = $5, decision_reason = $6, execution = $7
         WHERE id = $8",
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

/// The request `id`, locked (`FOR UPDATE`) until the transaction ends.
pub(crate) async fn lock(conn: &mut PgConnection, id: &str) -> Db<Option<CommandRecord>> {
    let found = sqlx::query("SELECT * FROM commands WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(rows::maybe(found, rows::command)?)
}

/// Pending requests expired by `now_us`, oldest expiry first, locked. SKIP LOCKED: a request
/// being decided right now is left to that decision.
pub(crate) async fn due(
    conn: &mut PgConnection,
    now_us: i64,
    limit: u32,
) -> Db<Vec<CommandRecord>> {
    let found = sqlx::query(
        "SELECT * FROM commands WHERE status = 'pending' AND expires_at_us <= $1
         ORDER BY expires_at_us LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(now_us)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows::all(&found, rows::command)?)
}

/// Inserts a new request; `false` when its id is taken.
pub(crate) async fn insert(conn: &mut PgConnection, r: &CommandRecord) -> Db<bool> {
    let spec = rows::spec_text(&r.spec)?;
    let inserted = sqlx::query(
        "INSERT INTO commands (id, spec, cwd, story, todolist, reason, requester, is_test,
            test_allowed, created_at_us, expires_at_us, status, binding)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
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
impl CommandStore for PgStore {
    async fn command_get(&self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        boundary(async {
            let found = sqlx::query("SELECT * FROM commands WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            Ok(rows::maybe(found, rows::command)?)
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
                "SELECT * FROM commands WHERE ($1::TEXT IS NULL OR status = $1)
                 ORDER BY created_at_us DESC, id LIMIT $2",
            )
            .bind(status.map(Status::as_str))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows::all(&found, rows::command)?)
        })
        .await
    }
}
