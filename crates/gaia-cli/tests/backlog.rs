//! The backlog's command line, driven through the real `gaia` binary: stories and todolists
//! with --json, the final-task rule (`todo validate` exit 1, then 0), finalize and archive,
//! ready work taken with its claim and finished with its fencing token (a stale token is exit
//! 3), follow-up child docs collected once however often and however concurrently `collect`
//! runs (a malformed doc is listed as FILE:LINE and makes exit 2 while the others are still
//! collected), `backlog export` -> `import` -> `export` byte-identical and an edited file
//! imported as its differences only, and bad input that exits 2 (3 for a missing story, as
//! NotFound does everywhere in the CLI) with one line on stderr and no event appended.
//!
//! Runs on SQLite and, when `GAIA_TEST_POSTGRES_URL` is set, on PostgreSQL. Every child runs
//! in a temporary directory with no `GAIA_*` or prototype variables inherited.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use gaia_testkit::{TestDb, backend_tests};
use serde_json::Value;
use support::finish;

backend_tests!(
    stories_and_todolists_with_json,
    the_final_task_rule_finalize_and_archive,
    ready_take_then_done_with_the_token,
    followups_are_collected_once,
    export_import_export_is_byte_identical,
    bad_input_changes_nothing,
    remote_mode_against_a_server_with_a_configured_template,
);

/// Where a child runs: a fresh working directory and the database.
struct Ctx {
    cwd: tempfile::TempDir,
    db: String,
}

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

impl Ctx {
    fn new(db: &TestDb) -> Self {
        Self {
            cwd: tempfile::tempdir().unwrap(),
            db: db.url.clone(),
        }
    }

    fn dir(&self) -> &Path {
        self.cwd.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = support::gaia();
        c.current_dir(self.dir())
            .arg("--db")
            .arg(&self.db)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        let (code, stdout, stderr) = finish(self.command(args).spawn().unwrap(), &args);
        Out {
            code,
            stdout,
            stderr,
        }
    }

    /// Runs `gaia ARGS`, checks the exit code, and for failures (2, 3) that stdout is empty
    /// and stderr one `gaia: ...` line containing `stderr_has`.
    fn check(&self, args: &[&str], code: i32, stderr_has: &str) -> Out {
        let out = self.run(args);
        assert_eq!(out.code, code, "gaia {args:?}: {out:?}");
        match code {
            0 => assert_eq!(out.stderr, "", "gaia {args:?}: {out:?}"),
            2 | 3 => {
                assert_eq!(out.stdout, "", "gaia {args:?}: {out:?}");
                assert_eq!(out.stderr.lines().count(), 1, "gaia {args:?}: {out:?}");
                assert!(out.stderr.starts_with("gaia: "), "gaia {args:?}: {out:?}");
            }
            _ => {}
        }
        assert!(
            out.stderr.contains(stderr_has),
            "gaia {args:?}: stderr lacks {stderr_has:?}: {out:?}"
        );
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        self.check(&args, 0, "").json()
    }

    /// The newest event's seq.
    fn last_seq(&self) -> i64 {
        let events = self.json(&w("events tail --limit 1"));
        events
            .as_array()
            .unwrap()
            .last()
            .map_or(0, |e| e["seq"].as_i64().unwrap())
    }

    /// The events after `seq`.
    fn events_since(&self, seq: i64) -> Vec<Value> {
        let since = seq.to_string();
        let v = self.json(&["events", "tail", "--since", &since]);
        v.as_array().unwrap().clone()
    }

    fn story(&self, slug: &str) {
        self.check(
            &["story", "create", slug, "--title", &format!("Story {slug}")],
            0,
            "",
        );
    }

    /// Adds a task and returns its id.
    fn add(&self, story: &str, title: &str) -> i64 {
        self.json(&["todo", "add", story, "--title", title])["id"]
            .as_i64()
            .unwrap()
    }
}

