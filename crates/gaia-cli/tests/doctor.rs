//! `gaia doctor`: a healthy deployment (store on each backend, Telegram on the fake Bot API,
//! a running server) passes every check; each broken part fails its own check with a fix, and
//! the exit code is 1.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use gaia_testkit::fake_telegram::FakeTelegram;
use gaia_testkit::{TestDb, backend_tests};
use serde_json::Value;
use support::{Server, finish, gaia};

backend_tests!(a_healthy_deployment_passes);

/// Runs `gaia --env-file ENV --db DB doctor --json` with `env`, off the runtime (the fake
/// Telegram answers on it). Returns (exit code, the report).
async fn doctor(dir: &std::path::Path, db: &str, env: &[(&str, &str)]) -> (i32, Value) {
    let mut c = gaia();
    c.current_dir(dir)
        .env_remove("GH_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .envs(env.iter().copied())
        .args(["--env-file", "gaia.env", "--db", db, "doctor", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (code, out, err) =
        tokio::task::spawn_blocking(move || finish(c.spawn().unwrap(), &"doctor"))
            .await
            .unwrap();
    let report: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out} {err}"));
    (code, report)
}

/// The status of the first check called `name`, and all of its checks.
fn status<'a>(report: &'a Value, name: &str) -> Vec<&'a str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == name)
        .map(|c| c["status"].as_str().unwrap())
        .collect()
}

/// An env file with the bot token and API URL, with `mode`.
fn env_file(dir: &std::path::Path, tg: &FakeTelegram, token: &str, mode: u32) {
    let path = dir.join("gaia.env");
    std::fs::write(
        &path,
        format!(
            "TELEGRAM_BOT_TOKEN={token}\nTELEGRAM_API_URL={}\n",
            tg.base_url()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

async fn a_healthy_deployment_passes(db: &TestDb) {
    let tg = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    env_file(dir.path(), &tg, tg.token(), 0o600);
    let server = Server::start(db, &[]);
    let (code, report) = doctor(
        dir.path(),
        &db.url,
        &[("GAIA_URL", &server.url), ("GAIA_TOKEN", &server.token)],
    )
    .await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    for name in [
        "config",
        "secrets",
        "store",
        "migrations",
        "telegram",
        "telegram.webhook",
        "server",
    ] {
        assert_eq!(status(&report, name), ["ok"], "{name}: {report}");
    }
    let local = if db.is_postgres() { "clock" } else { "disk" };
    assert_eq!(status(&report, local), ["ok"], "{report}");
    // Nothing synced to GitHub and no token: gh is not asked.
    assert!(status(&report, "github").is_empty(), "{report}");
    assert!(
        !report.to_string().contains(tg.token()),
        "the token leaked: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_part_fails_with_a_fix() {
    let tg = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Readable by others, and a token the Bot API refuses.
    env_file(dir.path(), &tg, "123:wrong-token", 0o644);
    let db = format!("sqlite://{}", dir.path().join("gaia.db").display());
    let (code, report) = doctor(dir.path(), &db, &[("GAIA_URL", "http://127.0.0.1:9")]).await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["ok"], false);
    for name in ["secrets", "telegram", "server"] {
        assert_eq!(status(&report, name), ["fail"], "{name}: {report}");
    }
    assert_eq!(
        status(&report, "store"),
        ["warn"],
        "no database yet: {report}"
    );
    for c in report["checks"].as_array().unwrap() {
        if c["status"] != "ok" {
            assert!(c["fix"].as_str().is_some_and(|f| !f.is_empty()), "{c}");
        }
    }
    assert!(report.to_string().contains("chmod 600"), "{report}");
    assert!(
        !report.to_string().contains("wrong-token"),
        "the token leaked: {report}"
    );

    // The same file, owner-only: that check passes.
    std::fs::set_permissions(
        dir.path().join("gaia.env"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (_, report) = doctor(dir.path(), &db, &[]).await;
    assert_eq!(status(&report, "secrets"), ["ok"], "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_and_a_bad_value_fail() {
    let tg = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    env_file(dir.path(), &tg, tg.token(), 0o600);
    let (code, report) = doctor(
        dir.path(),
        "postgres://postgres@127.0.0.1:1/none",
        &[("GAIA_CONNECT_TIMEOUT", "2s")],
    )
    .await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(status(&report, "store"), ["fail"], "{report}");

    let (code, report) = doctor(
        dir.path(),
        "sqlite://gaia.db",
        &[("GAIA_LOCK_TIMEOUT", "abc")],
    )
    .await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(status(&report, "config"), ["fail"], "{report}");
    assert!(
        report.to_string().contains("database.lock_timeout"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_unknown_keys_and_its_secrets() {
    let tg = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    env_file(dir.path(), &tg, tg.token(), 0o600);
    let toml = dir.path().join("gaia.toml");
    std::fs::write(&toml, "[database]\nurll = \"sqlite://x.db\"\n").unwrap();
    let (code, report) = doctor(dir.path(), "sqlite://gaia.db", &[]).await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(status(&report, "config"), ["fail"], "{report}");
    assert!(report.to_string().contains("urll"), "{report}");

    // A config file holding a secret, readable by others.
    std::fs::write(&toml, "[admin]\ntoken = \"toml-secret-0123456789\"\n").unwrap();
    std::fs::set_permissions(&toml, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, report) = doctor(dir.path(), "sqlite://gaia.db", &[]).await;
    assert_eq!(code, 1, "{report}");
    let mut secrets = status(&report, "secrets");
    secrets.sort_unstable();
    assert_eq!(
        secrets,
        ["fail", "ok"],
        "the toml fails, the env file passes: {report}"
    );
    assert!(!report.to_string().contains("toml-secret"), "{report}");
}
