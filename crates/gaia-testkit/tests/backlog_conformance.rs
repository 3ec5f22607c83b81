//! The backlog's use cases, run with the same bodies against SQLite and PostgreSQL: stories and
//! their lists, the final-task rule, ready work taken under concurrency, the claim fence, and
//! follow-ups collected once.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use gaia_core::backlog::{
    FollowupStatus, NewFollowup, NewStory, NewTask, StoryStatus, Taken, TaskStatus, Template,
};
use gaia_core::claims::{Holder, Request};
use gaia_core::error::Error;
use gaia_core::names::ClaimKey;
use gaia_core::store::StoreOptions;
use gaia_core::time::{Clock, ManualClock};
use gaia_core::usecase::backlog::{Collected, Fenced, TaskAction};
use gaia_core::{Gaia, StoreError};
use gaia_testkit::{TestDb, backend_tests};

backend_tests!(
    stories_lists_and_the_final_task_rule,
    ready_take_never_gives_a_task_twice,
    a_taken_over_holder_cannot_touch_the_task,
    a_holder_takes_the_next_task_of_its_own_list,
    concurrent_changes_to_one_list_never_deadlock,
    followups_are_collected_once,
    bad_backlog_input_changes_nothing,
);

fn story(slug: &str) -> NewStory {
    NewStory {
        slug: slug.into(),
        title: format!("Story {slug}"),
        description: "why it matters".into(),
        labels: vec!["backend".into()],
    }
}

fn task(title: &str) -> NewTask {
    NewTask {
        title: title.into(),
        body: "- [ ] it works".into(),
        blocked_by: vec![],
    }
}

fn holder(agent: &str) -> Holder {
    Holder {
        agent: agent.into(),
        operator: "op".into(),
        fingerprint: "-".into(),
        principal: None,
    }
}

fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Store(StoreError::Conflict(_)))
}

async fn stories_lists_and_the_final_task_rule(db: &TestDb) {
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let tpl = Template::default();
    let s = gaia.create_story(&story("auth"), &tpl, "op").await.unwrap();
    assert_eq!(s.todolist, "default");
    let a = gaia
        .add_task("auth", &task("write the login"), "agent")
        .await
        .unwrap();
    let b = gaia
        .add_task("auth", &task("test the login"), "agent")
        .await
        .unwrap();
    let tasks = gaia.list_tasks("auth", None).await.unwrap();
    let titles: Vec<_> = tasks.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles.len(), 3);
    assert_eq!(titles[0], "write the login");
    assert_eq!(titles[1], "test the login");
    assert!(tasks[2].is_final(), "the template's final task stays last");
    assert!(gaia.validate_lists(None).await.unwrap().is_empty());

    // A list without a final task breaks the rule, naming its last task.
    gaia.create_story(&story("bare"), &Template(vec![]), "op")
        .await
        .unwrap();
    gaia.add_task("bare", &task("only task"), "op")
        .await
        .unwrap();
    let breaks = gaia.validate_lists(None).await.unwrap();
    assert_eq!(breaks.len(), 1);
    assert_eq!(breaks[0].story, "bare");
    assert_eq!(breaks[0].last.as_ref().unwrap().title, "only task");

    // Finalized: nothing more is appended.
    gaia.finalize_list("auth", "op").await.unwrap();
    let refused = gaia
        .add_task("auth", &task("late"), "agent")
        .await
        .unwrap_err();
    assert!(is_conflict(&refused), "{refused}");
    assert_eq!(gaia.list_tasks("auth", None).await.unwrap().len(), 3);

    // Archive: the list keeps its tasks under a timestamped name; a fresh one starts.
    let after = gaia.replace_list("auth", None, &tpl, "op").await.unwrap();
    assert_eq!(after.todolist, "default");
    assert!(after.finalized_at.is_none());
    let fresh = gaia.list_tasks("auth", None).await.unwrap();
    assert_eq!(fresh.len(), 1);
    assert!(fresh[0].is_final());
    let view = gaia.get_story("auth").await.unwrap();
    let archived: Vec<_> = view
        .lists
        .iter()
        .filter(|l| l.archived_at.is_some())
        .collect();
    assert_eq!(archived.len(), 1);
    assert!(archived[0].name.starts_with("default@"));
    let old = gaia
        .list_tasks("auth", Some(&archived[0].name))
        .await
        .unwrap();
    assert_eq!(
        old.iter().map(|t| t.id).collect::<Vec<_>>()[..2],
        [a.id, b.id]
    );
    gaia.add_task("auth", &task("next round"), "agent")
        .await
        .unwrap();

    // Close and reopen.
    let closed = gaia
        .set_story_status("auth", StoryStatus::Closed, "op")
        .await
        .unwrap();
    assert_eq!(closed.status, StoryStatus::Closed);
    assert!(gaia.list_ready(Some("auth"), 10).await.unwrap().is_empty());
    gaia.set_story_status("auth", StoryStatus::Open, "op")
        .await
        .unwrap();
    let ready = gaia.list_ready(Some("auth"), 10).await.unwrap();
    assert_eq!(ready.len(), 1, "the final task waits for the others");
    assert_eq!(ready[0].title, "next round");
}

