//! Claim exclusivity under real concurrency, checked from the event log alone.
//!
//! Worker threads run the real `gaia` binary as child processes: each loops acquire -> hold
//! briefly -> release (or refresh, or abandon the claim so that its short TTL lapses and someone
//! takes it over) on a few keys, and some children are killed with SIGKILL at random moments,
//! including while their transaction is open. Afterwards the exported NDJSON log is replayed per
//! key: no two holders' intervals overlap, fencing tokens grow by exactly one per acquisition,
//! seqs are gap-free, every outcome a surviving child printed is in the log, and the audit chain
//! verifies. Runs on SQLite and, when `GAIA_TEST_POSTGRES_URL` is set, on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gaia_testkit::TestDb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use support::CHILD_BOUND;

/// Concurrent claimer threads, each running one `gaia` process at a time.
const WORKERS: usize = 10;
/// The contended keys (stories; todolist "default").
const KEYS: [&str; 3] = ["alpha", "beta", "gamma"];
/// How long the workers keep starting new processes.
const STORM: Duration = Duration::from_secs(12);
/// Upper bound on acquire attempts per worker.
const MAX_ITERATIONS: usize = 60;
/// A `gaia` command on `db`, in `cwd`, with no Gaia or prototype variables inherited.
fn gaia(db: &str, cwd: &Path, args: &[&str]) -> Command {
    let mut c = support::gaia();
    c.current_dir(cwd)
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs a command to completion (bounded by [`CHILD_BOUND`]).
fn run(cmd: Command) -> Output {
    match run_maybe_killed(cmd, None) {
        Some(out) => out,
        None => panic!("a child that was not killed died of a signal"),
    }
}

/// Runs a command; with `kill_after`, sends SIGKILL if it is still running by then. Returns
/// `None` when the child died of a signal. The pipes are drained while it runs, so that large
/// output (an export) cannot block it.
fn run_maybe_killed(mut cmd: Command, kill_after: Option<Duration>) -> Option<Output> {
    let mut child = cmd.spawn().unwrap();
    let stdout = support::drain(child.stdout.take());
    let stderr = support::drain(child.stderr.take());
    let start = Instant::now();
    if let Some(d) = kill_after {
        std::thread::sleep(d);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
        }
    }
    // Bound the wait so that a hung child fails the test instead of hanging it.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > CHILD_BOUND {
            child.kill().unwrap();
            let _ = child.wait();
            panic!(
                "gaia child did not finish within {CHILD_BOUND:?}: {}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    match out.status.signal() {
        Some(_) => None,
        None => Some(out),
    }
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {:?} / stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn ts(v: &Value) -> DateTime<Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("expected an RFC 3339 string, got {v}"));
    assert!(s.ends_with('Z'), "not UTC: {s}");
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

/// What a surviving child printed.
#[derive(Debug, Clone)]
struct Observed {
    op: &'static str,
    key: String,
    agent: String,
    outcome: String,
    token: i64,
    expires_at: Option<String>,
}

#[derive(Debug, Default)]
struct Tally {
    observed: Vec<Observed>,
    killed: usize,
    completed: usize,
    errors: Vec<String>,
}

/// Checks a finished claim child: exit code and JSON outcome agree, and the JSON has the
/// contract's shape. Returns the observation, or records an error.
fn observe(op: &'static str, out: &Output, tally: &Mutex<Tally>) -> Option<Observed> {
    let code = out.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
        tally.lock().unwrap().errors.push(format!(
            "{op}: exit {code}, stdout not JSON: {:?}, stderr {stderr:?}",
            String::from_utf8_lossy(&out.stdout)
        ));
        return None;
    };
    let outcome = v["outcome"].as_str().unwrap_or("").to_owned();
    let want_code = match outcome.as_str() {
        "acquired" | "already_held" | "taken_over" | "refreshed" | "released" => 0,
        "held_by_other" | "not_held" => 3,
        "lock_timeout" => 4,
        _ => -2,
    };
    if want_code != code {
        tally.lock().unwrap().errors.push(format!(
            "{op}: exit {code} with outcome {outcome:?}: {v} / stderr {stderr:?}"
        ));
        return None;
    }
    let o = Observed {
        op,
        key: v["key"].as_str().unwrap_or("").to_owned(),
        agent: v["holder"]["agent"].as_str().unwrap_or("").to_owned(),
        outcome,
        token: v["token"].as_i64().unwrap_or(-1),
        expires_at: v["expires_at"].as_str().map(str::to_owned),
    };
    let mut t = tally.lock().unwrap();
    t.completed += 1;
    t.observed.push(o.clone());
    Some(o)
}

