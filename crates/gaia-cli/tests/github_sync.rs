//! `gaia sync github` through the real `gh` against the fake GitHub: every story and task
//! becomes exactly one issue with hostile text arriving literally, a second sync makes no
//! mutating call, and a sync killed with SIGKILL at random points, ten runs in a row with
//! faults on (5xx after creating, stalls past the timeout, secondary limits), never leaves a
//! duplicate: every item ends linked to exactly one issue. The scheduled sync of `gaia serve`
//! is off by default, and of two servers on one store only the lease holder syncs, its state
//! read alike through either. Skipped when `gh` is missing.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use gaia_core::Gaia;
use gaia_core::backlog::{NewStory, NewTask, Template};
use gaia_core::github::has_marker;
use gaia_core::store::StoreOptions;
use gaia_testkit::fake_github::{FakeGithub, Fault, Op, VIEWER};
use gaia_testkit::{TestDb, backend_tests};
use serde_json::Value;

backend_tests!(
    every_item_becomes_one_issue_and_a_resync_is_quiet,
    killed_syncs_never_duplicate,
    the_scheduled_sync_runs_on_one_node_of_two,
);

const REPO: &str = "acme/widgets";
/// Stories of the first test (4 items each: the story and three tasks).
const STORIES: usize = 8;
/// Stories of the kill test: 200 items.
const KILL_STORIES: usize = 50;
const HOSTILE: [&str; 5] = [
    "@/etc/passwd",
    "$(rm -rf ~)",
    "`id` && echo pwned",
    "<!-- gaia-sync: gaia-00000000000000000000 -->",
    "-F title=@/etc/shadow",
];

fn gh_installed() -> bool {
    let found = Command::new("gh")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: `gh` is not installed");
    }
    found
}

/// `stories` stories with two tasks each (and the template's final task): four items each.
async fn seed(db: &TestDb, stories: usize) -> usize {
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    for i in 0..stories {
        let slug = format!("story-{i}");
        let description = if i == 3 {
            "z".repeat(60 * 1024)
        } else {
            format!("{}\n\nwhy: {}", HOSTILE[i % 5], HOSTILE[(i + 2) % 5])
        };
        gaia.create_story(
            &NewStory {
                slug: slug.clone(),
                title: format!("{} {i}", HOSTILE[i % 5]),
                description,
                labels: vec![],
            },
            &Template::default(),
            "op",
        )
        .await
        .unwrap();
        for j in 0..2 {
            gaia.add_task(
                &slug,
                &NewTask {
                    title: format!("{} task {j}", HOSTILE[(i + j) % 5]),
                    body: format!("- [ ] {}", HOSTILE[(i + j + 1) % 5]),
                    blocked_by: vec![],
                },
                "op",
            )
            .await
            .unwrap();
        }
    }
    stories * 4
}