async fn ready_take_never_gives_a_task_twice(db: &TestDb) {
    let store = db.open(&StoreOptions::default()).await;
    let gaia = Gaia::new(store);
    for s in 0..10 {
        let slug = format!("s{s}");
        gaia.create_story(&story(&slug), &Template(vec![]), "op")
            .await
            .unwrap();
        for t in 0..5 {
            gaia.add_task(&slug, &task(&format!("task {t}")), "op")
                .await
                .unwrap();
        }
    }
    assert_eq!(gaia.list_ready(None, 100).await.unwrap().len(), 50);
    let mut agents = Vec::new();
    for a in 0..16 {
        let gaia = gaia.clone();
        agents.push(tokio::spawn(async move {
            let agent = format!("agent-{a}");
            let mut took = Vec::new();
            for _ in 0..200 {
                let taken = match gaia
                    .take_ready(None, &holder(&agent), Duration::from_secs(600), &agent)
                    .await
                {
                    Ok(t) => t,
                    Err(Error::Store(StoreError::LockTimeout)) => continue,
                    Err(e) => panic!("take: {e}"),
                };
                let Taken::Took { task, claim } = taken else {
                    break;
                };
                assert_eq!(task.status, TaskStatus::InProgress);
                assert_eq!(task.worker.as_deref(), Some(agent.as_str()));
                // The worker holds the list's claim under the token it was given.
                let now = gaia.store().now().await.unwrap();
                let row = gaia.store().claim_get(&task.key()).await.unwrap().unwrap();
                assert!(row.is_live(now));
                assert_eq!(row.holder.as_ref().unwrap().agent, agent);
                assert_eq!(row.token, claim.token);
                let fence = Fenced {
                    agent: agent.clone(),
                    token: claim.token,
                    principal: None,
                };
                let done = gaia
                    .act_on_task(task.id, &TaskAction::Done, Some(&fence), &agent)
                    .await
                    .unwrap();
                assert_eq!(done.status, TaskStatus::Done);
                took.push(task.id);
                // Let the list go so that others may take from it too.
                let release = Request::release(task.key(), &agent, None).unwrap();
                gaia.apply_claim(&release).await.unwrap();
            }
            took
        }));
    }
    let mut seen = BTreeMap::new();
    for (a, h) in agents.into_iter().enumerate() {
        for id in h.await.unwrap() {
            assert!(seen.insert(id, a).is_none(), "task {id} was taken twice");
        }
    }
    assert_eq!(seen.len(), 50, "every task taken exactly once");
    for s in 0..10 {
        for t in gaia.list_tasks(&format!("s{s}"), None).await.unwrap() {
            assert_eq!(t.status, TaskStatus::Done);
        }
    }
    assert!(gaia.list_ready(None, 100).await.unwrap().is_empty());
}

