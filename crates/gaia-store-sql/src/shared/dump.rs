//! Whole-store copies ([`gaia_core::dump`]): every table of the schema with its columns and
//! key order, written once, and the SQL that reads them page by page from one snapshot and
//! writes them into an empty store. A backend supplies only the words its dialect says
//! differently: how a snapshot and a load begin, how its catalog lists tables and columns, and
//! how an identity column continues after explicit ids.

use gaia_core::dump::Kind::{self, Bool as B, Int as I, Text as T};

/// A table as the copy carries it.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
    /// `ORDER BY` of a full, deterministic read.
    pub order: &'static str,
    /// Whether `order` is the first column alone, an integer key: pages then continue after
    /// the last key read instead of skipping rows, which keeps reading a long log linear.
    pub int_key: bool,
    /// A column whose next value the database generates (continued after a load).
    pub identity: Option<&'static str>,
    /// Rows that make the table count as not empty (a `WHERE` condition): migrations seed
    /// `log_head` and `outbox_pacing`, which a load replaces.
    pub occupied: &'static str,
    /// Whether migrating a new store writes rows here, which a load deletes first.
    pub seeded: bool,
}

const ANY: &str = "1 = 1";

const fn table(
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    order: &'static str,
) -> Table {
    Table {
        name,
        columns,
        order,
        int_key: false,
        identity: None,
        occupied: ANY,
        seeded: false,
    }
}

/// Every table of the schema, in copy order: a table comes after the tables its rows refer
/// to. `gaia_schema` is not copied: both stores are migrated to the same version first.
pub const TABLES: &[Table] = &[
    Table {
        occupied: "event_seq <> 0 OR audit_seq <> 0",
        seeded: true,
        ..table(
            "log_head",
            &[
                ("id", I),
                ("event_seq", I),
                ("audit_seq", I),
                ("audit_hash", T),
                ("audit_anchor_id", I),
                ("audit_anchor_hash", T),
            ],
            "id",
        )
    },
    Table {
        int_key: true,
        ..table(
            "events",
            &[
                ("seq", I),
                ("ts_us", I),
                ("type", T),
                ("actor", T),
                ("subject", T),
                ("data", T),
            ],
            "seq",
        )
    },
    Table {
        int_key: true,
        ..table(
            "audit",
            &[
                ("id", I),
                ("ts_us", I),
                ("actor", T),
                ("action", T),
                ("subject", T),
                ("outcome", T),
                ("details", T),
                ("prev_hash", T),
                ("hash", T),
            ],
            "id",
        )
    },
    table(
        "claims",
        &[
            ("key", T),
            ("story", T),
            ("todolist", T),
            ("agent", T),
            ("operator", T),
            ("fingerprint", T),
            ("token", I),
            ("acquired_at_us", I),
            ("expires_at_us", I),
            ("ttl_ms", I),
            ("expiry_reported_token", I),
            ("principal", T),
        ],
        "key",
    ),
    table(
        "tokens",
        &[
            ("name", T),
            ("role", T),
            ("hash", T),
            ("created_at_us", I),
            ("created_by", T),
            ("revoked_at_us", I),
        ],
        "name",
    ),
    table("settings", &[("name", T), ("value", T)], "name"),
    table(
        "commands",
        &[
            ("id", T),
            ("spec", T),
            ("cwd", T),
            ("story", T),
            ("todolist", T),
            ("reason", T),
            ("requester", T),
            ("is_test", B),
            ("test_allowed", B),
            ("created_at_us", I),
            ("expires_at_us", I),
            ("status", T),
            ("decided_by", T),
            ("decided_via", T),
            ("decided_at_us", I),
            ("decision_reason", T),
            ("binding", T),
            ("execution", T),
        ],
        "id",
    ),
    Table {
        identity: Some("id"),
        int_key: true,
        ..table(
            "outbox",
            &[
                ("id", I),
                ("channel", T),
                ("target", T),
                ("kind", T),
                ("payload", T),
                ("dedupe_key", T),
                ("status", T),
                ("attempts", I),
                ("requeues", I),
                ("created_at_us", I),
                ("next_attempt_at_us", I),
                ("leased_until_us", I),
                ("last_error", T),
                ("sent_at_us", I),
                ("dead_at_us", I),
                ("result", T),
                ("lease_token", I),
            ],
            "id",
        )
    },
    Table {
        occupied: "chat <> '*' OR held_until_us <> 0 OR last_sent_us <> 0 \
                   OR sending_id IS NOT NULL",
        seeded: true,
        ..table(
            "outbox_pacing",
            &[
                ("chat", T),
                ("held_until_us", I),
                ("last_sent_us", I),
                ("sending_id", I),
                ("sending_token", I),
                ("sending_until_us", I),
            ],
            "chat",
        )
    },
    table("outbox_sends", &[("chat", T), ("at_us", I)], "chat, at_us"),
    table(
        "stories",
        &[
            ("slug", T),
            ("title", T),
            ("description", T),
            ("status", T),
            ("labels", T),
            ("created_by", T),
            ("created_at_us", I),
            ("updated_at_us", I),
            ("todolist", T),
            ("finalized_at_us", I),
        ],
        "slug",
    ),
    table(
        "todolists",
        &[
            ("story", T),
            ("name", T),
            ("created_at_us", I),
            ("finalized_at_us", I),
            ("archived_at_us", I),
        ],
        "story, name",
    ),
    Table {
        identity: Some("id"),
        int_key: true,
        ..table(
            "tasks",
            &[
                ("id", I),
                ("story", T),
                ("todolist", T),
                ("title", T),
                ("body", T),
                ("status", T),
                ("reason", T),
                ("worker", T),
                ("position", I),
                ("blocked_by", T),
                ("is_final", B),
                ("created_by", T),
                ("created_at_us", I),
                ("updated_at_us", I),
            ],
            "id",
        )
    },
    table("task_deps", &[("task", I), ("blocker", I)], "task, blocker"),
    Table {
        identity: Some("id"),
        int_key: true,
        ..table(
            "followups",
            &[
                ("id", I),
                ("path", T),
                ("hash", T),
                ("story", T),
                ("agent", T),
                ("task", T),
                ("title", T),
                ("body", T),
                ("status", T),
                ("reason", T),
                ("task_id", I),
                ("decided_by", T),
                ("created_at_us", I),
                ("updated_at_us", I),
            ],
            "id",
        )
    },
    table(
        "github_sync",
        &[
            ("repo", T),
            ("item_kind", T),
            ("item", T),
            ("sync_key", T),
            ("issue", I),
            ("pushed_hash", T),
            ("intent_at_us", I),
            ("attempt_at_us", I),
            ("last_seen", I),
            ("updated_at_us", I),
        ],
        "repo, item_kind, item",
    ),
    Table {
        int_key: true,
        ..table(
            "telegram_updates",
            &[("update_id", I), ("done", I), ("until_us", I)],
            "update_id",
        )
    },
];

