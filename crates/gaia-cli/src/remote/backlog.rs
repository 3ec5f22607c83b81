//! The backlog over the API: stories, tasks, todolists, ready work and follow-ups under
//! `/api/v1`. Each call is built by a pure function ([`build`]) into a [`Req`], then sent;
//! bodies are JSON and replies are the core types as the server serializes them.

use std::time::Duration;

use gaia_core::backlog::{
    Followup, FollowupStatus, NewFollowup, NewStory, NewTask, RuleBreak, Story, StoryStatus, Task,
};
use gaia_core::claims::Holder;
use gaia_core::usecase::backlog::{Collected, Fenced, TaskAction};
use reqwest::Method;
use serde::de::DeserializeOwned;

use super::{Remote, bad_reply, time};
use crate::client::{StoryView, Took};
use crate::exit::CliError;

/// One API call: method, path, query and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<serde_json::Value>,
}

/// The requests of the backlog routes.
pub mod build {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::remote::encode;

    fn req(method: Method, path: String, body: Option<Value>) -> Req {
        Req {
            method,
            path,
            query: vec![],
            body,
        }
    }

    fn story_path(slug: &str) -> String {
        format!("/api/v1/stories/{}", encode(slug))
    }

    pub fn create_story(new: &NewStory) -> Req {
        let body = json!({
            "slug": new.slug, "title": new.title, "description": new.description,
            "labels": new.labels,
        });
        req(Method::POST, "/api/v1/stories".into(), Some(body))
    }

    pub fn stories(status: Option<StoryStatus>) -> Req {
        let mut r = req(Method::GET, "/api/v1/stories".into(), None);
        r.query
            .extend(status.map(|s| ("status", s.as_str().to_owned())));
        r
    }

    pub fn story(slug: &str) -> Req {
        req(Method::GET, story_path(slug), None)
    }

    pub fn edit_story(edit: &NewStory) -> Req {
        let body = json!({
            "title": edit.title, "description": edit.description, "labels": edit.labels,
        });
        req(Method::PUT, story_path(&edit.slug), Some(body))
    }

    pub fn set_story_status(slug: &str, status: StoryStatus) -> Req {
        let verb = match status {
            StoryStatus::Open => "reopen",
            StoryStatus::Closed => "close",
        };
        req(Method::POST, format!("{}/{verb}", story_path(slug)), None)
    }

    pub fn add_task(slug: &str, new: &NewTask) -> Req {
        let body = json!({ "title": new.title, "body": new.body, "blocked_by": new.blocked_by });
        req(
            Method::POST,
            format!("{}/tasks", story_path(slug)),
            Some(body),
        )
    }

    pub fn tasks(slug: &str, todolist: Option<&str>) -> Req {
        let mut r = req(Method::GET, format!("{}/tasks", story_path(slug)), None);
        r.query.extend(todolist.map(|t| ("todolist", t.to_owned())));
        r
    }

    pub fn task(id: i64) -> Req {
        req(Method::GET, format!("/api/v1/tasks/{id}"), None)
    }

    pub fn edit_task(id: i64, title: &str, body: &str) -> Req {
        let body = json!({ "title": title, "body": body });
        req(Method::PUT, format!("/api/v1/tasks/{id}"), Some(body))
    }

    /// `start|done {agent, token}`, `block {reason, agent?, token?}`, `unblock {agent?,
    /// token?}`, `move {position, agent?, token?}`.
    pub fn act_on_task(id: i64, action: &TaskAction, fenced: Option<&Fenced>) -> Req {
        let mut body = Map::new();
        if let Some(f) = fenced {
            body.insert("agent".into(), json!(f.agent));
            body.insert("token".into(), json!(f.token));
        }
        let verb = match action {
            TaskAction::Start => "start",
            TaskAction::Done => "done",
            TaskAction::Block(reason) => {
                body.insert("reason".into(), json!(reason));
                "block"
            }
            TaskAction::Unblock => "unblock",
            TaskAction::Move(position) => {
                body.insert("position".into(), json!(position));
                "move"
            }
        };
        let path = format!("/api/v1/tasks/{id}/{verb}");
        req(Method::POST, path, Some(Value::Object(body)))
    }

    pub fn replace_list(slug: &str, name: Option<&str>) -> Req {
        match name {
            None => req(
                Method::POST,
                format!("{}/todolist/archive", story_path(slug)),
                None,
            ),
            Some(n) => req(
                Method::POST,
                format!("{}/todolist/new", story_path(slug)),
                Some(json!({ "name": n })),
            ),
        }
    }

    pub fn finalize_list(slug: &str) -> Req {
        let path = format!("{}/todolist/finalize", story_path(slug));
        req(Method::POST, path, None)
    }

