//! The command-line contract of the real `gaia` binary, driven through one helper ([`check`]):
//! the JSON shape and exit code of every claim outcome, one-line errors on bad input that leave
//! the store untouched, events emit/tail/export and the NDJSON sink, audit verification after
//! tampering, secret redaction in configuration and events, and help and completions.
//!
//! The claim contract, lock timeouts and bad input also run in remote mode: a real `gaia serve`
//! child on the same kind of database, with `GAIA_URL`/`GAIA_TOKEN` set and no `--db`, must
//! print the same output and exit with the same codes; a server that is not there is exit 5.
//!
//! Store-touching tests run on SQLite and, when `GAIA_TEST_POSTGRES_URL` is set, PostgreSQL.
//! Every child runs in a temporary directory with no `GAIA_*` or prototype variables inherited.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gaia_testkit::{TestDb, backend_tests};
use serde_json::{Value, json};
use support::{Server, finish};

backend_tests!(
    claim_outcomes_json_and_exit_codes,
    lock_timeout_exits_4,
    bad_input_changes_nothing,
    claim_outcomes_over_the_api,
    lock_timeout_over_the_api,
    bad_input_over_the_api,
    events_emit_tail_export_round_trip,
    tail_follow_returns_after_limit,
    ndjson_sink_receives_each_event_once,
    audit_verify_detects_an_edited_row,
    audit_verify_detects_a_deleted_row,
);

/// Where a child runs: a fresh working directory and, usually, a database URL.
struct Ctx {
    cwd: tempfile::TempDir,
    db: Option<String>,
    /// Remote mode: the server's URL and the token (`GAIA_URL`, `GAIA_TOKEN`), and no `--db`.
    remote: Option<(String, String)>,
}

impl Ctx {
    fn new(db: &TestDb) -> Self {
        Self {
            cwd: tempfile::tempdir().unwrap(),
            db: Some(db.url.clone()),
            remote: None,
        }
    }

    /// No `--db` flag: the command line or environment of each case says where to go.
    fn bare() -> Self {
        Self {
            cwd: tempfile::tempdir().unwrap(),
            db: None,
            remote: None,
        }
    }

