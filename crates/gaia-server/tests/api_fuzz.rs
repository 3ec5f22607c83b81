//! Defects that schemathesis (`.ci/fuzz-api`) found, each pinned by a test over real HTTP on
//! both backends.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Server, expect_problem, options};
use gaia_testkit::TestDb;
use reqwest::Method;

gaia_testkit::backend_tests!(bodies_that_are_not_objects_are_refused);

/// serde fills a struct from an array of its field values, so `["fuzz.array"]` used to be
/// taken as `{"type": "fuzz.array"}` and `[]` as an empty (all defaults) body. Every body the
/// API documents is an object: anything else is a 422 problem and changes nothing.
async fn bodies_that_are_not_objects_are_refused(db: &TestDb) {
    let s = Server::start(db, options(db)).await;
    let head = s.head().await;
    for (path, body) in [
        ("/api/v1/events", r#"["fuzz.array"]"#),
        (
            "/api/v1/events",
            r#"["fuzz.array", null, "story/x", {"n": 1}]"#,
        ),
        ("/api/v1/queue/auto-requeue", "[]"),
        ("/api/v1/queue/auto-requeue", "[true]"),
        ("/api/v1/queue/auto-requeue", r#""dry_run""#),
        ("/api/v1/commands/abc234/approve", "[]"),
        ("/api/v1/claims/acquire", r#"["story", "list", "agent"]"#),
        ("/api/v1/tokens", r#"["fuzz-token", "agent"]"#),
    ] {
        let res = s
            .admin(Method::POST, path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let what = format!("POST {path} {body}");
        let problem = expect_problem(res, 422, &what).await;
        assert_eq!(
            problem["detail"], "the body must be a JSON object",
            "{what}: {problem}"
        );
    }
    assert_eq!(s.head().await, head, "a refused body changed nothing");
    // Objects and an absent optional body are still accepted.
    let res = s
        .admin(Method::POST, "/api/v1/queue/auto-requeue")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = s
        .admin(Method::POST, "/api/v1/queue/auto-requeue")
        .json(&serde_json::json!({"dry_run": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    s.stop().await;
}
