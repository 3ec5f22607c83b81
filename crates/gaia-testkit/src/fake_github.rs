//! A fake GitHub REST API for the issue endpoints a sync uses: a small axum server on
//! `127.0.0.1:0`, reached by the real `gh` CLI through [`FakeGithub::gh_env`] (`GH_HOST` set
//! to `github.localhost`, for which `gh` speaks plain HTTP to `api.github.localhost`, and
//! `HTTP_PROXY` pointing at the fake).
//!
//! It serves `GET /user`, `GET /rate_limit`, `GET|POST /repos/{owner}/{repo}/issues` and
//! `GET|PATCH /repos/{owner}/{repo}/issues/{number}`. Listings are paginated with `Link`
//! headers (`per_page`, `page`), filtered by `state`, `creator` and `since`, sorted by
//! creation, newest first (as GitHub's default), and mix in pull requests, which carry a
//! `pull_request` key. A new issue shows in listings only after [`FakeGithub::set_listing_lag`]
//! (as GitHub's listings lag behind creates), while `GET .../issues/{n}` sees it at once.
//!
//! Faults are queued per operation ([`Op`]) and answered instead of (or after) handling the
//! call: a 5xx after the issue was created, a stall after creating (the client times out while
//! the issue exists), a secondary-limit 403 with `Retry-After`, a 429, a 422. Every call is
//! recorded with its arrival time, so tests can check pacing and rate limits.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The login `GET /user` answers; issues created through the API are by this user.
pub const VIEWER: &str = "gaia-bot";
/// The host `gh` is pointed at (`GH_HOST`); `gh` talks plain HTTP to `api.` + this.
pub const GH_HOST: &str = "github.localhost";
/// The token handed to `gh` (`GH_ENTERPRISE_TOKEN`, `GH_TOKEN`).
pub const FAKE_TOKEN: &str = "ghp_FakeGithubTokenForTests";

/// Which kind of call a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `POST .../issues`.
    Create,
    /// `PATCH .../issues/{n}`.
    Update,
    /// `GET .../issues`.
    List,
    /// `GET .../issues/{n}`.
    Get,
}

/// A failure to answer one call with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Handles the call (the issue is created or changed), then answers this 5xx status.
    ServerErrorAfter(u16),
    /// Answers this 5xx status without handling the call.
    ServerError(u16),
    /// Handles the call, then waits this long before answering (a client that gives up
    /// earlier sees a timeout while the effect has happened).
    StallAfter(Duration),
    /// 403 "You have exceeded a secondary rate limit" with `Retry-After` = these seconds.
    SecondaryLimit(u64),
    /// 429 with `Retry-After` = these seconds.
    TooMany(u64),
    /// 422 "Validation Failed".
    Validation,
}

/// One request as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: HashMap<String, String>,
    /// The JSON body (`Null` when empty).
    pub body: Value,
    /// When the request arrived (before any fault delay).
    pub at: Instant,
    pub fault: Option<Fault>,
    /// The status answered.
    pub status: u16,
}

impl Call {
    /// POST or PATCH (the calls GitHub's secondary limits count as mutating).
    pub fn is_mutating(&self) -> bool {
        self.method == "POST" || self.method == "PATCH"
    }

    /// A `POST` that creates an issue.
    pub fn is_create(&self) -> bool {
        self.method == "POST" && self.path.ends_with("/issues")
    }
}

/// An issue (or pull request) held by the fake.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// `owner/repo`.
    pub repo: String,
    pub number: u64,
    pub title: String,
    pub body: String,
    /// `open` or `closed`.
    pub state: String,
    pub state_reason: Option<String>,
    pub labels: Vec<String>,
    pub creator: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub is_pull: bool,
    /// When it first shows in listings.
    visible_at: Instant,
}

impl Issue {
    fn to_json(&self, host: &str) -> Value {
        let mut v = json!({
            "id": self.number * 1000 + 7,
            "node_id": format!("I_fake{}", self.number),
            "number": self.number,
            "title": self.title,
            "body": self.body,
            "state": self.state,
            "state_reason": self.state_reason,
            "labels": self.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
            "user": {"login": self.creator},
            "created_at": self.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "updated_at": self.updated_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "url": format!("http://{host}/repos/{}/issues/{}", self.repo, self.number),
            "html_url": format!("http://{GH_HOST}/{}/issues/{}", self.repo, self.number),
        });
        if self.is_pull {
            v["pull_request"] =
                json!({"url": format!("http://{host}/repos/{}/pulls/{}", self.repo, self.number)});
        }
        v
    }
}