    pub fn validate_lists(story: Option<&str>) -> Req {
        let mut r = req(Method::GET, "/api/v1/backlog/validate".into(), None);
        r.query.extend(story.map(|s| ("story", s.to_owned())));
        r
    }

    pub fn ready(story: Option<&str>, limit: u32) -> Req {
        let mut r = req(Method::GET, "/api/v1/ready".into(), None);
        r.query.extend(story.map(|s| ("story", s.to_owned())));
        r.query.push(("limit", limit.to_string()));
        r
    }

    /// `{agent, story?, ttl_s?, operator?, fingerprint?}`; the placeholders `-` for operator
    /// and fingerprint are left out.
    pub fn take_ready(story: Option<&str>, holder: &Holder, ttl: Duration) -> Req {
        let mut body = Map::new();
        body.insert("agent".into(), json!(holder.agent));
        if let Some(s) = story {
            body.insert("story".into(), json!(s));
        }
        body.insert("ttl_s".into(), json!(ttl.as_secs()));
        for (k, v) in [
            ("operator", &holder.operator),
            ("fingerprint", &holder.fingerprint),
        ] {
            if v != "-" {
                body.insert(k.into(), json!(v));
            }
        }
        req(
            Method::POST,
            "/api/v1/ready/take".into(),
            Some(Value::Object(body)),
        )
    }

    pub fn collect_followup(f: &NewFollowup) -> Req {
        let body = json!({
            "path": f.path, "hash": f.hash, "story": f.story, "agent": f.agent,
            "task": f.task, "title": f.title, "body": f.body,
        });
        req(Method::POST, "/api/v1/followups".into(), Some(body))
    }

    pub fn followups(status: Option<FollowupStatus>) -> Req {
        let mut r = req(Method::GET, "/api/v1/followups".into(), None);
        r.query
            .extend(status.map(|s| ("status", s.as_str().to_owned())));
        r
    }

    pub fn triage_followup(id: i64, reject: Option<&str>) -> Req {
        match reject {
            None => req(Method::POST, format!("/api/v1/followups/{id}/accept"), None),
            Some(reason) => req(
                Method::POST,
                format!("/api/v1/followups/{id}/reject"),
                Some(json!({ "reason": reason })),
            ),
        }
    }
}

/// A list that breaks the final-task rule, as the API sends it.
#[derive(Debug, serde::Deserialize)]
struct RuleBreakBody {
    story: String,
    todolist: String,
    last: Option<Task>,
}

/// The reply of `POST /api/v1/ready/take`.
#[derive(Debug, serde::Deserialize)]
struct TakeBody {
    taken: bool,
    task: Option<Task>,
    token: Option<i64>,
    expires_at: Option<String>,
}

/// The reply of `POST /api/v1/followups`.
#[derive(Debug, serde::Deserialize)]
struct CollectBody {
    outcome: String,
    followup: Followup,
}

impl Remote {
    async fn send<T: DeserializeOwned>(&self, r: Req) -> Result<T, CliError> {
        self.call(r.method, &r.path, &r.query, r.body).await
    }

    pub async fn create_story(&self, new: &NewStory) -> Result<Story, CliError> {
        self.send(build::create_story(new)).await
    }

    pub async fn stories(&self, status: Option<StoryStatus>) -> Result<Vec<Story>, CliError> {
        self.send(build::stories(status)).await
    }

    pub async fn story(&self, slug: &str) -> Result<StoryView, CliError> {
        self.send(build::story(slug)).await
    }

    pub async fn edit_story(&self, edit: &NewStory) -> Result<Story, CliError> {
        self.send(build::edit_story(edit)).await
    }

    pub async fn set_story_status(
        &self,
        slug: &str,
        status: StoryStatus,
    ) -> Result<Story, CliError> {
        self.send(build::set_story_status(slug, status)).await
    }

    pub async fn add_task(&self, slug: &str, new: &NewTask) -> Result<Task, CliError> {
        self.send(build::add_task(slug, new)).await
    }

    pub async fn tasks(&self, slug: &str, todolist: Option<&str>) -> Result<Vec<Task>, CliError> {
        self.send(build::tasks(slug, todolist)).await
    }

    pub async fn task(&self, id: i64) -> Result<Task, CliError> {
        self.send(build::task(id)).await
    }

    pub async fn edit_task(&self, id: i64, title: &str, body: &str) -> Result<Task, CliError> {
        self.send(build::edit_task(id, title, body)).await
    }

    pub async fn act_on_task(
        &self,
        id: i64,
        action: &TaskAction,
        fenced: Option<&Fenced>,
    ) -> Result<Task, CliError> {
        self.send(build::act_on_task(id, action, fenced)).await
    }

