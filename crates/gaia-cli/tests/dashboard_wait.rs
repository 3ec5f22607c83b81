//! The dashboard decides for a waiting process: a `gaia cmd request --wait` started here appears
//! on the Approvals tab of a real `gaia serve` in real Chromium without a reload, and clicking
//! Approve makes that waiting process exit 0.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test says it was skipped,
//! unless `GAIA_REQUIRE_BROWSER=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ADMIN: &str = "dashboard-wait-admin-token-0123456789";

/// A child process killed (with its process group) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // `--`: a negative number after it is a process group, not an option.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `gaia` command on `db` with a clean environment.
fn gaia(db: &str) -> Command {
    let mut c = support::gaia();
    c.arg("--db").arg(db);
    c
}

/// A minimal WebDriver client for one Chromium session.
struct Driver {
    _chromedriver: Killed,
    base: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start(chromium: &Path, chromedriver: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http
            .get(format!("{base}/status"))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Self {
            _chromedriver: Killed(child),
            base: format!("{base}/session/{session}"),
            http,
            _profile: profile,
        }
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let v: Value = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["value"].clone()
    }

    fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] }))
    }

    fn wait_for(&self, expr: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.js(&format!("return !!({expr});")) != Value::Bool(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn approving_in_the_dashboard_releases_a_waiting_request() {
    let chromium = Path::new("/usr/bin/chromium");
    let chromedriver = Path::new("/usr/bin/chromedriver");
    if !(chromium.exists() && chromedriver.exists()) {
        assert!(
            std::env::var("GAIA_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "GAIA_REQUIRE_BROWSER=1 but chromium/chromedriver were not found"
        );
        println!("skipped: browser test (chromium/chromedriver not found)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gaia.db").display());
    let mut serve = gaia(&db);
    serve
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("MONITOR_ADMIN_TOKEN", ADMIN)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut server = Killed(serve.spawn().unwrap());
    let mut lines = std::io::BufReader::new(server.0.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("gaia serve prints its address")
            .unwrap();
        if let Some(rest) = line.strip_prefix("gaia serving on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };

    // The waiting requester: a separate process on the same database.
    let mut request = gaia(&db);
    request
        .args([
            "cmd",
            "request",
            "--agent",
            "agent-w",
            "--reason",
            "dashboard",
            "--wait",
            "--timeout",
            "60s",
            "--",
            "echo",
            "hi",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut waiting = Killed(request.spawn().unwrap());
    let id = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = gaia(&db)
                .args(["cmd", "list", "--status", "pending", "--json"])
                .output()
                .unwrap();
            let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if let Some(id) = list.get(0).and_then(|r| r["id"].as_str()) {
                break id.to_owned();
            }
            assert!(Instant::now() < deadline, "the request never appeared");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    let d = Driver::start(chromium, chromedriver);
    d.post("/url", json!({ "url": format!("{url}/") }));
    d.wait_for("!document.querySelector('#login').hidden", "the login form");
    d.js(&format!(
        "document.querySelector('#login-token').value = '{ADMIN}';
         document.querySelector('#login-form button[type=submit]').click(); return 1;"
    ));
    d.wait_for(
        "document.querySelector('#conn').textContent === 'live'",
        "the live stream",
    );
    d.js("document.querySelector('#tab-approvals').click(); return 1;");
    let card = format!(".cmd[data-id=\"{id}\"]");
    d.wait_for(
        &format!("document.querySelector('{card}')"),
        "the waiting request on the page",
    );
    d.js(&format!(
        "document.querySelector('{card} button.approve').click(); return 1;"
    ));

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = waiting.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the waiting process never returned"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "approved in the dashboard: the waiting process exits 0"
    );
    let shown = gaia(&db)
        .args(["cmd", "show", &id, "--json"])
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["status"], "approved");
    assert_eq!(shown["decided_by"], "admin");
    assert_eq!(shown["decided_via"], "api");
    drop(server);
}
