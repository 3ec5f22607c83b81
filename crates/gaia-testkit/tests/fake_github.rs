//! The fake GitHub server answers the real `gh` CLI: `gh api` reaches it through the
//! environment [`FakeGithub::gh_env`] gives, bodies sent on stdin arrive literally, listings
//! paginate with `Link` headers that `gh api --paginate` follows, and faults come back as the
//! exit codes and messages `gh` prints for real GitHub errors. Skipped when `gh` is not
//! installed (CI installs it).

use std::process::Stdio;
use std::time::Duration;

use gaia_testkit::fake_github::{FakeGithub, Fault, Op, VIEWER};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const REPO: &str = "acme/widgets";

fn gh_installed() -> bool {
    let found = std::process::Command::new("gh")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: `gh` is not installed");
    }
    found
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn gh(
    fake: &FakeGithub,
    config: &tempfile::TempDir,
    args: &[&str],
    stdin: Option<&Value>,
) -> Out {
    let mut cmd = tokio::process::Command::new("gh");
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", config.path())
        .env("GH_CONFIG_DIR", config.path())
        .envs(fake.gh_env())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn gh");
    if let Some(body) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(body.to_string().as_bytes())
            .await
            .expect("write stdin");
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("gh finished")
        .expect("gh output");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn real_gh_reaches_the_fake_and_bodies_arrive_literally() {
    if !gh_installed() {
        return;
    }
    let fake = FakeGithub::start().await;
    let config = tempfile::tempdir().expect("temp dir");

    let user = gh(&fake, &config, &["api", "user"], None).await;
    assert_eq!(user.code, 0, "{}", user.stderr);
    let user: Value = serde_json::from_str(&user.stdout).expect("json");
    assert_eq!(user["login"], VIEWER);

    let body = format!(
        "$(rm -rf ~)\n`id`\n{}\n<!-- gaia-sync: k1 -->",
        "x".repeat(60_000)
    );
    let created = gh(
        &fake,
        &config,
        &[
            "api",
            "--method",
            "POST",
            &format!("repos/{REPO}/issues"),
            "--input",
            "-",
        ],
        Some(&json!({"title": "@/etc/passwd", "body": body, "labels": ["gaia:open"]})),
    )
    .await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    let created: Value = serde_json::from_str(&created.stdout).expect("json");
    assert_eq!(created["number"], 1);
    let issues = fake.issues(REPO);
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].title, "@/etc/passwd");
    assert_eq!(issues[0].body, body);
    assert_eq!(issues[0].labels, vec!["gaia:open".to_owned()]);

    let patched = gh(
        &fake,
        &config,
        &[
            "api",
            "--method",
            "PATCH",
            &format!("repos/{REPO}/issues/1"),
            "--input",
            "-",
        ],
        Some(&json!({"state": "closed", "state_reason": "not_planned"})),
    )
    .await;
    assert_eq!(patched.code, 0, "{}", patched.stderr);
    assert_eq!(
        fake.issues(REPO)[0].state_reason.as_deref(),
        Some("not_planned")
    );

    let limit = gh(&fake, &config, &["api", "rate_limit"], None).await;
    assert_eq!(limit.code, 0, "{}", limit.stderr);
    let limit: Value = serde_json::from_str(&limit.stdout).expect("json");
    assert!(limit["resources"]["core"]["remaining"].as_u64().is_some());
    fake.shutdown().await;
}

