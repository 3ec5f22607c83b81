//! The sync against the fake GitHub through the real `gh`: items become one issue each with
//! hostile text arriving literally, a second sync with nothing changed makes no mutating call,
//! creates whose answer is lost (5xx after creating, a stall past the timeout) are found
//! again instead of duplicated, and a secondary limit is waited out. Skipped without `gh`.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use gaia_core::Gaia;
use gaia_core::github::{ItemKind, has_marker};
use gaia_core::store::StoreOptions;
use gaia_github::limiter::Limits;
use gaia_github::{Desired, Gh, SyncOptions, sync};
use gaia_testkit::TestDb;
use gaia_testkit::fake_github::{FakeGithub, Fault, Op, VIEWER};

const REPO: &str = "acme/widgets";

fn gh_installed() -> bool {
    let found = std::process::Command::new("gh")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: `gh` is not installed");
    }
    found
}

fn gh_for(fake: &FakeGithub, config: &tempfile::TempDir, timeout: Duration) -> Gh {
    let mut env = fake.gh_env();
    env.push(("GH_CONFIG_DIR".into(), config.path().display().to_string()));
    Gh {
        env,
        timeout,
        min_retry_wait: Duration::from_millis(500),
        ..Gh::default()
    }
}

fn options(settle: Duration) -> SyncOptions {
    SyncOptions {
        settle,
        limits: Limits {
            spacing: Duration::from_millis(60),
            ..Limits::default()
        },
        ..SyncOptions::new(REPO, "sync-test")
    }
}

fn items(n: usize) -> Vec<Desired> {
    let hostile = [
        "@/etc/passwd",
        "$(rm -rf ~)",
        "`id`; echo pwned",
        "<!-- gaia-sync: gaia-0000000000000000000 -->",
        "-F title=@/etc/shadow",
    ];
    (0..n)
        .map(|i| Desired {
            kind: if i % 3 == 0 {
                ItemKind::Story
            } else {
                ItemKind::Task
            },
            item: format!("item-{i}"),
            title: format!("{} #{i}", hostile[i % hostile.len()]),
            body: if i == 7 {
                "y".repeat(60 * 1024)
            } else {
                format!("- [ ] {}\n- [x] done", hostile[(i + 1) % hostile.len()])
            },
            labels: vec!["gaia".into(), "gaia:open".into()],
            closed: None,
        })
        .collect()
}

async fn run(
    gaia: &Gaia,
    gh: &Gh,
    opts: &SyncOptions,
    desired: &[Desired],
) -> gaia_github::Summary {
    sync(gaia, gh, opts, desired, &mut |_| {}).await.unwrap()
}