/// Splits a command line written as one string (arguments without spaces).
fn w(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn stories_and_todolists_with_json(db: &TestDb) {
    let ctx = Ctx::new(db);
    let s = ctx.json(&[
        "story",
        "create",
        "auth",
        "--title",
        "Login with OAuth",
        "--description",
        "- why",
        "--label",
        "backend",
        "--label",
        "security",
    ]);
    assert_eq!(s["slug"], "auth");
    assert_eq!(s["status"], "open");
    assert_eq!(s["todolist"], "default");
    assert_eq!(s["labels"], serde_json::json!(["backend", "security"]));
    let a = ctx.add("auth", "write the login");
    let b = ctx.json(&[
        "todo",
        "add",
        "auth",
        "--title",
        "test the login",
        "--body",
        "- [ ] it works",
        "--after",
        &a.to_string(),
    ]);
    assert_eq!(b["blocked_by"], serde_json::json!([a]));
    assert_eq!(b["body"], "- [ ] it works");
    let tasks = ctx.json(&w("todo list auth"));
    let titles: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles.len(), 3);
    assert_eq!(titles[..2], ["write the login", "test the login"]);
    assert!(
        titles[2].starts_with("FINAL"),
        "the template's final task stays last"
    );
    let view = ctx.json(&w("story show auth"));
    assert_eq!(view["slug"], "auth");
    assert_eq!(view["tasks"].as_array().unwrap().len(), 3);
    assert_eq!(view["lists"][0]["name"], "default");
    let id = b["id"].as_i64().unwrap().to_string();
    assert_eq!(ctx.json(&["todo", "show", &id])["title"], "test the login");
    let shown = ctx.check(&["todo", "show", &id], 0, "").stdout;
    assert!(
        shown.contains("test the login [after #") && shown.contains("    - [ ] it works"),
        "{shown}"
    );

    // Block and unblock as an operator, move within the list; the final task stays last.
    let blocked = ctx.json(&["todo", "block", &id, "--reason", "waits for review"]);
    assert_eq!(blocked["status"], "blocked");
    assert_eq!(blocked["reason"], "waits for review");
    assert_eq!(ctx.json(&["todo", "unblock", &id])["status"], "todo");
    assert_eq!(ctx.json(&["todo", "move", &id, "--to", "1"])["position"], 1);
    ctx.check(
        &["todo", "move", &a.to_string(), "--to", "3"],
        3,
        "final task must stay last",
    );

    // Close and reopen; list by status.
    assert_eq!(ctx.json(&w("story close auth"))["status"], "closed");
    ctx.story("other");
    let open = ctx.json(&w("story list --status open"));
    assert_eq!(open.as_array().unwrap().len(), 1);
    assert_eq!(open[0]["slug"], "other");
    ctx.check(&["todo", "add", "auth", "--title", "late"], 3, "closed");
    assert_eq!(ctx.json(&w("story reopen auth"))["status"], "open");
    assert_eq!(ctx.json(&w("story list")).as_array().unwrap().len(), 2);
    let human = ctx.check(&w("story show auth"), 0, "").stdout;
    assert!(
        human
            .starts_with("auth open todolist=default \"Login with OAuth\" labels=backend,security"),
        "{human}"
    );
    let seq = ctx.last_seq();
    let events = ctx.events_since(0);
    assert_eq!(events.last().unwrap()["seq"], seq);
    let k = kinds(&events);
    for want in [
        "story.created",
        "todo.added",
        "todo.blocked",
        "todo.unblocked",
        "todo.moved",
        "story.closed",
        "story.reopened",
    ] {
        assert!(k.iter().any(|k| k == want), "{want} in {k:?}");
    }
}

