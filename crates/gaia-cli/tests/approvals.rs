//! Command approvals with the real `gaia` binary, in direct mode and through a real
//! `gaia serve` child (remote mode, `GAIA_URL`/`GAIA_TOKEN`):
//!
//! - decisions racing from several processes released together: exactly one wins (exit 0),
//!   the others are refused (exit 3, `refused: already ...`);
//! - the requester never decides its own request; over the API an agent token cannot decide
//!   at all (403: exit 2, audited as `forbidden`);
//! - a waiter killed with SIGKILL does not undo the decision made afterwards;
//! - `gaia cmd request --wait` exits 0 approved, 10 denied, 11 timed out or expired,
//!   12 cancelled;
//! - concurrent `gaia cmd execute --execute` runs the command exactly once;
//! - without `ALLOW_COMMAND_EXECUTION=1` execution is a recorded dry run; a test request needs
//!   `allow-test` before it can be approved or run;
//! - argv with shell metacharacters, newlines, leading dashes, `../` and long arguments passes
//!   through request, approval and execution literally;
//! - `gaia run --approve` exits with the command's exit code, or 10 when denied;
//! - every transition is one event on the request's subject, and the audit chain verifies.
//!
//! Runs on SQLite and, when `GAIA_TEST_POSTGRES_URL` is set, PostgreSQL. Every child runs in a
//! temporary directory with no `GAIA_*` or prototype variables inherited, and is killed if a
//! test fails while it runs.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gaia_testkit::{TestDb, backend_tests};
use serde_json::{Value, json};
use support::{CHILD_BOUND, GAIA, Server};

backend_tests!(
    racing_decisions_have_one_winner,
    the_requester_never_decides,
    a_killed_waiter_does_not_undo_the_decision,
    wait_exit_codes,
    concurrent_executions_run_once,
    dry_runs_and_test_requests,
    argv_passes_through_literally,
    run_approve_exits_with_the_command_code,
);

/// Execution really allowed.
const EXEC: (&str, &str) = ("ALLOW_COMMAND_EXECUTION", "1");

/// Where a child runs: a fresh working directory, and a database (direct mode) or a server
/// and its token (remote mode).
struct Ctx {
    cwd: tempfile::TempDir,
    db: Option<String>,
    remote: Option<(String, String)>,
    /// Remote mode with the admin token: a command that names who acts (`--agent NAME`,
    /// `--as NAME`) runs with a token of that name, since over the API the token is who acts.
    personas: Option<std::cell::RefCell<std::collections::HashMap<String, String>>>,
}

impl Ctx {
    fn direct(db: &TestDb) -> Self {
        Self {
            cwd: tempfile::tempdir().unwrap(),
            db: Some(db.url.clone()),
            remote: None,
            personas: None,
        }
    }

