//! Where a run keeps its data: a temporary SQLite file, or a scratch database made on a
//! PostgreSQL server for one run and dropped afterwards. Never a database of the caller's.

use std::path::PathBuf;

use sqlx::{Connection, PgConnection};

use crate::exit::{BenchError, bench_error};

/// A database made for one benchmark run on a PostgreSQL server, dropped afterwards.
#[derive(Debug)]
pub struct Scratch {
    server: String,
    name: String,
    pub url: String,
}

impl Scratch {
    pub async fn create(server: &str) -> Result<Self, BenchError> {
        let name = format!("gaia_bench_{:016x}", rand::random::<u64>());
        let mut admin = PgConnection::connect(server)
            .await
            .map_err(|e| BenchError::bad_input(format!("--postgres: {e}")))?;
        let created = sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await;
        let _ = admin.close().await;
        created.map_err(|e| bench_error("creating the scratch database", e))?;
        Ok(Self {
            url: with_database(server, &name),
            server: server.to_owned(),
            name,
        })
    }

    pub async fn drop_database(self) -> Result<(), BenchError> {
        let mut admin = PgConnection::connect(&self.server)
            .await
            .map_err(|e| bench_error("dropping the scratch database", e))?;
        let dropped = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await;
        let _ = admin.close().await;
        dropped
            .map(|_| ())
            .map_err(|e| bench_error(&format!("dropping {}", self.name), e))
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

/// Where one backend's run keeps its data; dropped (or the database dropped) afterwards.
#[derive(Debug)]
pub enum Backend {
    Sqlite {
        dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres(Scratch),
}

impl Backend {
    pub fn sqlite() -> Result<Self, BenchError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bench.db");
        Ok(Self::Sqlite { dir, path })
    }

    pub async fn postgres(server: &str) -> Result<Self, BenchError> {
        if !(server.starts_with("postgres://") || server.starts_with("postgresql://")) {
            return Err(BenchError::bad_input(
                "--postgres takes a postgres://USER@HOST/DB URL",
            ));
        }
        Ok(Self::Postgres(Scratch::create(server).await?))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Self::Postgres(s) => s.url.clone(),
        }
    }

    /// Removes what the run left: the temporary directory or the scratch database.
    pub async fn finish(self) -> Result<(), BenchError> {
        match self {
            Self::Sqlite { dir, .. } => {
                drop(dir);
                Ok(())
            }
            Self::Postgres(s) => s.drop_database().await,
        }
    }
}
