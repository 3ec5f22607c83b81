//! One conformance suite, run with the same bodies against SQLite and PostgreSQL: every test on
//! a fresh, migrated database.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use gaia_core::claims::{Outcome, Request};
use gaia_core::event::EventFilter;
use gaia_core::names::ClaimKey;
use gaia_core::store::{Change, StoreOptions};
use gaia_core::time::{Clock, ManualClock};
use gaia_core::{Gaia, StoreError, audit::NewAudit, event::NewEvent};
use gaia_testkit::{TestDb, backend_tests, whole_log};
use serde_json::json;

backend_tests!(
    migrations_are_idempotent,
    schema_newer_than_binary_is_refused,
    claim_lifecycle_with_injected_clock,
    events_resume_without_gap_under_concurrent_writers,
    event_filters,
    audit_chain_detects_tampering,
    claim_lock_timeout_is_an_outcome,
    in_process_claimers_never_overlap,
    claims_from_two_nodes_and_other_writes_keep_the_log_whole,
    claims_whose_callers_go_away_keep_the_log_whole,
    tokens_are_stored_hashed_and_revocable,
    reaper_reports_each_expiry_once,
    command_requests_decide_once_and_expire,
    racing_decisions_have_one_winner,
    outbox_dedupes_leases_retries_and_requeues,
    approval_messages_commit_with_the_request,
    outbox_leases_are_fenced,
    outbox_pacing_is_shared_by_senders_and_survives_reopening,
    outbox_leases_one_message_per_chat_in_order,
    outbox_record_leases_the_chats_next_message,
    executions_begin_once_and_finish_once,
    a_claim_belongs_to_the_token_that_took_it,
    first_opens_race_without_failing,
    grouped_writers_commit_together_and_fail_alone,
);

fn opts_with(clock: &ManualClock) -> StoreOptions {
    StoreOptions {
        clock: Some(Arc::new(clock.clone())),
        ..StoreOptions::default()
    }
}

fn key(s: &str) -> ClaimKey {
    ClaimKey::new(s, "default").unwrap()
}

fn acquire(k: &str, agent: &str, fp: &str, ttl_s: u64) -> Request {
    Request::acquire(
        key(k),
        agent,
        Some("op"),
        Some(fp),
        Some(Duration::from_secs(ttl_s)),
    )
    .unwrap()
}

/// Every event in `store`, checked to be gap-free and in seq order.
async fn migrations_are_idempotent(db: &TestDb) {
    let a = db.open(&StoreOptions::default()).await;
    let b = db.open(&StoreOptions::default()).await;
    let want = if db.is_postgres() {
        gaia_store_postgres::SCHEMA_VERSION
    } else {
        gaia_store_sqlite::SCHEMA_VERSION
    };
    assert_eq!(a.schema_version().await.unwrap(), want);
    assert_eq!(b.schema_version().await.unwrap(), want);
    assert_eq!(a.last_seq().await.unwrap(), 0);
}

async fn schema_newer_than_binary_is_refused(db: &TestDb) {
    let s = db.open(&StoreOptions::default()).await;
    s.close().await;
    db.execute("INSERT INTO gaia_schema (version, name, applied_at_us) VALUES (999, 'future', 0)")
        .await;
    let err = if db.is_postgres() {
        gaia_store_postgres::PgStore::open(&db.url, &StoreOptions::default())
            .await
            .map(|_| ())
            .unwrap_err()
    } else {
        gaia_store_sqlite::SqliteStore::open(&db.url, &StoreOptions::default())
            .await
            .map(|_| ())
            .unwrap_err()
    };
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 999, .. }),
        "{err:?}"
    );
}

async fn claim_lifecycle_with_injected_clock(db: &TestDb) {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let gaia = Gaia::new(db.open(&opts_with(&clock)).await);
    let steps: Vec<(u64, Request, Outcome, i64)> = vec![
        (0, acquire("s", "a", "fp1", 10), Outcome::Acquired, 1),
        (1, acquire("s", "a", "fp1", 10), Outcome::AlreadyHeld, 1),
        (0, acquire("s", "a", "fp2", 10), Outcome::HeldByOther, 1),
        (0, acquire("s", "b", "x", 10), Outcome::HeldByOther, 1),
        (
            1,
            Request::refresh(key("s"), "a", None, None).unwrap(),
            Outcome::Refreshed,
            1,
        ),
        // Refreshed at t=2 for 10s: still live at t=11, expired at t=12.
        (9, acquire("s", "b", "x", 10), Outcome::HeldByOther, 1),
        (1, acquire("s", "b", "x", 10), Outcome::TakenOver, 2),
        (
            0,
            Request::refresh(key("s"), "a", None, None).unwrap(),
            Outcome::NotHeld,
            2,
        ),
        (
            0,
            Request::release(key("s"), "a", None).unwrap(),
            Outcome::NotHeld,
            2,
        ),
        (
            0,
            Request::release(key("s"), "b", None).unwrap(),
            Outcome::Released,
            2,
        ),
        (0, acquire("s", "c", "y", 10), Outcome::Acquired, 3),
    ];
    for (i, (advance, req, want, token)) in steps.into_iter().enumerate() {
        clock.advance(Duration::from_secs(advance));
        let got = gaia.apply_claim(&req).await.unwrap();
        assert_eq!((got.outcome, got.token), (want, token), "step {i}");
    }
    let inspected = gaia.get_claim(&key("s")).await.unwrap();
    assert_eq!(inspected.outcome, Outcome::Held);
    assert_eq!(inspected.holder.unwrap().agent, "c");
    assert_eq!(
        gaia.get_claim(&key("never")).await.unwrap().outcome,
        Outcome::Free
    );

    let kinds: Vec<String> = gaia
        .list_events_after(0, &EventFilter::default(), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "claim.acquired",
            "claim.refreshed",
            "claim.taken_over",
            "claim.released",
            "claim.acquired"
        ]
    );
    let taken = gaia
        .list_events_after(
            0,
            &EventFilter {
                type_prefix: Some("claim.taken_over".into()),
                subject: None,
            },
            1,
        )
        .await
        .unwrap();
    assert_eq!(taken[0].data["previous_holder"]["agent"], "a");
    assert_eq!(gaia.list_audit_tail(100).await.unwrap().len(), 5);
    assert_eq!(gaia.verify_audit().await.unwrap().first_break, None);

    clock.advance(Duration::from_secs(60));
    assert!(gaia.list_claims(false).await.unwrap().is_empty());
    let all = gaia.list_claims(true).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].outcome, Outcome::Expired);
}