    fn dir(&self) -> &Path {
        self.cwd.path()
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = support::gaia();
        if let Some((url, token)) = &self.remote {
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

    /// Runs to completion, bounded by [`support::CHILD_BOUND`].
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let start = Instant::now();
        let (code, stdout, stderr) = finish(self.command(args, env).spawn().unwrap(), &args);
        Out {
            code,
            stdout,
            stderr,
            elapsed: start.elapsed(),
        }
    }

    /// The whole event log, as `gaia events export --ndjson` prints it.
    fn export(&self) -> String {
        check(self, &w("events export --ndjson"), &[], 0, &[], &[]).stdout
    }

    fn export_events(&self) -> Vec<Value> {
        ndjson(&self.export())
    }

    fn emit(&self, kind: &str, extra: &[&str]) -> i64 {
        let mut args = vec!["events", "emit", kind];
        args.extend_from_slice(extra);
        let out = check(self, &args, &[], 0, &[], &[]);
        out.stdout.trim().parse().unwrap()
    }
}

impl Server {
    /// A context whose commands go through this server with the admin token.
    fn ctx(&self) -> Ctx {
        Ctx {
            cwd: tempfile::tempdir().unwrap(),
            db: None,
            remote: Some((self.url.clone(), self.token.clone())),
        }
    }
}

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// Runs `gaia ARGS` and checks the exit code and that stdout/stderr contain each expected text.
/// Exit 2 must print nothing on stdout and exactly one `gaia: ...` line on stderr; exits 0, 3
/// and 4 print nothing on stderr.
fn check(
    ctx: &Ctx,
    args: &[&str],
    env: &[(&str, &str)],
    code: i32,
    stdout_has: &[&str],
    stderr_has: &[&str],
) -> Out {
    let out = ctx.run(args, env);
    assert_eq!(out.code, code, "gaia {args:?}: {out:?}");
    for want in stdout_has {
        assert!(
            out.stdout.contains(want),
            "gaia {args:?}: stdout lacks {want:?}: {out:?}"
        );
    }
    for want in stderr_has {
        assert!(
            out.stderr.contains(want),
            "gaia {args:?}: stderr lacks {want:?}: {out:?}"
        );
    }
    match code {
        2 => {
            assert_eq!(out.stdout, "", "gaia {args:?}: {out:?}");
            assert_eq!(
                out.stderr.lines().count(),
                1,
                "one line: gaia {args:?}: {out:?}"
            );
            assert!(out.stderr.starts_with("gaia: "), "gaia {args:?}: {out:?}");
            assert!(out.stderr.ends_with('\n'), "gaia {args:?}: {out:?}");
        }
        0 | 3 | 4 => assert_eq!(out.stderr, "", "gaia {args:?}: {out:?}"),
        _ => assert!(out.stderr.lines().count() <= 1, "gaia {args:?}: {out:?}"),
    }
    out
}

/// Splits a command line written as one string (arguments without spaces).
fn w(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn utc(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    assert!(s.ends_with('Z'), "not UTC: {s}");
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

/// Checks the claim JSON contract and returns the object.
fn claim_json(v: &Value, outcome: &str, key: &str, holder: Option<(&str, &str, &str)>) {
    let mut want = vec![
        "acquired_at",
        "expires_at",
        "holder",
        "key",
        "outcome",
        "token",
    ];
    if outcome == "taken_over" {
        want.push("previous_holder");
        want.sort_unstable();
    }
    assert_eq!(keys(v), want, "{v}");
    assert_eq!(v["outcome"], outcome, "{v}");
    assert_eq!(v["key"], key, "{v}");
    assert!(v["token"].is_i64(), "{v}");
    match holder {
        Some((agent, operator, fingerprint)) => {
            assert_eq!(
                keys(&v["holder"]),
                ["agent", "fingerprint", "operator"],
                "{v}"
            );
            assert_eq!(
                v["holder"],
                json!({"agent": agent, "operator": operator, "fingerprint": fingerprint})
            );
            let acquired = utc(&v["acquired_at"]);
            let expires = utc(&v["expires_at"]);
            assert!(acquired < expires, "{v}");
        }
        None => {
            assert_eq!(v["holder"], Value::Null, "{v}");
            assert_eq!(v["expires_at"], Value::Null, "{v}");
        }
    }
}

async fn claim_outcomes_json_and_exit_codes(db: &TestDb) {
    claim_outcomes(Ctx::new(db));
}

/// The same cases through a real `gaia serve` on the same kind of database: remote mode prints
/// the same JSON and exits with the same codes. Reads then print byte for byte the same in
/// both modes.
async fn claim_outcomes_over_the_api(db: &TestDb) {
    let server = Server::start(db, &[]);
    claim_outcomes(server.ctx());
    assert!(
        server
            .log()
            .contains("route=\"/api/v1/claims/acquire\" status=200"),
        "the claims did not go through the server: {}",
        server.log()
    );
    let (direct, remote) = (Ctx::new(db), server.ctx());
    for args in [
        w("claim list --json"),
        w("claim list --all --json"),
        w("claim inspect s1 --json"),
        w("claim inspect s1 --todolist tests --json"),
        w("claim inspect nobody --json"),
        w("events export --ndjson"),
        w("events tail --json --since 2 --type claim"),
        w("audit verify --json"),
    ] {
        let d = check(&direct, &args, &[], 0, &[], &[]);
        let r = check(&remote, &args, &[], 0, &[], &[]);
        assert_eq!(
            d.stdout, r.stdout,
            "gaia {args:?} differs between the modes"
        );
    }
    // Refusals too: the same JSON on stdout, exit 3, nothing on stderr.
    for args in [
        w("claim acquire s1 --agent intruder --json"),
        w("claim release s1 --agent intruder --json"),
        w("claim refresh s1 --agent intruder --json"),
    ] {
        let d = check(&direct, &args, &[], 3, &[], &[]);
        let r = check(&remote, &args, &[], 3, &[], &[]);
        assert_eq!(
            d.stdout, r.stdout,
            "gaia {args:?} differs between the modes"
        );
    }
}

fn claim_outcomes(ctx: Ctx) {
    // (args, exit code, outcome, key, holder after the call, token)
    let a = Some(("agent-a", "alice", "fp1"));
    type Step<'a> = (
        Vec<&'a str>,
        i32,
        &'a str,
        &'a str,
        Option<(&'a str, &'a str, &'a str)>,
        i64,
    );
    let steps: Vec<Step> = vec![
        (w("claim inspect s1"), 0, "free", "s1/default", None, 0),
        (
            w("claim acquire s1 --agent agent-a --operator alice --fingerprint fp1 --ttl 10m"),
            0,
            "acquired",
            "s1/default",
            a,
            1,
        ),
        // Same agent and fingerprint: already held, nothing changes.
        (
            w("claim acquire s1 --agent agent-a --operator alice --fingerprint fp1"),
            0,
            "already_held",
            "s1/default",
            a,
            1,
        ),
        // The same agent in another run (fingerprint) is refused like anyone else.
        (
            w("claim acquire s1 --agent agent-a --operator alice --fingerprint fp2"),
            3,
            "held_by_other",
            "s1/default",
            a,
            1,
        ),
        (
            w("claim acquire s1 --agent agent-b"),
            3,
            "held_by_other",
            "s1/default",
            a,
            1,
        ),
        (
            w("claim refresh s1 --agent agent-a --ttl 20m"),
            0,
            "refreshed",
            "s1/default",
            a,
            1,
        ),
        (
            w("claim refresh s1 --agent agent-a --fingerprint fp2"),
            3,
            "not_held",
            "s1/default",
            a,
            1,
        ),
        (
            w("claim refresh s1 --agent agent-b"),
            3,
            "not_held",
            "s1/default",
            a,
            1,
        ),
        (w("claim inspect s1"), 0, "held", "s1/default", a, 1),
        (
            w("claim release s1 --agent agent-b"),
            3,
            "not_held",
            "s1/default",
            a,
            1,
        ),
        (
            w("claim release s1 --agent agent-a --fingerprint fp2"),
            3,
            "not_held",
            "s1/default",
            a,
            1,
        ),
        (
            w("claim release s1 --agent agent-a --fingerprint fp1"),
            0,
            "released",
            "s1/default",
            None,
            1,
        ),
        (
            w("claim release s1 --agent agent-a"),
            3,
            "not_held",
            "s1/default",
            None,
            1,
        ),
        (
            w("claim refresh s1 --agent agent-a"),
            3,
            "not_held",
            "s1/default",
            None,
            1,
        ),
        (w("claim inspect s1"), 0, "free", "s1/default", None, 1),
        // The fencing token keeps growing across releases.
        (
            w("claim acquire s1 --agent agent-b --operator bob --fingerprint x"),
            0,
            "acquired",
            "s1/default",
            Some(("agent-b", "bob", "x")),
            2,
        ),
        // Defaults: operator and fingerprint "-", todolist "default" unless named; agent
        // from $GAIA_AGENT is covered below.
        (
            w("claim acquire s1 --todolist tests --agent agent-c"),
            0,
            "acquired",
            "s1/tests",
            Some(("agent-c", "-", "-")),
            1,
        ),
    ];
    for (args, code, outcome, key, holder, token) in &steps {
        let mut full = args.clone();
        full.push("--json");
        let out = check(&ctx, &full, &[], *code, &[], &[]);
        let v = out.json();
        claim_json(&v, outcome, key, *holder);
        assert_eq!(v["token"], *token, "{args:?}: {v}");
        // Without --json, calls that change nothing print one line with the same outcome
        // and exit code.
        if matches!(
            *outcome,
            "free" | "held" | "already_held" | "held_by_other" | "not_held"
        ) {
            let out = check(&ctx, args, &[], *code, &[outcome, key], &[]);
            assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
        }
    }

    // The refresh moved expires_at to about 20 minutes after the refresh.
    let v = check(
        &ctx,
        &w("claim inspect s1 --todolist tests --json"),
        &[],
        0,
        &[],
        &[],
    )
    .json();
    assert_eq!(v["outcome"], "held");

    // $GAIA_AGENT and $GAIA_OPERATOR stand in for the flags.
    let env = [("GAIA_AGENT", "env-agent"), ("GAIA_OPERATOR", "env-op")];
    let v = check(&ctx, &w("claim acquire s2 --json"), &env, 0, &[], &[]).json();
    claim_json(
        &v,
        "acquired",
        "s2/default",
        Some(("env-agent", "env-op", "-")),
    );
    let v = check(&ctx, &w("claim release s2 --json"), &env, 0, &[], &[]).json();
    claim_json(&v, "released", "s2/default", None);

    // list: live claims only, as a JSON array of the same objects.
    let v = check(&ctx, &w("claim list --json"), &[], 0, &[], &[]).json();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    claim_json(
        &list[0],
        "held",
        "s1/default",
        Some(("agent-b", "bob", "x")),
    );
    claim_json(&list[1], "held", "s1/tests", Some(("agent-c", "-", "-")));
    check(
        &ctx,
        &w("claim list"),
        &[],
        0,
        &["s1/default", "s1/tests"],
        &[],
    );

    // Boundary: a 128-character story is accepted (129 is refused below).
    let long = "s".repeat(128);
    let v = check(
        &ctx,
        &["claim", "acquire", &long, "--agent", "a", "--json"],
        &[],
        0,
        &[],
        &[],
    )
    .json();
    assert_eq!(v["key"], format!("{long}/default"));
    let wide = "ü".repeat(128);
    check(
        &ctx,
        &["claim", "acquire", &wide, "--agent", "a"],
        &[],
        0,
        &["acquired"],
        &[],
    );

    // Every change above is one event; outcomes that change nothing emitted none.
    let kinds: Vec<String> = ctx
        .export_events()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "claim.acquired",
            "claim.refreshed",
            "claim.released",
            "claim.acquired",
            "claim.acquired",
            "claim.acquired",
            "claim.released",
            "claim.acquired",
            "claim.acquired",
        ]
    );
}

async fn lock_timeout_exits_4(db: &TestDb) {
    lock_timeout(db, Ctx::new(db)).await;
}

/// Over the API the server's lock timeout applies: the same `lock_timeout` outcome and exit 4.
async fn lock_timeout_over_the_api(db: &TestDb) {
    let server = Server::start(db, &[("GAIA_LOCK_TIMEOUT", "300ms")]);
    lock_timeout(db, server.ctx()).await;
}

async fn lock_timeout(db: &TestDb, ctx: Ctx) {
    check(
        &ctx,
        &w("claim acquire locked --agent a"),
        &[],
        0,
        &["acquired"],
        &[],
    );
    let before = ctx.export();
    let guard = db.hold_claim_lock("locked/default").await;
    let env = [("GAIA_LOCK_TIMEOUT", "300ms")];
    for args in [
        w("claim acquire locked --agent b --json"),
        w("claim refresh locked --agent a --json"),
        w("claim release locked --agent a --json"),
    ] {
        let out = check(&ctx, &args, &env, 4, &[], &[]);
        let v = out.json();
        assert_eq!(v["outcome"], "lock_timeout", "{v}");
        assert_eq!(v["key"], "locked/default", "{v}");
        assert!(out.elapsed < Duration::from_secs(20), "{out:?}");
    }
    check(
        &ctx,
        &w("claim acquire locked --agent b"),
        &env,
        4,
        &["lock_timeout", "retry"],
        &[],
    );
    drop(guard);
    assert_eq!(ctx.export(), before, "a lock timeout changes nothing");
    check(
        &ctx,
        &w("claim acquire locked --agent b"),
        &env,
        3,
        &["held_by_other"],
        &[],
    );
    check(
        &ctx,
        &w("claim release locked --agent a"),
        &env,
        0,
        &["released"],
        &[],
    );
}

/// Bad input on the command line: exit 2, one line naming the problem, nothing changed.
async fn bad_input_changes_nothing(db: &TestDb) {
    bad_input(db, Ctx::new(db));
}

/// Argument validation happens before anything is sent: the same exit 2 and one line in
/// remote mode, and the server's log is untouched.
async fn bad_input_over_the_api(db: &TestDb) {
    let server = Server::start(db, &[]);
    bad_input(db, server.ctx());
}

fn bad_input(db: &TestDb, ctx: Ctx) {
    check(&ctx, &w("claim acquire held --agent a"), &[], 0, &[], &[]);
    ctx.emit("chat.message", &["--data", r#"{"n":1}"#]);
    let long = "x".repeat(129);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (w("claim acquire s --agent a --bogus"), "--bogus"),
        (w("claim frobnicate"), "frobnicate"),
        (w("claim acquire s"), "--agent"),
        (
            w("claim acquire s --agent a --ttl 15x"),
            "invalid duration '15x'",
        ),
        (
            w("claim acquire s --agent a --ttl=-1m"),
            "invalid duration '-1m'",
        ),
        (
            w("claim acquire s --agent a --ttl 0s"),
            "invalid duration '0s'",
        ),
        (
            w("claim acquire s --agent a --ttl 15"),
            "invalid duration '15'",
        ),
        (w("claim acquire s --agent a --ttl 500ms"), "at least 1s"),
        (
            w("claim refresh held --agent a --ttl 0s"),
            "invalid duration",
        ),
        (
            vec!["claim", "acquire", "", "--agent", "a"],
            "story must not be empty",
        ),
        (
            vec!["claim", "acquire", &long, "--agent", "a"],
            "longer than 128",
        ),
        (w("claim acquire a/b --agent a"), "must not contain '/'"),
        (
            vec!["claim", "acquire", "a\tb", "--agent", "a"],
            "control characters",
        ),
        (
            vec!["claim", "acquire", "a\nb", "--agent", "a"],
            "control characters",
        ),
        (
            vec!["claim", "acquire", "a\u{7}b", "--agent", "a"],
            "control characters",
        ),
        (vec!["claim", "acquire", " s", "--agent", "a"], "spaces"),
        (
            vec!["claim", "acquire", "s", "--todolist", "", "--agent", "a"],
            "todolist must not be empty",
        ),
        (
            w("claim acquire s --todolist x/y --agent a"),
            "todolist 'x/y'",
        ),
        (
            vec!["claim", "acquire", "s", "--agent", ""],
            "agent id must not be empty",
        ),
        (
            vec!["claim", "acquire", "s", "--agent", &long],
            "agent id is longer",
        ),
        (w("claim acquire s --agent a --operator o/p"), "operator"),
        (
            vec![
                "claim",
                "acquire",
                "s",
                "--agent",
                "a",
                "--fingerprint",
                "f\u{1b}",
            ],
            "fingerprint",
        ),
        (w("claim release held --agent a/b"), "agent id"),
        (vec!["claim", "inspect", ""], "story must not be empty"),
        (
            w("events emit chat.message --data {bad"),
            "--data is not valid JSON",
        ),
        (
            vec!["events", "emit", "chat.message", "--data", ""],
            "--data is not valid JSON",
        ),
        (
            vec!["events", "emit", "chat.message", "--data", r#"{"a":1} x"#],
            "--data is not valid JSON",
        ),
        (
            w("events emit Chat.Message"),
            "invalid event type 'Chat.Message'",
        ),
        (w("events emit chat..message"), "invalid event type"),
        (vec!["events", "emit", "chat message"], "invalid event type"),
        (vec!["events", "emit", ""], "invalid event type"),
        (
            vec!["events", "emit", "chat.message", "--actor", ""],
            "actor must not be empty",
        ),
        (
            vec!["events", "emit", "chat.message", "--subject", "a\u{1}b"],
            "subject",
        ),
        (w("events tail --type Chat"), "invalid event type"),
        (w("events tail --since=-1"), "--since"),
        (w("events tail --since x"), "--since"),
        (w("events tail --limit 0"), "--limit"),
        (w("events tail --json --follow"), "--follow"),
        (w("events tail --json --ndjson"), "--ndjson"),
        (w("events export --since=-1"), "--since"),
        (w("audit tail --limit lots"), "--limit"),
        (w("completions tcsh"), "tcsh"),
    ];
    let before = ctx.export();
    for (args, says) in &cases {
        check(&ctx, args, &[], 2, &[], &[says]);
    }
    // Settings that do not parse are bad input too.
    for (var, val, says) in [
        ("GAIA_CLAIM_TTL", "15x", "claims.default_ttl"),
        ("GAIA_LOCK_TIMEOUT", "-1s", "database.lock_timeout"),
        ("GAIA_MAX_CONNECTIONS", "0", "database.max_connections"),
    ] {
        check(
            &ctx,
            &w("claim acquire s --agent a"),
            &[(var, val)],
            2,
            &[],
            &[says],
        );
    }
    assert_eq!(ctx.export(), before, "bad input changed the event log");
    check(
        &ctx,
        &w("claim inspect s --json"),
        &[],
        0,
        &["\"free\""],
        &[],
    );

    // Bad input against a database that does not exist yet does not create it.
    if !db.is_postgres() && ctx.remote.is_none() {
        let bare = Ctx::bare();
        let path = bare.dir().join("fresh").join("gaia.db");
        let url = format!("sqlite://{}", path.display());
        for (args, says) in &cases {
            let mut full = vec!["--db", url.as_str()];
            full.extend_from_slice(args);
            check(&bare, &full, &[], 2, &[], &[says]);
        }
        assert!(!path.exists(), "bad input created the database");
        assert_eq!(std::fs::read_dir(bare.dir()).unwrap().count(), 0);
    }
}

/// Unusable databases and URLs: exit 2, one line, and nothing is created or modified.
#[test]
fn unusable_databases_are_bad_input() {
    let ctx = Ctx::bare();
    let dir = ctx.dir();
    std::fs::write(dir.join("plain-file"), b"").unwrap();
    let garbage = b"this is not a database, just some text\n".repeat(200);
    std::fs::write(dir.join("not-a-db"), &garbage).unwrap();
    std::fs::create_dir(dir.join("a-directory")).unwrap();
    let listing = || {
        let mut names: Vec<PathBuf> = walk(dir);
        names.sort();
        names
    };
    let before = listing();
    let under_file = format!("sqlite://{}", dir.join("plain-file/sub/gaia.db").display());
    let not_db = format!("sqlite://{}", dir.join("not-a-db").display());
    let a_dir = format!("sqlite://{}", dir.join("a-directory").display());
    let cases: Vec<(String, &str)> = vec![
        (under_file, "is a file"),
        (not_db, "not a SQLite database"),
        (a_dir, "is a directory"),
        ("mysql://localhost/gaia".into(), "sqlite://"),
        ("gaia.db".into(), "sqlite://"),
    ];
    for (url, says) in &cases {
        for args in [
            w("claim acquire s --agent a"),
            w("events emit chat.message"),
            w("events export"),
            w("audit verify"),
        ] {
            let mut full = vec!["--db", url.as_str()];
            full.extend_from_slice(&args);
            check(&ctx, &full, &[], 2, &[], &[says]);
            // The same URL from the environment.
            check(&ctx, &args, &[("GAIA_DATABASE_URL", url)], 2, &[], &[says]);
        }
    }
    assert_eq!(listing(), before, "an unusable database path was modified");
    assert_eq!(std::fs::read(dir.join("not-a-db")).unwrap(), garbage);
    assert_eq!(std::fs::read(dir.join("plain-file")).unwrap(), b"");

    // A PostgreSQL server that does not answer is an outage, not bad input: exit 5 (retry
    // later), a prompt one-line error, password not shown.
    for url in [
        "postgres://gaia:hunter2-secret@127.0.0.1:1/gaia",
        "postgresql://gaia@127.0.0.1:1/gaia",
    ] {
        let out = check(
            &ctx,
            &["--db", url, "claim", "acquire", "s", "--agent", "a"],
            &[("GAIA_CONNECT_TIMEOUT", "3s")],
            5,
            &[],
            &["127.0.0.1:1"],
        );
        assert!(!out.stderr.contains("hunter2-secret"), "{out:?}");
        assert!(
            out.elapsed < Duration::from_secs(20),
            "took {:?}",
            out.elapsed
        );
        // Without a connect timeout setting, the default still returns.
        let out = check(&ctx, &["--db", url, "events", "export"], &[], 5, &[], &[]);
        assert!(
            out.elapsed < Duration::from_secs(20),
            "took {:?}",
            out.elapsed
        );
    }
    assert_eq!(listing(), before);
}

/// Remote mode without a reachable server: exit 5 (unavailable, not bad input) and one line,
/// promptly, for every family; a URL or token that is missing or malformed is still exit 2.
#[test]
fn remote_mode_without_a_server_is_unavailable() {
    let ctx = Ctx::bare();
    let down = [("GAIA_URL", "http://127.0.0.1:1"), ("GAIA_TOKEN", "t")];
    for args in [
        w("claim acquire s --agent a"),
        w("claim inspect s --json"),
        w("claim list"),
        w("events emit chat.message"),
        w("events tail"),
        w("audit verify"),
        w("cmd list"),
        w("cmd approve k7m2qx --as alice"),
        w("token list"),
    ] {
        let out = check(&ctx, &args, &down, 5, &[], &["127.0.0.1:1"]);
        assert!(out.elapsed < Duration::from_secs(20), "{out:?}");
    }
    // A URL without a token, or not http(s), is refused before anything is sent.
    check(
        &ctx,
        &w("claim inspect s"),
        &[("GAIA_URL", "http://127.0.0.1:1")],
        2,
        &[],
        &["GAIA_TOKEN"],
    );
    check(
        &ctx,
        &w("claim inspect s"),
        &[("GAIA_URL", "ftp://127.0.0.1:1"), ("GAIA_TOKEN", "t")],
        2,
        &[],
        &["http://"],
    );
    // Nothing was created here: remote mode does not open a local database.
    assert_eq!(std::fs::read_dir(ctx.dir()).unwrap().count(), 0);
}

/// A setting that does not parse is exit 2 with one line naming the setting, its value, where
/// it came from (the config file, the env file, the environment or a flag) and what was
/// expected; nothing is created.
#[test]
fn bad_settings_name_the_setting_and_its_source() {
    let ctx = Ctx::bare();
    let toml = ctx.dir().join("bad.toml");
    std::fs::write(&toml, "[claims]\ndefault_ttl = \"abc\"\n").unwrap();
    let hook_toml = ctx.dir().join("hook.toml");
    std::fs::write(&hook_toml, "[webhook]\nurl = \"example.com/hook\"\n").unwrap();
    let typo_toml = ctx.dir().join("typo.toml");
    std::fs::write(&typo_toml, "[claims]\ndefault_tll = \"1h\"\n").unwrap();
    let env_file = ctx.dir().join("bad.env");
    std::fs::write(&env_file, "GAIA_MAX_CONNECTIONS=lots\n").unwrap();
    let (toml, hook_toml, typo_toml, env_file) = (
        toml.to_str().unwrap(),
        hook_toml.to_str().unwrap(),
        typo_toml.to_str().unwrap(),
        env_file.to_str().unwrap(),
    );
    let duration = "expected a positive duration like 90s, 15m, 2h or 1h30m (units ms, s, m, h, d; at most 3650d)";
    // (arguments, environment, the line after "gaia: ")
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case> = vec![
        (
            vec!["--config", toml, "claim", "list"],
            vec![],
            format!("claims.default_ttl = \"abc\" (from {toml}): {duration}"),
        ),
        (
            w("claim list"),
            vec![("GAIA_CONFIG", hook_toml)],
            format!(
                "webhook.url = \"example.com/hook\" (from {hook_toml}): expected an http:// or https:// URL"
            ),
        ),
        (
            vec!["--config", typo_toml, "claim", "list"],
            vec![],
            format!("{typo_toml}: unknown setting 'claims.default_tll'"),
        ),
        (
            vec!["--env-file", env_file, "claim", "list"],
            vec![],
            format!(
                "database.max_connections = \"lots\" (from GAIA_MAX_CONNECTIONS in {env_file}): expected a whole number from 1 to 1000"
            ),
        ),
        (
            w("claim list"),
            vec![("GAIA_CLAIM_TTL", "abc")],
            format!("claims.default_ttl = \"abc\" (from $GAIA_CLAIM_TTL): {duration}"),
        ),
        (
            w("claim list"),
            vec![("TELEGRAM_NOTIFY_CHAT", "general")],
            "telegram.notify_chat = \"general\" (from $TELEGRAM_NOTIFY_CHAT): expected a numeric chat id such as -100123456 or an @channelname".into(),
        ),
        (
            w("--db mysql://x claim list"),
            vec![],
            "database.url = \"mysql://x\" (from --db): expected sqlite://PATH or postgres://USER@HOST/DATABASE".into(),
        ),
    ];
    let before = std::fs::read_dir(ctx.dir()).unwrap().count();
    for (args, env, says) in &cases {
        let out = check(&ctx, args, env, 2, &[], &[]);
        assert_eq!(out.stderr, format!("gaia: {says}\n"), "gaia {args:?}");
    }
    assert_eq!(std::fs::read_dir(ctx.dir()).unwrap().count(), before);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

async fn events_emit_tail_export_round_trip(db: &TestDb) {
    let ctx = Ctx::new(db);
    let emitted: Vec<(&str, &str, Value, &str)> = vec![
        (
            "chat.message",
            "story/a",
            json!({"text": "hello", "n": 1}),
            "alice",
        ),
        (
            "chat",
            "story/b",
            json!({"nested": {"list": [1, 2, 3]}}),
            "bob",
        ),
        ("chats.x", "story/a", json!([1, "two", null]), "alice"),
        ("story.updated", "story/b", json!("just a string"), "carol"),
        (
            "chat.message.edited",
            "",
            json!({"unicode": "héllo ✓ \"quoted\""}),
            "alice",
        ),
        ("chat.message", "story/a", json!({}), "bob"),
    ];
    for (i, (kind, subject, data, actor)) in emitted.iter().enumerate() {
        let data = data.to_string();
        let seq = ctx.emit(
            kind,
            &["--subject", subject, "--data", &data, "--actor", actor],
        );
        assert_eq!(seq, i as i64 + 1);
    }
    // --json prints the committed event; the actor defaults to $GAIA_AGENT, then "cli".
    let v = check(&ctx, &w("events emit test.json --json"), &[], 0, &[], &[]).json();
    assert_eq!(keys(&v), ["actor", "data", "seq", "subject", "ts", "type"]);
    assert_eq!(
        (v["seq"].as_i64(), v["actor"].as_str(), v["data"].clone()),
        (Some(7), Some("cli"), json!({}))
    );
    utc(&v["ts"]);
    let v = check(
        &ctx,
        &w("events emit test.json --json"),
        &[("GAIA_AGENT", "env-agent")],
        0,
        &[],
        &[],
    )
    .json();
    assert_eq!(
        (v["seq"].as_i64(), v["actor"].as_str()),
        (Some(8), Some("env-agent"))
    );

    let all = ctx.export_events();
    assert_eq!(all.len(), 8);
    let mut last_ts = None;
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1);
        let t = utc(&e["ts"]);
        assert!(last_ts.is_none_or(|l| l <= t), "ts goes backwards: {e}");
        last_ts = Some(t);
        if let Some((kind, subject, data, actor)) = emitted.get(i) {
            assert_eq!(
                (&e["type"], &e["subject"], &e["data"], &e["actor"]),
                (&json!(kind), &json!(subject), data, &json!(actor)),
                "round trip of event {}",
                i + 1
            );
        }
    }

    let exported = ctx.export();
    let seqs = |out: &Out| -> Vec<i64> {
        ndjson(&out.stdout)
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect()
    };
    // (tail args, expected seqs)
    let cases: Vec<(Vec<&str>, Vec<i64>)> = vec![
        (vec![], vec![1, 2, 3, 4, 5, 6, 7, 8]),
        (vec!["--since", "0"], vec![1, 2, 3, 4, 5, 6, 7, 8]),
        (vec!["--since", "5"], vec![6, 7, 8]),
        (vec!["--since", "8"], vec![]),
        (vec!["--since", "100"], vec![]),
        (vec!["--type", "chat"], vec![1, 2, 5, 6]),
        (vec!["--type", "chat.message"], vec![1, 5, 6]),
        (vec!["--type", "chat.message.edited"], vec![5]),
        (vec!["--type", "chats"], vec![3]),
        (vec!["--type", "cha"], vec![]),
        (vec!["--subject", "story/a"], vec![1, 3, 6]),
        (vec!["--subject", ""], vec![5, 7, 8]),
        (vec!["--type", "chat", "--subject", "story/a"], vec![1, 6]),
        (vec!["--limit", "2"], vec![7, 8]),
        (vec!["--since", "0", "--limit", "2"], vec![1, 2]),
        (
            vec!["--since", "2", "--limit", "3", "--type", "chat"],
            vec![5, 6],
        ),
        (vec!["--type", "chat", "--limit", "1"], vec![6]),
    ];
    for (args, want) in &cases {
        let mut full = w("events tail --ndjson");
        full.extend_from_slice(args);
        let out = check(&ctx, &full, &[], 0, &[], &[]);
        assert_eq!(&seqs(&out), want, "tail {args:?}");
        // The same lines as the export's, byte for byte.
        for line in out.stdout.lines() {
            assert!(exported.lines().any(|l| l == line), "{line}");
        }
        // --json: the same events as one array.
        let mut full = w("events tail --json");
        full.extend_from_slice(args);
        let v = check(&ctx, &full, &[], 0, &[], &[]).json();
        let arr: Vec<i64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(&arr, want, "tail --json {args:?}");
        // Human: one line per event, starting with its seq.
        let mut full = w("events tail");
        full.extend_from_slice(args);
        let out = check(&ctx, &full, &[], 0, &[], &[]);
        let human: Vec<i64> = out
            .stdout
            .lines()
            .map(|l| {
                l.strip_prefix('#')
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(&human, want, "tail {args:?}: {}", out.stdout);
    }

    // Export: all of it, after --since, or into a file; importing what was exported is exact.
    let text = ctx.export();
    assert_eq!(text.lines().count(), 8);
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        let e: gaia_core::event::Event = serde_json::from_str(line).unwrap();
        assert_eq!(e.to_ndjson(), line, "NDJSON round trip");
    }
    let after = check(
        &ctx,
        &w("events export --ndjson --since 6"),
        &[],
        0,
        &[],
        &[],
    )
    .stdout;
    assert_eq!(
        after,
        text.lines()
            .skip(6)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    let file = ctx.dir().join("export.ndjson");
    let out = check(
        &ctx,
        &["events", "export", "-o", file.to_str().unwrap()],
        &[],
        0,
        &[],
        &[],
    );
    assert_eq!(out.stdout, "");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    assert_eq!(ctx.export(), text, "reading changes nothing");
}

async fn tail_follow_returns_after_limit(db: &TestDb) {
    let ctx = Ctx::new(db);
    ctx.emit("setup.done", &[]);
    for (filter, want_types) in [
        (vec![], vec!["follow.one", "noise.x", "follow.two"]),
        (
            vec!["--type", "follow"],
            vec!["follow.one", "follow.two", "follow.three"],
        ),
    ] {
        let since = ctx.export_events().len().to_string();
        let mut args = vec![
            "events", "tail", "--follow", "--limit", "3", "--ndjson", "--since", &since,
        ];
        args.extend_from_slice(&filter);
        let mut follower = ctx.command(&args, &[]).spawn().unwrap();
        // Give it a moment to start polling; correctness does not depend on it.
        std::thread::sleep(Duration::from_millis(300));
        for kind in [
            "follow.one",
            "noise.x",
            "follow.two",
            "follow.three",
            "after.limit",
        ] {
            ctx.emit(kind, &["--subject", "f"]);
        }
        let started = Instant::now();
        while follower.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tail --follow --limit 3 did not return"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = follower.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<String> = ndjson(&String::from_utf8(out.stdout).unwrap())
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got, want_types, "follow {filter:?}");
    }

    // Without --since, --follow starts with the newest 10 events and then waits for new ones.
    let mut follower = ctx
        .command(&w("events tail -f --limit 11 --ndjson"), &[])
        .spawn()
        .unwrap();
    let first_late = ctx.export_events().len() as i64 + 1;
    let started = Instant::now();
    let mut last = first_late - 1;
    // Keep emitting until it has seen one new event; when it started is up to the scheduler.
    while follower.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tail -f did not return"
        );
        last = ctx.emit("follow.late", &[]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = follower.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let got: Vec<i64> = ndjson(&String::from_utf8(out.stdout).unwrap())
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(got.len(), 11, "{got:?}");
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    assert!(
        got[0] > 1 && got[10] >= first_late && got[10] <= last,
        "{got:?}"
    );
}

async fn ndjson_sink_receives_each_event_once(db: &TestDb) {
    let ctx = Ctx::new(db);
    let sink = ctx.dir().join("sink").join("events.ndjson");
    std::fs::create_dir_all(sink.parent().unwrap()).unwrap();
    let sink_s = sink.to_str().unwrap().to_owned();
    let env = [("GAIA_EVENTS_NDJSON_PATH", sink_s.as_str())];
    // Several processes at once: claims (changing and not) and emits.
    std::thread::scope(|s| {
        for w in 0..4 {
            let ctx = &ctx;
            s.spawn(move || {
                let agent = format!("w{w}");
                for i in 0..5 {
                    let story = format!("story-{}", i % 2);
                    let out = ctx.run(
                        &[
                            "claim", "acquire", &story, "--agent", &agent, "--ttl", "10m",
                        ],
                        &env,
                    );
                    assert!(out.code == 0 || out.code == 3, "{out:?}");
                    if out.code == 0 {
                        let out = ctx.run(&["claim", "release", &story, "--agent", &agent], &env);
                        assert_eq!(out.code, 0, "{out:?}");
                    }
                    let data = json!({"w": w, "i": i}).to_string();
                    let out = ctx.run(&["events", "emit", "sink.test", "--data", &data], &env);
                    assert_eq!(out.code, 0, "{out:?}");
                }
            });
        }
    });
    // Reads and failures do not write to the sink.
    check(&ctx, &w("events tail"), &env, 0, &[], &[]);
    check(&ctx, &w("claim inspect story-0"), &env, 0, &[], &[]);
    check(&ctx, &w("events emit Bad"), &env, 2, &[], &[]);
    let exported = ctx.export();
    let mut lines: Vec<&str> = Vec::new();
    let sink_text = std::fs::read_to_string(&sink).unwrap();
    lines.extend(sink_text.lines());
    lines.sort_by_key(|l| {
        serde_json::from_str::<Value>(l).unwrap()["seq"]
            .as_i64()
            .unwrap()
    });
    let exported_lines: Vec<&str> = exported.lines().collect();
    assert_eq!(
        lines, exported_lines,
        "the sink holds each committed event exactly once"
    );
    assert!(exported_lines.len() >= 20 + 2);

    // A sink that cannot be written does not fail the call: the event is committed.
    let bad = [(
        "GAIA_EVENTS_NDJSON_PATH",
        "/proc/definitely/not/writable.ndjson",
    )];
    let out = ctx.run(&w("events emit sink.unwritable"), &bad);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        ctx.export_events().last().unwrap()["type"],
        "sink.unwritable"
    );
}

fn tamper_setup(db: &TestDb) -> Ctx {
    let ctx = Ctx::new(db);
    for n in 0..6 {
        ctx.emit("test.audit", &["--data", &json!({"n": n}).to_string()]);
    }
    check(
        &ctx,
        &w("audit verify"),
        &[],
        0,
        &["audit chain intact: 6 records verified"],
        &[],
    );
    let v = check(&ctx, &w("audit verify --json"), &[], 0, &[], &[]).json();
    assert_eq!(
        v,
        json!({"intact": true, "checked": 6, "first_broken": null})
    );
    let tail = check(&ctx, &w("audit tail --ndjson"), &[], 0, &[], &[]).stdout;
    assert_eq!(tail.lines().count(), 6);
    ctx
}

async fn audit_verify_detects_an_edited_row(db: &TestDb) {
    let ctx = tamper_setup(db);
    let before = ctx.export();
    db.execute("UPDATE audit SET outcome = 'forged' WHERE id = 3")
        .await;
    let out = check(
        &ctx,
        &w("audit verify"),
        &[],
        1,
        &["audit chain broken at record #3"],
        &[],
    );
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    let v = check(&ctx, &w("audit verify --json"), &[], 1, &[], &[]).json();
    assert_eq!(
        (v["intact"].as_bool(), v["first_broken"]["id"].as_i64()),
        (Some(false), Some(3)),
        "{v}"
    );
    assert_eq!(ctx.export(), before, "verify changes nothing");
}

async fn audit_verify_detects_a_deleted_row(db: &TestDb) {
    let ctx = tamper_setup(db);
    db.execute("DELETE FROM audit WHERE id = 2").await;
    check(
        &ctx,
        &w("audit verify"),
        &[],
        1,
        &["audit chain broken at record #2"],
        &[],
    );
    let v = check(&ctx, &w("audit verify --json"), &[], 1, &[], &[]).json();
    assert_eq!(v["first_broken"]["id"], 2, "{v}");
}

/// The same edit with the `sqlite3` tool an operator would use, when it is installed.
#[test]
fn audit_verify_detects_an_edit_made_with_sqlite3() {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        eprintln!("skipped: sqlite3 is not installed");
        return;
    }
    let db = TestDb::sqlite();
    let ctx = Ctx::new(&db);
    for n in 0..4 {
        ctx.emit("test.audit", &["--data", &json!({"n": n}).to_string()]);
    }
    check(&ctx, &w("audit verify"), &[], 0, &["intact"], &[]);
    let path = db.url.strip_prefix("sqlite://").unwrap();
    let out = Command::new("sqlite3")
        .arg(path)
        .arg("UPDATE audit SET actor = 'mallory' WHERE id = 4;")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    check(&ctx, &w("audit verify"), &[], 1, &["#4"], &[]);
}

#[test]
fn config_show_redacts_secrets() {
    let db = TestDb::sqlite();
    let ctx = Ctx::new(&db);
    let bot = "123456789:AAbotTOKENfromENV";
    let admin = "admin-token-from-env-42";
    let env = [("TELEGRAM_BOT_TOKEN", bot), ("MONITOR_ADMIN_TOKEN", admin)];
    let assert_hidden = |out: &Out, secrets: &[&str]| {
        for s in secrets {
            assert!(
                !out.stdout.contains(s) && !out.stderr.contains(s),
                "{s} leaked: {out:?}"
            );
        }
    };
    let out = check(
        &ctx,
        &w("config show"),
        &env,
        0,
        &[
            "telegram.bot_token",
            "admin.token",
            "[redacted]",
            "$TELEGRAM_BOT_TOKEN",
            "$MONITOR_ADMIN_TOKEN",
        ],
        &[],
    );
    assert_hidden(&out, &[bot, admin]);
    let v = check(&ctx, &w("config show --json"), &env, 0, &[], &[]).json();
    let setting = |v: &Value, name: &str| -> Value {
        v.as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {v}"))
            .clone()
    };
    assert_eq!(setting(&v, "telegram.bot_token")["value"], "[redacted]");
    assert_eq!(setting(&v, "admin.token")["value"], "[redacted]");
    assert_eq!(setting(&v, "database.url")["value"], db.url.as_str());

    // From an env file named on the command line, and from *_FILE variables.
    let env_file = ctx.dir().join("secrets.env");
    let file_bot = "987654321:AAbotTOKENfromFILE";
    std::fs::write(
        &env_file,
        format!("# prototype\nexport TELEGRAM_BOT_TOKEN=\"{file_bot}\"\nCHAT_ID=-100200\n"),
    )
    .unwrap();
    let admin_file = ctx.dir().join("admin-token");
    let file_admin = "admin-token-from-a-file-77";
    std::fs::write(&admin_file, format!("{file_admin}\n")).unwrap();
    let env2 = [("MONITOR_ADMIN_TOKEN_FILE", admin_file.to_str().unwrap())];
    let args = ["--env-file", env_file.to_str().unwrap(), "config", "show"];
    let out = check(
        &ctx,
        &args,
        &env2,
        0,
        &["[redacted]", "MONITOR_ADMIN_TOKEN_FILE", "secrets.env"],
        &[],
    );
    assert_hidden(&out, &[file_bot, file_admin]);
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let v = check(&ctx, &json_args, &env2, 0, &[], &[]).json();
    assert_eq!(setting(&v, "telegram.bot_token")["value"], "[redacted]");
    assert_eq!(setting(&v, "admin.token")["value"], "[redacted]");
    assert_eq!(setting(&v, "telegram.notify_chat")["value"], "-100200");
    let v = check(
        &ctx,
        &w("config show --json"),
        &[("GAIA_ADMIN_TOKEN_FILE", admin_file.to_str().unwrap())],
        0,
        &[],
        &[],
    )
    .json();
    assert_eq!(setting(&v, "admin.token")["value"], "[redacted]");
    assert!(!v.to_string().contains(file_admin));

    // The prototype's default env file is picked up from the working directory.
    std::fs::create_dir(ctx.dir().join(".tmp")).unwrap();
    std::fs::write(
        ctx.dir().join(".tmp/telegram.env"),
        format!("TELEGRAM_BOT_TOKEN={file_bot}\n"),
    )
    .unwrap();
    let out = check(&ctx, &w("config show"), &[], 0, &[".tmp/telegram.env"], &[]);
    assert_hidden(&out, &[file_bot]);

    // A database password is not shown either.
    let out = check(
        &Ctx::bare(),
        &[
            "--db",
            "postgres://gaia:db-password-9@localhost/gaia",
            "config",
            "show",
        ],
        &[],
        0,
        &["gaia:***@localhost"],
        &[],
    );
    assert_hidden(&out, &["db-password-9"]);

    // An event whose data or subject contains a configured secret stores [redacted].
    let mut data = serde_json::Map::new();
    data.insert("text".into(), json!(format!("my token is {bot}!")));
    data.insert(bot.into(), json!([admin, 1]));
    let data = Value::Object(data).to_string();
    let sink = ctx.dir().join("sink.ndjson");
    let mut env3 = env.to_vec();
    env3.push(("GAIA_EVENTS_NDJSON_PATH", sink.to_str().unwrap()));
    let out = check(
        &ctx,
        &[
            "events",
            "emit",
            "chat.message",
            "--data",
            &data,
            "--subject",
            &format!("s-{admin}"),
            "--json",
        ],
        &env3,
        0,
        &[],
        &[],
    );
    assert_hidden(&out, &[bot, admin]);
    // The file-provided token is configured via the default env file now present.
    let out = check(
        &ctx,
        &[
            "events",
            "emit",
            "chat.message",
            "--data",
            &json!({"t": file_bot}).to_string(),
        ],
        &[],
        0,
        &[],
        &[],
    );
    assert_hidden(&out, &[file_bot]);
    let exported = ctx.export();
    for secret in [bot, admin, file_bot] {
        assert!(!exported.contains(secret), "{secret} stored: {exported}");
        assert!(!std::fs::read_to_string(&sink).unwrap().contains(secret));
    }
    let events = ndjson(&exported);
    assert_eq!(
        events[0]["data"],
        json!({"text": "my token is [redacted]!", "[redacted]": ["[redacted]", 1]})
    );
    assert_eq!(events[0]["subject"], "s-[redacted]");
    assert_eq!(events[1]["data"], json!({"t": "[redacted]"}));
}

#[test]
fn help_and_completions() {
    let ctx = Ctx::bare();
    // (args, texts stdout must mention)
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            w("--help"),
            w(
                "claim events audit config completions --db --config --env-file --log --help --version",
            ),
        ),
        (w("help"), w("claim events audit config completions")),
        (
            w("help claim"),
            vec!["acquire", "refresh", "release", "inspect", "list", "--db"],
        ),
        (
            w("claim --help"),
            vec!["acquire", "refresh", "release", "inspect", "list"],
        ),
        (
            w("claim acquire --help"),
            vec![
                "<STORY>",
                "--todolist",
                "--agent",
                "--operator",
                "--fingerprint",
                "--ttl",
                "--json",
                "--db",
                "GAIA_AGENT",
                "GAIA_OPERATOR",
                "held_by_other",
                "lock_timeout",
            ],
        ),
        (
            w("help claim acquire"),
            vec![
                "--todolist",
                "--agent",
                "--operator",
                "--fingerprint",
                "--ttl",
                "--json",
            ],
        ),
        (
            w("claim refresh --help"),
            vec![
                "--todolist",
                "--agent",
                "--fingerprint",
                "--ttl",
                "--json",
                "not_held",
            ],
        ),
        (
            w("claim release --help"),
            vec![
                "--todolist",
                "--agent",
                "--fingerprint",
                "--json",
                "not_held",
            ],
        ),
        (w("claim inspect --help"), vec!["--todolist", "--json"]),
        (w("claim list --help"), vec!["--all", "--json"]),
        (w("events --help"), vec!["emit", "tail", "export"]),
        (
            w("events emit --help"),
            vec!["<TYPE>", "--subject", "--data", "--actor", "--json"],
        ),
        (
            w("events tail --help"),
            vec![
                "--since",
                "--follow",
                "--type",
                "--subject",
                "--limit",
                "--ndjson",
                "--json",
            ],
        ),
        (
            w("events export --help"),
            vec!["--ndjson", "--since", "--output"],
        ),
        (w("audit --help"), vec!["tail", "verify"]),
        (w("audit tail --help"), vec!["--limit", "--ndjson"]),
        (w("audit verify --help"), vec!["--json"]),
        (w("config show --help"), vec!["--json"]),
        (w("completions --help"), vec!["bash", "zsh", "fish"]),
        (w("--version"), vec!["gaia "]),
        (
            w("completions bash"),
            vec!["_gaia()", "complete -F _gaia", "acquire", "--fingerprint"],
        ),
        (w("completions zsh"), vec!["#compdef gaia", "--fingerprint"]),
        (
            w("completions fish"),
            vec!["complete -c gaia", "fingerprint"],
        ),
    ];
    for (args, mentions) in &cases {
        check(&ctx, args, &[], 0, mentions, &[]);
    }
    // A command group without a subcommand shows its help but is not a success.
    let out = ctx.run(&["claim"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stdout.contains("acquire") || out.stderr.contains("acquire"),
        "{out:?}"
    );
    // Help and completions touch no database.
    assert_eq!(std::fs::read_dir(ctx.dir()).unwrap().count(), 0);
}