async fn a_taken_over_holder_cannot_touch_the_task(db: &TestDb) {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap());
    let opts = StoreOptions {
        clock: Some(Arc::new(clock.clone())),
        ..StoreOptions::default()
    };
    let gaia = Gaia::new(db.open(&opts).await);
    gaia.create_story(&story("pay"), &Template(vec![]), "op")
        .await
        .unwrap();
    let t1 = gaia.add_task("pay", &task("charge"), "op").await.unwrap();
    let Taken::Took { claim: old, .. } = gaia
        .take_ready(None, &holder("a"), Duration::from_secs(10), "a")
        .await
        .unwrap()
    else {
        panic!("nothing taken")
    };
    // A's lease runs out; B acquires the list.
    clock.advance(Duration::from_secs(11));
    let key = ClaimKey::new("pay", "default").unwrap();
    let acq = Request::acquire(
        key.clone(),
        "b",
        Some("op"),
        None,
        Some(Duration::from_secs(60)),
    )
    .unwrap();
    let b = gaia.apply_claim(&acq).await.unwrap();
    assert!(b.outcome.is_success());
    let stale = Fenced {
        agent: "a".into(),
        token: old.token,
        principal: None,
    };
    let seq = gaia.store().last_seq().await.unwrap();
    for action in [
        TaskAction::Done,
        TaskAction::Start,
        TaskAction::Block("stuck".into()),
    ] {
        let e = gaia
            .act_on_task(t1.id, &action, Some(&stale), "a")
            .await
            .unwrap_err();
        assert!(is_conflict(&e), "{e}");
    }
    assert_eq!(
        gaia.store().last_seq().await.unwrap(),
        seq,
        "nothing changed"
    );
    let t = gaia.get_task(t1.id).await.unwrap();
    assert_eq!(t.status, TaskStatus::InProgress);
    assert_eq!(t.worker.as_deref(), Some("a"));

    // B, with its token, may; and A acquiring again later gets a new token, the old stays stale.
    let fresh = Fenced {
        agent: "b".into(),
        token: b.token,
        principal: None,
    };
    gaia.act_on_task(t1.id, &TaskAction::Done, Some(&fresh), "b")
        .await
        .unwrap();
    gaia.apply_claim(&Request::release(key.clone(), "b", None).unwrap())
        .await
        .unwrap();
    let again = Request::acquire(key, "a", Some("op"), None, None).unwrap();
    gaia.apply_claim(&again).await.unwrap();
    let e = gaia
        .act_on_task(t1.id, &TaskAction::Unblock, Some(&stale), "a")
        .await
        .unwrap_err();
    assert!(is_conflict(&e), "{e}");
    // Start and done need the fence: without one they are refused.
    let e = gaia
        .act_on_task(t1.id, &TaskAction::Start, None, "op")
        .await
        .unwrap_err();
    assert!(is_conflict(&e), "{e}");
    let _ = clock.now();
}

async fn a_holder_takes_the_next_task_of_its_own_list(db: &TestDb) {
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    gaia.create_story(&story("seq"), &Template::default(), "op")
        .await
        .unwrap();
    let first = gaia.add_task("seq", &task("one"), "op").await.unwrap();
    let second = gaia.add_task("seq", &task("two"), "op").await.unwrap();
    let take = |agent: &'static str| {
        let gaia = gaia.clone();
        async move {
            match gaia
                .take_ready(None, &holder(agent), Duration::from_secs(60), agent)
                .await
                .unwrap()
            {
                Taken::Took { task, claim } => Some((task.id, claim.token)),
                Taken::Nothing => None,
            }
        }
    };
    let (id, token) = take("a").await.unwrap();
    assert_eq!(id, first.id);
    // Another agent finds the list held; the holder gets its next task under the same claim.
    assert_eq!(take("b").await, None);
    let (id2, token2) = take("a").await.unwrap();
    assert_eq!((id2, token2), (second.id, token));
    // The final task waits until both are done.
    assert_eq!(take("a").await, None);
    let fence = Fenced {
        agent: "a".into(),
        token,
        principal: None,
    };
    for id in [id, id2] {
        gaia.act_on_task(id, &TaskAction::Done, Some(&fence), "a")
            .await
            .unwrap();
    }
    let (last, _) = take("a").await.unwrap();
    assert!(gaia.get_task(last).await.unwrap().is_final());
}

