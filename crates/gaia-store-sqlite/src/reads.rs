//! The connections a serving store reads on, kept between reads instead of handed back to
//! sqlx's pool.
//!
//! sqlx checks every connection handed back to its pool with a round trip to the
//! connection's thread, so a read through the pool costs two hand-offs to that thread and two
//! wake-ups back: the statement and the check. On SQLite the connection is in this process and
//! a hand-off is most of a short read's cost, and the check finds nothing a statement would
//! not: a read that ends well leaves its connection as it found it (outside any
//! transaction). [`Reads`] keeps such connections for the next read; a read that fails or is
//! cancelled hands its connection back to the pool, whose check then decides whether it is
//! still usable.
//!
//! `&Reads` is an [`Executor`], so the shared SQL runs on it as on a pool. Writes do not go
//! through it: they take turns in the store's writer group, on connections of the pool.

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use gaia_store_sql::kept::Kept;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteQueryResult, SqliteRow, SqliteStatement, SqliteTypeInfo};
use sqlx::{Describe, Either, Execute, Executor, Sqlite, SqlitePool};

/// The pool and the connections kept from it for reads.
#[derive(Debug, Clone)]
pub(crate) struct Reads {
    pool: SqlitePool,
    /// Up to half the pool, so that the writers and the reads that find none kept always
    /// have connections left in it.
    kept: Arc<Kept<Sqlite>>,
}