async fn events_resume_without_gap_under_concurrent_writers(db: &TestDb) {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 150;
    let store = db.open(&StoreOptions::default()).await;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let change = Change {
                    events: vec![NewEvent::new(
                        "test.write",
                        format!("w{w}"),
                        "s",
                        json!({ "i": i }),
                    )],
                    audit: vec![NewAudit::new(
                        format!("w{w}"),
                        "test.write",
                        "s",
                        "ok",
                        json!({}),
                    )],
                };
                store.append(change).await.unwrap();
            }
        }));
    }
    // A reader that resumes from the last seq it saw, with small pages, while writers run.
    let total = (WRITERS * PER_WRITER) as i64;
    let mut seen = Vec::new();
    let mut last = 0;
    while last < total {
        let page = store
            .events_after(last, &EventFilter::default(), 7)
            .await
            .unwrap();
        for e in &page {
            seen.push(e.seq);
            last = e.seq;
        }
        if page.is_empty() {
            tokio::task::yield_now().await;
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    let want: Vec<i64> = (1..=total).collect();
    assert_eq!(
        seen, want,
        "the reader saw every seq exactly once, in order"
    );
    assert_eq!(store.last_seq().await.unwrap(), total);
    let gaia = Gaia::new(store);
    let report = gaia.verify_audit().await.unwrap();
    assert_eq!((report.checked, report.first_break), (total as u64, None));
}

async fn event_filters(db: &TestDb) {
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    for (kind, subject) in [
        ("chat.message", "story/a"),
        ("chat", "story/b"),
        ("chats.x", "story/a"),
        ("claim.acquired", "story/a"),
        ("chat_room.x", "story/a"),
    ] {
        gaia.emit_event(kind, "agent-1", subject, json!({"k": kind}))
            .await
            .unwrap();
    }
    let check = |prefix: Option<&str>, subject: Option<&str>| {
        let gaia = gaia.clone();
        let f = EventFilter {
            type_prefix: prefix.map(Into::into),
            subject: subject.map(Into::into),
        };
        async move {
            gaia.list_events_after(0, &f, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(check(Some("chat"), None).await, [1, 2]);
    assert_eq!(check(Some("chat.message"), None).await, [1]);
    assert_eq!(check(None, Some("story/a")).await, [1, 3, 4, 5]);
    assert_eq!(check(Some("chat"), Some("story/a")).await, [1]);
    assert_eq!(check(None, None).await, [1, 2, 3, 4, 5]);
    let after = gaia
        .list_events_after(3, &EventFilter::default(), 1)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].seq, 4);
    assert_eq!(after[0].data, json!({"k": "claim.acquired"}));
}

async fn audit_chain_detects_tampering(db: &TestDb) {
    let cases: &[(&str, i64)] = &[
        ("UPDATE audit SET outcome = 'forged' WHERE id = 3", 3),
        ("DELETE FROM audit WHERE id = 2", 2),
        ("DELETE FROM audit WHERE id = 6", 6),
        ("UPDATE audit SET actor = 'mallory' WHERE id = 4", 4),
        ("UPDATE audit SET id = id + 100 WHERE id = 3", 3),
    ];
    for (i, (sql, broken_at)) in cases.iter().enumerate() {
        // A fresh database per case: reuse the one given for the first, make more as needed.
        let fresh;
        let db = if i == 0 {
            db
        } else if db.is_postgres() {
            fresh = TestDb::postgres().await.unwrap();
            &fresh
        } else {
            fresh = TestDb::sqlite();
            &fresh
        };
        let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
        for n in 0..6 {
            gaia.emit_event("test.audit", "agent-1", "s", json!({ "n": n }))
                .await
                .unwrap();
        }
        assert_eq!(gaia.verify_audit().await.unwrap().first_break, None);
        db.execute(sql).await;
        let report = gaia.verify_audit().await.unwrap();
        let got = report.first_break.map(|b| b.id);
        assert_eq!(got, Some(*broken_at), "{sql}");
    }
}

async fn claim_lock_timeout_is_an_outcome(db: &TestDb) {
    let opts = StoreOptions {
        lock_timeout: Duration::from_millis(300),
        ..StoreOptions::default()
    };
    let gaia = Gaia::new(db.open(&opts).await);
    // Create the row first so PostgreSQL has something to lock.
    let r = gaia
        .apply_claim(&acquire("locked", "a", "f", 60))
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Acquired);
    let guard = db.hold_claim_lock("locked/default").await;
    let r = gaia
        .apply_claim(&acquire("locked", "b", "f", 60))
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::LockTimeout);
    drop(guard);
    let r = gaia
        .apply_claim(&acquire("locked", "b", "f", 60))
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::HeldByOther);
}

async fn in_process_claimers_never_overlap(db: &TestDb) {
    // 12 tasks race for 2 keys; each acquisition is checked against a shared record of who
    // holds what. Fencing tokens must increase by exactly one per acquisition.
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let holders = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        String,
    >::new()));
    let mut tasks = Vec::new();
    for t in 0..12 {
        let gaia = gaia.clone();
        let holders = holders.clone();
        tasks.push(tokio::spawn(async move {
            let mut tokens = Vec::new();
            for i in 0..15 {
                let k = format!("k{}", (t + i) % 2);
                let agent = format!("agent-{t}");
                let r = gaia
                    .apply_claim(&acquire(&k, &agent, "fp", 30))
                    .await
                    .unwrap();
                if r.outcome == Outcome::Acquired {
                    {
                        let mut h = holders.lock().unwrap();
                        assert!(
                            h.insert(k.clone(), agent.clone()).is_none(),
                            "two holders of {k}"
                        );
                    }
                    tokens.push((k.clone(), r.token));
                    tokio::task::yield_now().await;
                    holders.lock().unwrap().remove(&k);
                    let rel = Request::release(key(&k), &agent, None).unwrap();
                    assert_eq!(
                        gaia.apply_claim(&rel).await.unwrap().outcome,
                        Outcome::Released
                    );
                }
            }
            tokens
        }));
    }
    let mut by_key: std::collections::HashMap<String, BTreeSet<i64>> = Default::default();
    let mut count = 0;
    for t in tasks {
        for (k, token) in t.await.unwrap() {
            assert!(by_key.entry(k).or_default().insert(token), "token reused");
            count += 1;
        }
    }
    assert!(count > 0);
    for tokens in by_key.values() {
        let want: BTreeSet<i64> = (1..=tokens.len() as i64).collect();
        assert_eq!(tokens, &want, "tokens are 1..n with no reuse");
    }
}