/// One worker: acquire a random key, hold it briefly, then release, refresh or abandon it.
fn worker(id: usize, db: &str, cwd: &Path, seed: u64, deadline: Instant, tally: &Mutex<Tally>) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let agent = format!("w{id}");
    let operator = format!("op{}", id % 3);
    // Sometimes SIGKILL the child after a random delay: before it opens the store, while its
    // transaction is open, or after it committed but before it printed.
    let kill = |rng: &mut StdRng| -> Option<Duration> {
        rng.random_bool(0.2)
            .then(|| Duration::from_millis(rng.random_range(0..40)))
    };
    let record_kill = |out: &Option<Output>| {
        if out.is_none() {
            tally.lock().unwrap().killed += 1;
        }
    };
    for iter in 0..MAX_ITERATIONS {
        if Instant::now() >= deadline {
            break;
        }
        let key = KEYS[rng.random_range(0..KEYS.len())];
        let ttl = if rng.random_bool(0.5) { "1s" } else { "2s" };
        let fp = if rng.random_bool(0.8) {
            format!("fp{id}")
        } else {
            format!("fp{id}-{iter}")
        };
        let acquire = gaia(
            db,
            cwd,
            &[
                "claim",
                "acquire",
                key,
                "--agent",
                &agent,
                "--operator",
                &operator,
                "--fingerprint",
                &fp,
                "--ttl",
                ttl,
                "--json",
            ],
        );
        let out = run_maybe_killed(acquire, kill(&mut rng));
        record_kill(&out);
        let Some(out) = out else { continue };
        let Some(o) = observe("acquire", &out, tally) else {
            continue;
        };
        if !matches!(
            o.outcome.as_str(),
            "acquired" | "taken_over" | "already_held"
        ) {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..250)));
            continue;
        }
        // Hold: sometimes past the TTL, so that the claim lapses while "held".
        let hold = if rng.random_bool(0.2) {
            rng.random_range(900..1_600)
        } else {
            rng.random_range(0..400)
        };
        std::thread::sleep(Duration::from_millis(hold));
        let roll: f64 = rng.random();
        if roll < 0.25 {
            // Abandon: never release; the TTL lets others take it over.
            continue;
        }
        if roll < 0.45 {
            let refresh = gaia(
                db,
                cwd,
                &[
                    "claim",
                    "refresh",
                    key,
                    "--agent",
                    &agent,
                    "--fingerprint",
                    &fp,
                    "--json",
                ],
            );
            let out = run_maybe_killed(refresh, kill(&mut rng));
            record_kill(&out);
            if let Some(out) = out {
                observe("refresh", &out, tally);
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
        }
        let release = gaia(
            db,
            cwd,
            &[
                "claim",
                "release",
                key,
                "--agent",
                &agent,
                "--fingerprint",
                &fp,
                "--json",
            ],
        );
        let out = run_maybe_killed(release, kill(&mut rng));
        record_kill(&out);
        if let Some(out) = out {
            observe("release", &out, tally);
        }
    }
}

/// The holder of a key while replaying the log.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    agent: String,
    operator: String,
    fingerprint: String,
    token: i64,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct KeyState {
    holder: Option<Held>,
    token: i64,
    last_ts: Option<DateTime<Utc>>,
}

/// Counts of each claim event type found while checking.
type Kinds = BTreeMap<String, usize>;

