//! A line-by-line MCP client of `gaia mcp` for the CLI's tests: it starts the server, does the
//! handshake, and matches responses to requests while keeping notifications aside.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use gaia_testkit::TestDb;
use serde_json::{Value, json};

/// A running `gaia mcp` and the lines it writes.
pub struct Mcp {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
    next_id: i64,
    /// Notifications received while waiting for responses.
    pub notifications: Vec<Value>,
    /// Responses that came before their turn, by id.
    early: HashMap<i64, Value>,
}

impl Mcp {
    pub fn start(db: &TestDb, agent: &str) -> Self {
        Self::start_with(db, agent, &[])
    }

    /// `gaia mcp --agent AGENT` with more arguments, initialized.
    pub fn start_with(db: &TestDb, agent: &str, more: &[&str]) -> Self {
        let mut child = super::gaia()
            .args(["--db", &db.url, "mcp", "--agent", agent])
            .args(more)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout carried a non-protocol line ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut mcp = Self {
            child,
            stdin,
            lines,
            next_id: 0,
            notifications: vec![],
            early: HashMap::new(),
        };
        let init = mcp.request(
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": { "name": "test", "version": "1" },
            }),
        );
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
        assert!(init["result"]["capabilities"]["tools"].is_object());
        mcp.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
        mcp
    }

    pub fn send(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Sends a request without waiting for its answer; returns its id.
    pub fn start_request(&mut self, method: &str, params: Value) -> i64 {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        id
    }

    /// The response to request `id`, waiting at most `bound`; other responses are kept for
    /// their own turn, notifications aside.
    pub fn response(&mut self, id: i64, bound: Duration) -> Option<Value> {
        if let Some(v) = self.early.remove(&id) {
            return Some(v);
        }
        let deadline = std::time::Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let v = self.lines.recv_timeout(left).ok()?;
            match v.get("id").and_then(Value::as_i64) {
                Some(got) if got == id => return Some(v),
                Some(got) => {
                    self.early.insert(got, v);
                }
                None => self.notifications.push(v),
            }
        }
    }

    /// Sends a request and waits (bounded) for its response.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.start_request(method, params);
        self.response(id, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("no answer to {method}"))
    }

    /// Calls a tool: its result, and whether it is an error.
    pub fn call(&mut self, name: &str, arguments: Value) -> (Value, bool) {
        let r = self.request(
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        );
        let result = &r["result"];
        assert!(result.is_object(), "{name}: {r}");
        let is_error = result["isError"].as_bool().unwrap_or(false);
        let text = result["content"][0]["text"].as_str().unwrap().to_owned();
        if is_error {
            return (Value::String(text), true);
        }
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            result["structuredContent"]
        );
        (result["structuredContent"].clone(), false)
    }

    pub fn close(mut self) {
        drop(self.stdin);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "gaia mcp exited with {status}");
    }
}

/// Runs `gaia --db URL ARGS` and reads its stdout as JSON (`null` when it is not JSON).
pub fn cli(db: &TestDb, args: &[&str]) -> Value {
    let out = super::gaia()
        .args(["--db", &db.url])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A database on each backend (PostgreSQL when configured).
pub fn backends() -> Vec<TestDb> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    std::iter::once(TestDb::sqlite())
        .chain(rt.block_on(TestDb::postgres()))
        .collect()
}

/// The newest audit records, oldest first.
pub fn audit(db: &TestDb) -> Vec<Value> {
    let mut records = audit_tail(db);
    records.sort_by_key(|r| r["id"].as_i64());
    records
}

fn audit_tail(db: &TestDb) -> Vec<Value> {
    let out = super::gaia()
        .args([
            "--db", &db.url, "audit", "tail", "--limit", "200", "--ndjson",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