/// A running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeGithub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<FakeState>,
    cancel: CancellationToken,
}

#[derive(Debug, Default)]
struct FakeState {
    calls: Vec<Call>,
    issues: Vec<Issue>,
    /// Next number per repository (issues and pulls share the sequence, as on GitHub).
    next_number: HashMap<String, u64>,
    listing_lag: Duration,
    faults: HashMap<Op, VecDeque<Fault>>,
    random_faults: HashMap<Op, (f64, Vec<Fault>)>,
    /// Repositories answering 404 (missing, or issues disabled).
    missing_repos: Vec<String>,
    /// Largest `per_page` honoured (GitHub: 100).
    max_per_page: usize,
    /// What `GET /rate_limit` says is left of the primary budget.
    rate_remaining: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FakeGithub {
    /// Starts a fake on a free local port.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(FakeState {
                max_per_page: 100,
                rate_remaining: 4990,
                ..FakeState::default()
            }),
            cancel: CancellationToken::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake GitHub server");
        let addr = listener.local_addr().expect("local address");
        let app = Router::new()
            .fallback(any(handle))
            .with_state(shared.clone());
        let cancel = shared.cancel.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await;
        });
        Self {
            addr,
            shared,
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`, the proxy `gh` must use.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The environment that points the real `gh` at this fake: `GH_HOST`, `HTTP_PROXY` (and
    /// `http_proxy`), tokens, an empty `NO_PROXY`, no prompts, no update checks. Set
    /// `GH_CONFIG_DIR` to a fresh directory as well, so a real login is never read.
    pub fn gh_env(&self) -> Vec<(String, String)> {
        let proxy = self.proxy_url();
        [
            ("GH_HOST", GH_HOST),
            ("HTTP_PROXY", proxy.as_str()),
            ("http_proxy", proxy.as_str()),
            ("NO_PROXY", ""),
            ("no_proxy", ""),
            ("GH_ENTERPRISE_TOKEN", FAKE_TOKEN),
            ("GH_TOKEN", FAKE_TOKEN),
            ("GH_PROMPT_DISABLED", "1"),
            ("GH_NO_UPDATE_NOTIFIER", "1"),
            ("NO_COLOR", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// New issues show in listings only this long after being created.
    pub fn set_listing_lag(&self, lag: Duration) {
        self.shared.lock().listing_lag = lag;
    }

    /// What `GET /rate_limit` reports as left of the primary budget (default 4990).
    pub fn set_rate_remaining(&self, remaining: u64) {
        self.shared.lock().rate_remaining = remaining;
    }

    /// Makes `repo` (`owner/name`) answer 404.
    pub fn set_missing(&self, repo: &str) {
        self.shared.lock().missing_repos.push(repo.to_owned());
    }

    /// Makes the next call of `op` fail with `fault`; several are used in order.
    pub fn fail_next(&self, op: Op, fault: Fault) {
        self.shared
            .lock()
            .faults
            .entry(op)
            .or_default()
            .push_back(fault);
    }

    /// Makes each later call of `op` with no queued fault fail with `probability`, with one
    /// of `faults` at random. An empty list or zero probability turns it off.
    pub fn fail_randomly(&self, op: Op, probability: f64, faults: Vec<Fault>) {
        let mut st = self.shared.lock();
        if faults.is_empty() || probability <= 0.0 {
            st.random_faults.remove(&op);
        } else {
            st.random_faults.insert(op, (probability.min(1.0), faults));
        }
    }

    /// Adds an issue (or, with `is_pull`, a pull request) by `creator`, visible at once.
    /// Returns its number.
    pub fn add_issue(
        &self,
        repo: &str,
        creator: &str,
        title: &str,
        body: &str,
        is_pull: bool,
    ) -> u64 {
        let mut st = self.shared.lock();
        let number = next_number(&mut st, repo);
        let now = Utc::now();
        st.issues.push(Issue {
            repo: repo.to_owned(),
            number,
            title: title.to_owned(),
            body: body.to_owned(),
            state: "open".into(),
            state_reason: None,
            labels: Vec::new(),
            creator: creator.to_owned(),
            created_at: now,
            updated_at: now,
            is_pull,
            visible_at: Instant::now(),
        });
        number
    }

    /// Closes an issue as a person on GitHub would (`state_reason` given).
    pub fn close_issue(&self, repo: &str, number: u64, reason: &str) {
        let mut st = self.shared.lock();
        if let Some(i) = st
            .issues
            .iter_mut()
            .find(|i| i.repo == repo && i.number == number)
        {
            i.state = "closed".into();
            i.state_reason = Some(reason.to_owned());
            i.updated_at = Utc::now();
        }
    }

    /// The issues of `repo` (pull requests left out), by number.
    pub fn issues(&self, repo: &str) -> Vec<Issue> {
        let mut v: Vec<Issue> = self
            .shared
            .lock()
            .issues
            .iter()
            .filter(|i| i.repo == repo && !i.is_pull)
            .cloned()
            .collect();
        v.sort_by_key(|i| i.number);
        v
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// The mutating calls (POST, PATCH) received.
    pub fn mutating_calls(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_mutating).collect()
    }

    /// Forgets the calls recorded so far.
    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// The most calls matching `pred` that arrived within any span of `window`.
    pub fn max_in_window(&self, window: Duration, pred: impl Fn(&Call) -> bool) -> usize {
        let times: Vec<Instant> = self
            .calls()
            .iter()
            .filter(|c| pred(c))
            .map(|c| c.at)
            .collect();
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].duration_since(times[start]) >= window {
                start += 1;
            }
            best = best.max(end + 1 - start);
        }
        best
    }

    /// Stops the server and waits (briefly) for it.
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

fn next_number(st: &mut FakeState, repo: &str) -> u64 {
    let n = st.next_number.entry(repo.to_owned()).or_insert(1);
    let number = *n;
    *n += 1;
    number
}

fn gh_error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        axum::Json(json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
        })),
    )
        .into_response()
}

fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::ServerError(code) | Fault::ServerErrorAfter(code) => (
            StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY),
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>Server Error</h1></body></html>",
        )
            .into_response(),
        Fault::SecondaryLimit(secs) => {
            let mut r = gh_error(
                403,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            if let Ok(v) = secs.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Fault::TooMany(secs) => {
            let mut r = gh_error(429, "Too Many Requests");
            if let Ok(v) = secs.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Fault::Validation => gh_error(422, "Validation Failed"),
        Fault::StallAfter(_) => gh_error(500, "Internal Server Error"),
    }
}

/// The route a path names: `(op, repo, number)`, or `None` for `/user` and `/rate_limit`.
fn route(method: &Method, path: &str) -> Result<Option<(Op, String, Option<u64>)>, ()> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["user"] | ["rate_limit"]) => Ok(None),
        ("GET", ["repos", o, r, "issues"]) => Ok(Some((Op::List, format!("{o}/{r}"), None))),
        ("POST", ["repos", o, r, "issues"]) => Ok(Some((Op::Create, format!("{o}/{r}"), None))),
        ("GET" | "PATCH", ["repos", o, r, "issues", n]) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            let op = if method == Method::GET {
                Op::Get
            } else {
                Op::Update
            };
            Ok(Some((op, format!("{o}/{r}"), Some(n))))
        }
        _ => Err(()),
    }
}

async fn handle(
    State(sh): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return gh_error(400, "Problems parsing JSON"),
        }
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.host())
        .unwrap_or("api.github.localhost")
        .to_owned();
    let path = uri.path().to_owned();
    let at = Instant::now();
    let routed = route(&method, &path);
    let fault = match &routed {
        Ok(Some((op, _, _))) => {
            let mut st = sh.lock();
            st.faults
                .get_mut(op)
                .and_then(VecDeque::pop_front)
                .or_else(|| {
                    let (p, faults) = st.random_faults.get(op)?;
                    (rand::random::<f64>() < *p)
                        .then(|| faults[rand::random_range(0..faults.len())].clone())
                })
        }
        _ => None,
    };
    let response = match (&routed, &fault) {
        (Err(()), _) => gh_error(404, "Not Found"),
        (
            _,
            Some(
                f @ (Fault::ServerError(_)
                | Fault::SecondaryLimit(_)
                | Fault::TooMany(_)
                | Fault::Validation),
            ),
        ) => fault_response(f),
        (Ok(None), _) => {
            if path.trim_matches('/') == "user" {
                axum::Json(json!({"login": VIEWER, "id": 4242, "type": "User"})).into_response()
            } else {
                let remaining = sh.lock().rate_remaining;
                rate_limit(remaining)
            }
        }
        (Ok(Some((op, repo, number))), _) => {
            let answer = serve(&sh, *op, repo, *number, &query, &body, &host);
            match &fault {
                Some(f @ Fault::ServerErrorAfter(_)) => fault_response(f),
                Some(Fault::StallAfter(d)) => {
                    tokio::select! {
                        () = tokio::time::sleep(*d) => answer,
                        () = sh.cancel.cancelled() => gh_error(500, "Internal Server Error"),
                    }
                }
                _ => answer,
            }
        }
    };
    sh.lock().calls.push(Call {
        method: method.as_str().to_owned(),
        path,
        query,
        body,
        at,
        fault,
        status: response.status().as_u16(),
    });
    response
}

fn rate_limit(remaining: u64) -> Response {
    let reset = Utc::now().timestamp() + 3600;
    let core = json!({"limit": 5000, "remaining": remaining, "reset": reset, "used": 5000 - remaining.min(5000)});
    axum::Json(json!({"resources": {"core": core}, "rate": core})).into_response()
}

fn serve(
    sh: &Shared,
    op: Op,
    repo: &str,
    number: Option<u64>,
    query: &HashMap<String, String>,
    body: &Value,
    host: &str,
) -> Response {
    let mut st = sh.lock();
    if st.missing_repos.iter().any(|r| r == repo) {
        return gh_error(404, "Not Found");
    }
    match (op, number) {
        (Op::List, _) => list(&st, repo, query, host),
        (Op::Create, _) => {
            let Some(title) = body
                .get("title")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            else {
                return gh_error(422, "Validation Failed");
            };
            let number = next_number(&mut st, repo);
            let now = Utc::now();
            let visible_at = Instant::now() + st.listing_lag;
            let issue = Issue {
                repo: repo.to_owned(),
                number,
                title: title.to_owned(),
                body: body
                    .get("body")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                state: "open".into(),
                state_reason: None,
                labels: labels_of(body).unwrap_or_default(),
                creator: VIEWER.into(),
                created_at: now,
                updated_at: now,
                is_pull: false,
                visible_at,
            };
            let json = issue.to_json(host);
            st.issues.push(issue);
            (StatusCode::CREATED, axum::Json(json)).into_response()
        }
        (Op::Get | Op::Update, Some(n)) => {
            let Some(issue) = st
                .issues
                .iter_mut()
                .find(|i| i.repo == repo && i.number == n)
            else {
                return gh_error(404, "Not Found");
            };
            if op == Op::Update {
                if let Some(t) = body.get("title").and_then(Value::as_str) {
                    t.clone_into(&mut issue.title);
                }
                if let Some(b) = body.get("body").and_then(Value::as_str) {
                    b.clone_into(&mut issue.body);
                }
                if let Some(s) = body.get("state").and_then(Value::as_str) {
                    if s != "open" && s != "closed" {
                        return gh_error(422, "Validation Failed");
                    }
                    s.clone_into(&mut issue.state);
                    issue.state_reason = if s == "closed" {
                        Some(
                            body.get("state_reason")
                                .and_then(Value::as_str)
                                .unwrap_or("completed")
                                .to_owned(),
                        )
                    } else {
                        None
                    };
                }
                if let Some(l) = labels_of(body) {
                    issue.labels = l;
                }
                issue.updated_at = Utc::now();
            }
            axum::Json(issue.to_json(host)).into_response()
        }
        _ => gh_error(404, "Not Found"),
    }
}

fn labels_of(body: &Value) -> Option<Vec<String>> {
    body.get("labels").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|l| {
                l.as_str()
                    .or_else(|| l.get("name").and_then(Value::as_str))
                    .map(str::to_owned)
            })
            .collect()
    })
}

fn list(st: &FakeState, repo: &str, query: &HashMap<String, String>, host: &str) -> Response {
    let state = query.get("state").map_or("open", String::as_str);
    let creator = query.get("creator");
    let since = query
        .get("since")
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc));
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, st.max_per_page);
    let page = query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let ascending = query.get("direction").is_some_and(|d| d == "asc");
    let now = Instant::now();
    let mut found: Vec<&Issue> = st
        .issues
        .iter()
        .filter(|i| i.repo == repo && i.visible_at <= now)
        .filter(|i| state == "all" || i.state == state)
        .filter(|i| creator.is_none_or(|c| &i.creator == c))
        .filter(|i| since.is_none_or(|s| i.updated_at >= s))
        .collect();
    found.sort_by_key(|i| i.number);
    if !ascending {
        found.reverse();
    }
    let start = (page - 1) * per_page;
    let items: Vec<Value> = found
        .iter()
        .skip(start)
        .take(per_page)
        .map(|i| i.to_json(host))
        .collect();
    let mut response = axum::Json(Value::Array(items)).into_response();
    if start + per_page < found.len() {
        let mut q: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        q.sort();
        q.push(("page".into(), (page + 1).to_string()));
        let qs: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let link = format!(
            "<http://{host}/repos/{repo}/issues?{}>; rel=\"next\"",
            qs.join("&")
        );
        if let Ok(v) = link.parse() {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}

/// Percent-encodes a query value (unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