/// Adding tasks (story, then its final task) while others block and unblock the final task
/// and a holder finishes tasks (claim, story, task): every change takes its locks in the same
/// order, so none waits on another that waits on it.
async fn concurrent_changes_to_one_list_never_deadlock(db: &TestDb) {
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    gaia.create_story(&story("busy"), &Template::default(), "op")
        .await
        .unwrap();
    for i in 0..8 {
        gaia.add_task("busy", &task(&format!("seed {i}")), "op")
            .await
            .unwrap();
    }
    let Taken::Took { claim, .. } = gaia
        .take_ready(None, &holder("h"), Duration::from_secs(600), "h")
        .await
        .unwrap()
    else {
        panic!("nothing taken")
    };
    let fence = Fenced {
        agent: "h".into(),
        token: claim.token,
        principal: None,
    };
    let final_id = gaia
        .list_tasks("busy", None)
        .await
        .unwrap()
        .last()
        .unwrap()
        .id;
    let mut runs = Vec::new();
    for w in 0..6 {
        let (gaia, fence) = (gaia.clone(), fence.clone());
        runs.push(tokio::spawn(async move {
            for i in 0..10 {
                let res = match w % 3 {
                    0 => gaia
                        .add_task("busy", &task(&format!("w{w} {i}")), "op")
                        .await
                        .map(|_| ()),
                    1 => {
                        let action = if i % 2 == 0 {
                            TaskAction::Block("waiting".into())
                        } else {
                            TaskAction::Unblock
                        };
                        match gaia.act_on_task(final_id, &action, None, "op").await {
                            // Another worker got there first: a refusal, not a deadlock.
                            Err(Error::Store(StoreError::Conflict(_))) => Ok(()),
                            other => other.map(|_| ()),
                        }
                    }
                    _ => {
                        let todo = gaia.list_tasks("busy", None).await.unwrap();
                        let Some(t) = todo
                            .iter()
                            .find(|t| !t.is_final() && t.status != TaskStatus::Done)
                        else {
                            continue;
                        };
                        match gaia
                            .act_on_task(t.id, &TaskAction::Done, Some(&fence), "h")
                            .await
                        {
                            Err(Error::Store(StoreError::Conflict(_))) => Ok(()),
                            other => other.map(|_| ()),
                        }
                    }
                };
                if let Err(e) = res {
                    panic!("worker {w} step {i}: {e}");
                }
            }
        }));
    }
    for r in runs {
        r.await.unwrap();
    }
    let tasks = gaia.list_tasks("busy", None).await.unwrap();
    assert!(
        tasks.last().unwrap().is_final(),
        "the final task stayed last"
    );
    assert_eq!(tasks.len(), 9 + 20);
}

fn doc(path: &str, body: &str) -> NewFollowup {
    NewFollowup {
        path: path.into(),
        hash: format!(
            "{:x}",
            body.len() * 7919 + body.bytes().map(usize::from).sum::<usize>()
        ),
        story: "docs".into(),
        agent: "agent-1".into(),
        task: "T3".into(),
        title: "Follow up on the docs".into(),
        body: body.into(),
    }
}

