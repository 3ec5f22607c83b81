//! `gaia cleanup --apply` as a real process on a store of mixed ages, on SQLite and, when
//! `GAIA_TEST_POSTGRES_URL` is set, PostgreSQL.
//!
//! The store is seeded 200 days back through the service with an injected clock (delivered
//! and pending messages, cancelled and pending requests, a live and a released claim), then in
//! bulk (`gaia_testkit::seed`: old events and audit records, then recent ones, then a few old
//! ones after the recent ones, which the prefix rule keeps), then a day back. With every
//! retention at 90 days:
//!
//! - `cleanup_takes_exactly_the_old_rows_while_writers_run`: 200,000 events. Writers append
//!   events and take claims, and a stream reader resumes from a kept seq, while cleanup runs.
//!   Every old row is in the archive exactly once and gone from the store, nothing else is
//!   touched, the reader sees no gap, and `gaia audit verify` passes before, after, and on the
//!   archive (`--archive`).
//! - `killed_cleanup_deletes_only_what_a_verified_archive_holds`: cleanup in small batches is
//!   killed with SIGKILL at random moments, five times; after each kill every row missing from
//!   the store is in an archive that verifies and the chain verifies; a last run completes.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use gaia_core::Gaia;
use gaia_core::archive::{self, Row};
use gaia_core::claims::Request;
use gaia_core::commands::{Action, CommandSpec, NewCommand, Status as CmdStatus};
use gaia_core::event::EventFilter;
use gaia_core::names::ClaimKey;
use gaia_core::outbox::{Attempt, Channel, NewMessage, RetryPolicy, Status};
use gaia_core::store::{Store, StoreOptions};
use gaia_core::time::ManualClock;
use gaia_testkit::{TestDb, backend_tests};
use rand::Rng;
use serde_json::json;

backend_tests!(
    cleanup_takes_exactly_the_old_rows_while_writers_run,
    killed_cleanup_deletes_only_what_a_verified_archive_holds,
    one_cleanup_runs_at_a_time,
);

const DAY: Duration = Duration::from_secs(86_400);

/// What the seeding left, by whether the retention takes it.
#[derive(Debug, Default)]
struct Seeded {
    old_seqs: BTreeSet<i64>,
    kept_seqs: BTreeSet<i64>,
    old_audit: BTreeSet<i64>,
    kept_audit: BTreeSet<i64>,
    old_sent: BTreeSet<i64>,
    kept_messages: BTreeSet<i64>,
    old_ended: BTreeSet<String>,
    kept_requests: BTreeSet<String>,
    claims: Vec<gaia_core::claims::ClaimRow>,
}