    pub async fn replace_list(&self, slug: &str, name: Option<&str>) -> Result<Story, CliError> {
        self.send(build::replace_list(slug, name)).await
    }

    pub async fn finalize_list(&self, slug: &str) -> Result<Story, CliError> {
        self.send(build::finalize_list(slug)).await
    }

    pub async fn validate_lists(&self, story: Option<&str>) -> Result<Vec<RuleBreak>, CliError> {
        let list: Vec<RuleBreakBody> = self.send(build::validate_lists(story)).await?;
        Ok(list
            .into_iter()
            .map(|b| RuleBreak {
                story: b.story,
                todolist: b.todolist,
                last: b.last,
            })
            .collect())
    }

    pub async fn ready(&self, story: Option<&str>, limit: u32) -> Result<Vec<Task>, CliError> {
        self.send(build::ready(story, limit)).await
    }

    pub async fn take_ready(
        &self,
        story: Option<&str>,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<Option<Took>, CliError> {
        let b: TakeBody = self.send(build::take_ready(story, holder, ttl)).await?;
        if !b.taken {
            return Ok(None);
        }
        match (b.task, b.token) {
            (Some(task), Some(token)) => Ok(Some(Took {
                task,
                token,
                expires_at: b.expires_at.as_deref().map(time).transpose()?,
            })),
            _ => Err(bad_reply("taken without a task and its token")),
        }
    }

    pub async fn collect_followup(
        &self,
        doc: &NewFollowup,
    ) -> Result<(Collected, Followup), CliError> {
        let b: CollectBody = self.send(build::collect_followup(doc)).await?;
        let outcome = match b.outcome.as_str() {
            "added" => Collected::Added,
            "updated" => Collected::Updated,
            "unchanged" => Collected::Unchanged,
            _ => return Err(bad_reply("unknown collect outcome")),
        };
        Ok((outcome, b.followup))
    }

    pub async fn followups(
        &self,
        status: Option<FollowupStatus>,
    ) -> Result<Vec<Followup>, CliError> {
        self.send(build::followups(status)).await
    }

    pub async fn triage_followup(
        &self,
        id: i64,
        reject: Option<&str>,
    ) -> Result<Followup, CliError> {
        self.send(build::triage_followup(id, reject)).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn fence() -> Fenced {
        Fenced {
            agent: "agent-1".into(),
            token: 7,
            principal: None,
        }
    }

    fn check(r: &Req, method: Method, path: &str, query: &[(&str, &str)], body: serde_json::Value) {
        assert_eq!(r.method, method, "{r:?}");
        assert_eq!(r.path, path);
        let q: Vec<(&str, &str)> = r.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(q, query, "{r:?}");
        assert_eq!(
            r.body.clone().unwrap_or(serde_json::Value::Null),
            body,
            "{r:?}"
        );
    }

    #[test]
    fn story_and_todolist_requests() {
        let new = NewStory {
            slug: "S-1.auth".into(),
            title: "Login".into(),
            description: "why".into(),
            labels: vec!["backend".into()],
        };
        let body = json!({"slug": "S-1.auth", "title": "Login", "description": "why", "labels": ["backend"]});
        check(
            &build::create_story(&new),
            Method::POST,
            "/api/v1/stories",
            &[],
            body,
        );
        check(
            &build::stories(None),
            Method::GET,
            "/api/v1/stories",
            &[],
            json!(null),
        );
        let closed = build::stories(Some(StoryStatus::Closed));
        check(
            &closed,
            Method::GET,
            "/api/v1/stories",
            &[("status", "closed")],
            json!(null),
        );
        check(
            &build::story("a b"),
            Method::GET,
            "/api/v1/stories/a%20b",
            &[],
            json!(null),
        );
        let edit = json!({"title": "Login", "description": "why", "labels": ["backend"]});
        check(
            &build::edit_story(&new),
            Method::PUT,
            "/api/v1/stories/S-1.auth",
            &[],
            edit,
        );
        let close = build::set_story_status("s", StoryStatus::Closed);
        check(
            &close,
            Method::POST,
            "/api/v1/stories/s/close",
            &[],
            json!(null),
        );
        let reopen = build::set_story_status("s", StoryStatus::Open);
        check(
            &reopen,
            Method::POST,
            "/api/v1/stories/s/reopen",
            &[],
            json!(null),
        );
        let archive = build::replace_list("s", None);
        check(
            &archive,
            Method::POST,
            "/api/v1/stories/s/todolist/archive",
            &[],
            json!(null),
        );
        let new_list = build::replace_list("s", Some("next"));
        check(
            &new_list,
            Method::POST,
            "/api/v1/stories/s/todolist/new",
            &[],
            json!({"name": "next"}),
        );
        let fin = build::finalize_list("s");
        check(
            &fin,
            Method::POST,
            "/api/v1/stories/s/todolist/finalize",
            &[],
            json!(null),
        );
        let v = build::validate_lists(Some("s"));
        check(
            &v,
            Method::GET,
            "/api/v1/backlog/validate",
            &[("story", "s")],
            json!(null),
        );
    }

    #[test]
    fn task_requests() {
        let new = NewTask {
            title: "t".into(),
            body: "b".into(),
            blocked_by: vec![3],
        };
        let add = build::add_task("s", &new);
        let body = json!({"title": "t", "body": "b", "blocked_by": [3]});
        check(&add, Method::POST, "/api/v1/stories/s/tasks", &[], body);
        let list = build::tasks("s", Some("default"));
        check(
            &list,
            Method::GET,
            "/api/v1/stories/s/tasks",
            &[("todolist", "default")],
            json!(null),
        );
        check(
            &build::task(12),
            Method::GET,
            "/api/v1/tasks/12",
            &[],
            json!(null),
        );
        let edit = build::edit_task(12, "t", "b");
        check(
            &edit,
            Method::PUT,
            "/api/v1/tasks/12",
            &[],
            json!({"title": "t", "body": "b"}),
        );
        let f = fence();
        let fenced = json!({"agent": "agent-1", "token": 7});
        for (action, verb) in [(TaskAction::Start, "start"), (TaskAction::Done, "done")] {
            let r = build::act_on_task(12, &action, Some(&f));
            check(
                &r,
                Method::POST,
                &format!("/api/v1/tasks/12/{verb}"),
                &[],
                fenced.clone(),
            );
        }
        let block = build::act_on_task(12, &TaskAction::Block("r".into()), None);
        check(
            &block,
            Method::POST,
            "/api/v1/tasks/12/block",
            &[],
            json!({"reason": "r"}),
        );
        let unblock = build::act_on_task(12, &TaskAction::Unblock, Some(&f));
        check(
            &unblock,
            Method::POST,
            "/api/v1/tasks/12/unblock",
            &[],
            fenced,
        );
        let mv = build::act_on_task(12, &TaskAction::Move(2), None);
        check(
            &mv,
            Method::POST,
            "/api/v1/tasks/12/move",
            &[],
            json!({"position": 2}),
        );
    }

    #[test]
    fn ready_and_followup_requests() {
        let r = build::ready(Some("s"), 5);
        check(
            &r,
            Method::GET,
            "/api/v1/ready",
            &[("story", "s"), ("limit", "5")],
            json!(null),
        );
        let holder = Holder {
            agent: "a".into(),
            operator: "op".into(),
            fingerprint: "-".into(),
            principal: None,
        };
        let take = build::take_ready(None, &holder, Duration::from_secs(900));
        let body = json!({"agent": "a", "ttl_s": 900, "operator": "op"});
        check(&take, Method::POST, "/api/v1/ready/take", &[], body);
        let f = gaia_core::followup_doc::parse("doc/s.a.t.extra.md", b"Parent: s\ncrit\n")
            .unwrap()
            .to_new();
        let body = json!({"path": "doc/s.a.t.extra.md", "hash": f.hash, "story": "s",
            "agent": "a", "task": "t", "title": "t", "body": "crit"});
        check(
            &build::collect_followup(&f),
            Method::POST,
            "/api/v1/followups",
            &[],
            body,
        );
        let list = build::followups(Some(FollowupStatus::Pending));
        check(
            &list,
            Method::GET,
            "/api/v1/followups",
            &[("status", "pending")],
            json!(null),
        );
        let acc = build::triage_followup(4, None);
        check(
            &acc,
            Method::POST,
            "/api/v1/followups/4/accept",
            &[],
            json!(null),
        );
        let rej = build::triage_followup(4, Some("no"));
        check(
            &rej,
            Method::POST,
            "/api/v1/followups/4/reject",
            &[],
            json!({"reason": "no"}),
        );
    }

    #[test]
    fn replies_parse_into_core_types() {
        let story = json!({
            "slug": "s", "title": "T", "description": "", "status": "open", "labels": [],
            "created_by": "op", "created_at": "2026-12-07T09:00:00.000000Z",
            "updated_at": "2026-12-07T09:00:00Z", "todolist": "default", "finalized_at": null,
            "tasks": [], "lists": [{"story": "s", "name": "default",
                "created_at": "2026-12-07T09:00:00Z", "finalized_at": null, "archived_at": null}],
        });
        let v: StoryView = serde_json::from_value(story).unwrap();
        assert_eq!(v.story.slug, "s");
        assert_eq!(v.lists.len(), 1);
        let take: TakeBody = serde_json::from_value(json!({"taken": false})).unwrap();
        assert!(!take.taken && take.task.is_none());
    }
}