async fn followups_are_collected_once(db: &TestDb) {
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    gaia.create_story(&story("docs"), &Template::default(), "op")
        .await
        .unwrap();
    let d = doc("doc/docs.agent-1.T3.extra.md", "- [ ] explain the setup");
    let (first, _) = gaia.collect_followup(&d, "collector").await.unwrap();
    assert_eq!(first, Collected::Added);
    let (second, _) = gaia.collect_followup(&d, "collector").await.unwrap();
    assert_eq!(second, Collected::Unchanged);

    // Eight runs at once on a new doc: exactly one adds it.
    let d2 = doc("doc/docs.agent-2.T4.extra.md", "- [ ] more");
    let mut runs = Vec::new();
    for _ in 0..8 {
        let (gaia, d2) = (gaia.clone(), d2.clone());
        runs.push(tokio::spawn(async move {
            loop {
                match gaia.collect_followup(&d2, "collector").await {
                    Err(Error::Store(StoreError::LockTimeout)) => {}
                    other => break other.unwrap().0,
                }
            }
        }));
    }
    let mut outcomes = Vec::new();
    for r in runs {
        outcomes.push(r.await.unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|o| **o == Collected::Added).count(),
        1
    );
    assert_eq!(gaia.list_followups(None).await.unwrap().len(), 2);

    // An edited doc updates its entry.
    let edited = doc(
        "doc/docs.agent-1.T3.extra.md",
        "- [ ] explain the setup, twice",
    );
    let (o, f) = gaia.collect_followup(&edited, "collector").await.unwrap();
    assert_eq!(o, Collected::Updated);
    assert_eq!(f.body, "- [ ] explain the setup, twice");
    assert_eq!(gaia.list_followups(None).await.unwrap().len(), 2);

    // Accept makes a task (before the final one); reject needs a reason; each once.
    let accepted = gaia.triage_followup(f.id, None, "op").await.unwrap();
    assert_eq!(accepted.status, FollowupStatus::Accepted);
    let tasks = gaia.list_tasks("docs", None).await.unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(Some(tasks[0].id), accepted.task_id);
    assert!(tasks[1].is_final());
    let again = gaia
        .triage_followup(f.id, Some("no"), "op")
        .await
        .unwrap_err();
    assert!(is_conflict(&again));
    let other = gaia
        .list_followups(Some(FollowupStatus::Pending))
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    assert!(
        gaia.triage_followup(other[0].id, Some(" "), "op")
            .await
            .is_err()
    );
    let rejected = gaia
        .triage_followup(other[0].id, Some("out of scope"), "op")
        .await
        .unwrap();
    assert_eq!(rejected.status, FollowupStatus::Rejected);
    assert_eq!(rejected.reason.as_deref(), Some("out of scope"));
}

async fn bad_backlog_input_changes_nothing(db: &TestDb) {
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    gaia.create_story(&story("one"), &Template::default(), "op")
        .await
        .unwrap();
    gaia.create_story(&story("two"), &Template::default(), "op")
        .await
        .unwrap();
    let foreign = gaia.add_task("two", &task("theirs"), "op").await.unwrap();
    let seq = gaia.store().last_seq().await.unwrap();
    let count = |g: Gaia| async move {
        let mut n = 0;
        for s in ["one", "two"] {
            n += g.list_tasks(s, None).await.unwrap().len();
        }
        n
    };
    let before = count(gaia.clone()).await;

    let unknown = gaia.add_task("nope", &task("x"), "op").await.unwrap_err();
    assert!(matches!(unknown, Error::NotFound(_)), "{unknown}");
    let big = NewTask {
        body: "x".repeat(2 * 1024 * 1024),
        ..task("big")
    };
    assert!(matches!(
        gaia.add_task("one", &big, "op").await.unwrap_err(),
        Error::Invalid(_)
    ));
    assert!(matches!(
        gaia.add_task("one", &task("bell\u{7}"), "op")
            .await
            .unwrap_err(),
        Error::Invalid(_)
    ));
    let cross = NewTask {
        blocked_by: vec![foreign.id],
        ..task("waits")
    };
    assert!(matches!(
        gaia.add_task("one", &cross, "op").await.unwrap_err(),
        Error::Invalid(_)
    ));
    let dup = gaia
        .create_story(&story("one"), &Template::default(), "op")
        .await
        .unwrap_err();
    assert!(is_conflict(&dup));
    let bad_slug = NewStory {
        slug: "a b".into(),
        ..story("x")
    };
    assert!(matches!(
        gaia.create_story(&bad_slug, &Template::default(), "op")
            .await
            .unwrap_err(),
        Error::Invalid(_)
    ));
    assert!(matches!(
        gaia.list_ready(Some("nope"), 10).await.unwrap_err(),
        Error::NotFound(_)
    ));
    assert!(matches!(
        gaia.take_ready(Some("nope"), &holder("a"), Duration::from_secs(60), "a")
            .await
            .unwrap_err(),
        Error::NotFound(_)
    ));
    assert!(matches!(
        gaia.act_on_task(999_999, &TaskAction::Unblock, None, "op")
            .await
            .unwrap_err(),
        Error::NotFound(_)
    ));
    assert_eq!(
        gaia.store().last_seq().await.unwrap(),
        seq,
        "no event appended"
    );
    assert_eq!(count(gaia.clone()).await, before, "no task added");
    let kinds: BTreeSet<_> = gaia
        .list_stories(None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.slug)
        .collect();
    assert_eq!(kinds, BTreeSet::from(["one".to_owned(), "two".to_owned()]));
}
