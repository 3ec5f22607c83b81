//! Gaia's MCP server driven by the official SDKs, as agents' clients are: the Python `mcp`
//! package and the TypeScript `@modelcontextprotocol/sdk` on Node each connect over stdio
//! and over HTTP (`/mcp` on `gaia serve`), on both backends, list the tools and call every
//! one (`crates/gaia-mcp/tests/clients/`); the operator-only `approval_decide` is refused to
//! an agent, audited, and decides for an operator. A missing SDK skips
//! with a message, unless `GAIA_REQUIRE_MCP_CLIENTS=1` (CI installs both) makes it a failure.
//! `GAIA_MCP_PYTHON` names the Python that has `mcp` (default `python3`).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gaia_testkit::TestDb;
use serde_json::Value;
use support::mcp::{audit, backends, cli};

/// Where the client scripts and their `node_modules` are.
fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../gaia-mcp/tests/clients")
}

/// Skips (returns false) when a client is missing, or fails when clients are required.
fn available(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    let msg = format!("{what} is not installed (.ci/run installs it)");
    assert!(
        std::env::var("GAIA_REQUIRE_MCP_CLIENTS").as_deref() != Ok("1"),
        "{msg}"
    );
    eprintln!("skipped: {msg}");
    false
}

fn python() -> String {
    std::env::var("GAIA_MCP_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn has_python_sdk() -> bool {
    Command::new(python())
        .args(["-c", "import mcp.client.stdio, mcp.client.streamable_http"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn has_node_sdk() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    node && clients_dir()
        .join("node_modules/@modelcontextprotocol/sdk/package.json")
        .exists()
}

/// A database with the story `story` holding one ready task.
fn seeded(db: &TestDb, story: &str) {
    cli(db, &["story", "create", story, "--title", story]);
    cli(db, &["todo", "add", story, "--title", "First task"]);
}

/// Runs a client script to its end; it prints `ok` when every check held.
fn run_client(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The agent `agent` was refused `approval_decide` once, audited as the API audits a missing
/// role; and an operator's decision went through MCP.
fn assert_decide_refused_and_audited(db: &TestDb, agent: &str) {
    let refused: Vec<Value> = audit(db)
        .into_iter()
        .filter(|r| r["action"] == "command.approve" && r["outcome"] == "forbidden")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["actor"], agent);
    let details: Value = serde_json::from_str(refused[0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["needed"], "operator");
    assert_eq!(details["via"], "mcp");
    let approved = cli(db, &["cmd", "list", "--status", "approved", "--json"]);
    assert_eq!(approved.as_array().unwrap().len(), 1, "{approved}");
}

#[test]
fn python_sdk_over_stdio_calls_every_tool() {
    if !available("the Python MCP SDK (pip install mcp)", has_python_sdk()) {
        return;
    }
    for db in backends() {
        seeded(&db, "py");
        let mut cmd = Command::new(python());
        cmd.arg(clients_dir().join("python_client.py")).args([
            "stdio",
            support::GAIA,
            &db.url,
            "py",
        ]);
        support::clean_env(&mut cmd);
        run_client(cmd, "the Python client over stdio");
        assert_decide_refused_and_audited(&db, "py-agent");
    }
}

#[test]
fn typescript_sdk_over_stdio_calls_every_tool() {
    if !available(
        "the TypeScript MCP SDK (npm ci in crates/gaia-mcp/tests/clients)",
        has_node_sdk(),
    ) {
        return;
    }
    for db in backends() {
        seeded(&db, "ts");
        let mut cmd = Command::new("node");
        cmd.current_dir(clients_dir()).arg("node_client.mjs").args([
            "stdio",
            support::GAIA,
            &db.url,
            "ts",
        ]);
        support::clean_env(&mut cmd);
        run_client(cmd, "the TypeScript client over stdio");
        assert_decide_refused_and_audited(&db, "ts-agent");
    }
}

/// A new token of `role` named `name`.
fn token(db: &TestDb, role: &str, name: &str) -> String {
    cli(
        db,
        &["token", "create", "--role", role, "--name", name, "--json"],
    )["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `gaia serve` on a seeded database with short approval waits, and an agent token and an
/// operator token for it.
fn http_server(db: &TestDb, story: &str) -> (support::Server, String, String) {
    seeded(db, story);
    let agent = token(db, "agent", story);
    let operator = token(db, "operator", &format!("{story}-operator"));
    let server = support::Server::start(
        db,
        &[
            ("GAIA_MCP_APPROVAL_WAIT", "2s"),
            ("GAIA_MCP_PROGRESS_EVERY", "1s"),
        ],
    );
    (server, agent, operator)
}

#[test]
fn python_sdk_over_http_calls_every_tool() {
    if !available("the Python MCP SDK (pip install mcp)", has_python_sdk()) {
        return;
    }
    for db in backends() {
        let (server, agent, operator) = http_server(&db, "pyhttp");
        let mut cmd = Command::new(python());
        cmd.arg(clients_dir().join("python_client.py")).args([
            "http",
            &format!("{}/mcp", server.url),
            &agent,
            "pyhttp",
            &operator,
        ]);
        support::clean_env(&mut cmd);
        run_client(cmd, "the Python client over HTTP");
        assert_decide_refused_and_audited(&db, "pyhttp");
    }
}

#[test]
fn typescript_sdk_over_http_calls_every_tool() {
    if !available(
        "the TypeScript MCP SDK (npm ci in crates/gaia-mcp/tests/clients)",
        has_node_sdk(),
    ) {
        return;
    }
    for db in backends() {
        let (server, agent, operator) = http_server(&db, "tshttp");
        let mut cmd = Command::new("node");
        cmd.current_dir(clients_dir()).arg("node_client.mjs").args([
            "http",
            &format!("{}/mcp", server.url),
            &agent,
            "tshttp",
            &operator,
        ]);
        support::clean_env(&mut cmd);
        run_client(cmd, "the TypeScript client over HTTP");
        assert_decide_refused_and_audited(&db, "tshttp");
    }
}

/// A decision that takes longer than the client's timeout still reaches it, because the
/// timeout resets on each progress notification (scaled down: a 3 s timeout, a decision after
/// about 5 s).
#[test]
fn typescript_sdk_timeout_resets_on_progress() {
    if !available(
        "the TypeScript MCP SDK (npm ci in crates/gaia-mcp/tests/clients)",
        has_node_sdk(),
    ) {
        return;
    }
    let db = TestDb::sqlite();
    let mut cmd = Command::new("node");
    cmd.current_dir(clients_dir())
        .args(["node_progress.mjs", support::GAIA, &db.url, "3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    support::clean_env(&mut cmd);
    let child = cmd.spawn().unwrap();
    let started = Instant::now();
    let id = loop {
        let list = cli(&db, &["cmd", "list", "--status", "pending", "--json"]);
        if let Some(id) = list.get(0).and_then(|r| r["id"].as_str()) {
            break id.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing was filed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_secs(5));
    cli(&db, &["cmd", "approve", &id, "--as", "olga"]);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "approved", "{v}");
    assert!(v["progress"].as_u64().unwrap() >= 3, "{v}");
}

/// The id of the one pending request in `db`, once filed.
fn pending_id(db: &TestDb) -> String {
    let started = Instant::now();
    loop {
        let list = cli(db, &["cmd", "list", "--status", "pending", "--json"]);
        if let Some(id) = list.get(0).and_then(|r| r["id"].as_str()) {
            return id.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing was filed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The case in real time: a person decides 75 s after the request was filed. The
/// TypeScript client's calls time out after 60 s but the timeout resets on progress (sent
/// every 10 s, the default), and the server waits 90 s, so the first call receives the
/// decision. The Python client handles no progress: the server's default 50 s wait answers
/// `pending` inside its 60 s timeout, and `approval_wait` then receives the decision. Both run
/// at once (the TypeScript one on SQLite, the Python one on PostgreSQL when configured), so
/// the test takes about 80 s.
#[test]
fn a_decision_after_75_seconds_reaches_both_kinds_of_client() {
    if !available(
        "the TypeScript MCP SDK (npm ci in crates/gaia-mcp/tests/clients)",
        has_node_sdk(),
    ) || !available("the Python MCP SDK (pip install mcp)", has_python_sdk())
    {
        return;
    }
    let ts_db = TestDb::sqlite();
    let py_db = backends().pop().unwrap();
    let mut ts = Command::new("node");
    ts.current_dir(clients_dir()).args([
        "node_progress.mjs",
        support::GAIA,
        &ts_db.url,
        "60000",
        "90s",
        "10s",
    ]);
    let mut py = Command::new(python());
    py.arg(clients_dir().join("python_pending.py"))
        .args([support::GAIA, &py_db.url]);
    let children: Vec<_> = [ts, py]
        .into_iter()
        .map(|mut c| {
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            support::clean_env(&mut c);
            c.spawn().unwrap()
        })
        .collect();
    let ids = [pending_id(&ts_db), pending_id(&py_db)];
    // Both requests were filed by now: decide 75 s later.
    std::thread::sleep(Duration::from_secs(75));
    for (db, id) in [&ts_db, &py_db].into_iter().zip(&ids) {
        cli(db, &["cmd", "approve", id, "--as", "olga"]);
    }
    let answers: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    // The decisions did come 75 s after the requests.
    for (db, id) in [&ts_db, &py_db].into_iter().zip(&ids) {
        let r = cli(db, &["cmd", "show", id, "--json"]);
        let at = |k: &str| chrono::DateTime::parse_from_rfc3339(r[k].as_str().unwrap()).unwrap();
        assert!(
            at("decided_at") - at("created_at") >= chrono::TimeDelta::seconds(75),
            "{r}"
        );
    }
    let (ts, py) = (&answers[0], &answers[1]);
    assert_eq!(ts["status"], "approved", "{ts}");
    assert!(ts["progress"].as_u64().unwrap() >= 1, "{ts}");
    assert_eq!(py["first"], "pending", "{py}");
    assert_eq!(py["status"], "approved", "{py}");
    assert!(py["waits"].as_u64().unwrap() >= 1, "{py}");
}
