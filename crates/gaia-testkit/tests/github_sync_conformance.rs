//! GitHub sync records, run with the same bodies against SQLite and PostgreSQL: the
//! write-ahead intent keeps its key and first time however often it is recorded, a push links
//! the issue once with an event and an audit record, and concurrent intents for one item
//! leave one record.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use gaia_core::Gaia;
use gaia_core::event::{EventFilter, kinds};
use gaia_core::github::{ItemKind, has_marker, marker, sync_key};
use gaia_core::store::StoreOptions;
use gaia_core::usecase::github::{Push, Pushed};
use gaia_testkit::{TestDb, backend_tests};

backend_tests!(
    an_intent_keeps_its_key_and_time,
    a_push_links_once_with_event_and_audit,
    concurrent_intents_leave_one_record,
    bad_repositories_change_nothing,
);

const REPO: &str = "acme/widgets";

async fn an_intent_keeps_its_key_and_time(db: &TestDb) {
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let first = gaia
        .github_sync_intend(REPO, ItemKind::Story, "auth", 41, None)
        .await
        .unwrap();
    assert!(first.go);
    let first = first.record;
    assert_eq!(first.sync_key, sync_key(REPO, ItemKind::Story, "auth"));
    assert_eq!(first.issue, None);
    assert_eq!(first.last_seen, 41);
    assert!(has_marker(&marker(&first.sync_key), &first.sync_key));

    // A second sync that saw no record (or an older attempt) must not create.
    let stale = gaia
        .github_sync_intend(REPO, ItemKind::Story, "auth", 99, None)
        .await
        .unwrap();
    assert!(!stale.go);
    assert_eq!(stale.record, first);

    // The sync that saw this attempt may try again; the first intent's time and number stay.
    let again = gaia
        .github_sync_intend(REPO, ItemKind::Story, "auth", 99, Some(first.attempt_at))
        .await
        .unwrap();
    assert!(again.go);
    let again = again.record;
    assert_eq!(again.sync_key, first.sync_key);
    assert_eq!(
        again.intent_at, first.intent_at,
        "the first intent's time stays"
    );
    assert_eq!(
        again.last_seen, 41,
        "the first intent's last seen number stays"
    );
    assert!(again.attempt_at >= first.attempt_at);

    let task = gaia
        .github_sync_intend(REPO, ItemKind::Task, "auth", 0, None)
        .await
        .unwrap()
        .record;
    assert_ne!(task.sync_key, first.sync_key);
    let other_repo = gaia
        .github_sync_intend("acme/other", ItemKind::Story, "auth", 0, None)
        .await
        .unwrap()
        .record;
    assert_ne!(other_repo.sync_key, first.sync_key);

    let listed = gaia.github_sync_list(REPO).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].kind, ItemKind::Story, "stories first");
    assert_eq!(listed[0], again);
}

async fn a_push_links_once_with_event_and_audit(db: &TestDb) {
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let push = |issue, hash, what| Push {
        repo: REPO,
        kind: ItemKind::Task,
        item: "17",
        issue,
        hash,
        what,
    };
    // No intent recorded: nothing is linked.
    assert!(
        gaia.github_sync_record_push(&push(5, "h1", Pushed::Created), "sync")
            .await
            .unwrap()
            .is_none()
    );
    gaia.github_sync_intend(REPO, ItemKind::Task, "17", 4, None)
        .await
        .unwrap();
    let linked = gaia
        .github_sync_record_push(&push(5, "h1", Pushed::Created), "sync")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(linked.issue, Some(5));
    assert_eq!(linked.pushed_hash.as_deref(), Some("h1"));

    // A linked record is returned as it is by a later intent, which may not create.
    let again = gaia
        .github_sync_intend(REPO, ItemKind::Task, "17", 9, Some(linked.attempt_at))
        .await
        .unwrap();
    assert!(!again.go);
    assert_eq!(again.record.issue, Some(5));

    // Another issue number is refused; the same one takes the new hash.
    assert!(
        gaia.github_sync_record_push(&push(6, "h2", Pushed::Found), "sync")
            .await
            .unwrap()
            .is_none()
    );
    let updated = gaia
        .github_sync_record_push(&push(5, "h2", Pushed::Updated), "sync")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.pushed_hash.as_deref(), Some("h2"));

    let events = gaia
        .list_events_after(
            0,
            &EventFilter {
                type_prefix: Some("github".into()),
                subject: None,
            },
            100,
        )
        .await
        .unwrap();
    let kinds_seen: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds_seen,
        vec![kinds::GITHUB_ISSUE_CREATED, kinds::GITHUB_ISSUE_UPDATED]
    );
    assert_eq!(events[0].subject, format!("github/{REPO}#5"));
    assert_eq!(events[0].data["item"], "17");
    let audit = gaia.list_audit_tail(10).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action.starts_with("github."))
            .count(),
        2
    );
    let report = gaia.verify_audit().await.unwrap();
    assert!(report.first_break.is_none());
}

async fn concurrent_intents_leave_one_record(db: &TestDb) {
    let gaia = Arc::new(Gaia::new(db.open(&StoreOptions::default()).await));
    let mut joins = Vec::new();
    for i in 0..8 {
        let gaia = gaia.clone();
        joins.push(tokio::spawn(async move {
            gaia.github_sync_intend(REPO, ItemKind::Story, "race", i, None)
                .await
                .unwrap()
        }));
    }
    let mut keys = Vec::new();
    let mut goes = 0;
    for j in joins {
        let intent = j.await.unwrap();
        goes += usize::from(intent.go);
        keys.push(intent.record.sync_key);
    }
    keys.dedup();
    assert_eq!(keys.len(), 1);
    assert_eq!(goes, 1, "exactly one sync may send the create");
    assert_eq!(gaia.github_sync_list(REPO).await.unwrap().len(), 1);

    // Retries after the settle window race the same way: one goes.
    let seen = gaia.github_sync_list(REPO).await.unwrap()[0].attempt_at;
    let mut joins = Vec::new();
    for i in 0..6 {
        let gaia = gaia.clone();
        joins.push(tokio::spawn(async move {
            gaia.github_sync_intend(REPO, ItemKind::Story, "race", i, Some(seen))
                .await
                .unwrap()
                .go
        }));
    }
    let mut goes = 0;
    for j in joins {
        goes += usize::from(j.await.unwrap());
    }
    assert_eq!(goes, 1);
}

async fn bad_repositories_change_nothing(db: &TestDb) {
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    for bad in ["acme", "acme/widgets/x", "../x", "a b/c"] {
        assert!(
            gaia.github_sync_intend(bad, ItemKind::Story, "s", 0, None)
                .await
                .is_err()
        );
    }
    assert!(gaia.github_sync_list(REPO).await.unwrap().is_empty());
}