/// The one list of prototype variables the tests keep out of children's environments is the
/// list the configuration reads: every non-`GAIA_*` name in the `env: &[...]` lists of
/// `src/config.rs`'s settings.
#[test]
fn prototype_vars_match_the_configuration() {
    let source = include_str!("../src/config.rs");
    let settings = source.split("#[cfg(test)]").next().unwrap();
    let mut read: Vec<&str> = settings
        .split("env: &[")
        .skip(1)
        .flat_map(|rest| {
            rest.split(']')
                .next()
                .unwrap()
                .split('"')
                .skip(1)
                .step_by(2)
        })
        .filter(|var| !var.starts_with("GAIA_"))
        .collect();
    read.sort_unstable();
    let mut listed = support::PROTOTYPE_VARS.to_vec();
    listed.sort_unstable();
    assert!(
        read.len() > 5,
        "no settings found in src/config.rs: {read:?}"
    );
    assert_eq!(listed, read, "tests/support/mod.rs PROTOTYPE_VARS");
}

/// `gaia telegram listen` only polls: in webhook mode (updates arrive at `gaia serve`) it
/// refuses to start, with exit code 2 and one line saying why.
#[test]
fn telegram_listen_refuses_webhook_mode() {
    let ctx = Ctx::bare();
    let env = [
        (
            "GAIA_TELEGRAM_BOT_TOKEN",
            "424242:AAFakeTelegramTokenForTests_secret-value",
        ),
        ("GAIA_TELEGRAM_MODE", "webhook"),
        ("GAIA_TELEGRAM_PUBLIC_URL", "https://gaia.example.com"),
        ("GAIA_TELEGRAM_WEBHOOK_SECRET", "s3cret"),
    ];
    let out = ctx.run(&["telegram", "listen"], &env);
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("webhook"), "{out:?}");
    // Refused before opening any database.
    assert_eq!(std::fs::read_dir(ctx.dir()).unwrap().count(), 0);
}