async fn claims_from_two_nodes_and_other_writes_keep_the_log_whole(db: &TestDb) {
    // Two stores on one database (two nodes, each with its own claim writer) and a writer of
    // plain events all move the log head, so each node's claims find it moved under them
    // now and then. Every claim that wrote must still have its events in a gap-free log
    // whose audit chain verifies.
    const CLAIMERS: usize = 4;
    const PAIRS: usize = 20;
    const EMITS: usize = 30;
    let nodes = [
        Gaia::new(db.open(&StoreOptions::default()).await),
        Gaia::new(db.open(&StoreOptions::default()).await),
    ];
    let mut tasks = Vec::new();
    for t in 0..CLAIMERS {
        let gaia = nodes[t % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut wrote = 0u64;
            for i in 0..PAIRS {
                let k = format!("k{}", (t + i) % 3);
                let agent = format!("agent-{t}");
                for req in [
                    acquire(&k, &agent, "fp", 30),
                    Request::release(key(&k), &agent, None).unwrap(),
                ] {
                    let r = gaia.apply_claim(&req).await.unwrap();
                    if matches!(
                        r.outcome,
                        Outcome::Acquired | Outcome::TakenOver | Outcome::Released
                    ) {
                        wrote += 1;
                    }
                }
            }
            wrote
        }));
    }
    // Plain writers on both nodes, two each: on PostgreSQL a node's appends are numbered from
    // the head its previous append leaves, which the other node's writes and claims move.
    const EMITTERS: usize = 4;
    let emits: Vec<_> = (0..EMITTERS)
        .map(|e| {
            let emitter = nodes[e % 2].clone();
            tokio::spawn(async move {
                for n in 0..EMITS {
                    emitter
                        .emit_event("test.other", "agent-x", "s", json!({ "n": n }))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut wrote = 0;
    for t in tasks {
        wrote += t.await.unwrap();
    }
    for e in emits {
        e.await.unwrap();
    }
    assert!(wrote > 0);
    let store = db.open(&StoreOptions::default()).await;
    let events = whole_log(store.as_ref()).await;
    let claim_events = events
        .iter()
        .filter(|e| e.kind.starts_with("claim."))
        .count() as u64;
    assert_eq!(
        claim_events, wrote,
        "one event for each claim call that wrote"
    );
    assert_eq!(
        events.iter().filter(|e| e.kind == "test.other").count(),
        EMITS * EMITTERS
    );
    let report = Gaia::new(store).verify_audit().await.unwrap();
    assert_eq!(report.first_break, None);
    assert_eq!(report.checked, events.len() as u64);
}

async fn claims_whose_callers_go_away_keep_the_log_whole(db: &TestDb) {
    // A claim may run as a batch of its own in its caller's task when the writer is idle
    // (PostgreSQL), alongside batches of queued claims and other writers. Callers here give
    // up at random points (a timeout of a few microseconds up to a few milliseconds), some
    // claiming one at a time (the idle path), some all at once (batches). Whatever was
    // abandoned, the log stays gap-free and ordered, the audit chain verifies, and each key's
    // fencing tokens are 1..n, one per acquisition logged.

    const CALLERS: usize = 6;
    const CALLS: u64 = 25;
    const EMITS: usize = 20;
    // Every reading is two seconds after the last, so each acquisition finds the previous
    // one-second lease expired and writes.
    #[derive(Debug)]
    struct Leap(std::sync::atomic::AtomicI64);
    impl Clock for Leap {
        fn now(&self) -> chrono::DateTime<Utc> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(2 * n)
        }
    }
    let opts = StoreOptions {
        clock: Some(Arc::new(Leap(0.into()))),
        ..StoreOptions::default()
    };
    let claims_store = db.open(&opts).await;
    let gaia = Gaia::new(claims_store.clone());
    let mut tasks = Vec::new();
    for t in 0..CALLERS {
        let gaia = gaia.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..CALLS {
                let k = format!("k{}", (t as u64 + i) % 3);
                // Half the callers pause between calls, so their claims find the writer idle.
                if t % 2 == 0 {
                    tokio::time::sleep(Duration::from_micros(200 * (i % 4))).await;
                }
                let req = acquire(&k, &format!("agent-{t}"), "fp", 1);
                let patience = Duration::from_micros(((t as u64 * 7 + i * 13) % 40) * 100);
                let _ = tokio::time::timeout(patience, gaia.apply_claim(&req)).await;
            }
        }));
    }
    let emitter = gaia.clone();
    let emits = tokio::spawn(async move {
        for n in 0..EMITS {
            emitter
                .emit_event("test.other", "agent-x", "s", json!({ "n": n }))
                .await
                .unwrap();
        }
    });
    for t in tasks {
        t.await.unwrap();
    }
    emits.await.unwrap();
    // Abandoned claims finish on their own: these calls queue behind them.
    for k in ["k0", "k1", "k2"] {
        let r = gaia
            .apply_claim(&acquire(k, "last", "fp", 1))
            .await
            .unwrap();
        assert!(matches!(r.outcome, Outcome::Acquired | Outcome::TakenOver));
    }
    // The claim writer hands back the connections it keeps, so closing returns (the bound only
    // turns a hang into a failure).
    tokio::time::timeout(Duration::from_secs(60), claims_store.close())
        .await
        .expect("the store closes");
    let store = db.open(&StoreOptions::default()).await;
    let events = whole_log(store.as_ref()).await;
    let mut tokens: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for e in events
        .iter()
        .filter(|e| e.kind == "claim.acquired" || e.kind == "claim.taken_over")
    {
        let k = e.data["key"].as_str().unwrap().to_owned();
        tokens
            .entry(k)
            .or_default()
            .push(e.data["token"].as_i64().unwrap());
    }
    for (k, got) in &tokens {
        let want: Vec<i64> = (1..=got.len() as i64).collect();
        assert_eq!(got, &want, "{k}: one token per acquisition, in log order");
        let row = store
            .claim_get(&ClaimKey::new(k.split('/').next().unwrap(), "default").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.token,
            got.len() as i64,
            "{k}: the row holds the last token"
        );
    }
    let report = Gaia::new(store).verify_audit().await.unwrap();
    assert_eq!(report.first_break, None);
    assert_eq!(report.checked, events.len() as u64);
}

async fn tokens_are_stored_hashed_and_revocable(db: &TestDb) {
    use gaia_core::tokens::Role;
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let (info, secret) = gaia
        .create_token("ci-bot", Role::Agent, "admin")
        .await
        .unwrap();
    assert_eq!(info.role, Role::Agent);
    let err = gaia
        .create_token("ci-bot", Role::Operator, "admin")
        .await
        .unwrap_err();
    assert!(
        matches!(err, gaia_core::error::Error::Store(StoreError::Conflict(_))),
        "{err:?}"
    );
    let found = gaia.authenticate_token(&secret).await.unwrap().unwrap();
    assert_eq!((found.name.as_str(), found.role), ("ci-bot", Role::Agent));
    assert!(
        gaia.authenticate_token("gaia_ag_wrong")
            .await
            .unwrap()
            .is_none()
    );
    assert!(gaia.revoke_token("ci-bot", "admin").await.unwrap());
    assert!(!gaia.revoke_token("ci-bot", "admin").await.unwrap());
    assert!(gaia.authenticate_token(&secret).await.unwrap().is_none());
    let list = gaia.list_tokens().await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].revoked_at.is_some());
    // Neither the secret nor its hash reaches the log.
    let log = gaia
        .list_events_after(0, &EventFilter::default(), 100)
        .await
        .unwrap();
    let kinds: Vec<&str> = log.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["token.created", "token.revoked"]);
    let text = serde_json::to_string(&log).unwrap()
        + &serde_json::to_string(&gaia.list_audit_tail(10).await.unwrap()).unwrap();
    assert!(!text.contains(&secret) && !text.contains(&gaia_core::tokens::hash(&secret)));
}

async fn reaper_reports_each_expiry_once(db: &TestDb) {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let gaia = Gaia::new(db.open(&opts_with(&clock)).await);
    gaia.apply_claim(&acquire("r", "a", "x", 5)).await.unwrap();
    gaia.apply_claim(&acquire("q", "a", "x", 60)).await.unwrap();
    assert!(gaia.reap_claims(100).await.unwrap().is_empty());
    clock.advance(Duration::from_secs(10));
    let first = gaia.reap_claims(100).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].kind.as_str(), first[0].subject.as_str()),
        ("claim.expired", "claim/r/default")
    );
    assert_eq!(first[0].data["token"], 1);
    assert!(
        gaia.reap_claims(100).await.unwrap().is_empty(),
        "reported once"
    );
    // A new acquisition that expires is reported again.
    gaia.apply_claim(&acquire("r", "b", "y", 5)).await.unwrap();
    clock.advance(Duration::from_secs(6));
    let second = gaia.reap_claims(100).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].data["token"], 2);
    // A released claim never expires.
    gaia.apply_claim(&Request::release(key("r"), "b", None).unwrap())
        .await
        .unwrap();
    clock.advance(Duration::from_secs(100));
    let third = gaia.reap_claims(100).await.unwrap();
    assert_eq!(
        third.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(),
        ["claim/q/default"]
    );
}

fn new_command(is_test: bool, expires_s: u64) -> gaia_core::commands::NewCommand {
    gaia_core::commands::NewCommand::new(
        gaia_core::commands::CommandSpec::Argv(vec!["git".into(), "push".into(), "--force".into()]),
        Some("/repo".into()),
        Some("checkout".into()),
        None,
        Some("rewrite history".into()),
        "agent-1",
        is_test,
        Some(Duration::from_secs(expires_s)),
    )
    .unwrap()
}