async fn the_final_task_rule_finalize_and_archive(db: &TestDb) {
    let ctx = Ctx::new(db);
    ctx.story("auth");
    ctx.add("auth", "write the login");
    ctx.check(&w("todo validate"), 0, "");
    assert_eq!(
        ctx.json(&w("todo validate --story auth")),
        serde_json::json!([])
    );

    // The final task loses its marker (an edited export): the rule breaks.
    let out = ctx.dir().join("out");
    ctx.check(&["backlog", "export", out.to_str().unwrap()], 0, "");
    let file = out.join("auth.md");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("] #1 FINAL: verify", "] #1 verify");
    std::fs::write(&file, text).unwrap();
    ctx.check(&["backlog", "import", out.to_str().unwrap()], 0, "");
    let broken = ctx.run(&w("todo validate"));
    assert_eq!(broken.code, 1, "{broken:?}");
    assert!(
        broken.stdout.contains(
            "auth/default: its last task is not marked MANDATORY, FINAL or FINALIZATION: #1"
        ),
        "{broken:?}"
    );
    let v = ctx.run(&w("todo validate --json"));
    assert_eq!(v.code, 1);
    assert_eq!(v.json()[0]["todolist"], "default");
    assert_eq!(v.json()[0]["last"]["id"], 1);

    // A final task appended last mends it.
    ctx.add("auth", "FINALIZATION: ship it");
    ctx.check(&w("todo validate"), 0, "");

    // Finalized: nothing more is appended, and nothing changes.
    let f = ctx.json(&w("todo finalize auth"));
    assert!(f["finalized_at"].is_string());
    let seq = ctx.last_seq();
    ctx.check(&["todo", "add", "auth", "--title", "late"], 3, "finalized");
    assert_eq!(ctx.last_seq(), seq);

    // Archive: a fresh list from the template; the old one keeps its tasks.
    let s = ctx.json(&w("todo archive auth"));
    assert_eq!(s["todolist"], "default");
    assert!(s["finalized_at"].is_null());
    let fresh = ctx.json(&w("todo list auth"));
    assert_eq!(fresh.as_array().unwrap().len(), 1);
    let view = ctx.json(&w("story show auth"));
    let archived: Vec<&str> = view["lists"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| !l["archived_at"].is_null())
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(archived.len(), 1);
    assert!(archived[0].starts_with("default@"));
    let old = ctx.json(&["todo", "list", "auth", "--todolist", archived[0]]);
    assert_eq!(old.as_array().unwrap().len(), 3);
    ctx.add("auth", "next round");
    let next = ctx.json(&w("todo new auth --name phase-2"));
    assert_eq!(next["todolist"], "phase-2");
    assert_eq!(ctx.json(&w("todo list auth"))[0]["todolist"], "phase-2");
    let k = kinds(&ctx.events_since(seq));
    assert_eq!(
        k,
        [
            "todo.archived",
            "todo.list_created",
            "todo.added",
            "todo.archived",
            "todo.list_created"
        ]
    );
}