/// The table `name`.
pub fn find(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// Rows read per query.
pub const PAGE: i64 = 1000;

/// Bound parameters per insert, under both engines' limits.
const MAX_PARAMS: usize = 4000;

/// Rows per multi-row insert into `t`.
pub fn rows_per_insert(t: &Table) -> usize {
    (MAX_PARAMS / t.columns.len()).max(1)
}

/// Reads one page of `t` in key order: `$1` rows after the key `$2` when the table has an
/// integer key, else after skipping `$2` rows. Integers are read as `BIGINT` whatever the
/// column's declared width, so one Rust type reads them on every engine.
pub fn select_page(t: &Table) -> String {
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|(c, k)| match k {
            Kind::Int => format!("CAST({c} AS BIGINT)"),
            Kind::Text | Kind::Bool => (*c).to_owned(),
        })
        .collect();
    if t.int_key {
        format!(
            "SELECT {} FROM {} WHERE {} > $2 ORDER BY {} LIMIT $1",
            cols.join(", "),
            t.name,
            t.order,
            t.order
        )
    } else {
        format!(
            "SELECT {} FROM {} ORDER BY {} LIMIT $1 OFFSET $2",
            cols.join(", "),
            t.name,
            t.order
        )
    }
}

/// Inserts `rows` rows into `t`; `overriding` is what the dialect says to write an identity
/// column's value itself.
pub fn insert(t: &Table, rows: usize, overriding: &str) -> String {
    let n = t.columns.len();
    let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=n).map(|i| format!("${}", r * n + i)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let overriding = if t.identity.is_some() { overriding } else { "" };
    format!(
        "INSERT INTO {} ({}) {overriding} VALUES {}",
        t.name,
        cols.join(", "),
        values.join(", ")
    )
}

/// Whether `t` holds rows beyond what migrating writes.
pub fn occupied(t: &Table) -> String {
    format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM {} WHERE {}",
        t.name, t.occupied
    )
}

/// The head after an events-only load: after the newest event, with an empty audit chain.
pub const HEAD_AFTER_EVENTS: &str = "INSERT INTO log_head
        (id, event_seq, audit_seq, audit_hash, audit_anchor_id, audit_anchor_hash)
     SELECT 1, COALESCE(MAX(seq), 0), 0, $1, 0, $1 FROM events";

