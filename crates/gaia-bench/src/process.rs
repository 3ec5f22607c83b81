//! `gaia-bench process`: wall time of one `gaia claim acquire` process on a fresh key against
//! an existing SQLite database, beside one `sqlite3` process running Gaia's PRAGMAs and the
//! same upsert, event insert and audit insert in one `BEGIN IMMEDIATE` transaction: once in a
//! database holding only the baseline's tables, and once in one that also holds Gaia's schema
//! (which SQLite parses before a connection's first statement, whoever runs it).

use std::path::Path;
use std::time::Instant;

use chrono::Utc;
use clap::Args;
use gaia_core::store::SqliteSync;
use gaia_core::time::to_micros;
use serde_json::json;

use crate::baseline::{SQLITE_BASELINE_SCHEMA, acquire_data, fake_hash};
use crate::exit::{self, BenchError, BenchResult, bench_error};
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// Processes started on each side.
    #[arg(long, default_value_t = 50, value_name = "N")]
    runs: u32,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Wall times of one side, in milliseconds.
#[derive(Debug)]
struct Walls(Vec<f64>);

impl Walls {
    fn mean(&self) -> f64 {
        if self.0.is_empty() {
            0.0
        } else {
            self.0.iter().sum::<f64>() / self.0.len() as f64
        }
    }

    /// The median; `self.0` must be sorted.
    fn median(&self) -> f64 {
        let n = self.0.len();
        match n {
            0 => 0.0,
            _ if n % 2 == 1 => self.0[n / 2],
            _ => (self.0[n / 2 - 1] + self.0[n / 2]) / 2.0,
        }
    }

    fn min(&self) -> f64 {
        self.0.first().copied().unwrap_or(0.0)
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "runs": self.0.len(),
            "mean_ms": self.mean(),
            "median_ms": self.median(),
            "min_ms": self.min(),
        })
    }
}

/// Runs `cmd` to completion and returns its wall time; a failure is an error with its stderr.
async fn timed(mut cmd: tokio::process::Command, what: &str) -> Result<f64, BenchError> {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let start = Instant::now();
    let out = cmd
        .output()
        .await
        .map_err(|e| bench_error(&format!("cannot start {what}"), e))?;
    let wall = start.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(bench_error(
            &format!("{what} failed ({})", out.status),
            stderr.trim(),
        ));
    }
    Ok(wall)
}

/// `gaia claim acquire` on a fresh key, isolated from the caller's configuration: it runs in
/// the temporary directory (no gaia.toml, no env file) without any GAIA_* variable.
fn gaia_process(exe: &Path, dir: &Path, db: &Path, story: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.current_dir(dir)
        .arg("--db")
        .arg(format!("sqlite://{}", db.display()))
        .args(["claim", "acquire", story])
        .args([
            "--agent",
            "bench",
            "--operator",
            "bench",
            "--fingerprint",
            "p",
        ])
        .args(["--ttl", "15m"]);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GAIA_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// The same write as `gaia claim acquire` in one sqlite3 invocation: Gaia's PRAGMAs, then the
/// claim upsert, the event and the audit record in one `BEGIN IMMEDIATE` transaction.
fn sqlite3_script(story: &str, sync: SqliteSync, busy_ms: u128) -> String {
    let now = Utc::now();
    let ts = to_micros(now);
    let key = format!("{story}/default");
    let data = acquire_data(&key, "p", 1, now).replace('\'', "''");
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = {busy_ms};
         PRAGMA foreign_keys = ON;
         BEGIN IMMEDIATE;
         INSERT INTO bench_claims (key, story, todolist, agent, operator, fingerprint, token,
             acquired_at_us, expires_at_us, ttl_ms)
         VALUES ('{key}', '{story}', 'default', 'bench', 'bench', 'p', 1, {ts}, {exp}, 900000)
         ON CONFLICT (key) DO UPDATE SET
           agent = excluded.agent, operator = excluded.operator,
           fingerprint = excluded.fingerprint, token = bench_claims.token + 1,
           acquired_at_us = excluded.acquired_at_us, expires_at_us = excluded.expires_at_us,
           ttl_ms = excluded.ttl_ms;
         INSERT INTO bench_events (ts_us, type, actor, subject, data)
         VALUES ({ts}, 'claim.acquired', 'bench', 'claim/{key}', '{data}');
         INSERT INTO bench_audit (ts_us, actor, action, subject, outcome, details, prev_hash, hash)
         VALUES ({ts}, 'bench', 'claim.acquire', 'claim/{key}', 'acquired', '{data}',
                 '{h1}', '{h2}');
         COMMIT;",
        exp = ts + 900_000_000,
        h1 = fake_hash(ts),
        h2 = fake_hash(ts + 1),
    )
}

