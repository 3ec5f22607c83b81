//! Test support: a fresh, migrated database on every backend for each test, so that one
//! conformance suite runs the same test bodies against SQLite and PostgreSQL.
//!
//! PostgreSQL tests need `GAIA_TEST_POSTGRES_URL` (a server URL; each test creates and drops
//! its own database). Without it they print that they were skipped, unless
//! `GAIA_REQUIRE_POSTGRES=1`, under which a missing server fails the test.
//!
//! [`fake_telegram`] is a fake Telegram Bot API server with fault injection; [`fake_github`] a
//! fake GitHub REST API (the issue endpoints) that the real `gh` CLI reaches.

pub mod fake_github;
pub mod fake_telegram;
pub mod seed;

use std::sync::Arc;

use gaia_core::store::{Store, StoreOptions};
use gaia_store_postgres::PgStore;
use gaia_store_sqlite::SqliteStore;
use sqlx::Connection;

/// Every event in `store`'s log, after checking that their seqs run 1, 2, ... with no gap and
/// in order (the test fails otherwise).
pub async fn whole_log(store: &dyn Store) -> Vec<gaia_core::event::Event> {
    let events = store
        .events_after(0, &gaia_core::event::EventFilter::default(), 100_000)
        .await
        .expect("read the log");
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, want, "the log is gap-free and ordered");
    events
}

/// Where PostgreSQL tests find a server.
pub const POSTGRES_URL_VAR: &str = "GAIA_TEST_POSTGRES_URL";
/// Set to 1 to make a missing PostgreSQL server fail instead of skip.
pub const REQUIRE_POSTGRES_VAR: &str = "GAIA_REQUIRE_POSTGRES";

/// A database made for one test; dropped (PostgreSQL) or deleted (SQLite) afterwards.
#[derive(Debug)]
pub struct TestDb {
    /// The URL `gaia --db` takes for this database.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

impl TestDb {
    /// A SQLite file in a fresh temporary directory (not yet created: opening creates it).
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("gaia.db").display());
        Self {
            url,
            _dir: Some(dir),
            pg_drop: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (after saying so) when no server is configured.
    pub async fn postgres() -> Option<Self> {
        let server = postgres_server_url()?;
        let name = format!("gaia_test_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot reach {POSTGRES_URL_VAR}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let _ = admin.close().await;
        Some(Self {
            url: with_database(&server, &name),
            _dir: None,
            pg_drop: Some((server, name)),
        })
    }

    /// Opens this database as a store.
    pub async fn open(&self, opts: &StoreOptions) -> Arc<dyn Store> {
        open_url(&self.url, opts).await
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_drop.is_some()
    }
}

/// Opens a `sqlite://` or `postgres://` URL as a store, panicking on failure (tests only).
pub async fn open_url(url: &str, opts: &StoreOptions) -> Arc<dyn Store> {
    if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::open(url, opts).await.expect("open sqlite"))
    } else {
        Arc::new(PgStore::open(url, opts).await.expect("open postgres"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((server, name)) = self.pg_drop.take() else {
            return;
        };
        // Drop runs outside any runtime guarantee: use a thread with its own small runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// The configured server URL, or `None` after printing that PostgreSQL tests are skipped.
pub fn postgres_server_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var(REQUIRE_POSTGRES_VAR).as_deref() != Ok("1"),
                "{REQUIRE_POSTGRES_VAR}=1 but {POSTGRES_URL_VAR} is not set"
            );
            eprintln!("skipped: PostgreSQL test ({POSTGRES_URL_VAR} is not set)");
            None
        }
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Declares each listed `async fn NAME(db: &TestDb)` test once per backend:
/// `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::TestDb::sqlite();
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::TestDb::postgres().await else { return };
                    super::$name(&db).await;
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "postgres://u:p@h/x?sslmode=disable",
            ),
            ("postgres://h:5432", "postgres://h:5432/x"),
        ];
        for (url, want) in cases {
            assert_eq!(with_database(url, "x"), want);
        }
    }
}

/// Raw access for tests that must reach around the store: tampering with rows, holding locks.
impl TestDb {
    /// Runs SQL that is valid on both dialects directly against the database.
    pub async fn execute(&self, sql: &str) {
        if self.is_postgres() {
            let mut c = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("connect");
            sqlx::raw_sql(sql).execute(&mut c).await.expect("raw sql");
            let _ = c.close().await;
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("connect");
            sqlx::raw_sql(sql).execute(&mut c).await.expect("raw sql");
            let _ = c.close().await;
        }
    }

    /// Takes the lock a claim on `key` needs and holds it until the returned guard is dropped.
    pub async fn hold_claim_lock(&self, key: &str) -> LockGuard {
        if self.is_postgres() {
            let mut c = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("connect");
            sqlx::raw_sql("BEGIN").execute(&mut c).await.expect("begin");
            sqlx::query("SELECT key FROM claims WHERE key = $1 FOR UPDATE")
                .bind(key)
                .fetch_optional(&mut c)
                .await
                .expect("lock row");
            LockGuard::Pg(c)
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("connect");
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .expect("begin immediate");
            LockGuard::Sqlite(c)
        }
    }
}

/// A connection holding a lock inside an open transaction (rolled back when dropped).
#[derive(Debug)]
pub enum LockGuard {
    Pg(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}