/// Replays the claim events of an exported log and panics on the first violation.
fn check_log(events: &[Value]) -> Kinds {
    let mut keys: BTreeMap<String, KeyState> = BTreeMap::new();
    let mut kinds = Kinds::new();
    for (i, e) in events.iter().enumerate() {
        let seq = e["seq"].as_i64().unwrap();
        assert_eq!(seq, i as i64 + 1, "seqs are gap-free from 1: {e}");
        let kind = e["type"].as_str().unwrap();
        let at = ts(&e["ts"]);
        let d = &e["data"];
        let key = d["key"].as_str().unwrap_or_else(|| panic!("no key: {e}"));
        assert_eq!(e["subject"], format!("claim/{key}"), "subject: {e}");
        assert_eq!(e["actor"], d["agent"], "actor is the agent: {e}");
        *kinds.entry(kind.to_owned()).or_default() += 1;
        let st = keys.entry(key.to_owned()).or_default();
        if let Some(last) = st.last_ts {
            assert!(last <= at, "time runs backwards on {key} at seq {seq}: {e}");
        }
        st.last_ts = Some(at);
        let identity = |d: &Value| {
            (
                d["agent"].as_str().unwrap().to_owned(),
                d["operator"].as_str().unwrap().to_owned(),
                d["fingerprint"].as_str().unwrap().to_owned(),
            )
        };
        match kind {
            "claim.acquired" | "claim.taken_over" => {
                let token = d["token"].as_i64().unwrap();
                assert_eq!(
                    token,
                    st.token + 1,
                    "fencing token must grow by exactly one on {key}: {e}"
                );
                let (agent, operator, fingerprint) = identity(d);
                let expires_at = ts(&d["expires_at"]);
                let ttl_ms = d["ttl_ms"].as_i64().unwrap();
                assert_eq!(
                    (expires_at - at).num_milliseconds(),
                    ttl_ms,
                    "expires_at = ts + ttl: {e}"
                );
                let new = Held {
                    agent,
                    operator,
                    fingerprint,
                    token,
                    expires_at,
                };
                match (&st.holder, kind) {
                    (None, "claim.acquired") => {}
                    (Some(prev), "claim.acquired") => {
                        // Only one's own lapsed claim may be re-acquired without a release.
                        assert!(
                            (&prev.agent, &prev.operator, &prev.fingerprint)
                                == (&new.agent, &new.operator, &new.fingerprint),
                            "acquired while {prev:?} still held {key}: {e}"
                        );
                        assert!(
                            prev.expires_at <= at,
                            "re-acquired before the own claim lapsed: {prev:?} / {e}"
                        );
                    }
                    (None, _) => panic!("taken over from nobody: {e}"),
                    (Some(prev), _) => {
                        assert!(
                            prev.expires_at <= at,
                            "taken over before the holder's TTL passed (overlap): {prev:?} / {e}"
                        );
                        assert_ne!(
                            (&prev.agent, &prev.operator, &prev.fingerprint),
                            (&new.agent, &new.operator, &new.fingerprint),
                            "a takeover from oneself should be an acquisition: {e}"
                        );
                        let p = &d["previous_holder"];
                        assert_eq!(
                            (
                                p["agent"].as_str(),
                                p["operator"].as_str(),
                                p["fingerprint"].as_str()
                            ),
                            (
                                Some(prev.agent.as_str()),
                                Some(prev.operator.as_str()),
                                Some(prev.fingerprint.as_str())
                            ),
                            "previous_holder: {e}"
                        );
                        assert_eq!(d["previous_token"].as_i64(), Some(prev.token), "{e}");
                        assert_eq!(
                            ts(&d["previous_expires_at"]),
                            prev.expires_at,
                            "previous_expires_at: {e}"
                        );
                    }
                }
                st.token = token;
                st.holder = Some(new);
            }
            "claim.refreshed" => {
                let h = st
                    .holder
                    .as_mut()
                    .unwrap_or_else(|| panic!("refresh of a free key: {e}"));
                assert_eq!(d["agent"].as_str(), Some(h.agent.as_str()), "refresh: {e}");
                assert_eq!(d["token"].as_i64(), Some(h.token), "refresh token: {e}");
                assert!(h.expires_at > at, "refresh of a lapsed claim: {h:?} / {e}");
                let expires_at = ts(&d["expires_at"]);
                assert!(expires_at > at, "{e}");
                h.expires_at = expires_at;
            }
            "claim.released" => {
                let h = st
                    .holder
                    .take()
                    .unwrap_or_else(|| panic!("release of a free key: {e}"));
                assert_eq!(d["agent"].as_str(), Some(h.agent.as_str()), "release: {e}");
                assert_eq!(d["token"].as_i64(), Some(h.token), "release token: {e}");
            }
            other => panic!("unexpected event type {other}: {e}"),
        }
    }
    kinds
}