fn decider(name: &str) -> gaia_core::commands::Decider {
    gaia_core::commands::Decider {
        name: name.into(),
        via: "test".into(),
    }
}

async fn command_requests_decide_once_and_expire(db: &TestDb) {
    use gaia_core::commands::{Action, Status};
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let gaia = Gaia::new(db.open(&opts_with(&clock)).await);
    let a = gaia.request_command(&new_command(false, 60)).await.unwrap();
    let b = gaia.request_command(&new_command(true, 60)).await.unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(gaia.get_command(&a.id).await.unwrap(), a);
    let approve = Action::Approve {
        by: decider("alice"),
        reason: Some("ok".into()),
    };
    let got = gaia
        .apply_command(&a.id, &approve)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(
        (got.status, got.decided_by.as_deref()),
        (Status::Approved, Some("alice"))
    );
    let refused = gaia
        .apply_command(
            &a.id,
            &Action::Deny {
                by: decider("bob"),
                reason: None,
            },
        )
        .await
        .unwrap()
        .into_result()
        .unwrap_err();
    assert!(
        refused.reason.contains("already approved by alice"),
        "{}",
        refused.reason
    );
    assert_eq!(refused.current.status, Status::Approved);
    assert!(gaia.get_command("zzzzzz").await.is_err());
    // The test request expires by itself; a late decision is refused and stored as expired.
    clock.advance(Duration::from_secs(61));
    let late = gaia
        .apply_command(&b.id, &approve)
        .await
        .unwrap()
        .into_result()
        .unwrap_err();
    assert_eq!(late.current.status, Status::Expired);
    let c = gaia.request_command(&new_command(false, 10)).await.unwrap();
    clock.advance(Duration::from_secs(11));
    let expired = gaia.expire_commands(100).await.unwrap();
    assert_eq!(
        expired
            .iter()
            .map(|e| e.subject.clone())
            .collect::<Vec<_>>(),
        [format!("command/{}", c.id)]
    );
    assert!(gaia.expire_commands(100).await.unwrap().is_empty());
    let pending = gaia.list_commands(Some(Status::Pending), 10).await.unwrap();
    assert!(pending.is_empty());
    assert_eq!(gaia.list_commands(None, 10).await.unwrap().len(), 3);
    let kinds: Vec<String> = gaia
        .list_events_after(
            0,
            &EventFilter {
                type_prefix: Some("command".into()),
                subject: None,
            },
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        ["command.approved", "command.expired", "command.expired"]
    );
    assert_eq!(gaia.verify_audit().await.unwrap().first_break, None);
}

async fn racing_decisions_have_one_winner(db: &TestDb) {
    use gaia_core::commands::{Action, Decided, Status};
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    for round in 0..5 {
        let r = gaia
            .request_command(&new_command(false, 600))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let gaia = gaia.clone();
            let id = r.id.clone();
            tasks.push(tokio::spawn(async move {
                let by = decider(&format!("op{i}"));
                let action = if i % 2 == 0 {
                    Action::Approve { by, reason: None }
                } else {
                    Action::Deny { by, reason: None }
                };
                gaia.apply_command(&id, &action).await.unwrap()
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            if let Decided::Done(rec) = t.await.unwrap() {
                winners.push(rec);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one decision wins");
        let stored = gaia.get_command(&r.id).await.unwrap();
        assert_eq!(stored.decided_by, winners[0].decided_by);
        assert!(matches!(stored.status, Status::Approved | Status::Denied));
    }
}

async fn outbox_dedupes_leases_retries_and_requeues(db: &TestDb) {
    use gaia_core::outbox::{Attempt, Channel, NewMessage, RetryPolicy, Status};
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let store = db.open(&opts_with(&clock)).await;
    let msg = |key: Option<&str>, chat: &str| NewMessage {
        channel: Channel::Telegram,
        target: chat.into(),
        kind: "approval".into(),
        payload: json!({ "text": "approve?" }),
        dedupe_key: key.map(Into::into),
    };
    let (ids, events) = store
        .outbox_enqueue(&[
            msg(Some("approval:a"), "-100123"),
            msg(Some("approval:a"), "-100123"),
            msg(None, "-100124"),
            msg(None, "-100125"),
        ])
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["notify.duplicate_skipped"]
    );

    // Two concurrent leases never hand out the same message.
    let (a, b) = tokio::join!(
        store.outbox_lease(2, Duration::from_secs(30)),
        store.outbox_lease(2, Duration::from_secs(30))
    );
    let mut leased: Vec<i64> = a
        .unwrap()
        .iter()
        .chain(b.unwrap().iter())
        .map(|l| l.message.id)
        .collect();
    leased.sort_unstable();
    assert_eq!(leased, ids);
    assert!(
        store
            .outbox_lease(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "all leased"
    );

    let policy = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::DEFAULT
    };
    let (first, second, third) = (ids[0], ids[1], ids[2]);
    let (m, ev) = store
        .outbox_record(
            first,
            &Attempt::Sent {
                result: json!({"message_id": 9}),
            },
            &policy,
            0.5,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.status, ev[0].kind.as_str()),
        (Status::Sent, "notify.sent")
    );
    let (m, _) = store
        .outbox_record(
            second,
            &Attempt::RetryAfter(Duration::from_secs(3)),
            &policy,
            0.5,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.status, m.attempts),
        (Status::Pending, 0),
        "retry_after uses no attempt"
    );
    clock.advance(Duration::from_secs(4));
    let due = store
        .outbox_lease(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|l| l.message.id).collect::<Vec<_>>(),
        [second]
    );
    for want in [Status::Pending, Status::Dead] {
        let (m, _) = store
            .outbox_record(second, &Attempt::Retryable("502".into()), &policy, 0.5)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.status, want);
    }
    let (m, ev) = store
        .outbox_record(third, &Attempt::Fatal("403 blocked".into()), &policy, 0.5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.status, ev[0].kind.as_str()),
        (Status::Dead, "notify.dead")
    );
    let counts = store.outbox_counts().await.unwrap();
    assert_eq!((counts.pending, counts.sent, counts.dead), (0, 1, 2));
    let dead: Vec<i64> = store
        .outbox_list(Some(Status::Dead), 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(dead, [third, second]);

    assert!(
        store
            .outbox_requeue(first, "alice", false)
            .await
            .unwrap()
            .is_none(),
        "only dead messages"
    );
    let (back, ev) = store
        .outbox_requeue(third, "alice", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (back.status, back.requeues, back.attempts),
        (Status::Pending, 1, 0)
    );
    assert_eq!(ev[0].kind, "notify.requeued");
    let again = store
        .outbox_lease(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|l| l.message.id).collect::<Vec<_>>(),
        [third]
    );
    let gaia = Gaia::new(store);
    assert_eq!(gaia.verify_audit().await.unwrap().first_break, None);
    let audit = gaia.list_audit_tail(10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.action == "notify.requeue" && r.actor == "alice")
    );
}