#[tokio::test]
async fn listings_paginate_filter_and_lag() {
    if !gh_installed() {
        return;
    }
    let fake = FakeGithub::start().await;
    let config = tempfile::tempdir().expect("temp dir");
    for i in 0..7 {
        fake.add_issue(REPO, VIEWER, &format!("issue {i}"), "", false);
    }
    fake.add_issue(REPO, VIEWER, "a pull request", "", true);
    fake.add_issue(REPO, "someone-else", "not ours", "", false);

    let path = format!("repos/{REPO}/issues?state=all&creator={VIEWER}&per_page=3");
    let one = gh(&fake, &config, &["api", "-i", &path], None).await;
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert!(one.stdout.contains("rel=\"next\""), "{}", one.stdout);

    let all = gh(&fake, &config, &["api", "--paginate", &path], None).await;
    assert_eq!(all.code, 0, "{}", all.stderr);
    // `--paginate` prints one JSON array per page.
    let mut numbers = Vec::new();
    for page in serde_json::Deserializer::from_str(&all.stdout).into_iter::<Value>() {
        for item in page.expect("json page").as_array().expect("array") {
            numbers.push(item["number"].as_u64().expect("number"));
        }
    }
    assert_eq!(
        numbers,
        vec![8, 7, 6, 5, 4, 3, 2, 1],
        "pull request mixed in, other creator out"
    );
    let pages = fake
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/issues"))
        .count();
    assert_eq!(pages, 1 + 3);

    fake.set_listing_lag(Duration::from_millis(600));
    fake.add_issue(REPO, VIEWER, "visible at once", "", false);
    let created = gh(
        &fake,
        &config,
        &[
            "api",
            "--method",
            "POST",
            &format!("repos/{REPO}/issues"),
            "--input",
            "-",
        ],
        Some(&json!({"title": "lagging"})),
    )
    .await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    let listed = |out: &Out| -> Vec<u64> {
        serde_json::from_str::<Value>(&out.stdout)
            .expect("json")
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|i| i["number"].as_u64())
            .collect()
    };
    let now = gh(
        &fake,
        &config,
        &["api", &format!("repos/{REPO}/issues?per_page=100")],
        None,
    )
    .await;
    assert!(
        !listed(&now).contains(&11),
        "a new issue is not listed at once"
    );
    let direct = gh(
        &fake,
        &config,
        &["api", &format!("repos/{REPO}/issues/11")],
        None,
    )
    .await;
    assert_eq!(
        direct.code, 0,
        "fetched by number at once: {}",
        direct.stderr
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let later = gh(
        &fake,
        &config,
        &["api", &format!("repos/{REPO}/issues?per_page=100")],
        None,
    )
    .await;
    assert!(listed(&later).contains(&11));
    fake.shutdown().await;
}

#[tokio::test]
async fn faults_reach_gh_as_github_errors() {
    if !gh_installed() {
        return;
    }
    let fake = FakeGithub::start().await;
    let config = tempfile::tempdir().expect("temp dir");
    let create = |title: &'static str| {
        let path = format!("repos/{REPO}/issues");
        let fake = &fake;
        let config = &config;
        async move {
            gh(
                fake,
                config,
                &["api", "--method", "POST", &path, "--input", "-"],
                Some(&json!({"title": title})),
            )
            .await
        }
    };

    fake.fail_next(Op::Create, Fault::ServerErrorAfter(502));
    let out = create("five hundred").await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("502"), "{}", out.stderr);
    assert_eq!(fake.issues(REPO).len(), 1, "created before failing");

    fake.fail_next(Op::Create, Fault::SecondaryLimit(61));
    let out = create("limited").await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("secondary rate limit"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("403"), "{}", out.stderr);
    let call = fake.calls().pop().expect("call");
    assert_eq!(call.status, 403);

    fake.fail_next(Op::Create, Fault::Validation);
    let out = create("invalid").await;
    assert!(out.stderr.contains("422"), "{}", out.stderr);
    assert_eq!(fake.issues(REPO).len(), 1);

    fake.set_missing("acme/gone");
    let out = gh(&fake, &config, &["api", "repos/acme/gone/issues"], None).await;
    assert!(out.stderr.contains("404"), "{}", out.stderr);

    fake.fail_next(Op::Create, Fault::StallAfter(Duration::from_millis(300)));
    let out = create("slow").await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fake.issues(REPO).len(), 2);
    fake.shutdown().await;
}
