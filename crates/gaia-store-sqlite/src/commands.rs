//! Command approval requests on SQLite. A write transaction holds SQLite's write lock, which
//! already excludes every other writer: a locking read is a plain read.

use sqlx::SqliteConnection;

use crate::SqliteStore;

gaia_store_sql::commands_sql!(
    store = SqliteStore,
    conn = SqliteConnection,
    for_update = "",
    skip_locked = "",
    {
        /// A read without the write lock: the reaper asks every second, and most of the time
        /// nothing is due.
        async fn command_any_due(&self) -> Result<bool, gaia_core::StoreError> {
            crate::error::boundary(async {
                let due: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM commands WHERE status = 'pending' AND expires_at_us <= $1",
                )
                .bind(gaia_core::time::to_micros(self.now_value()))
                .fetch_one(&self.pool)
                .await?;
                Ok(due > 0)
            })
            .await
        }
    }
);