fn sqlite3_command(db: &Path, script: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("sqlite3");
    cmd.arg(db).arg(script);
    cmd
}

async fn sqlite3_available() -> bool {
    tokio::process::Command::new("sqlite3")
        .arg("-version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

pub async fn run(args: ProcessArgs, settings: &Settings) -> BenchResult {
    if args.runs == 0 {
        return Err(BenchError::bad_input("--runs must be at least 1"));
    }
    let exe = settings.gaia_binary()?;
    let dir = tempfile::tempdir()?;
    let gaia_db = dir.path().join("gaia.db");
    let raw_db = dir.path().join("sqlite3.db");
    let schema_db = dir.path().join("sqlite3-gaia-schema.db");
    let opts = settings.store_options();
    // Creating and migrating the database is a one-off: keep it out of the measurement.
    timed(
        gaia_process(&exe, dir.path(), &gaia_db, "warmup"),
        "gaia claim acquire",
    )
    .await?;
    let sqlite3 = sqlite3_available().await;
    if sqlite3 {
        let schema = format!("PRAGMA journal_mode = WAL; {SQLITE_BASELINE_SCHEMA}");
        timed(sqlite3_command(&raw_db, &schema), "sqlite3").await?;
        // The same tables beside Gaia's own: SQLite reads a database's whole schema before
        // its first statement, so this side pays for the size of Gaia's schema as Gaia does.
        timed(
            gaia_process(&exe, dir.path(), &schema_db, "warmup"),
            "gaia claim acquire",
        )
        .await?;
        timed(sqlite3_command(&schema_db, &schema), "sqlite3").await?;
    } else if !args.json {
        println!("sqlite3 is not installed: measuring gaia only");
    }
    let busy_ms = opts.lock_timeout.as_millis();
    let (mut gaia, mut raw, mut same) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.runs {
        let story = format!("bench-{i}");
        gaia.push(
            timed(
                gaia_process(&exe, dir.path(), &gaia_db, &story),
                "gaia claim acquire",
            )
            .await?,
        );
        if sqlite3 {
            let script = sqlite3_script(&story, opts.sqlite_synchronous, busy_ms);
            raw.push(timed(sqlite3_command(&raw_db, &script), "sqlite3").await?);
            same.push(timed(sqlite3_command(&schema_db, &script), "sqlite3").await?);
        }
    }
    for w in [&mut gaia, &mut raw, &mut same] {
        w.sort_by(f64::total_cmp);
    }
    let (gaia, raw, same) = (Walls(gaia), Walls(raw), Walls(same));
    let ratio_to = |base: &Walls| (sqlite3 && base.mean() > 0.0).then(|| gaia.mean() / base.mean());
    let (ratio, ratio_same) = (ratio_to(&raw), ratio_to(&same));
    if args.json {
        let out = json!({
            "gaia": gaia.to_json(),
            "sqlite3": sqlite3.then(|| raw.to_json()),
            "sqlite3_gaia_schema": sqlite3.then(|| same.to_json()),
            "ratio_mean": ratio,
            "ratio_mean_gaia_schema": ratio_same,
        });
        println!("{out}");
        return Ok(exit::OK);
    }
    println!(
        "{:<36} {:>5} {:>9} {:>9} {:>9}",
        "process", "runs", "mean ms", "median ms", "min ms"
    );
    let mut rows = vec![("gaia claim acquire", &gaia)];
    if sqlite3 {
        rows.push(("sqlite3 (same transaction)", &raw));
        rows.push(("sqlite3 (same, beside Gaia's schema)", &same));
    }
    for (name, w) in rows {
        println!(
            "{:<36} {:>5} {:>9.2} {:>9.2} {:>9.2}",
            name,
            w.0.len(),
            w.mean(),
            w.median(),
            w.min()
        );
    }
    if let (Some(r), Some(s)) = (ratio, ratio_same) {
        println!("ratio (gaia / sqlite3, mean wall time): {r:.2}x; beside Gaia's schema: {s:.2}x");
    }
    Ok(exit::OK)
}