/// Every outcome a surviving child printed must be in the log with the same token and times.
fn check_observations(events: &[Value], observed: &[Observed]) {
    for o in observed {
        let want_type = match (o.op, o.outcome.as_str()) {
            ("acquire", "acquired") => "claim.acquired",
            ("acquire", "taken_over") => "claim.taken_over",
            ("refresh", "refreshed") => "claim.refreshed",
            ("release", "released") => "claim.released",
            _ => continue,
        };
        let found = events.iter().any(|e| {
            let d = &e["data"];
            e["type"] == want_type
                && d["key"] == o.key.as_str()
                && d["token"].as_i64() == Some(o.token)
                && (want_type == "claim.released"
                    || (d["agent"] == o.agent.as_str()
                        && d["expires_at"].as_str() == o.expires_at.as_deref()))
        });
        assert!(found, "{o:?} was printed but is not in the log");
    }
}

fn export(db: &str, cwd: &Path) -> Vec<Value> {
    let out = run(gaia(db, cwd, &["events", "export", "--ndjson"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs a claim command and returns (exit code, JSON).
fn claim(db: &str, cwd: &Path, args: &[&str]) -> (i32, Value) {
    let mut full = vec!["claim"];
    full.extend_from_slice(args);
    full.push("--json");
    let out = run(gaia(db, cwd, &full));
    (out.status.code().unwrap(), json_of(&out))
}

/// Waits (bounded) until the store's own clock says the claim on `story` has lapsed.
fn wait_until_expired(db: &str, cwd: &Path, story: &str) {
    let start = Instant::now();
    loop {
        let (code, v) = claim(db, cwd, &["inspect", story]);
        assert_eq!(code, 0, "{v}");
        if v["outcome"] == "expired" {
            return;
        }
        assert_eq!(v["outcome"], "held", "{v}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "claim on {story} never lapsed: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A holder whose TTL passed: re-acquiring its own lapsed claim and releasing it work; once
/// someone else took it over, refresh and release are `not_held` (exit 3).
fn lapsed_holder_scenario(db: &str, cwd: &Path) {
    let s = "handover";
    let old = ["--agent", "old", "--fingerprint", "f-old"];
    let acquire_old = |ttl: &str| {
        let mut a = vec!["acquire", s];
        a.extend_from_slice(&old);
        a.extend_from_slice(&["--ttl", ttl]);
        claim(db, cwd, &a)
    };

    let (code, v) = acquire_old("1s");
    assert_eq!(
        (code, v["outcome"].as_str(), v["token"].as_i64()),
        (0, Some("acquired"), Some(1))
    );
    wait_until_expired(db, cwd, s);
    // One's own lapsed claim: a fresh acquisition with a new token, not a takeover.
    let (code, v) = acquire_old("1s");
    assert_eq!(
        (code, v["outcome"].as_str(), v["token"].as_i64()),
        (0, Some("acquired"), Some(2))
    );
    wait_until_expired(db, cwd, s);
    // Releasing one's own lapsed, not-taken-over claim succeeds.
    let (code, v) = claim(
        db,
        cwd,
        &["release", s, "--agent", "old", "--fingerprint", "f-old"],
    );
    assert_eq!(
        (code, v["outcome"].as_str(), v["token"].as_i64()),
        (0, Some("released"), Some(2))
    );
    assert_eq!(v["holder"], Value::Null);

    let (code, v) = acquire_old("1s");
    assert_eq!(
        (code, v["outcome"].as_str(), v["token"].as_i64()),
        (0, Some("acquired"), Some(3))
    );
    wait_until_expired(db, cwd, s);
    let (code, v) = claim(
        db,
        cwd,
        &[
            "acquire",
            s,
            "--agent",
            "new",
            "--fingerprint",
            "f-new",
            "--ttl",
            "10m",
        ],
    );
    assert_eq!(
        (code, v["outcome"].as_str(), v["token"].as_i64()),
        (0, Some("taken_over"), Some(4))
    );
    assert_eq!(v["previous_holder"]["agent"], "old", "{v}");
    assert_eq!(v["holder"]["agent"], "new", "{v}");

    for args in [
        vec!["refresh", s, "--agent", "old", "--fingerprint", "f-old"],
        vec!["refresh", s, "--agent", "old"],
        vec!["release", s, "--agent", "old", "--fingerprint", "f-old"],
        vec!["release", s, "--agent", "old"],
    ] {
        let (code, v) = claim(db, cwd, &args);
        assert_eq!(
            (code, v["outcome"].as_str()),
            (3, Some("not_held")),
            "{args:?}: {v}"
        );
        assert_eq!(v["holder"]["agent"], "new", "{args:?}: {v}");
        assert_eq!(v["token"], 4, "{args:?}: {v}");
    }
    let (code, v) = claim(
        db,
        cwd,
        &["release", s, "--agent", "new", "--fingerprint", "f-new"],
    );
    assert_eq!((code, v["outcome"].as_str()), (0, Some("released")), "{v}");
}

fn exclusivity(db: &str) {
    let started = Instant::now();
    let cwd = tempfile::tempdir().unwrap();
    let cwd = cwd.path();
    lapsed_holder_scenario(db, cwd);

    let seed: u64 = rand::random();
    eprintln!("claims storm on {db}: seed {seed}");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + STORM;
    std::thread::scope(|scope| {
        for id in 0..WORKERS {
            let tally = &tally;
            scope.spawn(move || worker(id, db, cwd, seed, deadline, tally));
        }
    });
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    assert!(
        tally.errors.is_empty(),
        "children failed:\n{}",
        tally.errors.join("\n")
    );

    let events = export(db, cwd);
    let kinds = check_log(&events);
    check_observations(&events, &tally.observed);
    let outcomes = tally
        .observed
        .iter()
        .fold(BTreeMap::<String, usize>::new(), |mut m, o| {
            *m.entry(format!("{} {}", o.op, o.outcome)).or_default() += 1;
            m
        });
    eprintln!(
        "{} events {kinds:?}; {} children finished, {} killed; outcomes {outcomes:?}; {:.1?}",
        events.len(),
        tally.completed,
        tally.killed,
        started.elapsed()
    );
    for k in ["claim.acquired", "claim.taken_over", "claim.released"] {
        assert!(
            kinds.get(k).copied().unwrap_or(0) > 0,
            "no {k} in {kinds:?}"
        );
    }
    assert!(tally.killed > 0, "no child was killed");

    let out = run(gaia(db, cwd, &["audit", "verify", "--json"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "audit verify: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["intact"], true, "{v}");
    // Every claim change writes one event and one audit record in the same transaction.
    assert_eq!(v["checked"].as_u64(), Some(events.len() as u64), "{v}");
}

#[test]
fn sqlite_claims_are_exclusive_across_killed_processes() {
    let db = TestDb::sqlite();
    exclusivity(&db.url);
}

#[test]
fn postgres_claims_are_exclusive_across_killed_processes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = rt.block_on(TestDb::postgres()) else {
        return;
    };
    exclusivity(&db.url);
}