/// Seeds the store as the module docs say, with `events` and `audit` bulk records in all.
async fn seed(db: &TestDb, events: usize, audit: usize) -> Seeded {
    let now = Utc::now();
    let clock = ManualClock::new(now - chrono::Duration::days(200));
    let store = db
        .open(&StoreOptions {
            clock: Some(Arc::new(clock.clone())),
            ..StoreOptions::default()
        })
        .await;
    let gaia = Gaia::new(store.clone());
    let mut s = Seeded::default();

    // 200 days back: messages (a third delivered), requests (half cancelled), claims.
    let ids = message_batch(&gaia, "old", 60).await;
    for (i, id) in ids.iter().enumerate() {
        if i % 3 == 0 {
            deliver(&store, *id).await;
            s.old_sent.insert(*id);
        } else {
            s.kept_messages.insert(*id);
        }
    }
    for i in 0..30 {
        let r = gaia
            .request_command(&NewCommand {
                spec: CommandSpec::Argv(vec!["echo".into(), format!("{i}")]),
                cwd: None,
                story: None,
                todolist: None,
                reason: None,
                requester: "agent-a".into(),
                agent: None,
                is_test: false,
                expires_in: 400 * DAY,
            })
            .await
            .unwrap();
        if i % 2 == 0 {
            gaia.apply_command(
                &r.id,
                &Action::Cancel {
                    by: "agent-a".into(),
                },
            )
            .await
            .unwrap();
            s.old_ended.insert(r.id);
        } else {
            s.kept_requests.insert(r.id);
        }
    }
    let live = ClaimKey::new("live", "default").unwrap();
    let released = ClaimKey::new("released", "default").unwrap();
    for key in [&live, &released] {
        gaia.apply_claim(
            &Request::acquire(key.clone(), "agent-a", None, None, Some(400 * DAY)).unwrap(),
        )
        .await
        .unwrap();
    }
    gaia.apply_claim(&Request::release(released.clone(), "agent-a", None).unwrap())
        .await
        .unwrap();

    // In bulk: old records, recent ones, then old ones again (kept: they follow kept ones).
    let old_start = now - chrono::Duration::days(199);
    let recent = now - chrono::Duration::days(1);
    let (old_events, old_audit) = (events * 3 / 4, audit * 3 / 4);
    let stamp =
        |base: chrono::DateTime<Utc>, i: usize| base + chrono::Duration::microseconds(i as i64);
    let mut ev: Vec<_> = (0..old_events).map(|i| stamp(old_start, i)).collect();
    let mut au: Vec<_> = (0..old_audit).map(|i| stamp(old_start, i)).collect();
    ev.extend((0..events - old_events - 10).map(|i| stamp(recent, i)));
    au.extend((0..audit - old_audit - 10).map(|i| stamp(recent, i)));
    ev.extend((0..10).map(|i| stamp(old_start, i)));
    au.extend((0..10).map(|i| stamp(old_start, i)));
    let before = store.last_seq().await.unwrap();
    let before_audit = store.audit_head().await.unwrap().last_id;
    let bulk = db.seed_log(&ev, &au).await;
    s.old_seqs.extend(1..=before);
    s.old_seqs.extend(&bulk.seqs[..old_events]);
    s.kept_seqs.extend(&bulk.seqs[old_events..]);
    s.old_audit.extend(1..=before_audit);
    s.old_audit.extend(&bulk.audit_ids[..old_audit]);
    s.kept_audit.extend(&bulk.audit_ids[old_audit..]);

    // A day back: delivered messages the retention keeps.
    clock.advance(199 * DAY);
    let ids = message_batch(&gaia, "recent", 10).await;
    for id in &ids {
        deliver(&store, *id).await;
    }
    s.kept_messages.extend(ids);
    let last = store.last_seq().await.unwrap();
    s.kept_seqs
        .extend(bulk.seqs.last().copied().unwrap_or(0) + 1..=last);
    let last_audit = store.audit_head().await.unwrap().last_id;
    s.kept_audit
        .extend(bulk.audit_ids.last().copied().unwrap_or(0) + 1..=last_audit);
    s.claims = store.claim_list().await.unwrap();
    store.close().await;
    s
}

async fn message_batch(gaia: &Gaia, tag: &str, n: usize) -> Vec<i64> {
    let messages: Vec<NewMessage> = (0..n)
        .map(|i| NewMessage {
            channel: Channel::Console,
            target: "console".into(),
            kind: "alert".into(),
            payload: json!({"text": format!("{tag} {i}")}),
            dedupe_key: Some(format!("{tag}-{i}")),
        })
        .collect();
    gaia.enqueue_messages(&messages).await.unwrap()
}

async fn deliver(store: &Arc<dyn Store>, id: i64) {
    let attempt = Attempt::Sent {
        result: json!({"ok": true}),
    };
    let (m, _) = store
        .outbox_record(id, &attempt, &RetryPolicy::DEFAULT, 1.0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.status, Status::Sent);
}

/// `gaia` on this database with every retention at 90 days.
fn gaia_cmd(db: &TestDb, dir: &Path) -> std::process::Command {
    let mut c = support::gaia();
    c.current_dir(dir)
        .env("GAIA_RETENTION_EVENTS", "90d")
        .env("GAIA_RETENTION_AUDIT", "90d")
        .env("GAIA_RETENTION_OUTBOX", "90d")
        .env("GAIA_RETENTION_COMMANDS", "90d")
        .env("GAIA_RETENTION_ARCHIVE_DIR", dir.join("archive"))
        .env("GAIA_LOG", "warn")
        .arg("--db")
        .arg(&db.url)
        .stdin(Stdio::null());
    c
}