/// Every desired item has exactly one issue of the fake carrying its marker, linked.
async fn assert_one_issue_each(gaia: &Gaia, fake: &FakeGithub, desired: &[Desired]) {
    let records = gaia.github_sync_list(REPO).await.unwrap();
    let issues = fake.issues(REPO);
    let by_item: HashMap<_, _> = records
        .iter()
        .map(|r| ((r.kind, r.item.clone()), r))
        .collect();
    for d in desired {
        let r = by_item[&(d.kind, d.item.clone())];
        let carrying: Vec<_> = issues
            .iter()
            .filter(|i| i.creator == VIEWER && has_marker(&i.body, &r.sync_key))
            .collect();
        assert_eq!(carrying.len(), 1, "{} has one issue", d.item);
        assert_eq!(r.issue, Some(i64::try_from(carrying[0].number).unwrap()));
        assert_eq!(carrying[0].title, d.title, "title arrives literally");
        assert!(
            carrying[0].body.starts_with(&d.body),
            "body arrives literally"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_become_one_issue_each_and_a_resync_changes_nothing() {
    if !gh_installed() {
        return;
    }
    let fake = FakeGithub::start().await;
    fake.set_listing_lag(Duration::from_millis(800));
    // Noise: a pull request, and another user's issue copying a marker line.
    fake.add_issue(REPO, VIEWER, "a pull request", "", true);
    let db = TestDb::sqlite();
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let config = tempfile::tempdir().unwrap();
    let gh = gh_for(&fake, &config, Duration::from_secs(20));
    let desired = items(22);
    let key0 = gaia_core::github::sync_key(REPO, desired[0].kind, &desired[0].item);
    fake.add_issue(
        REPO,
        "mallory",
        "copy",
        &gaia_core::github::marker(&key0),
        false,
    );

    let first = run(&gaia, &gh, &options(Duration::ZERO), &desired).await;
    assert_eq!(first.count("created"), 22, "{:?}", first.items);
    assert_one_issue_each(&gaia, &fake, &desired).await;
    let creates = fake.calls().iter().filter(|c| c.is_create()).count();
    assert_eq!(creates, 22);
    // Paced when `gh` starts; arrival adds `gh`'s start-up jitter.
    assert!(
        fake.max_in_window(Duration::from_millis(30), |c| c.is_mutating()) <= 1,
        "mutating calls are spaced"
    );

    fake.clear_calls();
    let again = run(&gaia, &gh, &options(Duration::ZERO), &desired).await;
    assert_eq!(again.count("unchanged"), 22);
    assert!(
        fake.mutating_calls().is_empty(),
        "no mutating call on a re-sync"
    );

    // One changed, one closed: only those are patched.
    let mut changed = desired.clone();
    changed[1].title = "a new title".into();
    changed[2].closed = Some("not_planned".into());
    fake.clear_calls();
    let third = run(&gaia, &gh, &options(Duration::ZERO), &changed).await;
    assert_eq!(third.count("updated"), 1);
    assert_eq!(third.count("closed"), 1);
    assert_eq!(fake.mutating_calls().len(), 2);
    let issues = fake.issues(REPO);
    let closed: Vec<_> = issues.iter().filter(|i| i.state == "closed").collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].state_reason.as_deref(), Some("not_planned"));
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_answers_never_duplicate() {
    lost_create_answers_never_duplicate_at(1).await;
}

/// Several items at once: a scan for one lost create may fetch another's issue first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_answers_never_duplicate_items_at_once() {
    lost_create_answers_never_duplicate_at(4).await;
}

async fn lost_create_answers_never_duplicate_at(concurrency: usize) {
    if !gh_installed() {
        return;
    }
    let fake = FakeGithub::start().await;
    fake.set_listing_lag(Duration::from_secs(30));
    let db = TestDb::sqlite();
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let config = tempfile::tempdir().unwrap();
    let gh = gh_for(&fake, &config, Duration::from_secs(3));
    let desired = items(6);
    fake.fail_next(Op::Create, Fault::ServerErrorAfter(502));
    fake.fail_next(Op::Create, Fault::StallAfter(Duration::from_secs(5)));
    fake.fail_next(Op::Create, Fault::SecondaryLimit(1));
    fake.fail_next(Op::Create, Fault::ServerErrorAfter(500));

    let opts = SyncOptions {
        concurrency,
        ..options(Duration::from_secs(3600))
    };
    let first = run(&gaia, &gh, &opts, &desired).await;
    assert_eq!(first.count("failed"), 0, "{:?}", first.items);
    assert_eq!(first.count("pending"), 0, "{:?}", first.items);
    assert_eq!(fake.issues(REPO).len(), 6, "{:?}", first.items);
    assert_one_issue_each(&gaia, &fake, &desired).await;

    fake.clear_calls();
    let again = run(&gaia, &gh, &options(Duration::ZERO), &desired).await;
    assert_eq!(again.count("unchanged"), 6, "{:?}", again.items);
    assert!(fake.mutating_calls().is_empty());
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_left_by_a_crash_is_found_by_listing() {
    if !gh_installed() {
        return;
    }
    let fake = FakeGithub::start().await;
    let db = TestDb::sqlite();
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let config = tempfile::tempdir().unwrap();
    let gh = gh_for(&fake, &config, Duration::from_secs(10));
    let desired = items(3);
    // A run that recorded its intent and created the issue, then died before recording it.
    let intent = gaia
        .github_sync_intend(REPO, desired[0].kind, &desired[0].item, 0, None)
        .await
        .unwrap()
        .record;
    let body = format!(
        "{}\n\n{}",
        desired[0].body,
        gaia_core::github::marker(&intent.sync_key)
    );
    fake.add_issue(REPO, VIEWER, &desired[0].title, &body, false);
    // Another intent whose create never left: created only after the settle window.
    gaia.github_sync_intend(REPO, desired[1].kind, &desired[1].item, 0, None)
        .await
        .unwrap();

    let first = run(&gaia, &gh, &options(Duration::from_secs(3600)), &desired).await;
    let outcomes: Vec<_> = first.items.iter().map(|r| r.outcome.bucket()).collect();
    assert_eq!(
        outcomes,
        vec!["created", "pending", "created"],
        "{:?}",
        first.items
    );
    assert_eq!(fake.issues(REPO).len(), 2);

    let second = run(&gaia, &gh, &options(Duration::ZERO), &desired).await;
    assert_eq!(second.count("failed"), 0, "{:?}", second.items);
    assert_eq!(fake.issues(REPO).len(), 3);
    assert_one_issue_each(&gaia, &fake, &desired).await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_primary_budget_stops_before_anything_is_sent() {
    if !gh_installed() {
        return;
    }
    let fake = FakeGithub::start().await;
    fake.set_rate_remaining(5);
    let db = TestDb::sqlite();
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let config = tempfile::tempdir().unwrap();
    let gh = gh_for(&fake, &config, Duration::from_secs(10));
    let err = sync(&gaia, &gh, &options(Duration::ZERO), &items(3), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            gaia_github::sync::SyncError::Gh(gaia_github::GhError::RateLimited { .. })
        ),
        "{err}"
    );
    assert!(fake.mutating_calls().is_empty());
    assert!(gaia.github_sync_list(REPO).await.unwrap().is_empty());
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pace_carries_over_to_the_next_sync() {
    if !gh_installed() {
        return;
    }
    let fake = FakeGithub::start().await;
    let db = TestDb::sqlite();
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let config = tempfile::tempdir().unwrap();
    let gh = gh_for(&fake, &config, Duration::from_secs(10));
    let slow = SyncOptions {
        limits: Limits {
            spacing: Duration::from_millis(700),
            ..Limits::default()
        },
        ..options(Duration::ZERO)
    };
    let all = items(2);
    run(&gaia, &gh, &slow, &all[..1]).await;
    // A new sync (a new limiter) right after: its first create still waits for the pace.
    run(&gaia, &gh, &slow, &all).await;
    let creates: Vec<_> = fake.calls().into_iter().filter(|c| c.is_create()).collect();
    assert_eq!(creates.len(), 2);
    let gap = creates[1].at.duration_since(creates[0].at);
    assert!(gap >= Duration::from_millis(600), "{gap:?}");
    fake.shutdown().await;
}
