//! Bulk seeding of the event log and the audit chain, for cleanup tests and benchmarks that
//! need hundreds of thousands of records of chosen ages: multi-row INSERTs in one transaction
//! instead of one transaction per change. The records are numbered after the log's head and
//! the audit records chained to it exactly as the store's append does, so the store reads and
//! verifies them like any others.

use chrono::{DateTime, Utc};
use gaia_core::audit::NewAudit;
use gaia_core::time::to_micros;
use sqlx::Connection;

use crate::TestDb;

/// Rows per INSERT statement.
const ROWS_PER_INSERT: usize = 500;

/// What [`TestDb::seed_log`] wrote: the seqs and audit ids it gave, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seeded {
    pub seqs: Vec<i64>,
    pub audit_ids: Vec<i64>,
}

impl TestDb {
    /// [`seed_log`] on this database.
    pub async fn seed_log(&self, events: &[DateTime<Utc>], audit: &[DateTime<Utc>]) -> Seeded {
        seed_log(&self.url, events, audit).await
    }

    /// [`execute_all`] on this database.
    pub async fn execute_all(&self, sql: &[String]) {
        execute_all(&self.url, sql).await;
    }

    /// [`query_row`] on this database.
    pub async fn query_row(&self, sql: &str) -> Vec<String> {
        query_row(&self.url, sql).await
    }
}

/// Appends one event per time in `events` and one audit record per time in `audit`
/// (type `test.seed`, subject `seed/N`) to the store at `url`, after the log's current
/// head, and moves the head. Writers must not run while it seeds (it reads the head, then
/// writes it back).
pub async fn seed_log(url: &str, events: &[DateTime<Utc>], audit: &[DateTime<Utc>]) -> Seeded {
    let mut sql = Vec::new();
    let head = query_row(
        url,
        "SELECT event_seq, audit_seq, audit_hash FROM log_head WHERE id = 1",
    )
    .await;
    let (mut seq, mut id, mut hash): (i64, i64, String) = (
        head[0].parse().expect("seq"),
        head[1].parse().expect("id"),
        head[2].clone(),
    );
    let mut seeded = Seeded::default();
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut values = Vec::with_capacity(chunk.len());
        for ts in chunk {
            seq += 1;
            seeded.seqs.push(seq);
            values.push(format!(
                "({seq}, {}, 'test.seed', 'seeder', 'seed/{seq}', '{{\"n\":{seq}}}')",
                to_micros(*ts)
            ));
        }
        sql.push(format!(
            "INSERT INTO events (seq, ts_us, type, actor, subject, data) VALUES {}",
            values.join(",")
        ));
    }
    for chunk in audit.chunks(ROWS_PER_INSERT) {
        let mut values = Vec::with_capacity(chunk.len());
        for ts in chunk {
            id += 1;
            seeded.audit_ids.push(id);
            let r = NewAudit::new(
                "seeder",
                "test.seed",
                format!("seed/{id}"),
                "ok",
                serde_json::json!({"n": id}),
            )
            .seal(id, *ts, &hash);
            values.push(format!(
                "({}, {}, '{}', '{}', '{}', '{}', '{}', '{}', '{}')",
                r.id,
                to_micros(r.ts),
                r.actor,
                r.action,
                r.subject,
                r.outcome,
                r.details,
                r.prev_hash,
                r.hash
            ));
            hash = r.hash;
        }
        sql.push(format!(
                "INSERT INTO audit (id, ts_us, actor, action, subject, outcome, details, prev_hash, hash) VALUES {}",
                values.join(",")
            ));
    }
    sql.push(format!(
            "UPDATE log_head SET event_seq = {seq}, audit_seq = {id}, audit_hash = '{hash}' WHERE id = 1"
        ));
    execute_all(url, &sql).await;
    seeded
}

/// Runs statements valid on both dialects in one transaction on one connection.
pub async fn execute_all(url: &str, sql: &[String]) {
    if !url.starts_with("sqlite:") {
        let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
        let mut tx = c.begin().await.expect("begin");
        for s in sql {
            sqlx::raw_sql(s).execute(&mut *tx).await.expect("raw sql");
        }
        tx.commit().await.expect("commit");
        let _ = c.close().await;
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("connect");
        let mut tx = c.begin().await.expect("begin");
        for s in sql {
            sqlx::raw_sql(s).execute(&mut *tx).await.expect("raw sql");
        }
        tx.commit().await.expect("commit");
        let _ = c.close().await;
    }
}

/// The first row of `sql`, each column read as an integer or as text.
pub async fn query_row(url: &str, sql: &str) -> Vec<String> {
    use sqlx::Row;
    fn cols<R: Row>(row: &R) -> Vec<String>
    where
        usize: sqlx::ColumnIndex<R>,
        for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        (0..row.len())
            .map(|i| {
                row.try_get::<i64, _>(i)
                    .map(|v| v.to_string())
                    .or_else(|_| row.try_get::<String, _>(i))
                    .expect("an integer or text column")
            })
            .collect()
    }
    if !url.starts_with("sqlite:") {
        let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
        let row = sqlx::query(sql).fetch_one(&mut c).await.expect("query");
        let out = cols(&row);
        let _ = c.close().await;
        out
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("connect");
        let row = sqlx::query(sql).fetch_one(&mut c).await.expect("query");
        let out = cols(&row);
        let _ = c.close().await;
        out
    }
}