/// Runs `gaia ARGS` to the end: (exit code, stdout).
async fn run(db: &TestDb, dir: &Path, args: &[&str]) -> (i32, String) {
    let mut c = gaia_cmd(db, dir);
    c.args(args);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().unwrap_or(-1);
    if code != 0 {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    (code, stdout)
}

/// The keys of every row of the archives in `dir` that verify; each row must appear once.
#[derive(Debug, Default)]
struct Archived {
    seqs: BTreeSet<i64>,
    audit: BTreeSet<i64>,
    outbox: BTreeSet<i64>,
    commands: BTreeSet<String>,
}

fn verified_archives(dir: &Path) -> Archived {
    let mut a = Archived::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return a;
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".ndjson.gz"))
        .collect();
    files.sort();
    for path in files {
        if archive::verify(&path).is_err() {
            continue;
        }
        archive::for_each_row(&path, |_, row| {
            let fresh = match row {
                Row::Event(e) => a.seqs.insert(e.seq),
                Row::Audit(r) => a.audit.insert(r.id),
                Row::Outbox(v) => a.outbox.insert(v["id"].as_i64().unwrap()),
                Row::Command(v) => a.commands.insert(v["id"].as_str().unwrap().to_owned()),
            };
            assert!(fresh, "a row is archived twice: {}", path.display());
            Ok(())
        })
        .unwrap();
    }
    a
}

/// What of the seeded rows the store still holds.
#[derive(Debug, Default)]
struct Stored {
    seqs: HashSet<i64>,
    audit: HashSet<i64>,
    messages: HashSet<i64>,
    requests: HashSet<String>,
}

async fn stored(store: &Arc<dyn Store>, s: &Seeded) -> Stored {
    let mut out = Stored::default();
    let mut after = 0;
    loop {
        let page = store
            .events_after(after, &EventFilter::default(), 5000)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        out.seqs.extend(page.iter().map(|e| e.seq));
    }
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 5000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        out.audit.extend(page.iter().map(|r| r.id));
    }
    for id in s.old_sent.iter().chain(&s.kept_messages) {
        if store.outbox_get(*id).await.unwrap().is_some() {
            out.messages.insert(*id);
        }
    }
    for id in s.old_ended.iter().chain(&s.kept_requests) {
        if store.command_get(id).await.unwrap().is_some() {
            out.requests.insert(id.clone());
        }
    }
    out
}

/// Nothing the retention keeps is gone, and whatever is gone is in a verified archive.
fn check_nothing_lost(s: &Seeded, now: &Stored, archived: &Archived) {
    for seq in &s.kept_seqs {
        assert!(now.seqs.contains(seq), "kept event {seq} was deleted");
    }
    for id in &s.kept_audit {
        assert!(now.audit.contains(id), "kept audit record {id} was deleted");
    }
    for id in &s.kept_messages {
        assert!(now.messages.contains(id), "kept message {id} was deleted");
    }
    for id in &s.kept_requests {
        assert!(now.requests.contains(id), "kept request {id} was deleted");
    }
    for seq in &s.old_seqs {
        assert!(
            now.seqs.contains(seq) || archived.seqs.contains(seq),
            "event {seq} was deleted without a verified archive"
        );
    }
    for id in &s.old_audit {
        assert!(
            now.audit.contains(id) || archived.audit.contains(id),
            "audit record {id} was deleted without a verified archive"
        );
    }
    for id in &s.old_sent {
        assert!(
            now.messages.contains(id) || archived.outbox.contains(id),
            "message {id} was deleted without a verified archive"
        );
    }
    for id in &s.old_ended {
        assert!(
            now.requests.contains(id) || archived.commands.contains(id),
            "request {id} was deleted without a verified archive"
        );
    }
}