/// The tables and columns a store holds that [`TABLES`] does not name: a schema this build
/// does not know how to copy whole. `tables` are the store's tables, `columns_of` a table's
/// columns.
pub fn unknown(tables: &[String], columns_of: &dyn Fn(&str) -> Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for name in tables {
        if name == "gaia_schema" || name.starts_with("sqlite_") {
            continue;
        }
        match find(name) {
            None => out.push(format!("table {name}")),
            Some(t) => {
                for c in columns_of(name) {
                    if !t.columns.iter().any(|(k, _)| *k == c) {
                        out.push(format!("column {name}.{c}"));
                    }
                }
            }
        }
    }
    out
}

/// Adds [`gaia_core::dump::Dump`] for `$store` to the calling backend. `$db` is its sqlx
/// database; `snapshot` begins a read of one consistent state, `load` a write transaction;
/// `tables` lists the schema's tables and `columns` a table's (`$1`) columns; `overriding` lets
/// an insert set an identity column; `continue_identity` (with `{table}` and `{column}`) makes
/// an identity continue after the largest loaded value, or is empty.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! dump_sql {
    (
        store = $store:ty,
        db = $db:ty,
        snapshot = $snapshot:expr,
        load = $load:expr,
        tables = $tables:expr,
        columns = $columns:expr,
        overriding = $overriding:expr,
        continue_identity = $continue:expr $(,)?
    ) => {
        /// A load into this store, in one transaction.
        pub(crate) struct DumpLoader {
            tx: ::sqlx::Transaction<'static, $db>,
            head_loaded: bool,
        }

        /// Refuses a schema with tables or columns the copy does not know.
        async fn check_schema(
            conn: &mut <$db as ::sqlx::Database>::Connection,
        ) -> crate::error::Db<()> {
            let tables: Vec<String> = ::sqlx::query_scalar($tables).fetch_all(&mut *conn).await?;
            let mut columns = ::std::collections::BTreeMap::new();
            for t in &tables {
                let cols: Vec<String> = ::sqlx::query_scalar($columns)
                    .bind(t)
                    .fetch_all(&mut *conn)
                    .await?;
                columns.insert(t.clone(), cols);
            }
            let unknown = $crate::shared::dump::unknown(&tables, &|t| {
                columns.get(t).cloned().unwrap_or_default()
            });
            if unknown.is_empty() {
                Ok(())
            } else {
                Err(::gaia_core::StoreError::Conflict(format!(
                    "this gaia cannot copy the store whole: it does not know {}",
                    unknown.join(", ")
                ))
                .into())
            }
        }

        /// One page of `t` as rows.
        async fn read_page(
            conn: &mut <$db as ::sqlx::Database>::Connection,
            t: &$crate::shared::dump::Table,
            after: i64,
        ) -> crate::error::Db<Vec<::gaia_core::dump::Row>> {
            use ::gaia_core::dump::{Kind, Value};
            use ::sqlx::Row as _;
            let found = ::sqlx::query(&$crate::shared::dump::select_page(t))
                .bind($crate::shared::dump::PAGE)
                .bind(after)
                .fetch_all(&mut *conn)
                .await?;
            let mut rows = Vec::with_capacity(found.len());
            for r in &found {
                let mut row = Vec::with_capacity(t.columns.len());
                for (i, (_, kind)) in t.columns.iter().enumerate() {
                    row.push(match kind {
                        Kind::Int => Value::Int(r.try_get(i)?),
                        Kind::Text => Value::Text(r.try_get(i)?),
                        Kind::Bool => Value::Bool(r.try_get(i)?),
                    });
                }
                rows.push(row);
            }
            Ok(rows)
        }

        #[::async_trait::async_trait]
        impl ::gaia_core::dump::Dump for $store {
            async fn dump_counts(
                &self,
            ) -> Result<Vec<(&'static str, u64)>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let mut conn = self.pool.acquire().await?;
                    check_schema(&mut conn).await?;
                    let mut out = Vec::new();
                    for t in $crate::shared::dump::TABLES {
                        let n: i64 = ::sqlx::query_scalar(&format!(
                            "SELECT CAST(COUNT(*) AS BIGINT) FROM {}",
                            t.name
                        ))
                        .fetch_one(&mut *conn)
                        .await?;
                        out.push((t.name, u64::try_from(n).unwrap_or(0)));
                    }
                    Ok(out)
                })
                .await
            }

            async fn dump(
                &self,
                sink: &mut dyn ::gaia_core::dump::RowSink,
            ) -> Result<(), ::gaia_core::StoreError> {
                let mut tx = crate::error::boundary(async {
                    let mut tx = self.pool.begin_with($snapshot).await?;
                    check_schema(&mut tx).await?;
                    Ok(tx)
                })
                .await?;
                for t in $crate::shared::dump::TABLES {
                    // After this key (an integer key) or this many rows (any other order).
                    let mut after = if t.int_key { i64::MIN } else { 0 };
                    loop {
                        let rows = crate::error::boundary(read_page(&mut tx, t, after)).await?;
                        let n = rows.len();
                        after = match (t.int_key, rows.last().and_then(|r| r.first())) {
                            (true, Some(::gaia_core::dump::Value::Int(Some(k)))) => *k,
                            _ => after + i64::try_from(n).unwrap_or(0),
                        };
                        if n > 0 {
                            sink.rows(t.name, rows).await?;
                        }
                        if i64::try_from(n).unwrap_or(0) < $crate::shared::dump::PAGE {
                            break;
                        }
                    }
                }
                crate::error::boundary(async { Ok(tx.rollback().await?) }).await
            }

            async fn load(
                &self,
            ) -> Result<Box<dyn ::gaia_core::dump::Loader>, ::gaia_core::StoreError> {
                crate::error::boundary(async {
                    let mut tx = self.pool.begin_with($load).await?;
                    check_schema(&mut tx).await?;
                    for t in $crate::shared::dump::TABLES {
                        let n: i64 = ::sqlx::query_scalar(&$crate::shared::dump::occupied(t))
                            .fetch_one(&mut *tx)
                            .await?;
                        if n > 0 {
                            return Err(::gaia_core::StoreError::Conflict(format!(
                                "the target store is not empty: table {} has {n} rows",
                                t.name
                            ))
                            .into());
                        }
                    }
                    for t in $crate::shared::dump::TABLES.iter().filter(|t| t.seeded) {
                        ::sqlx::query(&format!("DELETE FROM {}", t.name))
                            .execute(&mut *tx)
                            .await?;
                    }
                    Ok(Box::new(DumpLoader {
                        tx,
                        head_loaded: false,
                    }) as Box<dyn ::gaia_core::dump::Loader>)
                })
                .await
            }
        }

        #[::async_trait::async_trait]
        impl ::gaia_core::dump::RowSink for DumpLoader {
            async fn rows(
                &mut self,
                table: &'static str,
                rows: Vec<::gaia_core::dump::Row>,
            ) -> Result<(), ::gaia_core::StoreError> {
                use ::gaia_core::dump::Value;
                let Some(t) = $crate::shared::dump::find(table) else {
                    return Err(::gaia_core::StoreError::Corrupt(format!(
                        "no table {table} to load"
                    )));
                };
                if t.name == "log_head" {
                    self.head_loaded = true;
                }
                crate::error::boundary(async {
                    for chunk in rows.chunks($crate::shared::dump::rows_per_insert(t)) {
                        let sql = $crate::shared::dump::insert(t, chunk.len(), $overriding);
                        let mut q = ::sqlx::query(&sql);
                        for row in chunk {
                            if row.len() != t.columns.len() {
                                return Err(::gaia_core::StoreError::Corrupt(format!(
                                    "a row of {table} has {} values for {} columns",
                                    row.len(),
                                    t.columns.len()
                                ))
                                .into());
                            }
                            for v in row {
                                q = match v {
                                    Value::Int(x) => q.bind(*x),
                                    Value::Text(x) => q.bind(x.clone()),
                                    Value::Bool(x) => q.bind(*x),
                                };
                            }
                        }
                        q.execute(&mut *self.tx).await?;
                    }
                    Ok(())
                })
                .await
            }
        }

        #[::async_trait::async_trait]
        impl ::gaia_core::dump::Loader for DumpLoader {
            async fn commit(mut self: Box<Self>) -> Result<(), ::gaia_core::StoreError> {
                crate::error::boundary(async move {
                    if !self.head_loaded {
                        ::sqlx::query($crate::shared::dump::HEAD_AFTER_EVENTS)
                            .bind(::gaia_core::audit::GENESIS_HASH)
                            .execute(&mut *self.tx)
                            .await?;
                    }
                    let template: &str = $continue;
                    if !template.is_empty() {
                        for t in $crate::shared::dump::TABLES {
                            if let Some(column) = t.identity {
                                let sql = template
                                    .replace("{table}", t.name)
                                    .replace("{column}", column);
                                ::sqlx::query(&sql).execute(&mut *self.tx).await?;
                            }
                        }
                    }
                    Ok(self.tx.commit().await?)
                })
                .await
            }
        }
    };
}