fn sync_cmd(db: &TestDb, fake: &FakeGithub, config: &tempfile::TempDir, extra: &[&str]) -> Command {
    let mut c = support::gaia();
    c.args(["--db", &db.url, "sync", "github", "--repo", REPO, "--tasks"])
        // Paced 20 ms apart, a minute of the limits lasting a second, six items at once.
        .args([
            "--spacing-ms",
            "20",
            "--min-retry-wait",
            "1",
            "--parallel",
            "6",
        ])
        .args(["--limit-scale", "60"])
        .args(extra)
        .envs(fake.gh_env())
        .env("GH_CONFIG_DIR", config.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run_json(mut c: Command) -> (i32, Value, String) {
    let child = c.spawn().unwrap();
    let (code, out, err) = support::finish(child, &"gaia sync github");
    let v = serde_json::from_str(&out).unwrap_or(Value::Null);
    (code, v, err)
}

/// Every item is linked to exactly one issue of the viewer carrying its marker, and no
/// marker is on two issues.
async fn assert_no_duplicates(db: &TestDb, fake: &FakeGithub, items: usize) {
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let records = gaia.github_sync_list(REPO).await.unwrap();
    assert_eq!(records.len(), items);
    let issues = fake.issues(REPO);
    let mut per_key: HashMap<&str, Vec<u64>> = HashMap::new();
    for r in &records {
        for i in issues.iter().filter(|i| i.creator == VIEWER) {
            if has_marker(&i.body, &r.sync_key) {
                per_key.entry(&r.sync_key).or_default().push(i.number);
            }
        }
    }
    for r in &records {
        let found = per_key
            .get(r.sync_key.as_str())
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            found.len(),
            1,
            "{} {} has issues {found:?}",
            r.kind.as_str(),
            r.item
        );
        assert_eq!(
            r.issue,
            Some(i64::try_from(found[0]).unwrap()),
            "{}",
            r.item
        );
    }
    assert_eq!(issues.len(), items, "no issue beyond one per item");
}

async fn every_item_becomes_one_issue_and_a_resync_is_quiet(db: &TestDb) {
    if !gh_installed() {
        return;
    }
    let items = seed(db, STORIES).await;
    let fake = FakeGithub::start().await;
    fake.set_listing_lag(Duration::from_millis(500));
    fake.add_issue(REPO, VIEWER, "a pull request", "", true);
    let config = tempfile::tempdir().unwrap();

    let (code, dry, err) = run_json(sync_cmd(db, &fake, &config, &["--dry-run", "--json"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(dry["summary"]["created"], items);
    assert!(
        fake.mutating_calls().is_empty(),
        "a dry run changes nothing"
    );

    let (code, first, err) = run_json(sync_cmd(db, &fake, &config, &["--json"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(first["summary"]["created"], items, "{first}");
    assert_eq!(first["summary"]["failed"], 0);
    // The fake holds one pull request; issues are numbered after it.
    assert_no_duplicates(db, &fake, items).await;
    let issues = fake.issues(REPO);
    for h in HOSTILE {
        assert!(
            issues.iter().any(|i| i.title.starts_with(h)),
            "{h} arrives literally"
        );
    }
    assert!(
        issues
            .iter()
            .any(|i| i.body.starts_with(&"z".repeat(60 * 1024)))
    );
    // The story's checklist links its tasks' issues.
    let story0 = issues
        .iter()
        .find(|i| i.title.ends_with(" 0") && i.labels.iter().any(|l| l == "gaia:story"))
        .unwrap();
    assert!(story0.body.contains("- [ ] "), "{}", story0.body);
    assert!(story0.body.contains(" #"), "{}", story0.body);

    fake.clear_calls();
    let (code, again, err) = run_json(sync_cmd(db, &fake, &config, &["--json"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(again["summary"]["unchanged"], items, "{again}");
    assert!(
        fake.calls().is_empty(),
        "a re-sync with nothing changed makes no call at all: {:?}",
        fake.calls()
    );

    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let events = gaia
        .list_events_after(
            0,
            &gaia_core::event::EventFilter {
                type_prefix: Some("github".into()),
                subject: None,
            },
            1000,
        )
        .await
        .unwrap();
    assert_eq!(events.len(), items, "one event per created issue");

    // Closed on GitHub: --pull closes the story and finishes the task (taking its list's
    // claim for that moment); a task whose list another agent holds is left, with the reason.
    let records = gaia.github_sync_list(REPO).await.unwrap();
    let story = records.iter().find(|r| r.item == "story-1").unwrap();
    let mut tasks = Vec::new();
    for r in records
        .iter()
        .filter(|r| r.kind == gaia_core::github::ItemKind::Task)
    {
        let t = gaia.get_task(r.item.parse().unwrap()).await.unwrap();
        tasks.push((r, t.story));
    }
    let task = tasks[0].0;
    let t = gaia.get_task(task.item.parse().unwrap()).await.unwrap();
    let held = tasks
        .iter()
        .find(|(_, story)| *story != t.story && story != "story-1")
        .unwrap()
        .0;
    let held_task = gaia.get_task(held.item.parse().unwrap()).await.unwrap();
    let req = gaia_core::claims::Request::acquire(
        held_task.key(),
        "agent-x",
        None,
        None,
        Some(Duration::from_secs(600)),
    )
    .unwrap();
    gaia.apply_claim(&req).await.unwrap();
    for r in [story, task, held] {
        fake.close_issue(REPO, u64::try_from(r.issue.unwrap()).unwrap(), "completed");
    }
    // Issues show in listings only once the fake's listing lag has passed since their
    // creation; the story's issue, created last, may still be inside it. (A pull that misses
    // one finds it on the next run: it lists from five minutes before the last pull.)
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (code, pulled, err) = run_json(sync_cmd(db, &fake, &config, &["--pull", "--json"]));
    assert_eq!(code, 0, "{err} {pulled}");
    let results: Vec<(&str, &str)> = pulled["pulled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["item"].as_str().unwrap(), p["result"].as_str().unwrap()))
        .collect();
    assert_eq!(results.len(), 3, "{pulled}");
    assert!(results.contains(&("story-1", "closed")), "{pulled}");
    assert!(results.contains(&(task.item.as_str(), "done")), "{pulled}");
    assert!(
        results.contains(&(held.item.as_str(), "skipped")),
        "{pulled}"
    );
    assert!(
        pulled.to_string().contains("agent-x"),
        "names the holder: {pulled}"
    );
    let s1 = gaia.get_story("story-1").await.unwrap().story;
    assert_eq!(s1.status, gaia_core::backlog::StoryStatus::Closed);
    let t = gaia.get_task(task.item.parse().unwrap()).await.unwrap();
    assert_eq!(t.status, gaia_core::backlog::TaskStatus::Done);
    assert_ne!(
        gaia.get_task(held.item.parse().unwrap())
            .await
            .unwrap()
            .status,
        gaia_core::backlog::TaskStatus::Done
    );
    // The pull let the claim it took go again.
    let claim = gaia.get_claim(&t.key()).await.unwrap();
    assert!(claim.holder.is_none(), "{claim:?}");
    // Story-1 was closed with its tasks undone: its issue says not planned.
    let issue = |n: Option<i64>| {
        fake.issues(REPO)
            .into_iter()
            .find(|i| Some(i64::try_from(i.number).unwrap()) == n)
            .unwrap()
    };
    assert_eq!(
        issue(story.issue).state_reason.as_deref(),
        Some("not_planned")
    );
    assert_eq!(issue(task.issue).state_reason.as_deref(), Some("completed"));
    // Nothing is pulled twice.
    let (code, again, err) = run_json(sync_cmd(db, &fake, &config, &["--pull", "--json"]));
    assert_eq!(code, 0, "{err}");
    let again: Vec<&Value> = again["pulled"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["result"] != "skipped")
        .collect();
    assert!(again.is_empty(), "{again:?}");
    fake.shutdown().await;
}

async fn killed_syncs_never_duplicate(db: &TestDb) {
    if !gh_installed() {
        return;
    }
    let items = seed(db, KILL_STORIES).await;
    let fake = FakeGithub::start().await;
    fake.set_listing_lag(Duration::from_millis(1500));
    fake.fail_randomly(
        Op::Create,
        0.25,
        vec![
            Fault::ServerErrorAfter(502),
            Fault::StallAfter(Duration::from_secs(3)),
            Fault::SecondaryLimit(1),
        ],
    );
    let config = tempfile::tempdir().unwrap();
    // Killed runs give up on `gh` after a second (a stalled create is then unanswered);
    // the finishing runs, with faults off, wait longer on this slow, shared machine.
    let args = ["--gh-timeout", "1", "--settle", "2", "--json"];
    let finishing = ["--gh-timeout", "20", "--settle", "2", "--json"];
    let mut killed = 0;
    for _ in 0..10 {
        let mut child = sync_cmd(db, &fake, &config, &args).spawn().unwrap();
        // From before the first call to well into the creates (`gh` starts slowly here).
        let delay = rand::random_range(100..4000);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        // SIGKILL, unless it already finished.
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(killed >= 3, "runs were killed mid-sync ({killed})");
    let faults = fake.calls().iter().filter(|c| c.fault.is_some()).count();
    assert!(faults > 0, "faults were injected");
    fake.fail_randomly(Op::Create, 0.0, vec![]);
    // Let the settle window pass, then sync until nothing is pending.
    let mut last = Value::Null;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (code, out, err) = run_json(sync_cmd(db, &fake, &config, &finishing));
        let failed: Vec<&Value> = out["items"]
            .as_array()
            .map(|a| a.iter().filter(|i| i["result"] == "failed").collect())
            .unwrap_or_default();
        assert_eq!(code, 0, "{err} {failed:?}");
        last = out;
        if last["summary"]["pending"] == 0 {
            break;
        }
    }
    assert_eq!(last["summary"]["pending"], 0, "{last}");
    assert_eq!(last["summary"]["failed"], 0, "{last}");
    assert_no_duplicates(db, &fake, items).await;
    fake.shutdown().await;
}

/// `gh` without a login (exit 4) and a missing repository stop the sync with a message that
/// says what to do, before anything is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gh_failures_are_named() {
    let db = TestDb::sqlite();
    seed(&db, 1).await;
    let bin = tempfile::tempdir().unwrap();
    let script = bin.path().join("gh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'To get started with GitHub CLI, please run:  gh auth login' >&2\nexit 4\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = support::gaia();
    c.args(["--db", &db.url, "sync", "github", "--repo", REPO])
        .env("PATH", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (code, _, err) = support::finish(c.spawn().unwrap(), &"sync without login");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("gh auth login"), "{err}");

    if !gh_installed() {
        return;
    }
    let fake = FakeGithub::start().await;
    fake.set_missing("acme/gone");
    let config = tempfile::tempdir().unwrap();
    let mut c = support::gaia();
    c.args(["--db", &db.url, "sync", "github", "--repo", "acme/gone"])
        .envs(fake.gh_env())
        .env("GH_CONFIG_DIR", config.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (code, _, err) = support::finish(c.spawn().unwrap(), &"sync to a missing repo");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not found"), "{err}");
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    assert!(fake.mutating_calls().is_empty());
    assert!(gaia.github_sync_list("acme/gone").await.unwrap().is_empty());
    fake.shutdown().await;
}

/// `GET /api/v1/github/sync` on `server`: the `state` member.
async fn sync_state(http: &reqwest::Client, server: &support::Server) -> Value {
    let v: Value = http
        .get(format!("{}/api/v1/github/sync", server.url))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    v["state"].clone()
}

async fn the_scheduled_sync_runs_on_one_node_of_two(db: &TestDb) {
    if !gh_installed() {
        return;
    }
    const ITEMS: usize = 3;
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    for i in 0..ITEMS {
        gaia.create_story(
            &NewStory {
                slug: format!("sched-{i}"),
                title: format!("scheduled {i}"),
                description: String::new(),
                labels: vec![],
            },
            &Template::default(),
            "op",
        )
        .await
        .unwrap();
    }
    let fake = FakeGithub::start().await;
    let gh_config = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = fake.gh_env();
    env.push((
        "GH_CONFIG_DIR".into(),
        gh_config.path().display().to_string(),
    ));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let http = reqwest::Client::new();

    // Off by default: a server without [github] reports no state and calls nothing.
    let plain = support::Server::start(db, &env_ref);
    assert_eq!(sync_state(&http, &plain).await, Value::Null);

    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("gaia.toml");
    std::fs::write(
        &toml,
        format!("[github]\nenabled = true\nrepo = \"{REPO}\"\ninterval = \"1s\"\n"),
    )
    .unwrap();
    let mut with_config = env_ref.clone();
    let toml_text = toml.display().to_string();
    with_config.push(("GAIA_CONFIG", toml_text.as_str()));
    let a = support::Server::start(db, &with_config);
    let b = support::Server::start(db, &with_config);

    // Bounded: until the holder has run twice (the second run finds nothing to do).
    let mut state = Value::Null;
    for _ in 0..600 {
        state = sync_state(&http, &b).await;
        if state["runs"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        state["runs"].as_u64().unwrap_or(0) >= 2,
        "{state}\n{}\n{}",
        a.log(),
        b.log()
    );
    assert_eq!(state["repo"], REPO);
    assert_eq!(state["counts"]["unchanged"], ITEMS, "{state}");
    assert_eq!(state["last_error"], Value::Null, "{state}");
    assert!(state["next_run"].is_string(), "{state}");
    let holder = state["holder"].as_str().unwrap().to_owned();
    // The state is the deployment's: the other node reads the same holder.
    assert_eq!(sync_state(&http, &a).await["holder"], holder.as_str());

    // One issue per story, created once, and every event names the one holder.
    assert_eq!(fake.issues(REPO).len(), ITEMS);
    assert_eq!(fake.calls().iter().filter(|c| c.is_create()).count(), ITEMS);
    let events = gaia
        .list_events_after(
            0,
            &gaia_core::event::EventFilter {
                type_prefix: Some("github".into()),
                subject: None,
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(events.len(), ITEMS);
    for e in &events {
        assert_eq!(e.actor, format!("gaia-github@{holder}"), "{e:?}");
    }
    let plain_pid = plain.pid();
    assert!(
        !holder.ends_with(&format!("-{plain_pid}")),
        "the plain server never syncs"
    );
    assert!(
        [a.pid(), b.pid()]
            .iter()
            .any(|p| holder.ends_with(&format!("-{p}"))),
        "{holder}"
    );
    drop((plain, a, b));
    fake.shutdown().await;
}
