//! The dashboard in a real browser: Chromium driven through chromedriver with plain WebDriver
//! HTTP calls. Logs in with an operator token, watches a request filed elsewhere appear
//! without a reload, approves it, checks that a test item's Approve waits for Allow test,
//! requeues a dead message, checks that a cross-site POST with the session cookie is refused,
//! and writes screenshots of every tab at 1280 px and 360 px for people to look at. Also: the
//! events panel carries on without a gap across a server restart on the same address, a dead
//! Telegram message requeued from the Outbox tab reaches the fake Bot API, the overview's
//! time to first render is measured and printed, and the Backlog tab shows stories, claims,
//! ready and blocked work and triages follow-ups (also at 360 px), escaping every title.
//!
//! Without Chromium and chromedriver the test says it was skipped, unless
//! `GAIA_REQUIRE_BROWSER=1`, under which it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, options};
use gaia_core::Gaia;
use gaia_core::backlog::{
    Followup, FollowupStatus, NewFollowup, NewStory, NewTask, Taken, TaskStatus, Template,
};
use gaia_core::claims::{Holder, Request};
use gaia_core::commands::{CommandSpec, NewCommand, Status};
use gaia_core::names::ClaimKey;
use gaia_core::outbox::{Attempt, Channel, NewMessage, RetryPolicy, Target};
use gaia_core::store::StoreOptions;
use gaia_core::tokens::Role;
use gaia_core::usecase::backlog::{Fenced, TaskAction};
use gaia_server::AppState;
use gaia_server::senders::Senders;
use gaia_telegram::BotClient;
use gaia_testkit::TestDb;
use gaia_testkit::fake_telegram::{FakeTelegram, Fault};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const TABS: [&str; 8] = [
    "overview",
    "approvals",
    "backlog",
    "claims",
    "outbox",
    "events",
    "audit",
    "metrics",
];

fn browser_paths() -> Option<(PathBuf, PathBuf)> {
    let chromium = std::env::var_os("GAIA_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let driver = std::env::var_os("GAIA_CHROMEDRIVER")
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from);
    (chromium.exists() && driver.exists()).then_some((chromium, driver))
}