async fn cleanup_takes_exactly_the_old_rows_while_writers_run(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let s = seed(db, 200_000, 20_000).await;
    assert_eq!(run(db, dir.path(), &["audit", "verify"]).await.0, 0);
    let (code, plan) = run(db, dir.path(), &["cleanup"]).await;
    assert_eq!(code, 0);
    assert!(
        plan.contains(&format!(
            "{} rows would be archived",
            s.old_seqs.len() + s.old_audit.len() + s.old_sent.len() + s.old_ended.len()
        )),
        "{plan}"
    );

    let store = db.open(&StoreOptions::default()).await;
    let gaia = Gaia::new(store.clone());
    let stop = Arc::new(AtomicBool::new(false));
    // Writers: events and claims, at the store's real time.
    let mut writers = Vec::new();
    for w in 0..2 {
        let (gaia, stop) = (gaia.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let key = ClaimKey::new(&format!("writer{w}"), "default").unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                gaia.emit_event("test.writer", "writer", "w", json!({"n": n}))
                    .await
                    .unwrap();
                let req = if n % 2 == 0 {
                    Request::acquire(key.clone(), "writer", None, None, None).unwrap()
                } else {
                    Request::release(key.clone(), "writer", None).unwrap()
                };
                gaia.apply_claim(&req).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    // A stream reader whose resume point is the first kept event.
    let resume = *s.kept_seqs.first().unwrap();
    let caught_up = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, stop) = (store.clone(), caught_up.clone());
        tokio::spawn(async move {
            let mut last = resume;
            loop {
                let done = stop.load(Ordering::Relaxed);
                let page = store
                    .events_after(last, &EventFilter::default(), 1000)
                    .await
                    .unwrap();
                for e in &page {
                    assert_eq!(
                        e.seq,
                        last + 1,
                        "the stream skipped from {last} to {}",
                        e.seq
                    );
                    last = e.seq;
                }
                if page.is_empty() {
                    if done {
                        return last;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };

    let (code, out) = run(db, dir.path(), &["cleanup", "--apply", "--json"]).await;
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    // Every writer has committed its last change: the reader may stop once it reads nothing.
    caught_up.store(true, Ordering::Relaxed);
    assert_eq!(code, 0, "{out}");
    assert!(written > 0);
    let read_to = reader.await.unwrap();
    assert_eq!(read_to, store.last_seq().await.unwrap());

    let applied: serde_json::Value = serde_json::from_str(&out).unwrap();
    let path = PathBuf::from(applied["archive"].as_str().unwrap());
    let archived = verified_archives(path.parent().unwrap());
    // Exactly the old rows, each once (verified_archives refuses duplicates).
    assert_eq!(archived.seqs, s.old_seqs);
    assert_eq!(archived.audit, s.old_audit);
    assert_eq!(archived.outbox, s.old_sent);
    assert_eq!(archived.commands, s.old_ended);
    let now = stored(&store, &s).await;
    check_nothing_lost(&s, &now, &archived);
    assert!(s.old_seqs.iter().all(|q| !now.seqs.contains(q)));
    assert!(s.old_audit.iter().all(|i| !now.audit.contains(i)));
    assert!(s.old_sent.iter().all(|i| !now.messages.contains(i)));
    assert!(s.old_ended.iter().all(|i| !now.requests.contains(i)));
    // Pending messages and requests, and the claims, are as they were.
    for id in &s.kept_requests {
        let r = store.command_get(id).await.unwrap().unwrap();
        assert_eq!(r.status, CmdStatus::Pending);
    }
    let claims = store.claim_list().await.unwrap();
    for c in &s.claims {
        assert!(claims.contains(c), "claim {:?} changed", c.key);
    }

    let (code, verify) = run(db, dir.path(), &["audit", "verify"]).await;
    assert_eq!(code, 0, "{verify}");
    let archive_arg = path.to_string_lossy().into_owned();
    let (code, verify) = run(
        db,
        dir.path(),
        &["audit", "verify", "--archive", &archive_arg],
    )
    .await;
    assert_eq!(code, 0, "{verify}");
    assert!(verify.contains("the live chain continues"), "{verify}");
    // A second run finds nothing old left.
    let (code, out) = run(db, dir.path(), &["cleanup", "--apply"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("nothing to clean up"), "{out}");
    store.close().await;
}

async fn killed_cleanup_deletes_only_what_a_verified_archive_holds(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let s = seed(db, 20_000, 4_000).await;
    let store = db.open(&StoreOptions::default()).await;
    let archive_dir = dir.path().join("archive");
    let mut rng = rand::rng();
    for round in 0..5 {
        // Kill while the archive is written (first round), else while it prunes: after the
        // progress line that starts the phase, plus a random delay.
        let marker = if round == 0 {
            "archiving to"
        } else {
            "pruning"
        };
        let mut c = gaia_cmd(db, dir.path());
        c.args(["cleanup", "--apply", "--batch", "50"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let delay = Duration::from_millis(rng.random_range(0..400));
        tokio::task::spawn_blocking(move || {
            let until = Instant::now() + support::CHILD_BOUND;
            while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                if line.contains(marker) {
                    break;
                }
            }
        })
        .await
        .unwrap();
        tokio::time::sleep(delay).await;
        let _ = child.kill();
        let started = Instant::now();
        support::wait_bounded(&mut child, started, "killed cleanup");
        let wait = delay;
        let now = stored(&store, &s).await;
        let archived = verified_archives(&archive_dir);
        check_nothing_lost(&s, &now, &archived);
        let (code, out) = run(db, dir.path(), &["audit", "verify"]).await;
        assert_eq!(code, 0, "round {round}: {out}");
        let open = Gaia::new(store.clone()).open_cleanup_job().await.unwrap();
        eprintln!(
            "round {round}: killed {wait:?} after the marker; job {:?}; {} old events still stored",
            open.map(|j| j.status),
            s.old_seqs.iter().filter(|q| now.seqs.contains(q)).count()
        );
    }
    let (code, out) = run(db, dir.path(), &["cleanup", "--apply"]).await;
    assert_eq!(code, 0, "{out}");
    let now = stored(&store, &s).await;
    let archived = verified_archives(&archive_dir);
    check_nothing_lost(&s, &now, &archived);
    assert!(s.old_seqs.iter().all(|q| !now.seqs.contains(q)));
    assert!(s.old_audit.iter().all(|i| !now.audit.contains(i)));
    assert!(s.old_sent.iter().all(|i| !now.messages.contains(i)));
    assert!(s.old_ended.iter().all(|i| !now.requests.contains(i)));
    assert!(
        Gaia::new(store.clone())
            .open_cleanup_job()
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(run(db, dir.path(), &["audit", "verify"]).await.0, 0);
    store.close().await;
}

/// The lease keeps a second run out while one runs (the second changes nothing), and a run
/// killed on this host does not hold the next one up until its lease lapses.
async fn one_cleanup_runs_at_a_time(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let s = seed(db, 300, 60).await;
    let store = db.open(&StoreOptions::default()).await;
    let gaia = Gaia::new(store.clone());
    let key = ClaimKey::new("gaia-cleanup", "job").unwrap();
    let hold = |agent: String| {
        Request::acquire(
            key.clone(),
            &agent,
            None,
            None,
            Some(Duration::from_secs(600)),
        )
        .unwrap()
    };

    // A live run elsewhere holds the lease: refused, nothing deleted, no job recorded.
    gaia.apply_claim(&hold("cleanup-elsewhere-1".into()))
        .await
        .unwrap();
    let out = gaia_cmd(db, dir.path())
        .args(["cleanup", "--apply"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("another cleanup is running (held by cleanup-elsewhere-1)"),
        "{err}"
    );
    let now = stored(&store, &s).await;
    assert!(s.old_seqs.iter().all(|q| now.seqs.contains(q)));
    assert!(gaia.open_cleanup_job().await.unwrap().is_none());
    gaia.apply_claim(&Request::release(key.clone(), "cleanup-elsewhere-1", None).unwrap())
        .await
        .unwrap();

    // A run of this host whose process is gone: its lease is taken over at once.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gaia".into());
    gaia.apply_claim(&hold(format!("cleanup-{host}-{pid}")))
        .await
        .unwrap();
    let (code, out) = run(db, dir.path(), &["cleanup", "--apply"]).await;
    assert_eq!(code, 0, "{out}");
    let now = stored(&store, &s).await;
    assert!(s.old_seqs.iter().all(|q| !now.seqs.contains(q)));
    check_nothing_lost(&s, &now, &verified_archives(&dir.path().join("archive")));
    // The lease is let go at the end.
    let lease = gaia.get_claim(&key).await.unwrap();
    assert_eq!(lease.outcome, gaia_core::claims::Outcome::Free, "{lease:?}");
    store.close().await;
}