async fn ready_take_then_done_with_the_token(db: &TestDb) {
    let ctx = Ctx::new(db);
    ctx.story("pay");
    let t = ctx.add("pay", "charge the card");
    let ready = ctx.json(&w("ready --story pay"));
    assert_eq!(
        ready.as_array().unwrap().len(),
        1,
        "the final task waits for the others"
    );
    assert_eq!(ready[0]["id"], t);
    let took = ctx.json(&w("ready --take --agent a1 --ttl 10m --operator op"));
    assert_eq!(took["taken"], true);
    assert_eq!(took["task"]["id"], t);
    assert_eq!(took["task"]["status"], "in_progress");
    assert_eq!(took["task"]["worker"], "a1");
    let token = took["token"].as_i64().unwrap();
    assert!(token > 0 && took["expires_at"].is_string());
    let claim = ctx.json(&w("claim inspect pay"));
    assert_eq!(claim["holder"]["agent"], "a1");
    assert_eq!(claim["token"], token);

    // Nothing else is ready: exit 1, saying why.
    let none = ctx.run(&w("ready --take --agent a2"));
    assert_eq!(none.code, 1, "{none:?}");
    assert!(none.stdout.starts_with("nothing is ready"), "{none:?}");
    let none = ctx.run(&w("ready --take --agent a2 --json"));
    assert_eq!(none.json()["taken"], false);

    // The holder lets go and takes the list again: its old token is stale.
    ctx.check(&w("claim release pay --agent a1"), 0, "");
    let again = ctx.json(&w("claim acquire pay --agent a1"));
    let fresh = again["token"].as_i64().unwrap();
    assert!(fresh > token);
    let id = t.to_string();
    let seq = ctx.last_seq();
    let stale = [
        "todo",
        "done",
        &id,
        "--agent",
        "a1",
        "--token",
        &token.to_string(),
    ];
    ctx.check(&stale, 3, "stale");
    ctx.check(
        &[
            "todo",
            "done",
            &id,
            "--agent",
            "a2",
            "--token",
            &fresh.to_string(),
        ],
        3,
        "claimed by a1",
    );
    ctx.check(&["todo", "done", &id, "--agent", "a1"], 2, "--token");
    assert_eq!(ctx.last_seq(), seq, "refusals change nothing");
    let done = ctx.json(&[
        "todo",
        "done",
        &id,
        "--agent",
        "a1",
        "--token",
        &fresh.to_string(),
    ]);
    assert_eq!(done["status"], "done");
    let k = kinds(&ctx.events_since(seq));
    assert_eq!(k, ["todo.done"]);
    let ev = ctx.events_since(seq);
    assert_eq!(ev[0]["data"]["token"], fresh);
    assert_eq!(ev[0]["actor"], "a1");
    ctx.check(&w("claim release pay --agent a1"), 0, "");
    let human = ctx.check(&w("ready"), 0, "").stdout;
    assert!(
        human.contains("FINAL"),
        "the final task is ready now: {human}"
    );
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

async fn followups_are_collected_once(db: &TestDb) {
    let ctx = Ctx::new(db);
    ctx.story("docs");
    let doc = ctx.dir().join("doc");
    write(
        &doc,
        "docs.agent-1.T3.extra.md",
        "# Explain the setup\nParent: docs\n\n- [ ] README says how\n",
    );
    write(
        &doc.join("more"),
        "docs.agent-2.T4.extra.md",
        "Parent: docs\n- [ ] an example config\n",
    );
    write(
        &doc,
        "docs.agent-3.T5.extra.md",
        "# No parent\n\n- [ ] criteria\n",
    );
    write(&doc, "notes.md", "not a child doc\n");

    let first = ctx.run(&w("followups collect --json"));
    assert_eq!(first.code, 2, "{first:?}");
    assert_eq!(
        first.stderr,
        "doc/docs.agent-3.T5.extra.md:1: missing the 'Parent: <Story>' header\n"
    );
    let v = first.json();
    assert_eq!(v["added"], 2);
    assert_eq!(v["malformed"][0]["line"], 1);
    let human = ctx.run(&w("followups collect"));
    assert_eq!(human.code, 2);
    assert!(
        human
            .stdout
            .contains("3 docs: 0 added, 0 updated, 2 unchanged, 1 malformed"),
        "{human:?}"
    );

    // Two runs at once, twice, on a new doc and an edited one: each is stored once.
    std::fs::remove_file(doc.join("docs.agent-3.T5.extra.md")).unwrap();
    write(
        &doc,
        "docs.agent-5.T9.extra.md",
        "Parent: docs\n- [ ] new\n",
    );
    write(
        &doc,
        "docs.agent-1.T3.extra.md",
        "# Explain the setup\nParent: docs\n\n- [ ] README says how, twice\n",
    );
    let seq = ctx.last_seq();
    for _ in 0..2 {
        let children: Vec<_> = (0..2)
            .map(|_| ctx.command(&w("followups collect --json")).spawn().unwrap())
            .collect();
        for c in children {
            let (code, stdout, stderr) = finish(c, &"collect");
            assert_eq!(code, 0, "{stdout} {stderr}");
        }
    }
    let k = kinds(&ctx.events_since(seq));
    assert_eq!(
        k.iter().filter(|k| **k == "followup.collected").count(),
        1,
        "{k:?}"
    );
    assert_eq!(
        k.iter().filter(|k| **k == "followup.updated").count(),
        1,
        "{k:?}"
    );
    let list = ctx.json(&w("followups list --status pending"));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    let edited = list
        .iter()
        .find(|f| f["path"] == "doc/docs.agent-1.T3.extra.md")
        .unwrap();
    assert_eq!(edited["body"], "- [ ] README says how, twice");
    assert_eq!(edited["title"], "Explain the setup");
    let nested = list
        .iter()
        .find(|f| f["path"] == "doc/more/docs.agent-2.T4.extra.md")
        .unwrap();
    assert_eq!(
        (nested["agent"].as_str(), nested["task"].as_str()),
        (Some("agent-2"), Some("T4"))
    );
    let dry = ctx.json(&w("followups collect --dry-run"));
    assert_eq!(dry["unchanged"], 3);

    // Triage: accept makes a task before the final one; reject needs a reason; each once.
    let id = edited["id"].as_i64().unwrap().to_string();
    let accepted = ctx.json(&["followups", "accept", &id]);
    assert_eq!(accepted["status"], "accepted");
    let tasks = ctx.json(&w("todo list docs"));
    assert_eq!(tasks[0]["id"], accepted["task_id"]);
    assert_eq!(tasks[0]["title"], "Explain the setup");
    ctx.check(
        &["followups", "reject", &id, "--reason", "no"],
        3,
        "already accepted",
    );
    let other = nested["id"].as_i64().unwrap().to_string();
    ctx.check(
        &["followups", "reject", &other, "--reason", " "],
        2,
        "must not be empty",
    );
    let rejected = ctx.json(&["followups", "reject", &other, "--reason", "out of scope"]);
    assert_eq!(rejected["reason"], "out of scope");
    assert_eq!(
        ctx.json(&w("followups list --status rejected"))
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn export_import_export_is_byte_identical(db: &TestDb) {
    let ctx = Ctx::new(db);
    ctx.check(
        &[
            "story",
            "create",
            "auth",
            "--title",
            "Login (OAuth)",
            "--description",
            "Why:\n\n- users ask\n",
            "--label",
            "backend",
        ],
        0,
        "",
    );
    let a = ctx.add("auth", "write the login (draft)");
    let body = ctx.dir().join("body.md");
    std::fs::write(&body, "- [ ] it works\n\n    indented code\n").unwrap();
    let b = ctx.json(&[
        "todo",
        "add",
        "auth",
        "--title",
        r"test \( it",
        "--body-file",
        body.to_str().unwrap(),
        "--after",
        &a.to_string(),
    ]);
    ctx.json(&[
        "todo",
        "block",
        &b["id"].to_string(),
        "--reason",
        "needs (review)",
    ]);
    ctx.story("empty");
    let took = ctx.json(&w("ready --take --agent a1 --story auth"));
    let token = took["token"].to_string();
    ctx.json(&[
        "todo",
        "done",
        &a.to_string(),
        "--agent",
        "a1",
        "--token",
        &token,
    ]);

    let one = ctx.dir().join("one");
    let two = ctx.dir().join("two");
    ctx.check(&["backlog", "export", one.to_str().unwrap()], 0, "");
    let seq = ctx.last_seq();
    let imported = ctx.json(&["backlog", "import", one.to_str().unwrap()]);
    assert_eq!(
        imported["changes"],
        serde_json::json!([]),
        "an unchanged file changes nothing"
    );
    assert_eq!(ctx.last_seq(), seq);
    ctx.check(&["backlog", "export", two.to_str().unwrap()], 0, "");
    for name in ["auth.md", "empty.md"] {
        let (x, y) = (
            std::fs::read(one.join(name)).unwrap(),
            std::fs::read(two.join(name)).unwrap(),
        );
        assert_eq!(
            String::from_utf8(x).unwrap(),
            String::from_utf8(y).unwrap(),
            "{name}"
        );
    }

    // An edited file: a new title, one task body, a new task; only those are applied.
    let file = one.join("auth.md");
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text
        .replace("# Login (OAuth)", "# Login with OAuth")
        .replace("    indented code", "    indented code, edited")
        .replace(
            "- [ ] #1 FINAL",
            "- [ ] a new task\n    - [ ] crit\n- [ ] #1 FINAL",
        );
    assert_ne!(edited, text);
    std::fs::write(&file, &edited).unwrap();
    let dry = ctx.json(&["backlog", "import", one.to_str().unwrap(), "--dry-run"]);
    assert_eq!(dry["changes"].as_array().unwrap().len(), 3);
    assert_eq!(ctx.last_seq(), seq, "a dry run changes nothing");
    let applied = ctx.json(&["backlog", "import", one.to_str().unwrap()]);
    let changes: Vec<&str> = applied["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["story", "edit", "add"]);
    let events = ctx.events_since(seq);
    assert_eq!(
        kinds(&events),
        ["story.updated", "todo.edited", "todo.added"]
    );
    assert_eq!(events[0]["data"]["title"], "Login with OAuth");
    assert_eq!(events[1]["data"]["id"], b["id"]);
    let task = ctx.json(&["todo", "show", &b["id"].to_string()]);
    assert_eq!(task["body"], "- [ ] it works\n\n    indented code, edited");
    assert_eq!(task["status"], "blocked", "import leaves the status alone");
    // The file now carries the new task's id: a second import changes nothing.
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("] #5 a new task\n")
    );
    let again = ctx.json(&["backlog", "import", one.to_str().unwrap()]);
    assert_eq!(again["changes"], serde_json::json!([]));

    // Checking a box needs the claim; unchecking a done task is refused; nothing changes.
    let seq = ctx.last_seq();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("- [ ] #5", "- [x] #5")).unwrap();
    ctx.check(&["backlog", "import", one.to_str().unwrap()], 2, "auth.md:");
    ctx.check(
        &[
            "backlog",
            "import",
            one.to_str().unwrap(),
            "--agent",
            "a1",
            "--token",
            "999",
        ],
        3,
        "does not hold the claim",
    );
    let checked = ctx.json(&[
        "backlog",
        "import",
        one.to_str().unwrap(),
        "--agent",
        "a1",
        "--token",
        &token,
    ]);
    assert_eq!(checked["changes"][0]["change"], "done");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("- [x] #2", "- [ ] #2")).unwrap();
    ctx.check(
        &["backlog", "import", one.to_str().unwrap()],
        3,
        "does not reopen",
    );
    assert_eq!(kinds(&ctx.events_since(seq)), ["todo.done"]);
    std::fs::write(&file, "# Title\n\nStory: auth\nBogus: x\n\n## Tasks\n").unwrap();
    ctx.check(
        &["backlog", "import", one.to_str().unwrap()],
        2,
        "auth.md:4: unknown key 'Bogus'",
    );
}

async fn bad_input_changes_nothing(db: &TestDb) {
    let ctx = Ctx::new(db);
    ctx.story("one");
    ctx.story("two");
    let theirs = ctx.add("two", "theirs");
    let seq = ctx.last_seq();
    let big = ctx.dir().join("big.md");
    std::fs::write(&big, "x".repeat(2 * 1024 * 1024)).unwrap();
    let big = big.to_str().unwrap();
    let theirs = theirs.to_string();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["todo", "add", "nope", "--title", "x"],
            3,
            "no story 'nope'",
        ),
        (
            vec!["todo", "add", "one", "--title", "x", "--body-file", big],
            2,
            "larger than 65536 bytes",
        ),
        (
            vec!["todo", "add", "one", "--title", "bell\u{7}"],
            2,
            "control characters",
        ),
        (
            vec!["todo", "add", "one", "--title", "a\nb"],
            2,
            "control characters",
        ),
        (
            vec!["todo", "add", "one", "--title", "x", "--after", &theirs],
            2,
            "belongs to another story",
        ),
        (
            vec!["todo", "add", "one", "--title", "x", "--after", "999999"],
            2,
            "no task 999999",
        ),
        (
            vec!["todo", "add", "one", "--title", "  "],
            2,
            "title must not be empty",
        ),
        (
            vec!["todo", "add", "a/b", "--title", "x"],
            2,
            "must not contain '/'",
        ),
        (
            vec!["story", "create", "one", "--title", "again"],
            3,
            "already exists",
        ),
        (
            vec!["story", "create", "a b", "--title", "x"],
            2,
            "may hold only",
        ),
        (vec!["story", "list", "--status", "maybe"], 2, "maybe"),
        (vec!["story", "show", "nope"], 3, "no story 'nope'"),
        (vec!["todo", "show", "999999"], 3, "no task 999999"),
        (vec!["todo", "show", "x"], 2, "invalid value 'x'"),
        (
            vec!["todo", "block", &theirs, "--reason", " "],
            2,
            "must not be empty",
        ),
        (
            vec!["todo", "start", &theirs, "--agent", "a1", "--token", "x"],
            2,
            "positive whole number",
        ),
        (
            vec!["todo", "unblock", &theirs, "--token", "3"],
            2,
            "--token needs --agent",
        ),
        (
            vec!["todo", "start", &theirs, "--agent", "a1", "--token", "3"],
            3,
            "acquire it first",
        ),
        (vec!["todo", "new", "one", "--name", "a@b"], 2, "'@'"),
        (vec!["ready", "--take"], 2, "--agent"),
        (
            vec!["ready", "--take", "--agent", "a", "--ttl", "15x"],
            2,
            "invalid duration",
        ),
        (
            vec!["followups", "collect", "--dir", "missing"],
            2,
            "no such directory",
        ),
        (
            vec!["followups", "accept", "999999"],
            3,
            "no follow-up 999999",
        ),
    ];
    for (args, code, msg) in &cases {
        ctx.check(args, *code, msg);
    }
    // A malformed child doc alone: listed with its line, exit 2, nothing collected.
    write(
        &ctx.dir().join("doc"),
        "one.a.t.extra.md",
        "Parent: one\nParent: two\n- [ ] x\n",
    );
    let out = ctx.run(&w("followups collect"));
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(
        out.stderr,
        "doc/one.a.t.extra.md:2: a second Parent header ('two') disagrees with line 1 ('one')\n"
    );
    assert_eq!(ctx.last_seq(), seq, "no event appended");
    assert_eq!(ctx.json(&w("todo list one")).as_array().unwrap().len(), 1);
    assert_eq!(ctx.json(&w("todo list two")).as_array().unwrap().len(), 2);
    assert_eq!(ctx.json(&w("followups list")), serde_json::json!([]));

    // A bad template stops every command at start, naming the setting and its source.
    write(ctx.dir(), "tpl.md", "- [ ] not final\n");
    write(ctx.dir(), "gaia.toml", "[backlog]\ntemplate = \"tpl.md\"\n");
    ctx.check(
        &w("story list"),
        2,
        "backlog.template = \"tpl.md\" (from gaia.toml)",
    );
    write(
        ctx.dir(),
        "tpl.md",
        "# Ours\n- [ ] Plan\n- [ ] MANDATORY: review\n",
    );
    ctx.story("three");
    let tasks = ctx.json(&w("todo list three"));
    let titles: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Plan", "MANDATORY: review"]);
}