async fn approval_messages_commit_with_the_request(db: &TestDb) {
    use gaia_core::commands::{Action, Status};
    use gaia_core::outbox::{Channel, Target};
    let targets = vec![
        Target {
            channel: Channel::Telegram,
            target: "-1001".into(),
        },
        Target {
            channel: Channel::Console,
            target: "console".into(),
        },
    ];
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await).with_notify(targets);
    let r = gaia.request_command(&new_command(true, 600)).await.unwrap();
    let queued = gaia.list_messages(None, 10).await.unwrap();
    assert_eq!(queued.len(), 2);
    for m in &queued {
        assert_eq!(m.kind, "approval");
        assert_eq!(m.payload["command_id"], r.id.as_str());
        let text = m.payload["text"].as_str().unwrap();
        assert!(
            text.starts_with("[TEST]")
                && text.contains("git push --force")
                && text.contains("agent-1"),
            "{text}"
        );
    }
    // A refused action sends nothing; the decision sends one message per target.
    let _ = gaia
        .apply_command(
            &r.id,
            &Action::Approve {
                by: decider("alice"),
                reason: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(gaia.list_messages(None, 10).await.unwrap().len(), 2);
    gaia.apply_command(
        &r.id,
        &Action::AllowTest {
            by: decider("alice"),
        },
    )
    .await
    .unwrap()
    .into_result()
    .unwrap();
    let decided = gaia
        .apply_command(
            &r.id,
            &Action::Deny {
                by: decider("alice"),
                reason: Some("not today".into()),
            },
        )
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(decided.status, Status::Denied);
    let decisions: Vec<_> = gaia
        .list_messages(None, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "decision")
        .collect();
    assert_eq!(decisions.len(), 2);
    assert!(
        decisions[0].payload["text"]
            .as_str()
            .unwrap()
            .contains("denied by alice")
    );
    assert_eq!(gaia.verify_audit().await.unwrap().first_break, None);
}

fn telegram_alert(chat: i64, text: &str) -> gaia_core::outbox::NewMessage {
    gaia_core::outbox::NewMessage {
        channel: gaia_core::outbox::Channel::Telegram,
        target: chat.to_string(),
        kind: "alert".into(),
        payload: json!({ "text": text }),
        dedupe_key: None,
    }
}

fn slot_req(l: &gaia_core::outbox::Leased) -> gaia_core::outbox::SlotRequest {
    gaia_core::outbox::SlotRequest {
        id: l.message.id,
        token: l.token,
        pacing: Some(gaia_core::outbox::Pacing::TELEGRAM),
        lease: Duration::from_secs(30),
        max_wait: Duration::from_secs(2),
    }
}

/// Leases every due message (from `store`) and returns the one with `id`.
async fn lease_id(store: &Arc<dyn gaia_core::store::Store>, id: i64) -> gaia_core::outbox::Leased {
    store
        .outbox_lease(1000, Duration::from_secs(10))
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.message.id == id)
        .unwrap_or_else(|| panic!("message {id} is not due"))
}