/// A chromedriver process and one browser session. Dropping it ends the session and kills
/// chromedriver's whole process group (the browser included), on every exit path.
struct Driver {
    child: Child,
    port: u16,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start(chromium: &Path, chromedriver: &Path) -> Self {
        use std::os::unix::process::CommandExt;
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
        let profile = tempfile::tempdir().unwrap();
        let mut d = Self {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = d
                .http
                .get(format!("{}/status", d.base))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--hide-scrollbars",
                    format!("--user-data-dir={}", d._profile.path().display())]
            }
        }}});
        let v = d.call(reqwest::Method::POST, "/session", Some(caps)).await;
        d.session = v["sessionId"].as_str().expect("a session id").to_owned();
        d
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("chromedriver answers");
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    async fn s(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body).await
    }

    async fn goto(&self, url: &str) {
        self.s(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn size(&self, width: u32, height: u32) {
        self.s(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.s(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Runs `script` as an asynchronous script: it ends by calling its last argument.
    async fn js_async(&self, script: &str) -> Value {
        self.s(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .s(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.s(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.s(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Waits until `expr` (a JavaScript expression) is true in the page.
    async fn wait_for(&self, expr: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.js(&format!("return !!({expr});")).await == Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                let page = self
                    .js("return document.querySelector('main').innerText.slice(0, 2000);")
                    .await;
                panic!("timed out waiting for {what}; the page shows: {page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, path: &Path) {
        let v = self.s(reqwest::Method::GET, "/screenshot", None).await;
        std::fs::write(path, base64_decode(v.as_str().unwrap())).unwrap();
    }

    async fn cookie(&self, name: &str) -> String {
        let v = self
            .s(reqwest::Method::GET, &format!("/cookie/{name}"), None)
            .await;
        v["value"].as_str().unwrap().to_owned()
    }

    /// Ends the browser session with a blocking request (usable from `Drop`).
    fn end_session(&self) {
        use std::io::{Read, Write};
        if self.session.is_empty() {
            return;
        }
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = write!(
            s,
            "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.session, self.port
        );
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.end_session();
        // chromedriver leads its own process group: end the browser with it.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let mut n = 0u32;
        for (i, &c) in data.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        let keep = data.len().saturating_sub(1);
        out.extend_from_slice(&n.to_be_bytes()[1..=keep]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}

async fn request(server: &Server, display: &str, is_test: bool) -> String {
    request_on(server.gaia(), display, is_test).await
}

async fn request_on(gaia: &Gaia, display: &str, is_test: bool) -> String {
    let new = NewCommand::new(
        CommandSpec::Shell(display.into()),
        Some("/srv/shop".into()),
        Some("checkout-flow".into()),
        None,
        Some(if is_test {
            "FAKE_ONREPLY_TEST_2026".into()
        } else {
            "browser test".into()
        }),
        "agent-claude-1",
        is_test,
        Some(Duration::from_secs(3600)),
    )
    .unwrap();
    gaia.request_command(&new).await.unwrap().id
}

/// Data for every panel: claims, events, a dead message.
async fn fill(server: &Server) -> i64 {
    let g = server.gaia();
    for (story, agent) in [
        ("checkout-flow", "agent-claude-1"),
        ("search-index", "agent-codex-2"),
    ] {
        let key = ClaimKey::new(story, "default").unwrap();
        let req = Request::acquire(
            key,
            agent,
            Some("ops"),
            Some("fp"),
            Some(Duration::from_secs(900)),
        )
        .unwrap();
        g.apply_claim(&req).await.unwrap();
    }
    g.emit_event(
        "chat.message",
        "agent-claude-1",
        "story/checkout-flow",
        json!({"text": "starting on the payment form"}),
    )
    .await
    .unwrap();
    let ids = g
        .enqueue_messages(&[NewMessage {
            channel: Channel::Webhook,
            target: "http://127.0.0.1:9/unreachable".into(),
            kind: "alert".into(),
            payload: json!({"text": "nobody listens"}),
            dedupe_key: Some("browser-dead".into()),
        }])
        .await
        .unwrap();
    g.store()
        .outbox_record(
            ids[0],
            &Attempt::Fatal("connection refused".into()),
            &RetryPolicy::default(),
            0.5,
        )
        .await
        .unwrap();
    ids[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser_paths() else {
        assert!(
            std::env::var("GAIA_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "GAIA_REQUIRE_BROWSER=1 but chromium/chromedriver were not found"
        );
        println!("skipped: browser test (chromium/chromedriver not found)");
        return;
    };
    let db = TestDb::sqlite();
    let server = Server::start(&db, options(&db)).await;
    let (_, operator) = server
        .gaia()
        .create_token("ops.dash", Role::Operator, "test")
        .await
        .unwrap();
    let dead_id = fill(&server).await;
    let d = Driver::start(&chromium, &chromedriver).await;
    d.size(1280, 900).await;

    // Log in once.
    d.goto(&format!("{}/", server.base)).await;
    d.wait_for("!document.querySelector('#login').hidden", "the login form")
        .await;
    d.type_into("#login-token", &operator).await;
    d.click("#login-form button[type=submit]").await;
    d.wait_for(
        "document.querySelector('#who-role').textContent === 'operator'",
        "logged in as operator",
    )
    .await;
    d.wait_for(
        "document.querySelector('#conn').textContent === 'live'",
        "the stream",
    )
    .await;

    // A request filed elsewhere appears without a reload; Approve approves it in the store.
    d.click("#tab-approvals").await;
    d.js("window.__sameDocument = true; return 1;").await;
    let id = request(&server, "make deploy-staging", false).await;
    let card = format!(".cmd[data-id=\"{id}\"]");
    d.wait_for(
        &format!("document.querySelector('{card}')"),
        "the new request",
    )
    .await;
    assert_eq!(
        d.js("return window.__sameDocument === true;").await,
        Value::Bool(true),
        "the page was not reloaded"
    );
    d.click(&format!("{card} button.approve")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = server.gaia().get_command(&id).await.unwrap();
        if c.status == Status::Approved {
            assert_eq!(c.decided_by.as_deref(), Some("ops.dash"), "audited by name");
            break;
        }
        assert!(Instant::now() < deadline, "not approved: {:?}", c.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.wait_for(
        &format!("!document.querySelector('{card}')"),
        "the approved request leaving the pending list",
    )
    .await;

    // A test item's Approve is disabled until Allow test.
    let test_id = request(&server, "echo FAKE_ONREPLY_TEST_2026", true).await;
    let test_card = format!(".cmd[data-id=\"{test_id}\"]");
    d.wait_for(
        &format!("document.querySelector('{test_card} .tag-test')"),
        "the test request, marked TEST",
    )
    .await;
    assert_eq!(
        d.js(&format!(
            "return document.querySelector('{test_card} button.approve').disabled;"
        ))
        .await,
        Value::Bool(true),
        "Approve is disabled on a test item"
    );
    d.click(&format!("{test_card} button.allow-test")).await;
    d.wait_for(
        &format!("!document.querySelector('{test_card} button.approve').disabled"),
        "Approve enabled after Allow test",
    )
    .await;
    assert!(
        server
            .gaia()
            .get_command(&test_id)
            .await
            .unwrap()
            .test_allowed
    );

    // A cross-site POST with the session cookie is refused, CSRF token or not.
    let cookie = d.cookie("gaia_session").await;
    let pending = request(&server, "rm -rf build", false).await;
    let url = server.url(&format!("/api/v1/commands/{pending}/approve"));
    let res = server
        .client
        .post(&url)
        .header("cookie", format!("gaia_session={cookie}"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    common::expect_problem(res, 403, "cross-site POST without a CSRF token").await;
    let me: Value = server
        .client
        .get(server.url("/dashboard/session"))
        .header("cookie", format!("gaia_session={cookie}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = me["csrf"].as_str().unwrap();
    let res = server
        .client
        .post(&url)
        .header("cookie", format!("gaia_session={cookie}"))
        .header("x-csrf-token", csrf)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    common::expect_problem(res, 403, "cross-site POST from a foreign origin").await;
    assert_eq!(
        server.gaia().get_command(&pending).await.unwrap().status,
        Status::Pending
    );
    let audit = server.gaia().list_audit_tail(20).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.action == "csrf" && r.actor == "ops.dash" && r.outcome == "forbidden"),
        "the refusal is audited"
    );

    // Requeue from the dead set.
    d.click("#tab-outbox").await;
    let row = format!("#dead tr[data-id=\"{dead_id}\"]");
    d.wait_for(&format!("document.querySelector('{row}')"), "the dead row")
        .await;
    d.click(&format!("{row} button.requeue")).await;
    d.wait_for(
        &format!("!document.querySelector('{row}')"),
        "the requeued message leaving the dead set",
    )
    .await;
    let dead = server
        .gaia()
        .list_messages(Some(gaia_core::outbox::Status::Dead), 10)
        .await
        .unwrap();
    assert!(dead.iter().all(|m| m.id != dead_id));

    // Screenshots of every tab, wide and narrow.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    for (width, height) in [(1280, 900), (360, 780)] {
        d.size(width, height).await;
        for tab in TABS {
            d.click(&format!("#tab-{tab}")).await;
            d.wait_for(
                &format!("!document.querySelector('#p-{tab}').hidden"),
                "the tab",
            )
            .await;
            tokio::time::sleep(Duration::from_millis(if tab == "overview" {
                1500
            } else {
                500
            }))
            .await;
            d.screenshot(&dir.join(format!("{tab}-{width}.png"))).await;
        }
    }
    println!("screenshots: {}", dir.display());

    // Logging out ends the session: the page asks for a token again.
    d.click("#logout").await;
    d.wait_for("!document.querySelector('#login').hidden", "the login form")
        .await;
    drop(d);
    server.stop().await;
}

/// The browser paths, or `None` after saying the test is skipped (a failure under
/// `GAIA_REQUIRE_BROWSER=1`).
fn browser_or_skip() -> Option<(PathBuf, PathBuf)> {
    let found = browser_paths();
    if found.is_none() {
        assert!(
            std::env::var("GAIA_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "GAIA_REQUIRE_BROWSER=1 but chromium/chromedriver were not found"
        );
        println!("skipped: browser test (chromium/chromedriver not found)");
    }
    found
}

/// Logs in at `base` with `token` and waits for the live stream.
async fn log_in(d: &Driver, base: &str, token: &str) {
    d.goto(&format!("{base}/")).await;
    d.wait_for("!document.querySelector('#login').hidden", "the login form")
        .await;
    d.type_into("#login-token", token).await;
    d.click("#login-form button[type=submit]").await;
    d.wait_for(
        "document.querySelector('#conn').textContent === 'live'",
        "the stream",
    )
    .await;
}

/// A server on a listener the test chose (so a restart can bind the same address).
struct Node {
    base: String,
    gaia: Gaia,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Node {
    fn serve(listener: TcpListener, state: AppState) -> Self {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let gaia = state.gaia.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(gaia_server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            gaia,
            stop: Some(stop),
            task,
        }
    }

    /// Shuts the server down through `serve`'s shutdown signal and waits for it to return.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = std::mem::replace(&mut self.task, tokio::spawn(async { Ok(()) }));
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds `addr` again, retrying while the old socket lets go of it.
async fn rebind(addr: std::net::SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "could not bind {addr} again: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The seqs the events list shows, newest first.
async fn shown_seqs(d: &Driver) -> Vec<i64> {
    let v = d
        .js("return Array.from(document.querySelectorAll('#events li')).map((li) => Number(li.dataset.seq));")
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_panel_resumes_after_a_server_restart() {
    let Some((chromium, chromedriver)) = browser_or_skip() else {
        return;
    };
    let db = TestDb::sqlite();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(
        Gaia::new(db.open(&StoreOptions::default()).await),
        options(&db),
        Some(common::ADMIN),
    )
    .await
    .unwrap();
    let node = Node::serve(listener, state);
    let (_, operator) = node
        .gaia
        .create_token("ops.restart", Role::Operator, "test")
        .await
        .unwrap();
    for n in 0..3 {
        node.gaia
            .emit_event(
                "chat.message",
                "agent-a",
                "story/restart",
                json!({ "n": n }),
            )
            .await
            .unwrap();
    }
    let d = Driver::start(&chromium, &chromedriver).await;
    d.size(1280, 900).await;
    log_in(&d, &node.base, &operator).await;
    d.click("#tab-events").await;
    d.js("window.__sameDocument = true; return 1;").await;
    let head = node.gaia.store().last_seq().await.unwrap();
    d.wait_for(
        &format!("document.querySelector('#events li[data-seq=\"{head}\"]')"),
        "the newest event in the list",
    )
    .await;
    d.wait_for(
        &format!("document.querySelector('#d-last').textContent === '{head}'"),
        "the debug panel's last event id",
    )
    .await;

    // Down: events are appended straight to the database.
    node.stop().await;
    d.wait_for(
        "document.querySelector('#conn').textContent !== 'live'",
        "the page noticing the server went away",
    )
    .await;
    let offline = Gaia::new(db.open(&StoreOptions::default()).await);
    for n in 3..8 {
        offline
            .emit_event(
                "chat.message",
                "agent-b",
                "story/restart",
                json!({ "n": n }),
            )
            .await
            .unwrap();
    }
    drop(offline);

    // Up again on the same address and database; more events through the new server.
    let state = AppState::new(
        Gaia::new(db.open(&StoreOptions::default()).await),
        options(&db),
        Some(common::ADMIN),
    )
    .await
    .unwrap();
    let node = Node::serve(rebind(addr).await, state);
    for n in 8..12 {
        node.gaia
            .emit_event(
                "chat.message",
                "agent-c",
                "story/restart",
                json!({ "n": n }),
            )
            .await
            .unwrap();
    }
    let head = node.gaia.store().last_seq().await.unwrap();
    d.wait_for(
        &format!("document.querySelector('#events li[data-seq=\"{head}\"]')"),
        "the events appended after the restart",
    )
    .await;
    d.wait_for(
        &format!("document.querySelector('#d-last').textContent === '{head}'"),
        "the debug panel's last event id after the restart",
    )
    .await;
    assert_eq!(
        d.js("return window.__sameDocument === true;").await,
        Value::Bool(true),
        "the page was not reloaded"
    );
    let seqs = shown_seqs(&d).await;
    let missing: Vec<i64> = (1..=head).filter(|s| !seqs.contains(s)).collect();
    assert!(missing.is_empty(), "missing {missing:?}; shown {seqs:?}");
    let mut unique = seqs.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        seqs.len(),
        "an event is shown twice: {seqs:?}"
    );
    let reconnects = d
        .js("return Number(document.querySelector('#d-reconnects').textContent);")
        .await;
    assert!(reconnects.as_i64().unwrap() >= 1, "reconnects {reconnects}");
    drop(d);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_telegram_message_is_delivered() {
    const CHAT: i64 = -100_424;
    let Some((chromium, chromedriver)) = browser_or_skip() else {
        return;
    };
    let fake = FakeTelegram::start().await;
    let db = TestDb::sqlite();
    let targets = vec![Target {
        channel: Channel::Telegram,
        target: CHAT.to_string(),
    }];
    let bot = BotClient::new(fake.base_url(), fake.token()).unwrap();
    let state = AppState::new(
        Gaia::new(db.open(&StoreOptions::default()).await).with_notify(targets),
        options(&db),
        Some(common::ADMIN),
    )
    .await
    .unwrap()
    .with_senders(Senders::new(Some(bot), None));
    let node = Node::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), state);
    let (_, operator) = node
        .gaia
        .create_token("ops.telegram", Role::Operator, "test")
        .await
        .unwrap();

    // The bot is blocked on the first send: the approval message goes dead at once.
    fake.fail_next(
        "sendMessage",
        Fault::Forbidden("bot was blocked by the user".into()),
    );
    request_on(&node.gaia, "make deploy-telegram", false).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead_id = loop {
        let dead = node
            .gaia
            .list_messages(Some(gaia_core::outbox::Status::Dead), 10)
            .await
            .unwrap();
        if let Some(m) = dead.first() {
            assert_eq!(m.channel, Channel::Telegram);
            break m.id;
        }
        assert!(Instant::now() < deadline, "the message never went dead");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(fake.sent_messages().is_empty());

    // Requeue from the Outbox tab; the fake receives it.
    let d = Driver::start(&chromium, &chromedriver).await;
    d.size(1280, 900).await;
    log_in(&d, &node.base, &operator).await;
    d.click("#tab-outbox").await;
    let row = format!("#dead tr[data-id=\"{dead_id}\"]");
    d.wait_for(&format!("document.querySelector('{row}')"), "the dead row")
        .await;
    d.click(&format!("{row} button.requeue")).await;
    let sent = fake.wait_for_sent(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].chat_id, CHAT);
    assert!(
        sent[0].plain_text.contains("make deploy-telegram"),
        "{}",
        sent[0].plain_text
    );
    d.wait_for(
        &format!("!document.querySelector('{row}')"),
        "the requeued message leaving the dead set",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = node
            .gaia
            .list_messages(None, 10)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.id == dead_id)
            .unwrap();
        if m.status == gaia_core::outbox::Status::Sent {
            break;
        }
        assert!(Instant::now() < deadline, "not marked sent: {:?}", m.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(d);
    node.stop().await;
}

/// Time from navigation start to the overview's stat cards all holding numbers, on data like
/// `gaia serve --demo` loads, for a browser that already has a session (a reload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_time_to_first_render() {
    let Some((chromium, chromedriver)) = browser_or_skip() else {
        return;
    };
    let db = TestDb::sqlite();
    let server = Server::start(&db, options(&db)).await;
    let (_, operator) = server
        .gaia()
        .create_token("ops.render", Role::Operator, "test")
        .await
        .unwrap();
    fill(&server).await;
    request(&server, "make migrate-search-index", false).await;
    request(&server, "echo FAKE_ONREPLY_TEST_2026", true).await;
    let d = Driver::start(&chromium, &chromedriver).await;
    d.size(1280, 900).await;
    log_in(&d, &server.base, &operator).await;
    let script = "const done = arguments[arguments.length - 1];
        const ids = ['s-approvals', 's-claims', 's-pending', 's-dead', 's-epm', 's-alerts'];
        const check = () => {
          if (ids.every((i) => document.getElementById(i).textContent !== '\u{2013}')) done(performance.now());
          else setTimeout(check, 2);
        };
        check();";
    let mut times = Vec::new();
    for _ in 0..3 {
        d.goto(&format!("{}/", server.base)).await;
        let t = d.js_async(script).await.as_f64().unwrap();
        times.push(t);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "overview time to first render: median {:.0} ms (runs {times:.0?})",
        times[1]
    );
    assert!(times[1] < 10_000.0, "first render took {:.0} ms", times[1]);
    drop(d);
    server.stop().await;
}

/// A story title that would run script if it were ever put into the page as HTML.
const SCRIPT_TITLE: &str = "<script>window.__xss = 1</script> Harden the login";
/// A follow-up title that would run script as HTML.
const IMG_TITLE: &str = "<img src=x onerror=\"window.__xss = 2\"> Escape avatar names";

/// What [`fill_backlog`] made.
struct Backlog {
    done: i64,
    in_progress: i64,
    blocked: i64,
    /// A task that waits for `in_progress`.
    waiting: i64,
    ready: i64,
    /// Ready too: the task of the finalized list.
    reindex: i64,
    /// Follow-ups: to accept, to reject, and one left pending.
    accept: i64,
    reject: i64,
    pending: i64,
}

fn new_story(slug: &str, title: &str) -> NewStory {
    NewStory {
        slug: slug.into(),
        title: title.into(),
        description: String::new(),
        labels: vec!["web".into()],
    }
}

fn new_task(title: &str, blocked_by: Vec<i64>) -> NewTask {
    NewTask {
        title: title.into(),
        body: "- [ ] it works".into(),
        blocked_by,
    }
}

fn followup_doc(story: &str, name: &str, title: &str) -> NewFollowup {
    NewFollowup {
        path: format!("doc/{story}.agent-claude-1.T2.{name}.md"),
        hash: format!("hash-{name}"),
        story: story.into(),
        agent: "agent-claude-1".into(),
        task: "T2".into(),
        title: title.into(),
        body: "- [ ] <b>not bold</b>".into(),
    }
}

/// Stories with tasks in every status, a held claim, a finalized list, a task waiting for
/// another, ready work and three follow-ups waiting for triage.
async fn fill_backlog(g: &Gaia) -> Backlog {
    let tpl = Template::default();
    g.create_story(&new_story("checkout-flow", "Checkout flow"), &tpl, "op")
        .await
        .unwrap();
    let mut ids = Vec::new();
    for title in ["Build the form", "Validate cards", "Handle 3-D Secure"] {
        ids.push(
            g.add_task("checkout-flow", &new_task(title, vec![]), "op")
                .await
                .unwrap()
                .id,
        );
    }
    let waiting = g
        .add_task(
            "checkout-flow",
            &new_task("Show the receipt", vec![ids[1]]),
            "op",
        )
        .await
        .unwrap()
        .id;
    let holder = Holder {
        agent: "agent-claude-1".into(),
        operator: "ops".into(),
        fingerprint: "fp".into(),
        principal: None,
    };
    let Taken::Took { task, claim } = g
        .take_ready(
            Some("checkout-flow"),
            &holder,
            Duration::from_secs(900),
            "agent-claude-1",
        )
        .await
        .unwrap()
    else {
        panic!("nothing ready in checkout-flow");
    };
    assert_eq!(task.id, ids[0]);
    let fenced = Fenced {
        agent: "agent-claude-1".into(),
        token: claim.token,
        principal: None,
    };
    g.act_on_task(ids[0], &TaskAction::Done, Some(&fenced), "agent-claude-1")
        .await
        .unwrap();
    g.act_on_task(ids[1], &TaskAction::Start, Some(&fenced), "agent-claude-1")
        .await
        .unwrap();
    g.act_on_task(
        ids[2],
        &TaskAction::Block("waiting for the sandbox keys".into()),
        None,
        "agent-claude-1",
    )
    .await
    .unwrap();

    g.create_story(&new_story("login-hardening", SCRIPT_TITLE), &tpl, "op")
        .await
        .unwrap();
    let ready = g
        .add_task(
            "login-hardening",
            &new_task("<b>Rate-limit</b> the login form", vec![]),
            "op",
        )
        .await
        .unwrap()
        .id;
    g.create_story(&new_story("search-index", "Search index"), &tpl, "op")
        .await
        .unwrap();
    let reindex = g
        .add_task("search-index", &new_task("Reindex products", vec![]), "op")
        .await
        .unwrap()
        .id;
    g.finalize_list("search-index", "op").await.unwrap();

    let mut followups = Vec::new();
    for (story, name, title) in [
        (
            "login-hardening",
            "lockout",
            "Lock accounts after ten failures",
        ),
        ("checkout-flow", "avatars", IMG_TITLE),
        ("login-hardening", "captcha", "Consider a captcha"),
    ] {
        let (_, f) = g
            .collect_followup(&followup_doc(story, name, title), "collector")
            .await
            .unwrap();
        followups.push(f.id);
    }
    Backlog {
        done: ids[0],
        in_progress: ids[1],
        blocked: ids[2],
        waiting,
        ready,
        reindex,
        accept: followups[0],
        reject: followups[1],
        pending: followups[2],
    }
}

/// Waits until follow-up `id` is no longer pending.
async fn triaged(g: &Gaia, id: i64) -> Followup {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let f = g.get_followup(id).await.unwrap();
        if f.status != FollowupStatus::Pending {
            return f;
        }
        assert!(Instant::now() < deadline, "follow-up {id} was not triaged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Scrolls the Backlog tab's stories into view (for a screenshot).
async fn stories_in_view(d: &Driver) {
    d.js("document.querySelector('#bl-blocked-title').scrollIntoView(); return 1;")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Whether the page scrolls sideways (it must not at any width).
async fn overflows(d: &Driver) -> Value {
    d.js("const e = document.documentElement; \
        const wide = Array.from(document.querySelectorAll('#p-backlog .story, #p-backlog .followup, #p-backlog .tasks li')) \
          .filter((el) => el.getBoundingClientRect().right > e.clientWidth + 1).map((el) => el.className); \
        return e.scrollWidth > e.clientWidth ? `page ${e.scrollWidth} > ${e.clientWidth}: ${wide.join(', ')}` : (wide.length ? wide.join(', ') : false);")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_tab_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser_or_skip() else {
        return;
    };
    let db = TestDb::sqlite();
    let server = Server::start(&db, options(&db)).await;
    let g = server.gaia().clone();
    let (_, operator) = g
        .create_token("ops.backlog", Role::Operator, "test")
        .await
        .unwrap();
    let (_, agent) = g
        .create_token("agent.backlog", Role::Agent, "test")
        .await
        .unwrap();
    let b = fill_backlog(&g).await;
    let d = Driver::start(&chromium, &chromedriver).await;
    d.size(1280, 900).await;
    log_in(&d, &server.base, &operator).await;
    d.wait_for(
        "document.querySelector('#badge-backlog').textContent === '3'",
        "the badge counting follow-ups to triage",
    )
    .await;
    d.click("#tab-backlog").await;
    d.js("window.__sameDocument = true; return 1;").await;
    d.wait_for(
        "document.querySelectorAll('#bl-stories .story').length === 3",
        "the open stories",
    )
    .await;

    // Stories with their tasks' statuses, the claim's holder, ready work, blocked work.
    let story = ".story[data-slug=\"checkout-flow\"]";
    for (id, status) in [
        (b.done, "done"),
        (b.in_progress, "in_progress"),
        (b.blocked, "blocked"),
        (b.waiting, "todo"),
    ] {
        assert_eq!(
            d.js(&format!(
                "return document.querySelector('{story} li.task[data-id=\"{id}\"]').dataset.status;"
            ))
            .await,
            json!(status),
            "task {id}"
        );
    }
    let holder = d
        .js(&format!(
            "return document.querySelector('{story} .holder').textContent;"
        ))
        .await;
    let holder = holder.as_str().unwrap();
    assert!(
        holder.contains("agent-claude-1")
            && holder.contains("held")
            && holder.contains("expires in"),
        "{holder}"
    );
    assert!(
        d.js(&format!(
            "return document.querySelector('{story} li.task[data-id=\"{}\"]').textContent;",
            b.in_progress
        ))
        .await
        .as_str()
        .unwrap()
        .contains("agent-claude-1"),
        "the worker is shown"
    );
    assert!(
        d.js("return document.querySelector('.story[data-slug=\"search-index\"] .pill.final') !== null;")
            .await
            .as_bool()
            .unwrap(),
        "the finalized list is marked"
    );
    assert!(
        d.js("return document.querySelector('.story[data-slug=\"login-hardening\"] .holder').textContent;")
            .await
            .as_str()
            .unwrap()
            .contains("nobody holds"),
    );
    let ready = d
        .js("return Array.from(document.querySelectorAll('#bl-ready li[data-id]')).map((li) => Number(li.dataset.id));")
        .await;
    assert_eq!(
        ready,
        json!([b.ready, b.reindex]),
        "the first tasks of the lists nobody holds are ready, not their final ones"
    );
    let blocked = d
        .js(&format!(
            "return [document.querySelector('#bl-blocked li[data-id=\"{}\"]').textContent, \
                     document.querySelector('#bl-blocked li[data-id=\"{}\"]').textContent];",
            b.blocked, b.waiting
        ))
        .await;
    assert!(
        blocked[0]
            .as_str()
            .unwrap()
            .contains("Blocked: waiting for the sandbox keys"),
        "{blocked}"
    );
    assert!(
        blocked[1]
            .as_str()
            .unwrap()
            .contains(&format!("Waits for #{}", b.in_progress)),
        "{blocked}"
    );

    // Titles are text, never markup.
    let shown = d
        .js("return document.querySelector('.story[data-slug=\"login-hardening\"] .title').textContent;")
        .await;
    assert_eq!(shown, json!(SCRIPT_TITLE));
    let shown = d
        .js(&format!(
            "return document.querySelector('.followup[data-id=\"{}\"] .title').textContent;",
            b.reject
        ))
        .await;
    assert_eq!(shown, json!(IMG_TITLE));
    assert_eq!(
        d.js("return [document.querySelectorAll('#p-backlog script, #p-backlog img, #p-backlog b').length, typeof window.__xss];")
            .await,
        json!([0, "undefined"]),
        "no markup from the data was parsed"
    );

    // A task added elsewhere appears without a reload, in its story and in ready work.
    let added = g
        .add_task(
            "login-hardening",
            &new_task("Log failed logins", vec![]),
            "agent-claude-1",
        )
        .await
        .unwrap()
        .id;
    d.wait_for(
        &format!(
            "document.querySelector('.story[data-slug=\"login-hardening\"] li.task[data-id=\"{added}\"]') \
             && document.querySelector('#bl-ready li[data-id=\"{added}\"]')"
        ),
        "the task added through the service",
    )
    .await;
    assert_eq!(
        d.js("return window.__sameDocument === true;").await,
        Value::Bool(true),
        "the page was not reloaded"
    );

    // Accept: the follow-up becomes a task of its story, shown at once.
    d.click(&format!(
        ".followup[data-id=\"{}\"] button.accept",
        b.accept
    ))
    .await;
    let f = triaged(&g, b.accept).await;
    assert_eq!(f.status, FollowupStatus::Accepted);
    assert_eq!(
        f.decided_by.as_deref(),
        Some("ops.backlog"),
        "audited by name"
    );
    let task = f.task_id.unwrap();
    d.wait_for(
        &format!(
            "!document.querySelector('.followup[data-id=\"{}\"]') \
             && document.querySelector('.story[data-slug=\"login-hardening\"] li.task[data-id=\"{task}\"]')",
            b.accept
        ),
        "the accepted follow-up leaving the list as a task",
    )
    .await;
    d.wait_for(
        "document.querySelector('#badge-backlog').textContent === '2'",
        "the badge after accepting",
    )
    .await;

    // A follow-up changed elsewhere is shown without a reload: one more to triage.
    let (_, late) = g
        .collect_followup(
            &followup_doc("checkout-flow", "late", "Collected while watching"),
            "collector",
        )
        .await
        .unwrap();
    d.wait_for(
        &format!(
            "document.querySelector('.followup[data-id=\"{}\"]')",
            late.id
        ),
        "the newly collected follow-up",
    )
    .await;

    // The dashboard's routes take the session only, its CSRF token on POST, and an operator.
    let accept = server.url(&format!(
        "/dashboard/backlog/followups/{}/accept",
        b.pending
    ));
    let res = server
        .client
        .get(server.url("/dashboard/backlog"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    common::expect_problem(res, 401, "a bearer token on a dashboard route").await;
    let cookie = d.cookie("gaia_session").await;
    let res = server
        .client
        .post(&accept)
        .header("cookie", format!("gaia_session={cookie}"))
        .header("origin", &server.base)
        .send()
        .await
        .unwrap();
    common::expect_problem(res, 403, "accept without a CSRF token").await;
    let (agent_cookie, agent_csrf) = server.login(&agent).await;
    let res = server
        .client
        .post(&accept)
        .header("cookie", &agent_cookie)
        .header("x-csrf-token", &agent_csrf)
        .header("origin", &server.base)
        .send()
        .await
        .unwrap();
    common::expect_problem(res, 403, "accept by an agent").await;
    let res = server
        .client
        .get(server.url("/dashboard/backlog"))
        .header("cookie", &agent_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "any role reads the backlog");
    assert_eq!(
        g.get_followup(b.pending).await.unwrap().status,
        FollowupStatus::Pending,
        "refused requests change nothing"
    );

    // Wide screenshot, then narrow: the page does not scroll sideways, and Reject works there.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(overflows(&d).await, Value::Bool(false), "at 1280 px");
    d.screenshot(&dir.join("backlog-triage-1280.png")).await;
    stories_in_view(&d).await;
    d.screenshot(&dir.join("backlog-stories-1280.png")).await;
    d.size(360, 780).await;
    d.wait_for(
        "document.documentElement.clientWidth <= 360",
        "the narrow window",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(overflows(&d).await, Value::Bool(false), "at 360 px");
    stories_in_view(&d).await;
    d.screenshot(&dir.join("backlog-stories-360.png")).await;
    d.js("window.scrollTo(0, 0); return 1;").await;
    d.screenshot(&dir.join("backlog-triage-360.png")).await;

    // Reject asks for a reason: none, nothing is sent; with one, the follow-up is rejected.
    let card = format!(".followup[data-id=\"{}\"]", b.reject);
    d.click(&format!("{card} button.ask-reject")).await;
    let input = format!("#fu-reason-{}", b.reject);
    d.wait_for(
        &format!("document.activeElement === document.querySelector('{input}')"),
        "the reason field, focused",
    )
    .await;
    assert_eq!(
        overflows(&d).await,
        Value::Bool(false),
        "the reason form at 360 px"
    );
    d.screenshot(&dir.join("backlog-reject-360.png")).await;
    d.type_into(&input, "   ").await;
    d.click(&format!("{card} form.reject-form button.deny"))
        .await;
    d.wait_for(
        &format!("document.querySelector('{input}').getAttribute('aria-invalid') === 'true'"),
        "the reason marked missing",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        g.get_followup(b.reject).await.unwrap().status,
        FollowupStatus::Pending,
        "no reason, no rejection"
    );
    d.type_into(&input, "duplicate of the avatar story").await;
    d.click(&format!("{card} form.reject-form button.deny"))
        .await;
    let f = triaged(&g, b.reject).await;
    assert_eq!(f.status, FollowupStatus::Rejected);
    assert_eq!(
        f.reason.as_deref().map(str::trim),
        Some("duplicate of the avatar story")
    );
    assert_eq!(f.decided_by.as_deref(), Some("ops.backlog"));
    d.wait_for(
        &format!("!document.querySelector('{card}')"),
        "the rejected follow-up leaving the list",
    )
    .await;

    // A task finished elsewhere changes its status in place.
    g.act_on_task(
        b.in_progress,
        &TaskAction::Done,
        Some(&Fenced {
            agent: "agent-claude-1".into(),
            token: g
                .get_claim(&ClaimKey::new("checkout-flow", "default").unwrap())
                .await
                .unwrap()
                .token,
            principal: None,
        }),
        "agent-claude-1",
    )
    .await
    .unwrap();
    d.wait_for(
        &format!(
            "document.querySelector('{story} li.task[data-id=\"{}\"]').dataset.status === 'done' \
             && !document.querySelector('#bl-blocked li[data-id=\"{}\"]')",
            b.in_progress, b.waiting
        ),
        "the finished task and the one that waited for it",
    )
    .await;
    assert_eq!(
        g.get_task(b.in_progress).await.unwrap().status,
        TaskStatus::Done
    );
    assert_eq!(
        overflows(&d).await,
        Value::Bool(false),
        "at 360 px, after the changes"
    );
    assert_eq!(
        d.js("return [window.__sameDocument === true, typeof window.__xss];")
            .await,
        json!([true, "undefined"]),
        "the same page all along, and no script from the data ran"
    );
    println!("screenshots: {}", dir.display());
    drop(d);
    server.stop().await;
}