impl Reads {
    /// Reads on `pool`, keeping up to half its connections (none for a pool of one, whose
    /// only connection the writers need too).
    pub(crate) fn new(pool: SqlitePool, max_connections: u32) -> Self {
        Self {
            pool,
            kept: Arc::new(Kept::new(usize::try_from(max_connections / 2).unwrap_or(0))),
        }
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A connection of the pool, for work of several statements (the pool's own loan).
    pub(crate) async fn acquire(&self) -> Result<PoolConnection<Sqlite>, sqlx::Error> {
        self.pool.acquire().await
    }

    /// A transaction on a connection of the pool, begun with `statement`.
    pub(crate) async fn begin_with(
        &self,
        statement: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with(statement).await
    }

    /// Hands every kept connection back to the pool and keeps none from now on: closing the
    /// pool waits for every connection lent out, and kept ones count as lent.
    pub(crate) fn release(&self) {
        self.kept.release();
    }

    /// A connection for one read: a kept one, or one from the pool.
    async fn take(&self) -> Result<Loan, sqlx::Error> {
        let conn = match self.kept.take() {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        Ok(Loan {
            conn,
            kept: self.kept.clone(),
        })
    }
}

/// A connection lent out for one read. Dropped, it goes back to the pool (and its check);
/// [`Loan::keep`] keeps it for the next read instead.
struct Loan {
    conn: PoolConnection<Sqlite>,
    kept: Arc<Kept<Sqlite>>,
}

impl Loan {
    /// Keeps the connection of a read that ended well, while fewer than the most are kept
    /// and the store is open.
    fn keep(self) {
        self.kept.put(self.conn);
    }
}

impl<'p> Executor<'p> for &'_ Reads {
    type Database = Sqlite;

    /// Runs `query` to the end and then streams its results: a read's results are collected
    /// anyway (the shared SQL reads rows with `fetch_all`, `fetch_one` or `fetch_optional`),
    /// and the connection is kept only once the statement is over.
    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::stream::BoxStream<
        'e,
        Result<Either<SqliteQueryResult, SqliteRow>, sqlx::Error>,
    >
    where
        E: 'q + Execute<'q, Self::Database>,
    {
        let reads = self.clone();
        let all = async move {
            let mut loan = reads.take().await?;
            let results: Vec<_> = (&mut *loan.conn).fetch_many(query).try_collect().await?;
            loan.keep();
            Ok::<_, sqlx::Error>(futures_util::stream::iter(results.into_iter().map(Ok)))
        };
        futures_util::stream::once(all).try_flatten().boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::future::BoxFuture<'e, Result<Option<SqliteRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Self::Database>,
    {
        let reads = self.clone();
        Box::pin(async move {
            let mut loan = reads.take().await?;
            let row = (&mut *loan.conn).fetch_optional(query).await?;
            loan.keep();
            Ok(row)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [SqliteTypeInfo],
    ) -> futures_util::future::BoxFuture<'e, Result<SqliteStatement<'q>, sqlx::Error>> {
        let reads = self.clone();
        Box::pin(async move {
            let mut loan = reads.take().await?;
            let statement = (&mut *loan.conn).prepare_with(sql, parameters).await?;
            loan.keep();
            Ok(statement)
        })
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> futures_util::future::BoxFuture<'e, Result<Describe<Sqlite>, sqlx::Error>> {
        let reads = self.clone();
        Box::pin(async move {
            let mut loan = reads.take().await?;
            let described = (&mut *loan.conn).describe(sql).await?;
            loan.keep();
            Ok(described)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    use super::*;

    /// Reads on a pool of `max` connections over a fresh database in the temp directory.
    async fn reads(name: &str, max: u32) -> (Reads, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "gaia-reads-{name}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let connect = SqliteConnectOptions::from_str("sqlite:")
            .expect("options")
            .filename(dir.join("reads.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .test_before_acquire(false)
            .connect_with(connect)
            .await
            .expect("pool");
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(&pool)
            .await
            .expect("table");
        (Reads::new(pool, max), dir)
    }

    fn kept(r: &Reads) -> usize {
        r.kept.len()
    }

    #[tokio::test]
    async fn reads_keep_at_most_half_the_pool() {
        let (r, dir) = reads("half", 4).await;
        let all = (0..16).map(|i| {
            let r = r.clone();
            async move {
                let n: i64 = sqlx::query_scalar("SELECT $1 + COUNT(*) FROM t")
                    .bind(i)
                    .fetch_one(&r)
                    .await
                    .expect("read");
                assert_eq!(n, i);
            }
        });
        futures_util::future::join_all(all).await;
        assert!(kept(&r) >= 1, "a read that ended well keeps its connection");
        assert!(kept(&r) <= 2, "kept {} of a pool of 4", kept(&r));
        // Every kind of call runs on kept connections: rows, none, a write in autocommit.
        let rows = sqlx::query("SELECT n FROM t")
            .fetch_all(&r)
            .await
            .expect("all");
        assert!(rows.is_empty());
        sqlx::query("INSERT INTO t (n) VALUES (1)")
            .execute(&r)
            .await
            .expect("insert");
        let one: Option<i64> = sqlx::query_scalar("SELECT n FROM t")
            .fetch_optional(&r)
            .await
            .expect("optional");
        assert_eq!(one, Some(1));
        r.release();
        assert_eq!(kept(&r), 0);
        tokio::time::timeout(Duration::from_secs(5), r.pool().close())
            .await
            .expect("the pool closes once kept connections are handed back");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_failed_or_cancelled_read_hands_its_connection_back() {
        let (r, dir) = reads("failed", 4).await;
        let err = sqlx::query("SELECT * FROM missing").fetch_all(&r).await;
        assert!(err.is_err());
        assert_eq!(
            kept(&r),
            0,
            "a failed read's connection goes back to the pool"
        );
        // A read abandoned before it ends keeps nothing either.
        let slow = sqlx::query_scalar::<_, i64>(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000)
             SELECT COUNT(*) FROM c",
        )
        .fetch_one(&r);
        assert!(
            tokio::time::timeout(Duration::from_millis(1), slow)
                .await
                .is_err()
        );
        assert_eq!(kept(&r), 0);
        // The pool still serves reads afterwards, and keeps their connections.
        let n: i64 = sqlx::query_scalar("SELECT 7")
            .fetch_one(&r)
            .await
            .expect("read");
        assert_eq!(n, 7);
        assert_eq!(kept(&r), 1);
        // Once released, nothing is kept.
        r.release();
        let _: i64 = sqlx::query_scalar("SELECT 8")
            .fetch_one(&r)
            .await
            .expect("read");
        assert_eq!(kept(&r), 0);
        r.pool().close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_pool_of_one_keeps_nothing() {
        let (r, dir) = reads("one", 1).await;
        let _: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&r)
            .await
            .expect("read");
        assert_eq!(kept(&r), 0, "the writers need the only connection");
        // So a transaction on the pool still gets it.
        let tx = tokio::time::timeout(Duration::from_secs(5), r.begin_with("BEGIN IMMEDIATE"))
            .await
            .expect("not kept from the writers")
            .expect("begin");
        tx.rollback().await.expect("rollback");
        r.pool().close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