/// A sender whose lease was taken over neither gets a slot nor records its attempt; the
/// sender holding the newer token does; an expired lease nobody took over is still its
/// holder's.
async fn outbox_leases_are_fenced(db: &TestDb) {
    use gaia_core::outbox::{Attempt, RetryPolicy, Slot, Status};
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap());
    let a = db.open(&opts_with(&clock)).await;
    let b = db.open(&opts_with(&clock)).await;
    let policy = RetryPolicy::DEFAULT;
    let sent = || Attempt::Sent {
        result: json!({"message_id": 1}),
    };
    let one = a
        .outbox_enqueue(&[telegram_alert(10, "one")])
        .await
        .unwrap()
        .0[0];

    // Node A leases, its send slot renews the lease for 30 s; the lease ends before A records.
    let la = lease_id(&a, one).await;
    assert_eq!(a.outbox_reserve(&slot_req(&la)).await.unwrap(), Slot::Go);
    assert!(
        b.outbox_lease(10, Duration::from_secs(10))
            .await
            .unwrap()
            .iter()
            .all(|l| l.message.id != one),
        "a renewed lease is not taken over"
    );
    clock.advance(Duration::from_secs(31));
    let lb = lease_id(&b, one).await;
    assert!(lb.token > la.token, "each lease a larger token");
    // A's late slot and record are refused; A's 429 still holds the chat.
    assert_eq!(
        a.outbox_reserve(&slot_req(&la)).await.unwrap(),
        Slot::LostLease
    );
    assert_eq!(
        a.outbox_record_leased(one, la.token, &sent(), &policy, 0.5)
            .await
            .unwrap(),
        None
    );
    let m = a.outbox_get(one).await.unwrap().unwrap();
    assert_eq!((m.status, m.attempts), (Status::Pending, 0), "not recorded");
    // B holds the newer token: it sends and records once (a second after A's send, which
    // did go out).
    assert_eq!(
        b.outbox_reserve(&slot_req(&lb)).await.unwrap(),
        Slot::Wait(Duration::from_secs(1))
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(b.outbox_reserve(&slot_req(&lb)).await.unwrap(), Slot::Go);
    let (m, ev) = b
        .outbox_record_leased(one, lb.token, &sent(), &policy, 0.5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.status, ev[0].kind.as_str()),
        (Status::Sent, "notify.sent")
    );
    assert_eq!(
        b.outbox_record_leased(one, lb.token, &sent(), &policy, 0.5)
            .await
            .unwrap(),
        None,
        "recorded once"
    );
    let sent_events = a
        .events_after(
            0,
            &EventFilter {
                type_prefix: Some("notify.sent".into()),
                subject: None,
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(sent_events.len(), 1);

    // A lease that ran out with nobody taking over is still its holder's: it gets a slot.
    let two = a
        .outbox_enqueue(&[telegram_alert(11, "two")])
        .await
        .unwrap()
        .0[0];
    let l2 = lease_id(&a, two).await;
    clock.advance(Duration::from_secs(60));
    assert_eq!(a.outbox_reserve(&slot_req(&l2)).await.unwrap(), Slot::Go);
    clock.advance(Duration::from_secs(60));
    // A 429 recorded after the lease was lost still holds the chat.
    let l2b = lease_id(&b, two).await;
    assert_eq!(
        a.outbox_record_leased(
            two,
            l2.token,
            &Attempt::RetryAfter(Duration::from_secs(20)),
            &policy,
            0.5
        )
        .await
        .unwrap(),
        None
    );
    assert_eq!(
        b.outbox_reserve(&slot_req(&l2b)).await.unwrap(),
        Slot::Deferred(Duration::from_secs(20))
    );
    // Deferred: back in the queue, due when the hold ends, no attempt used.
    let m = b.outbox_get(two).await.unwrap().unwrap();
    assert_eq!(m.attempts, 0);
    assert_eq!(
        m.next_attempt_at,
        clock.now() + chrono::Duration::seconds(20)
    );
    assert!(
        b.outbox_lease(10, Duration::from_secs(10))
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(Duration::from_secs(20));
    let l2c = lease_id(&b, two).await;
    assert_eq!(b.outbox_reserve(&slot_req(&l2c)).await.unwrap(), Slot::Go);
    let (m, _) = b
        .outbox_record_leased(two, l2c.token, &sent(), &policy, 0.5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((m.status, m.attempts), (Status::Sent, 1));
}

/// Lanes: a lease hands out only the oldest pending message of each chat, to one node at a
/// time; a chat's next message is due once the one before it is recorded (sent or dead), and a
/// held chat holds back its own messages and no other chat's.
async fn outbox_leases_one_message_per_chat_in_order(db: &TestDb) {
    use gaia_core::outbox::{Attempt, RetryPolicy, Slot};
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 2, 3, 0, 0, 0).unwrap());
    let a = db.open(&opts_with(&clock)).await;
    let b = db.open(&opts_with(&clock)).await;
    let policy = RetryPolicy::DEFAULT;
    let ids = |list: &[gaia_core::outbox::Leased]| {
        let mut v: Vec<i64> = list.iter().map(|l| l.message.id).collect();
        v.sort_unstable();
        v
    };
    let (busy, _) = a
        .outbox_enqueue(&[
            telegram_alert(71, "b1"),
            telegram_alert(71, "b2"),
            telegram_alert(71, "b3"),
        ])
        .await
        .unwrap();
    let (other, _) = a
        .outbox_enqueue(&[telegram_alert(72, "o1"), telegram_alert(73, "o2")])
        .await
        .unwrap();
    let la = a.outbox_lease(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(ids(&la), [busy[0], other[0], other[1]], "one head per chat");
    assert!(
        b.outbox_lease(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "no node takes a chat's next message while its head is pending"
    );
    // The busy chat's head is held by a 429: its next message stays behind it.
    let head = la.iter().find(|l| l.message.id == busy[0]).unwrap();
    a.outbox_record_leased(
        busy[0],
        head.token,
        &Attempt::RetryAfter(Duration::from_secs(5)),
        &policy,
        0.5,
    )
    .await
    .unwrap()
    .unwrap();
    let o3 = a
        .outbox_enqueue(&[telegram_alert(74, "o3")])
        .await
        .unwrap()
        .0[0];
    assert_eq!(
        ids(&b.outbox_lease(10, Duration::from_secs(30)).await.unwrap()),
        [o3],
        "a held chat holds up no other chat"
    );
    clock.advance(Duration::from_secs(5));
    let again = b.outbox_lease(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(ids(&again), [busy[0]]);
    assert_eq!(
        b.outbox_reserve(&slot_req(&again[0])).await.unwrap(),
        Slot::Go
    );
    b.outbox_record_leased(
        busy[0],
        again[0].token,
        &Attempt::Sent {
            result: json!({"message_id": 1}),
        },
        &policy,
        0.5,
    )
    .await
    .unwrap()
    .unwrap();
    // Sent: the next one is the head now. A dead head frees its chat too.
    let second = a.outbox_lease(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(ids(&second), [busy[1]]);
    a.outbox_record_leased(
        busy[1],
        second[0].token,
        &Attempt::Fatal("400 bad request".into()),
        &policy,
        0.5,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        ids(&b.outbox_lease(10, Duration::from_secs(30)).await.unwrap()),
        [busy[2]]
    );
}

/// A lane's record leases its chat's next message in the same transaction, in order, when
/// it may go now; one paced for a moment is released for any sender's next lease; a record
/// whose lease was taken over records and leases nothing; a retry ends the lane.
async fn outbox_record_leases_the_chats_next_message(db: &TestDb) {
    use gaia_core::outbox::{Attempt, Leased, Next, Recorded, RetryPolicy, Slot, Status};
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 2, 4, 0, 0, 0).unwrap());
    let a = db.open(&opts_with(&clock)).await;
    let b = db.open(&opts_with(&clock)).await;
    let policy = RetryPolicy::DEFAULT;
    let sent = || Attempt::Sent {
        result: json!({"message_id": 1}),
    };
    let paced_req = |l: &Leased| slot_req(l);
    let paced = Next {
        lease: Duration::from_secs(30),
        request: &paced_req,
    };
    let unpaced_req = |l: &Leased| gaia_core::outbox::SlotRequest {
        pacing: None,
        ..slot_req(l)
    };
    let unpaced = Next {
        lease: Duration::from_secs(30),
        request: &unpaced_req,
    };
    let (chat, _) = a
        .outbox_enqueue(&[
            telegram_alert(81, "c1"),
            telegram_alert(81, "c2"),
            telegram_alert(81, "c3"),
        ])
        .await
        .unwrap();
    let other = a
        .outbox_enqueue(&[telegram_alert(82, "o1")])
        .await
        .unwrap()
        .0[0];
    let first = lease_id(&a, chat[0]).await;
    assert_eq!(a.outbox_reserve(&slot_req(&first)).await.unwrap(), Slot::Go);
    let Recorded { attempt, next } = a
        .outbox_record_next(chat[0], first.token, &sent(), &policy, 0.5, &paced)
        .await
        .unwrap();
    let (m, ev) = attempt.unwrap();
    assert_eq!(
        (m.status, ev.len()),
        (Status::Sent, 1),
        "recorded with its event"
    );
    // Paced at 1/s per chat: the next message is not kept by the lane but released, due as
    // before, for the next lease.
    assert_eq!(next, None);
    let second = lease_id(&b, chat[1]).await;
    assert_eq!(
        b.outbox_reserve(&slot_req(&second)).await.unwrap(),
        Slot::Wait(Duration::from_secs(1))
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        b.outbox_reserve(&slot_req(&second)).await.unwrap(),
        Slot::Go
    );

    // Unpaced: the chat's next message goes with the lane at once, under a lease of its own.
    let Recorded { attempt, next } = b
        .outbox_record_next(chat[1], second.token, &sent(), &policy, 0.5, &unpaced)
        .await
        .unwrap();
    assert_eq!(attempt.unwrap().0.status, Status::Sent);
    let third = next.unwrap();
    assert_eq!(third.message.id, chat[2]);
    assert!(
        a.outbox_lease(10, Duration::from_secs(30))
            .await
            .unwrap()
            .iter()
            .all(|l| l.message.id != chat[2]),
        "leased to the lane, no other node takes it"
    );

    // Taken over before the record: nothing recorded, nothing more leased.
    clock.advance(Duration::from_secs(31));
    let taken = lease_id(&a, chat[2]).await;
    let late = b
        .outbox_record_next(chat[2], third.token, &sent(), &policy, 0.5, &unpaced)
        .await
        .unwrap();
    assert_eq!(late, Recorded::default());
    let m = b.outbox_get(chat[2]).await.unwrap().unwrap();
    assert_eq!((m.status, m.attempts), (Status::Pending, 0));

    // A retry keeps its message the chat's head, not yet due: the lane ends there.
    assert_eq!(
        a.outbox_reserve(&unpaced_req(&taken)).await.unwrap(),
        Slot::Go
    );
    let retry = a
        .outbox_record_next(
            chat[2],
            taken.token,
            &Attempt::Retryable("503".into()),
            &policy,
            0.5,
            &unpaced,
        )
        .await
        .unwrap();
    assert_eq!(retry.attempt.unwrap().0.status, Status::Pending);
    assert_eq!(retry.next, None, "the chat's head is not due");
    // The other chat's message was never touched by this chat's lane.
    let m = a.outbox_get(other).await.unwrap().unwrap();
    assert_eq!((m.status, m.attempts), (Status::Pending, 0));
}

/// The per-chat interval, a chat busy with a send in flight, the group minute, the overall
/// second and a `retry_after` hold are judged from the store: the same for two store handles
/// (two nodes), and still there after reopening (a restart).
async fn outbox_pacing_is_shared_by_senders_and_survives_reopening(db: &TestDb) {
    use gaia_core::outbox::{Attempt, RetryPolicy, Slot};
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 2, 2, 0, 0, 0).unwrap());
    let a = db.open(&opts_with(&clock)).await;
    let b = db.open(&opts_with(&clock)).await;
    let policy = RetryPolicy::DEFAULT;
    let sent = || Attempt::Sent {
        result: json!({"message_id": 1}),
    };
    let enqueue = |store: Arc<dyn gaia_core::store::Store>, chat: i64, text: String| async move {
        store
            .outbox_enqueue(&[telegram_alert(chat, &text)])
            .await
            .unwrap()
            .0[0]
    };

    // One chat, two nodes: B waits a second after A's send was recorded.
    let p1 = enqueue(a.clone(), 42, "p1".into()).await;
    let l1 = lease_id(&a, p1).await;
    let p2 = enqueue(a.clone(), 42, "p2".into()).await;
    assert_eq!(a.outbox_reserve(&slot_req(&l1)).await.unwrap(), Slot::Go);
    // While A's send is in flight the chat's next message goes to no node, even past the
    // interval: a chat's messages go out in order.
    clock.advance(Duration::from_millis(1500));
    assert!(
        b.outbox_lease(10, Duration::from_secs(10))
            .await
            .unwrap()
            .is_empty()
    );
    a.outbox_record_leased(p1, l1.token, &sent(), &policy, 0.5)
        .await
        .unwrap()
        .unwrap();
    clock.advance(Duration::from_secs(2));
    let l2 = lease_id(&b, p2).await;
    assert_eq!(b.outbox_reserve(&slot_req(&l2)).await.unwrap(), Slot::Go);
    // A 429 on it holds the chat for its retry_after, for a store opened afterwards too.
    b.outbox_record_leased(
        p2,
        l2.token,
        &Attempt::RetryAfter(Duration::from_secs(20)),
        &policy,
        0.5,
    )
    .await
    .unwrap()
    .unwrap();
    a.close().await;
    let c = db.open(&opts_with(&clock)).await;
    let p3 = enqueue(c.clone(), 42, "p3".into()).await;
    clock.advance(Duration::from_secs(5));
    assert!(
        c.outbox_lease(10, Duration::from_secs(10))
            .await
            .unwrap()
            .is_empty(),
        "p3 waits behind p2"
    );
    // p2 given up by hand: p3 is the chat's head, and the chat is still held.
    c.outbox_record(p2, &Attempt::Fatal("given up".into()), &policy, 0.5)
        .await
        .unwrap()
        .unwrap();
    let l3 = lease_id(&c, p3).await;
    assert_eq!(
        c.outbox_reserve(&slot_req(&l3)).await.unwrap(),
        Slot::Deferred(Duration::from_secs(15))
    );
    // Right after the record, the next send to the chat waits the interval.
    let q1 = enqueue(c.clone(), 43, "q1".into()).await;
    let lq1 = lease_id(&c, q1).await;
    let q2 = enqueue(c.clone(), 43, "q2".into()).await;
    assert_eq!(c.outbox_reserve(&slot_req(&lq1)).await.unwrap(), Slot::Go);
    c.outbox_record_leased(q1, lq1.token, &sent(), &policy, 0.5)
        .await
        .unwrap()
        .unwrap();
    let lq2 = lease_id(&b, q2).await;
    clock.advance(Duration::from_millis(400));
    assert_eq!(
        b.outbox_reserve(&slot_req(&lq2)).await.unwrap(),
        Slot::Wait(Duration::from_millis(600))
    );

    // A group: 20 sends a minute, alternating nodes; the 21st waits for the first to be a
    // minute old.
    const GROUP: i64 = -100_500;
    clock.advance(Duration::from_secs(30));
    let first = clock.now();
    for i in 0..21 {
        let store = if i % 2 == 0 { &b } else { &c };
        let id = enqueue(store.clone(), GROUP, format!("g{i}")).await;
        let l = lease_id(store, id).await;
        let slot = store.outbox_reserve(&slot_req(&l)).await.unwrap();
        if i < 20 {
            assert_eq!(slot, Slot::Go, "send {i}");
            store
                .outbox_record_leased(id, l.token, &sent(), &policy, 0.5)
                .await
                .unwrap()
                .unwrap();
            clock.advance(Duration::from_secs(1));
        } else {
            let waited = (first + chrono::Duration::seconds(60) - clock.now())
                .to_std()
                .unwrap();
            assert_eq!(slot, Slot::Deferred(waited), "send {i}");
            assert_eq!(waited, Duration::from_secs(40));
        }
    }

    // 30 sends overall in a second, from both nodes; the 31st waits for the second to pass.
    clock.advance(Duration::from_secs(120));
    for i in 0..31 {
        let store = if i % 2 == 0 { &b } else { &c };
        let id = enqueue(store.clone(), 9_000 + i, format!("s{i}")).await;
        let l = lease_id(store, id).await;
        let slot = store.outbox_reserve(&slot_req(&l)).await.unwrap();
        if i < 30 {
            assert_eq!(slot, Slot::Go, "send {i}");
            store
                .outbox_record_leased(id, l.token, &sent(), &policy, 0.5)
                .await
                .unwrap()
                .unwrap();
            clock.advance(Duration::from_millis(10));
        } else {
            assert_eq!(slot, Slot::Wait(Duration::from_millis(700)), "send {i}");
        }
    }
}

/// Execution is two transitions through the same use case as decisions: of several executors
/// beginning at once exactly one wins, its outcome is recorded once, and the log holds one
/// `command.executing` and one `command.executed` with their audit records.
async fn executions_begin_once_and_finish_once(db: &TestDb) {
    use gaia_core::commands::{Action, Execution, Status, binding};
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let r = gaia
        .request_command(&new_command(false, 600))
        .await
        .unwrap();
    let approve = Action::Approve {
        by: decider("alice"),
        reason: None,
    };
    gaia.apply_command(&r.id, &approve)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let begin = |who: &str| Action::BeginExecution {
        executor: who.into(),
        dry_run: false,
        binding: binding(&r.spec, r.cwd.as_deref()),
    };
    let racers: Vec<_> = (0..6)
        .map(|i| {
            let gaia = gaia.clone();
            let id = r.id.clone();
            let action = begin(&format!("exec{i}"));
            tokio::spawn(async move { gaia.apply_command(&id, &action).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for h in racers {
        if h.await.unwrap().into_result().is_ok() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one executor begins");
    let wrong = Action::BeginExecution {
        executor: "late".into(),
        dry_run: false,
        binding: "not-the-approved-command".into(),
    };
    assert!(
        gaia.apply_command(&r.id, &wrong)
            .await
            .unwrap()
            .is_refused()
    );
    let now = gaia.store().now().await.unwrap();
    let ran = Execution::reported("exec0", Some(0), 1500, None, now).unwrap();
    let done = gaia
        .apply_command(
            &r.id,
            &Action::FinishExecution {
                execution: ran.clone(),
            },
        )
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(done.status, Status::Executed);
    assert_eq!(done.execution.as_ref().map(|e| e.duration_ms), Some(1500));
    let again = gaia
        .apply_command(&r.id, &Action::FinishExecution { execution: ran })
        .await
        .unwrap();
    assert!(again.is_refused(), "an outcome is recorded once");
    let kinds: Vec<String> = gaia
        .list_events_after(0, &gaia_core::event::EventFilter::default(), 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.subject == r.subject())
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "approval.requested",
            "command.approved",
            "command.executing",
            "command.executed"
        ]
    );
    assert!(gaia.verify_audit().await.unwrap().first_break.is_none());
}

/// A claim taken with a token is that token's: another token naming the same agent and
/// fingerprint neither refreshes, releases nor re-acquires it; direct store access (no token)
/// is trusted like the database.
async fn a_claim_belongs_to_the_token_that_took_it(db: &TestDb) {
    let store = db.open(&StoreOptions::default()).await;
    let taken = store
        .claim(&acquire("owned", "agent-1", "fp", 600).by("token-a"))
        .await
        .unwrap()
        .0;
    assert_eq!(taken.outcome, Outcome::Acquired);
    assert_eq!(
        taken.holder.as_ref().and_then(|h| h.principal.as_deref()),
        Some("token-a")
    );
    let refresh = Request::refresh(key("owned"), "agent-1", Some("fp"), None).unwrap();
    let release = Request::release(key("owned"), "agent-1", Some("fp")).unwrap();
    for req in [refresh.clone().by("token-b"), release.clone().by("token-b")] {
        assert_eq!(store.claim(&req).await.unwrap().0.outcome, Outcome::NotHeld);
    }
    let again = acquire("owned", "agent-1", "fp", 600).by("token-b");
    assert_eq!(
        store.claim(&again).await.unwrap().0.outcome,
        Outcome::HeldByOther
    );
    let row = store.claim_get(&key("owned")).await.unwrap().unwrap();
    assert_eq!(row.token, 1);
    assert_eq!(
        row.holder.and_then(|h| h.principal),
        Some("token-a".to_owned()),
        "the principal is stored"
    );
    let (done, events) = store.claim(&release.by("token-a")).await.unwrap();
    assert_eq!(done.outcome, Outcome::Released);
    assert_eq!(events[0].actor, "token-a", "the token is the actor");
    // Without a token (direct access) the holder's own agent and fingerprint suffice.
    store
        .claim(&acquire("owned", "agent-1", "fp", 600).by("token-c"))
        .await
        .unwrap();
    let direct = Request::release(key("owned"), "agent-1", Some("fp")).unwrap();
    assert_eq!(
        store.claim(&direct).await.unwrap().0.outcome,
        Outcome::Released
    );
}

/// Processes that open a brand-new database at the same moment all get it (migrated once): on
/// SQLite they race to switch the file to WAL, which SQLite refuses with "database is locked"
/// without waiting. Several rounds of 12 opens at once, each round on a fresh database where
/// the backend allows (SQLite).
async fn first_opens_race_without_failing(db: &TestDb) {
    let rounds: Vec<TestDb> = if db.is_postgres() {
        vec![]
    } else {
        (0..5).map(|_| TestDb::sqlite()).collect()
    };
    for fresh in rounds.iter().chain(std::iter::once(db)) {
        let opens = (0..12).map(|_| async {
            let store = gaia_testkit::open_url(&fresh.url, &StoreOptions::default()).await;
            store.schema_version().await.unwrap()
        });
        let versions: BTreeSet<i64> = futures_util::future::join_all(opens)
            .await
            .into_iter()
            .collect();
        assert_eq!(versions.len(), 1, "one schema version: {versions:?}");
    }
}

/// Writers of one process share transactions on SQLite (group commit) and run their own,
/// concurrently, on PostgreSQL. A writer that rolls back, is dropped unfinished (an error) or
/// is cancelled mid-way loses exactly its own work, every other writer's work commits with its
/// events, and the log stays gap-free with a whole audit chain. Each writer's work is a claim
/// row written before its events, so a commit that took one without the other would show.
async fn grouped_writers_commit_together_and_fail_alone(db: &TestDb) {
    const WRITERS: usize = 48;
    let store = db.open(&StoreOptions::default()).await;
    let row = |name: &str| {
        let mut row = gaia_core::claims::ClaimRow::vacant(ClaimKey::new(name, "group").unwrap());
        row.token = 7;
        row
    };

    // A writer cancelled after joining an open transaction: the one before it still commits.
    let mut first = store.begin_write().await.unwrap();
    let now = first.now().await.unwrap();
    first.claim_write(&row("first")).await.unwrap();
    let (joined_tx, joined) = tokio::sync::oneshot::channel();
    let cancelled = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin_write().await.unwrap();
            tx.claim_write(&row("cancelled")).await.unwrap();
            let _ = joined_tx.send(());
            std::future::pending::<()>().await;
            drop(tx);
        })
    };
    // Let the second writer queue for its turn, so that the first hands its transaction on
    // (were it later, it would begin a transaction of its own: the test would still hold).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let committing = tokio::spawn(async move {
        first
            .append_and_commit(
                &[NewEvent::new("test.group", "first", "s", json!({}))],
                &[],
                now,
            )
            .await
    });
    joined.await.unwrap();
    cancelled.abort();
    let _ = cancelled.await;
    let kept_first = committing.await.unwrap().unwrap();

    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let store = store.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut tx = store.begin_write().await.unwrap();
            let now = tx.now().await.unwrap();
            tx.claim_write(&row(&format!("w{i}"))).await.unwrap();
            tokio::task::yield_now().await;
            let events = vec![NewEvent::new("test.group", format!("w{i}"), "s", json!({}))];
            let audit = vec![NewAudit::new(
                format!("w{i}"),
                "test.group",
                "s",
                "ok",
                json!({}),
            )];
            match i % 4 {
                // Kept.
                0 | 3 => {
                    let appended = tx.append_and_commit(&events, &audit, now).await.unwrap();
                    Some(appended[0].seq)
                }
                1 => {
                    tx.rollback().await.unwrap();
                    None
                }
                // Its commit cancelled as soon as it starts: it may or may not commit, and
                // must not take anyone else's work with it either way.
                _ if i % 8 == 6 => {
                    let _ = tokio::time::timeout(
                        Duration::ZERO,
                        tx.append_and_commit(&events, &audit, now),
                    )
                    .await;
                    None
                }
                // Dropped unfinished, as on an error returned with `?`.
                _ => {
                    drop(tx);
                    None
                }
            }
        }));
    }
    let mut kept = BTreeSet::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if let Some(seq) = t.await.unwrap() {
            kept.insert((i, seq));
        }
    }
    // Let a cancelled commit that went on finish before the last writer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One more writer after everything: it gets its turn (nothing is left holding it).
    let mut tx = store.begin_write().await.unwrap();
    let now = tx.now().await.unwrap();
    let last = tx
        .append_and_commit(
            &[NewEvent::new("test.group", "last", "s", json!({}))],
            &[],
            now,
        )
        .await
        .unwrap();

    let events = store
        .events_after(0, &EventFilter::default(), 1000)
        .await
        .unwrap();
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, want, "the log is gap-free");
    let cancelled: BTreeSet<String> = (0..WRITERS)
        .filter(|i| i % 8 == 6)
        .map(|i| format!("w{i}"))
        .collect();
    let actors: BTreeSet<String> = events
        .iter()
        .map(|e| e.actor.clone())
        .filter(|a| !cancelled.contains(a))
        .collect();
    let mut expected: BTreeSet<String> = kept.iter().map(|(i, _)| format!("w{i}")).collect();
    expected.insert("first".into());
    expected.insert("last".into());
    assert_eq!(actors, expected, "exactly the committed writers' events");
    assert_eq!(kept.len(), WRITERS / 2);
    assert_eq!(kept_first[0].seq, 1);
    for (i, seq) in &kept {
        let e = events.iter().find(|e| e.seq == *seq).unwrap();
        assert_eq!(e.actor, format!("w{i}"), "a writer's seq is its own event");
    }
    assert_eq!(last[0].seq, seqs.len() as i64);
    // Each writer's claim row committed exactly when its event did.
    let mut names: Vec<String> = (0..WRITERS).map(|i| format!("w{i}")).collect();
    names.extend(["first".into(), "cancelled".into()]);
    for name in names {
        let stored = store
            .claim_get(&ClaimKey::new(&name, "group").unwrap())
            .await
            .unwrap();
        let logged = events.iter().any(|e| e.actor == name);
        assert_eq!(stored.is_some(), logged, "{name}: its row and its event");
        if let Some(r) = stored {
            assert_eq!(r.token, 7);
        }
    }
    let committed_cancelled = events
        .iter()
        .filter(|e| cancelled.contains(&e.actor))
        .count();
    let report = Gaia::new(store).verify_audit().await.unwrap();
    assert_eq!(report.checked, (kept.len() + committed_cancelled) as u64);
    assert_eq!(report.first_break, None);
}