    /// The token to run `args` with: that of the persona they name, else the context's own.
    fn token_for(&self, args: &[&str]) -> Option<String> {
        let (url, admin) = self.remote.as_ref()?;
        let Some(personas) = &self.personas else {
            return Some(admin.clone());
        };
        let named = args.windows(2).find_map(|w| match w[0] {
            "--as" => Some((w[1], "operator")),
            "--agent" => Some((w[1], "agent")),
            _ => None,
        });
        let Some((name, role)) = named else {
            return Some(admin.clone());
        };
        if let Some(t) = personas.borrow().get(name) {
            return Some(t.clone());
        }
        let out = Command::new(GAIA)
            .env_clear()
            .env("GAIA_URL", url)
            .env("GAIA_TOKEN", admin)
            .args(["token", "create", "--role", role, "--name", name, "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "token for {name}: {out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let token = v["token"].as_str().unwrap().to_owned();
        personas.borrow_mut().insert(name.to_owned(), token.clone());
        Some(token)
    }

    fn dir(&self) -> &Path {
        self.cwd.path()
    }

    /// "direct" or "remote", to keep names apart when both modes share a database.
    fn mode(&self) -> &'static str {
        if self.remote.is_some() {
            "remote"
        } else {
            "direct"
        }
    }

    /// `prefix` (a program and its arguments, default the `gaia` binary) followed by the
    /// global flags of this context and `args`.
    fn command_via(&self, prefix: &[&str], args: &[&str], env: &[(&str, &str)]) -> Command {
        let (program, pre) = prefix.split_first().unwrap_or((&GAIA, &[]));
        let mut c = Command::new(program);
        c.args(pre);
        support::clean_env(&mut c);
        if let (Some((url, _)), Some(token)) = (&self.remote, self.token_for(args)) {
            c.env("GAIA_URL", url).env("GAIA_TOKEN", token);
        }
        c.envs(env.iter().copied()).current_dir(self.dir());
        if let Some(db) = &self.db {
            c.arg("--db").arg(db);
        }
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        Running::start(self.command_via(&[], args, env), args)
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        self.spawn(args, env).finish()
    }

    /// Runs and checks the exit code; for exits 2 and 3, also one `gaia: ...` line on stderr
    /// containing `says`.
    fn expect(&self, args: &[&str], env: &[(&str, &str)], code: i32, says: &str) -> Out {
        let out = self.run(args, env);
        out.expect(code, says);
        out
    }

    /// Runs with `--json` appended, expecting exit 0 and nothing on stderr; returns the JSON.
    fn json(&self, args: &[&str], env: &[(&str, &str)]) -> Value {
        let mut full = args.to_vec();
        full.push("--json");
        let out = self.expect(&full, env, 0, "");
        assert_eq!(out.stderr, "", "{out:?}");
        out.json()
    }

    /// Asks for approval of `argv` as `agent`; returns the request id.
    fn request(&self, agent: &str, extra: &[&str], argv: &[&str]) -> String {
        let mut args = vec!["cmd", "request", "--agent", agent];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(argv);
        let out = self.expect(&args, &[], 0, "");
        let id = out.stdout.trim().to_owned();
        assert_eq!(id.len(), 6, "{out:?}");
        id
    }

    fn show(&self, id: &str) -> Value {
        self.json(&["cmd", "show", id], &[])
    }

    /// The id of the pending request `waiter` files as `requester`, once it exists; if the
    /// waiter exits first, the failure names what it printed.
    fn pending_from(&self, requester: &str, waiter: Running) -> (String, Running) {
        let mut waiter = waiter;
        let start = Instant::now();
        loop {
            let list = self.json(&["cmd", "list", "--status", "pending"], &[]);
            if let Some(r) = list
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["requester"] == requester)
            {
                return (r["id"].as_str().unwrap().to_owned(), waiter);
            }
            if waiter.child.try_wait().unwrap().is_some() {
                let out = waiter.finish();
                panic!("gaia exited before its request of {requester} appeared: {out:?}");
            }
            assert!(
                start.elapsed() < CHILD_BOUND,
                "no pending request of {requester} appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The id of the pending request of `requester`, once it exists (a waiter started it).
    fn pending_of(&self, requester: &str) -> String {
        let start = Instant::now();
        loop {
            let list = self.json(&["cmd", "list", "--status", "pending"], &[]);
            if let Some(r) = list
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["requester"] == requester)
            {
                return r["id"].as_str().unwrap().to_owned();
            }
            assert!(
                start.elapsed() < CHILD_BOUND,
                "no pending request of {requester} appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The (type, actor) of every event about request `id`, in order.
    fn events_of(&self, id: &str) -> Vec<(String, String)> {
        let out = self.expect(&["events", "export", "--ndjson"], &[], 0, "");
        let subject = format!("command/{id}");
        out.stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["subject"] == subject.as_str())
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_owned(),
                    e["actor"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The event types about request `id`, in order.
    fn kinds_of(&self, id: &str) -> Vec<String> {
        self.events_of(id).into_iter().map(|(k, _)| k).collect()
    }

    fn audit_verifies(&self) {
        let out = self.expect(&["audit", "verify"], &[], 0, "");
        assert!(out.stdout.contains("audit chain intact"), "{out:?}");
    }
}

/// A running child whose pipes are drained from the start; killed and reaped if dropped
/// before it finished (a failing test leaves no process behind).
struct Running {
    child: Child,
    what: String,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    started: Instant,
}

impl Running {
    fn start(mut cmd: Command, what: &[&str]) -> Self {
        let mut child = cmd.spawn().unwrap();
        let stdout = support::drain(child.stdout.take());
        let stderr = support::drain(child.stderr.take());
        let mut what = format!("{what:?}");
        what.truncate(300);
        Self {
            child,
            what,
            stdout: Some(stdout),
            stderr: Some(stderr),
            started: Instant::now(),
        }
    }

    /// Waits for it to exit (bounded by [`CHILD_BOUND`]).
    fn finish(mut self) -> Out {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                self.started.elapsed() < CHILD_BOUND,
                "gaia {} did not finish within {CHILD_BOUND:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        Out {
            what: self.what.clone(),
            code: status.code().unwrap_or(-1),
            stdout: text(self.stdout.take().unwrap().join().unwrap()),
            stderr: text(self.stderr.take().unwrap().join().unwrap()),
            elapsed: self.started.elapsed(),
        }
    }

    /// SIGKILL, then checks that it died of it.
    fn kill9(mut self) {
        use std::os::unix::process::ExitStatusExt;
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{}", self.what);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug)]
struct Out {
    what: String,
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("gaia {}: stdout is not JSON ({e}): {self:?}", self.what))
    }

    /// The exit code; for a failure, one `gaia: ...` line on stderr (its last, after any
    /// "waiting" notice) containing `says`.
    fn expect(&self, code: i32, says: &str) {
        assert_eq!(self.code, code, "{self:?}");
        if [2, 3, 10, 11, 12].contains(&code) {
            let last = self.stderr.lines().last().unwrap_or_default();
            assert!(
                last.starts_with("gaia: ") && last.contains(says),
                "stderr should end with one line saying {says:?}: {self:?}"
            );
            if code == 2 {
                assert_eq!(self.stdout, "", "{self:?}");
                assert_eq!(self.stderr.lines().count(), 1, "{self:?}");
            }
        }
    }
}

impl Server {
    /// A context whose commands go through this server with `token`, or by default with a
    /// token named after whoever a command says acts (created with the admin token).
    fn ctx_as(&self, token: Option<&str>) -> Ctx {
        Ctx {
            cwd: tempfile::tempdir().unwrap(),
            db: None,
            remote: Some((self.url.clone(), token.unwrap_or(&self.token).to_owned())),
            personas: token.is_none().then(Default::default),
        }
    }

    fn ctx(&self) -> Ctx {
        self.ctx_as(None)
    }
}

/// Output as text; invalid UTF-8 shows as replacement characters.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Holds each child in a shell until all of them have started, then releases them at once by
/// creating a flag file, so that their calls reach the store together.
const HOLD: &str =
    r#"touch "$1.$2"; while [ ! -e "$1" ]; do sleep 0.001; done; shift 2; exec "$@""#;

/// Runs one `gaia` per argument list, released together; returns their outputs in order.
fn together(ctx: &Ctx, runs: &[Vec<String>], env: &[(&str, &str)]) -> Vec<Out> {
    let gate = tempfile::tempdir().unwrap();
    let flag = gate.path().join("go");
    let flag_s = flag.to_str().unwrap().to_owned();
    let children: Vec<Running> = runs
        .iter()
        .enumerate()
        .map(|(i, args)| {
            let n = i.to_string();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let prefix = ["sh", "-c", HOLD, "sh", &flag_s, &n, GAIA];
            Running::start(ctx.command_via(&prefix, &args, env), &args)
        })
        .collect();
    let start = Instant::now();
    while (0..runs.len()).any(|i| !gate.path().join(format!("go.{i}")).exists()) {
        assert!(start.elapsed() < CHILD_BOUND, "the children did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::fs::write(&flag, b"").unwrap();
    children.into_iter().map(Running::finish).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// The decider as the store records it: the `--as` name directly; over the API the token's
/// name, which a persona context makes the same (see [`Ctx::token_for`]).
fn decider<'a>(_ctx: &Ctx, named: &'a str) -> &'a str {
    named
}

// ---------------------------------------------------------------------------------------------

async fn racing_decisions_have_one_winner(db: &TestDb) {
    let ctx = Ctx::direct(db);
    race(&ctx, 3);
    let server = Server::start(db, &[]);
    race(&server.ctx(), 2);
    ctx.audit_verifies();
}

/// Rounds of six approve/deny processes on one request, released together.
fn race(ctx: &Ctx, rounds: usize) {
    for round in 0..rounds {
        let agent = format!("racer-{}-{round}", ctx.mode());
        let id = ctx.request(&agent, &[], &["true"]);
        let runs: Vec<Vec<String>> = (0..6)
            .map(|i| {
                let verb = if i % 2 == 0 { "approve" } else { "deny" };
                let name = format!("op{i}");
                strings(&["cmd", verb, &id, "--as", decider(ctx, &name), "--json"])
            })
            .collect();
        let outs = together(ctx, &runs, &[]);
        let winners: Vec<usize> = (0..outs.len()).filter(|&i| outs[i].code == 0).collect();
        assert_eq!(winners.len(), 1, "round {round}: {outs:#?}");
        let w = winners[0];
        let status = if w % 2 == 0 { "approved" } else { "denied" };
        let by = decider(ctx, &format!("op{w}")).to_owned();
        let won = outs[w].json();
        assert_eq!(won["status"], status, "{won}");
        assert_eq!(won["decided_by"], by.as_str(), "{won}");
        assert_eq!(outs[w].stderr, "", "{:?}", outs[w]);
        for (i, out) in outs.iter().enumerate().filter(|(i, _)| *i != w) {
            out.expect(3, &format!("refused: already {status} by {by}"));
            // The same line in both modes: remote mode adds nothing the store does not say.
            assert!(!out.stderr.contains("(status"), "loser {i}: {out:?}");
            // The refusal prints the request as it stands: the winner's decision.
            let v = out.json();
            assert_eq!(
                (&v["status"], &v["decided_by"]),
                (&json!(status), &json!(by))
            );
            assert_eq!(out.stderr.lines().count(), 1, "loser {i}: {out:?}");
        }
        let shown = ctx.show(&id);
        assert_eq!(shown["status"], status);
        assert_eq!(shown["decided_by"], by.as_str());
        let kind = format!("command.{status}");
        assert_eq!(
            ctx.events_of(&id),
            [
                ("approval.requested".to_owned(), agent.clone()),
                (kind, by.clone())
            ],
            "exactly one decision is recorded"
        );
    }
}

async fn the_requester_never_decides(db: &TestDb) {
    let ctx = Ctx::direct(db);
    let id = ctx.request("alice-agent", &[], &["echo", "hi"]);
    for verb in ["approve", "deny"] {
        ctx.expect(
            &["cmd", verb, &id, "--as", "alice-agent"],
            &[],
            3,
            "refused: the requester cannot decide its own request",
        );
    }
    let test_id = ctx.request("alice-agent", &["--test"], &["echo", "hi"]);
    ctx.expect(
        &["cmd", "allow-test", &test_id, "--as", "alice-agent"],
        &[],
        3,
        "refused: the requester cannot allow its own test request",
    );
    assert_eq!(ctx.show(&id)["status"], "pending");
    assert_eq!(ctx.show(&test_id)["test_allowed"], false);
    assert_eq!(ctx.kinds_of(&id), ["approval.requested"]);
    assert_eq!(ctx.kinds_of(&test_id), ["approval.requested"]);

    // Over the API the decider is the token's name.
    let server = Server::start(db, &[]);
    let admin = server.ctx();
    let token = |role: &str, name: &str| -> String {
        let v = admin.json(&["token", "create", "--role", role, "--name", name], &[]);
        v["token"].as_str().unwrap().to_owned()
    };
    let agent = server.ctx_as(Some(&token("agent", "agent-t")));
    let operator = server.ctx_as(Some(&token("operator", "op-self")));
    // An agent token may ask, but not decide: 403, which the CLI maps to exit 2 (a 4xx that is
    // neither 404 nor 409), and the refusal is audited.
    let asked = agent.request("agent-t", &[], &["echo", "from", "agent"]);
    for verb in ["approve", "deny"] {
        agent.expect(
            &["cmd", verb, &asked, "--as", "agent-t"],
            &[],
            2,
            &format!("command.{verb} needs the operator role"),
        );
    }
    agent.expect(
        &["cmd", "execute", &asked, "--execute"],
        &[EXEC],
        2,
        "needs the operator role",
    );
    let audit = admin.expect(&["audit", "tail", "--ndjson", "--limit", "50"], &[], 0, "");
    let forbidden: Vec<Value> = audit
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|a| a["outcome"] == "forbidden" && a["actor"] == "agent-t")
        .collect();
    let actions: Vec<&str> = forbidden
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["command.approve", "command.deny", "command.execute"],
        "{forbidden:?}"
    );
    assert_eq!(admin.show(&asked)["status"], "pending");
    // An operator token deciding a request it filed itself is the requester.
    let own = operator.request("op-self", &[], &["echo", "mine"]);
    operator.expect(
        &["cmd", "approve", &own, "--as", "op-self"],
        &[],
        3,
        "refused: the requester cannot decide its own request",
    );
    assert_eq!(admin.show(&own)["status"], "pending");
    // Over the API the token's name decides: another name with --as is refused, not ignored.
    operator.expect(
        &["cmd", "approve", &asked, "--as", "someone-else"],
        &[],
        2,
        "--as someone-else: in remote mode the token's name (op-self) acts",
    );
    assert_eq!(admin.show(&asked)["status"], "pending");
    // It may decide the agent's request, with its own name or none.
    let v = operator.json(&["cmd", "approve", &asked], &[]);
    assert_eq!(
        (&v["status"], &v["decided_by"], &v["decided_via"]),
        (&json!("approved"), &json!("op-self"), &json!("api"))
    );
    assert_eq!(
        admin.kinds_of(&asked),
        ["approval.requested", "command.approved"]
    );
    assert_eq!(admin.kinds_of(&own), ["approval.requested"]);
    admin.audit_verifies();
}

async fn a_killed_waiter_does_not_undo_the_decision(db: &TestDb) {
    let server = Server::start(db, &[]);
    for ctx in [Ctx::direct(db), server.ctx()] {
        let agent = format!("waiter-{}", ctx.mode());
        let waiter = ctx.spawn(
            &[
                "cmd",
                "request",
                "--agent",
                &agent,
                "--wait",
                "--timeout",
                "60s",
                "--",
                "echo",
                "hi",
            ],
            &[],
        );
        let id = ctx.pending_of(&agent);
        // Let it settle into waiting (polling, or a long-poll held by the server).
        std::thread::sleep(Duration::from_millis(300));
        waiter.kill9();
        let v = ctx.json(
            &[
                "cmd",
                "approve",
                &id,
                "--as",
                decider(&ctx, "op-after-kill"),
            ],
            &[],
        );
        assert_eq!(v["status"], "approved");
        let shown = ctx.show(&id);
        assert_eq!(shown["status"], "approved", "{shown}");
        assert_eq!(shown["decided_by"], decider(&ctx, "op-after-kill"));
        assert_eq!(
            ctx.kinds_of(&id),
            ["approval.requested", "command.approved"]
        );
        // A new waiter sees the decision at once.
        let out = ctx.expect(&["cmd", "show", &id], &[], 0, "");
        assert!(out.stdout.contains("status:    approved"), "{out:?}");
        ctx.audit_verifies();
    }
}

async fn wait_exit_codes(db: &TestDb) {
    let server = Server::start(db, &[]);
    for ctx in [Ctx::direct(db), server.ctx()] {
        waits(&ctx);
        ctx.audit_verifies();
    }
}

fn waits(ctx: &Ctx) {
    let m = ctx.mode();
    let waiter = |agent: &str, extra: &[&str]| -> Running {
        let mut args = vec!["cmd", "request", "--agent", agent, "--wait"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "echo", "waited"]);
        ctx.spawn(&args, &[])
    };

    // Approved: exit 0, one line on stdout, the waiting notice on stderr.
    let agent = format!("w-approve-{m}");
    let w = waiter(&agent, &["--timeout", "60s"]);
    let id = ctx.pending_of(&agent);
    ctx.json(&["cmd", "approve", &id, "--as", decider(ctx, "op")], &[]);
    let out = w.finish();
    out.expect(0, "");
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    assert!(
        out.stdout.starts_with(&id) && out.stdout.contains("approved"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains(&format!("waiting for a decision on {id}")),
        "{out:?}"
    );
    assert_eq!(
        ctx.kinds_of(&id),
        ["approval.requested", "command.approved"]
    );

    // Denied: exit 10; cancelled: exit 12. With --json, the record as it ended.
    for (verb, code, status) in [("deny", 10, "denied"), ("cancel", 12, "cancelled")] {
        let agent = format!("w-{verb}-{m}");
        let w = waiter(&agent, &["--timeout", "60s", "--json"]);
        let id = ctx.pending_of(&agent);
        let by = if verb == "cancel" {
            agent.as_str()
        } else {
            "op"
        };
        ctx.json(&["cmd", verb, &id, "--as", decider(ctx, by)], &[]);
        let out = w.finish();
        assert_eq!(out.code, code, "{out:?}");
        assert_eq!(out.json()["status"], status, "{out:?}");
        assert_eq!(
            ctx.kinds_of(&id),
            ["approval.requested".to_owned(), format!("command.{status}")]
        );
    }

    // --timeout passes: exit 11, and the request is still pending (and can still be decided).
    let agent = format!("w-timeout-{m}");
    let out = waiter(&agent, &["--timeout", "1s", "--json"]).finish();
    assert_eq!(out.code, 11, "{out:?}");
    let v = out.json();
    assert_eq!(v["status"], "pending", "{v}");
    assert!(
        out.elapsed >= Duration::from_secs(1) && out.elapsed < Duration::from_secs(15),
        "{out:?}"
    );
    let id = v["id"].as_str().unwrap();
    ctx.json(&["cmd", "deny", id, "--as", decider(ctx, "op")], &[]);
    assert_eq!(ctx.kinds_of(id), ["approval.requested", "command.denied"]);

    // The request expires while waiting: exit 11, recorded as expired.
    let agent = format!("w-expire-{m}");
    let out = waiter(&agent, &["--expires", "1s", "--json"]).finish();
    assert_eq!(out.code, 11, "{out:?}");
    let v = out.json();
    assert_eq!(v["status"], "expired", "{v}");
    assert!(out.elapsed < Duration::from_secs(15), "{out:?}");
    let id = v["id"].as_str().unwrap();
    assert_eq!(ctx.show(id)["status"], "expired");
    ctx.expect(
        &["cmd", "approve", id, "--as", decider(ctx, "op")],
        &[],
        3,
        "refused: already expired",
    );
    assert_eq!(ctx.kinds_of(id), ["approval.requested", "command.expired"]);
}

async fn concurrent_executions_run_once(db: &TestDb) {
    let server = Server::start(db, &[EXEC]);
    for ctx in [Ctx::direct(db), server.ctx()] {
        let agent = format!("exec-agent-{}", ctx.mode());
        // Appends one line, then stays "executing" for a moment so the others overlap it.
        let id = ctx.request(&agent, &[], &["sh", "-c", "echo ran >> ran.txt; sleep 0.3"]);
        ctx.json(&["cmd", "approve", &id, "--as", decider(&ctx, "op")], &[]);
        let runs: Vec<Vec<String>> = (0..5)
            .map(|i| {
                strings(&[
                    "cmd",
                    "execute",
                    &id,
                    "--execute",
                    "--as",
                    decider(&ctx, &format!("exec{i}")),
                    "--json",
                ])
            })
            .collect();
        let outs = together(&ctx, &runs, &[EXEC]);
        let winners: Vec<usize> = (0..outs.len()).filter(|&i| outs[i].code == 0).collect();
        assert_eq!(winners.len(), 1, "{outs:#?}");
        let w = winners[0];
        for (i, out) in outs.iter().enumerate().filter(|(i, _)| *i != w) {
            assert_eq!(out.code, 3, "executor {i}: {out:?}");
            out.expect(
                3,
                "refused: cannot execute: it was already executed (execution happens at most once)",
            );
        }
        assert_eq!(
            std::fs::read_to_string(ctx.dir().join("ran.txt")).unwrap(),
            "ran\n",
            "the command ran exactly once"
        );
        let executor = decider(&ctx, &format!("exec{w}")).to_owned();
        let shown = ctx.show(&id);
        assert_eq!(shown["status"], "executed", "{shown}");
        assert_eq!(shown["execution"]["executor"], executor.as_str(), "{shown}");
        assert_eq!(shown["execution"]["exit_code"], 0, "{shown}");
        assert_eq!(shown["execution"]["dry_run"], false, "{shown}");
        assert_eq!(
            ctx.events_of(&id),
            [
                ("approval.requested".to_owned(), agent.clone()),
                (
                    "command.approved".to_owned(),
                    decider(&ctx, "op").to_owned()
                ),
                ("command.executing".to_owned(), executor.clone()),
                ("command.executed".to_owned(), executor.clone()),
            ]
        );
        // And never again, not even as a dry run.
        ctx.expect(
            &["cmd", "execute", &id, "--execute"],
            &[EXEC],
            3,
            "at most once",
        );
        ctx.expect(&["cmd", "execute", &id], &[], 3, "at most once");
        assert_eq!(
            std::fs::read_to_string(ctx.dir().join("ran.txt")).unwrap(),
            "ran\n"
        );
        ctx.audit_verifies();
    }
}

async fn dry_runs_and_test_requests(db: &TestDb) {
    let ctx = Ctx::direct(db);
    // Without ALLOW_COMMAND_EXECUTION, --execute records a dry run and runs nothing.
    let id = ctx.request("dry-agent", &[], &["touch", "dry-ran"]);
    ctx.json(&["cmd", "approve", &id, "--as", "op"], &[]);
    let out = ctx.expect(
        &["cmd", "execute", &id, "--execute", "--as", "op", "--json"],
        &[],
        0,
        "",
    );
    assert!(
        out.stderr
            .contains("ALLOW_COMMAND_EXECUTION is not 1: recording a dry run instead"),
        "{out:?}"
    );
    let v = out.json();
    assert_eq!(
        (&v["status"], &v["execution"]),
        (&json!("dryrun"), &Value::Null)
    );
    // With execution allowed but without --execute: a dry run too.
    let v = ctx.json(&["cmd", "execute", &id, "--as", "op"], &[EXEC]);
    assert_eq!(v["status"], "dryrun");
    assert!(!ctx.dir().join("dry-ran").exists(), "a dry run ran it");
    assert_eq!(
        ctx.events_of(&id),
        [
            ("approval.requested".to_owned(), "dry-agent".to_owned()),
            ("command.approved".to_owned(), "op".to_owned()),
            ("command.executed.dryrun".to_owned(), "op".to_owned()),
            ("command.executed.dryrun".to_owned(), "op".to_owned()),
        ]
    );

    // A test request: not approvable and not executable until allow-test.
    let id = ctx.request("test-agent", &["--test"], &["touch", "test-ran"]);
    let v = ctx.show(&id);
    assert_eq!(
        (&v["is_test"], &v["test_allowed"]),
        (&json!(true), &json!(false))
    );
    ctx.expect(
        &["cmd", "approve", &id, "--as", "op"],
        &[],
        3,
        "refused: this is a test request: use allow-test before approving it",
    );
    ctx.expect(
        &["cmd", "execute", &id, "--execute", "--as", "op"],
        &[EXEC],
        3,
        "refused: cannot execute: it is still waiting for a decision",
    );
    ctx.expect(
        &["cmd", "allow-test", &id, "--as", "test-agent"],
        &[],
        3,
        "refused: the requester cannot allow its own test request",
    );
    let v = ctx.json(&["cmd", "allow-test", &id, "--as", "op"], &[]);
    assert_eq!(
        (&v["status"], &v["test_allowed"]),
        (&json!("pending"), &json!(true))
    );
    ctx.expect(
        &["cmd", "allow-test", &id, "--as", "op"],
        &[],
        3,
        "already allowed",
    );
    assert!(!ctx.dir().join("test-ran").exists());
    ctx.json(&["cmd", "approve", &id, "--as", "op2"], &[]);
    let v = ctx.json(&["cmd", "execute", &id, "--execute", "--as", "op"], &[EXEC]);
    assert_eq!(v["status"], "executed", "{v}");
    assert!(ctx.dir().join("test-ran").exists());
    assert_eq!(
        ctx.kinds_of(&id),
        [
            "approval.requested",
            "command.allowed_test",
            "command.approved",
            "command.executing",
            "command.executed",
        ]
    );
    // A test request can be denied without allow-test.
    let denied = ctx.request("test-agent", &["--test"], &["touch", "never"]);
    ctx.json(&["cmd", "deny", &denied, "--as", "op"], &[]);
    ctx.expect(
        &["cmd", "execute", &denied, "--execute"],
        &[EXEC],
        3,
        "cannot execute: it was denied",
    );
    assert_eq!(
        ctx.kinds_of(&denied),
        ["approval.requested", "command.denied"]
    );

    // A server that does not allow execution records a dry run even when the client asks.
    let server = Server::start(db, &[]);
    let remote = server.ctx();
    let id = remote.request("dry-remote", &[], &["touch", "remote-ran"]);
    remote.json(&["cmd", "approve", &id, "--as", "op"], &[]);
    let v = remote.json(&["cmd", "execute", &id, "--execute"], &[EXEC]);
    assert_eq!(v["status"], "dryrun", "{v}");
    assert!(!remote.dir().join("remote-ran").exists());
    assert!(!server.dir.path().join("remote-ran").exists());
    assert_eq!(
        remote.kinds_of(&id),
        [
            "approval.requested",
            "command.approved",
            "command.executed.dryrun"
        ]
    );
    ctx.audit_verifies();
}

async fn argv_passes_through_literally(db: &TestDb) {
    let server = Server::start(db, &[EXEC]);
    let long = "L".repeat(60_000);
    let mut argv: Vec<&str> = vec![
        "printf",
        "%s\\n",
        ";",
        "a; touch pwned-semicolon",
        "|",
        "| touch pwned-pipe",
        "&",
        "&& touch pwned-and",
        "$(touch pwned-subst)",
        "`touch pwned-backtick`",
        "\\",
        "back\\slash\\n",
        "two\nlines",
        "\r\ttabbed",
        "-n",
        "--help",
        "-",
        "--",
        "../../../etc/passwd",
        "../",
        "'single' \"double\"",
        "*",
        "~",
        "$HOME",
        "",
        "  spaced  out  ",
        "ü ✓ 日本",
        "> redirected",
    ];
    argv.push(&long);
    let expected: String = argv[2..].iter().map(|a| format!("{a}\n")).collect();
    for ctx in [Ctx::direct(db), server.ctx()] {
        let agent = format!("literal-{}", ctx.mode());
        let id = ctx.request(&agent, &[], &argv);
        let shown = ctx.show(&id);
        assert_eq!(
            shown["command"],
            json!({ "argv": argv }),
            "stored literally"
        );
        assert_eq!(shown["cwd"], ctx.dir().to_str().unwrap());
        let v = ctx.json(&["cmd", "approve", &id, "--as", decider(&ctx, "op")], &[]);
        assert_eq!(v["command"], json!({ "argv": argv }));
        let v = ctx.json(
            &[
                "cmd",
                "execute",
                &id,
                "--execute",
                "--as",
                decider(&ctx, "op"),
            ],
            &[EXEC],
        );
        assert_eq!(v["status"], "executed", "{}", v["execution"]);
        let shown = ctx.show(&id);
        let e = &shown["execution"];
        assert_eq!(e["exit_code"], 0, "{e}");
        assert_eq!(e["stdout_truncated"], false, "{e}");
        assert_eq!(e["stderr"], "", "{e}");
        let stdout = e["stdout"].as_str().unwrap();
        assert_eq!(stdout.len(), expected.len());
        assert!(stdout == expected, "the output differs from the arguments");
        for dir in [ctx.dir(), server.dir.path()] {
            let names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                !names.iter().any(|n| n.starts_with("pwned")),
                "a shell interpreted an argument: {names:?}"
            );
        }
        assert_eq!(
            ctx.kinds_of(&id),
            [
                "approval.requested",
                "command.approved",
                "command.executing",
                "command.executed",
            ]
        );
        ctx.audit_verifies();
    }
}

async fn run_approve_exits_with_the_command_code(db: &TestDb) {
    let ctx = Ctx::direct(db);
    let run = |agent: &str, script: &str| -> Running {
        ctx.spawn(
            &[
                "run",
                "--approve",
                "--agent",
                agent,
                "--timeout",
                "60s",
                "--",
                "sh",
                "-c",
                script,
            ],
            &[],
        )
    };

    // Approved by another process: it runs here, with our stdio, and its exit code is gaia's.
    let r = run("runner-7", "echo out; echo ran >> run.txt; exit 7");
    let (id, r) = ctx.pending_from("runner-7", r);
    ctx.json(&["cmd", "approve", &id, "--as", "op"], &[]);
    let out = r.finish();
    assert_eq!(out.code, 7, "{out:?}");
    assert_eq!(
        out.stdout, "out\n",
        "the command writes to our stdout: {out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(ctx.dir().join("run.txt")).unwrap(),
        "ran\n"
    );
    let shown = ctx.show(&id);
    assert_eq!(shown["status"], "failed", "{shown}");
    assert_eq!(shown["execution"]["exit_code"], 7, "{shown}");
    assert_eq!(shown["execution"]["executor"], "runner-7", "{shown}");
    assert_eq!(
        ctx.kinds_of(&id),
        [
            "approval.requested",
            "command.approved",
            "command.executing",
            "command.executed",
        ]
    );
    // It ran once: it cannot also be executed elsewhere.
    ctx.expect(
        &["cmd", "execute", &id, "--execute"],
        &[EXEC],
        3,
        "at most once",
    );

    // Success is exit 0.
    let r = run("runner-0", "exit 0");
    let (id, r) = ctx.pending_from("runner-0", r);
    ctx.json(&["cmd", "approve", &id, "--as", "op"], &[]);
    assert_eq!(r.finish().code, 0);
    assert_eq!(ctx.show(&id)["status"], "executed");

    // Denied: exit 10 with one line naming the request, and nothing runs.
    let r = run("runner-10", "touch should-not-run");
    let (id, r) = ctx.pending_from("runner-10", r);
    ctx.json(&["cmd", "deny", &id, "--as", "op"], &[]);
    let out = r.finish();
    out.expect(10, &format!("{id} was denied"));
    assert!(!ctx.dir().join("should-not-run").exists());
    assert_eq!(ctx.kinds_of(&id), ["approval.requested", "command.denied"]);
    ctx.audit_verifies();

    // Over the API: the requester is the token, which then runs the command itself.
    let server = Server::start(db, &[]);
    let admin = server.ctx();
    let token = admin.json(
        &["token", "create", "--role", "agent", "--name", "runner-api"],
        &[],
    );
    let agent = server.ctx_as(Some(token["token"].as_str().unwrap()));
    let r = agent.spawn(
        &[
            "run",
            "--approve",
            "--timeout",
            "60s",
            "--",
            "sh",
            "-c",
            "exit 7",
        ],
        &[],
    );
    let (id, r) = admin.pending_from("runner-api", r);
    admin.json(&["cmd", "approve", &id, "--as", "admin"], &[]);
    let out = r.finish();
    assert_eq!(out.code, 7, "{out:?}");
    let shown = admin.show(&id);
    assert_eq!(shown["status"], "failed", "{shown}");
    assert_eq!(shown["execution"]["executor"], "runner-api", "{shown}");
}