/// Remote mode end to end: `gaia serve` started with `GAIA_BACKLOG_TEMPLATE`, and the backlog
/// commands run through its API with `GAIA_URL`/`GAIA_TOKEN` (no `--db`).
async fn remote_mode_against_a_server_with_a_configured_template(db: &TestDb) {
    let tpl = tempfile::tempdir().unwrap();
    let path = tpl.path().join("TODO_TEMPLATE.md");
    std::fs::write(
        &path,
        "- [ ] Read the story\n- [ ] FINAL: check every criterion\n    - [ ] tests pass\n",
    )
    .unwrap();
    let server = support::Server::start(db, &[("GAIA_BACKLOG_TEMPLATE", path.to_str().unwrap())]);
    let remote = |args: &[&str]| {
        let mut c = support::gaia();
        c.current_dir(tpl.path())
            .env("GAIA_URL", &server.url)
            .env("GAIA_TOKEN", &server.token)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (code, stdout, stderr) = finish(c.spawn().unwrap(), &args);
        Out {
            code,
            stdout,
            stderr,
        }
    };
    let out = remote(&[
        "story",
        "create",
        "remote",
        "--title",
        "Over HTTP",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{out:?} {}", server.log());
    let out = remote(&["todo", "list", "remote", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let titles: Vec<String> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles, ["Read the story", "FINAL: check every criterion"]);
    let out = remote(&["todo", "add", "remote", "--title", "Do it", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = remote(&["ready", "--take", "--agent", "a1", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let taken = out.json();
    let token = taken["token"].as_i64().unwrap().to_string();
    let id = taken["task"]["id"].as_i64().unwrap().to_string();
    let out = remote(&[
        "todo", "done", &id, "--agent", "a1", "--token", &token, "--json",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["status"], "done");
    let stale = (token.parse::<i64>().unwrap() + 7).to_string();
    let out = remote(&["todo", "start", &id, "--agent", "a1", "--token", &stale]);
    assert_eq!(out.code, 3, "{out:?}");
    let out = remote(&["todo", "validate"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = remote(&["story", "show", "nope"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
}
