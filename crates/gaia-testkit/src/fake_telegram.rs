//! A fake Telegram Bot API server for tests: a small axum server on `127.0.0.1:0` that
//! records every call, serves queued updates through long-polling `getUpdates`, assigns
//! message ids, and fails on request with the errors the real API gives.
//!
//! Method names match case-insensitively (`sendMessage`, `SendMessage`), as some clients send
//! PascalCase names. Requests must use [`FakeTelegram::token`] (others get 401, as with a
//! revoked token); the token each call used is recorded. Bodies are JSON objects.
//!
//! Like the real API, `sendMessage` and `editMessageText` check HTML parse mode (unknown tags,
//! unbalanced tags, a bare `&` are refused with "can't parse entities"), the 4096 UTF-16 unit
//! length limit after parsing, empty texts and `callback_data` over 64 bytes; an edit that
//! changes nothing is refused with "message is not modified"; a new `getUpdates` ends one
//! still waiting with 409.
//!
//! Webhooks: `setWebhook` (with `secret_token`), `deleteWebhook` and `getWebhookInfo` work as
//! Telegram's do. While a webhook is set, `getUpdates` is refused with 409 and the fake POSTs
//! queued updates to the webhook one at a time, in order, with the secret in
//! `X-Telegram-Bot-Api-Secret-Token`; an update the webhook does not answer with 2xx is
//! delivered again shortly after. Every delivery is recorded ([`FakeTelegram::webhook_deliveries`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The token [`FakeTelegram::start`] accepts; shaped like a real one.
pub const FAKE_TOKEN: &str = "424242:AAFakeTelegramTokenForTests_secret-value";
/// The fake bot's user id (`getMe`, `from` of sent messages).
pub const BOT_USER_ID: i64 = 424_242;
/// The longest `getUpdates` timeout the fake waits (as Telegram, 50 s).
const MAX_POLL_SECS: u64 = 50;
const MAX_TEXT_UNITS: usize = 4096;

/// A failure to answer one call with, instead of handling it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `parameters.retry_after` = the seconds given.
    RetryAfter(u64),
    /// That 5xx status. 502 answers an HTML page, as a proxy in front of the API does; other
    /// codes answer a Bot API error object.
    ServerError(u16),
    /// Sleeps this long, then handles the call normally (so the effect may happen even though
    /// the client has given up, as with a real timeout).
    Timeout(Duration),
    /// 409 "terminated by other getUpdates request".
    Conflict,
    /// 400 "Bad Request: {text}", e.g. `BadRequest("chat not found".into())`.
    BadRequest(String),
    /// 403 "Forbidden: {text}", e.g. `Forbidden("bot was blocked by the user".into())`.
    Forbidden(String),
}

/// One request as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The method name as the client spelled it.
    pub method: String,
    /// The token from the URL.
    pub token: String,
    /// The JSON body (`{}` when empty).
    pub body: Value,
    /// When the request arrived (before any fault delay), to check pacing and rate limits.
    pub at: Instant,
    /// The fault injected into this call, if any (queued or random): tells a test which calls
    /// were answered with a 429 and how long they asked to wait.
    pub fault: Option<Fault>,
}

/// A message the bot sent with `sendMessage`.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub chat_id: i64,
    pub message_id: i64,
    /// The text as sent (HTML source in HTML parse mode).
    pub text: String,
    /// The text as a user sees it (tags removed, entities decoded).
    pub plain_text: String,
    pub parse_mode: Option<String>,
    pub reply_markup: Option<Value>,
    pub reply_to: Option<i64>,
    pub body: Value,
}

/// A successful `editMessageText`.
#[derive(Debug, Clone, PartialEq)]
pub struct EditedMessage {
    pub chat_id: i64,
    pub message_id: i64,
    pub text: String,
    pub plain_text: String,
    pub reply_markup: Option<Value>,
    pub body: Value,
}

/// A successful `answerCallbackQuery`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnsweredCallback {
    pub callback_query_id: String,
    pub text: Option<String>,
    pub body: Value,
}

/// A running fake. Dropping it stops the server; [`shutdown`](Self::shutdown) also waits.
#[derive(Debug)]
pub struct FakeTelegram {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    token: String,
    state: Mutex<FakeState>,
    /// Woken when updates are queued or a new poll starts.
    updates_changed: Notify,
    /// Woken after every call is handled.
    activity: Notify,
    cancel: CancellationToken,
}

#[derive(Debug, Default)]
struct FakeState {
    calls: Vec<Call>,
    updates: VecDeque<Value>,
    next_update_id: i64,
    next_message_id: i64,
    next_callback_id: i64,
    poll_generation: u64,
    faults: HashMap<String, VecDeque<Fault>>,
    /// Per method: the chance of failing a call with no queued fault, and the faults to pick
    /// from at random.
    random_faults: HashMap<String, (f64, Vec<Fault>)>,
    /// How long every call waits before it is answered: the network's round trip to the real
    /// Bot API, which a fake on the same machine does not have.
    latency: Duration,
    messages: HashMap<(i64, i64), StoredMessage>,
    sent: Vec<SentMessage>,
    edited: Vec<EditedMessage>,
    answered: Vec<AnsweredCallback>,
    /// The webhook set with `setWebhook`: URL and secret token.
    webhook: Option<(String, Option<String>)>,
    deliveries: Vec<WebhookDelivery>,
}

/// One POST of an update to the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub update_id: i64,
    /// The webhook's answer (0 when it could not be reached).
    pub status: u16,
}

#[derive(Debug, Clone)]
struct StoredMessage {
    json: Value,
    text: String,
    reply_markup: Option<Value>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FakeTelegram {
    /// Starts a fake that accepts [`FAKE_TOKEN`].
    pub async fn start() -> Self {
        Self::start_with_token(FAKE_TOKEN).await
    }

    /// Starts a fake that accepts `token`.
    pub async fn start_with_token(token: &str) -> Self {
        Self::start_on("127.0.0.1:0", token)
            .await
            .expect("bind the fake Telegram server")
    }

    /// Starts a fake on `bind` (e.g. `127.0.0.1:8081`) that accepts `token`.
    pub async fn start_on(bind: &str, token: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            state: Mutex::new(FakeState {
                next_update_id: 1,
                next_message_id: 1,
                next_callback_id: 1,
                ..FakeState::default()
            }),
            updates_changed: Notify::new(),
            activity: Notify::new(),
            cancel: CancellationToken::new(),
        });
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/{bot}/{method}", any(handle))
            .fallback(|| async { api_error(404, "Not Found", None) })
            .with_state(shared.clone());
        tokio::spawn(push_to_webhook(shared.clone()));
        let cancel = shared.cancel.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await;
        });
        Ok(Self {
            addr,
            shared,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`, to configure as the Bot API base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token this fake accepts.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Queues an update. A missing `update_id` is assigned (the next after any seen), as are a
    /// missing `message_id` and `date` in its message. Returns the update id.
    pub fn push_update(&self, mut update: Value) -> i64 {
        let id = {
            let mut st = self.shared.lock();
            let id = match update.get("update_id").and_then(Value::as_i64) {
                Some(id) => id,
                None => st.next_update_id,
            };
            st.next_update_id = st.next_update_id.max(id + 1);
            if let Some(obj) = update.as_object_mut() {
                obj.insert("update_id".into(), json!(id));
                for key in ["message", "edited_message"] {
                    if let Some(m) = obj.get_mut(key) {
                        fill_message(&mut st, m);
                    }
                }
                if let Some(m) = obj
                    .get_mut("callback_query")
                    .and_then(|c| c.get_mut("message"))
                {
                    fill_message(&mut st, m);
                }
            }
            st.updates.push_back(update);
            id
        };
        self.shared.updates_changed.notify_waiters();
        id
    }

    /// Queues a text message from user `from` in `chat_id`. Returns the update id.
    pub fn push_text(&self, chat_id: i64, from: i64, text: &str) -> i64 {
        self.push_update(json!({"message": user_message(chat_id, from, text)}))
    }

    /// Queues a text message from `from` replying to message `reply_to` in `chat_id` (a
    /// message the bot sent is quoted with its text). Returns the update id.
    pub fn push_reply(&self, chat_id: i64, from: i64, text: &str, reply_to: i64) -> i64 {
        let quoted = self.stored_or_stub(chat_id, reply_to);
        let mut message = user_message(chat_id, from, text);
        message["reply_to_message"] = quoted;
        self.push_update(json!({ "message": message }))
    }

    /// Queues a press by `from` on a button with `data` under message `message_id` in
    /// `chat_id`. Returns the callback query id.
    pub fn push_callback(&self, chat_id: i64, message_id: i64, from: i64, data: &str) -> String {
        let message = self.stored_or_stub(chat_id, message_id);
        let id = {
            let mut st = self.shared.lock();
            let n = st.next_callback_id;
            st.next_callback_id += 1;
            format!("cbq-{n}")
        };
        self.push_update(json!({"callback_query": {
            "id": id,
            "from": user(from),
            "message": message,
            "chat_instance": format!("ci{chat_id}"),
            "data": data,
        }}));
        id
    }

    /// Makes the next call of `method` (any case) fail with `fault`. Several faults for one
    /// method are used in the order given, one per call.
    pub fn fail_next(&self, method: &str, fault: Fault) {
        self.shared
            .lock()
            .faults
            .entry(method.to_ascii_lowercase())
            .or_default()
            .push_back(fault);
    }

    /// Makes each later call of `method` (any case) that has no queued fault fail with
    /// `probability` (0 to 1), with one of `faults` picked at random. An empty list or a zero
    /// probability turns it off.
    pub fn fail_randomly(&self, method: &str, probability: f64, faults: Vec<Fault>) {
        let mut st = self.shared.lock();
        let key = method.to_ascii_lowercase();
        if faults.is_empty() || probability <= 0.0 {
            st.random_faults.remove(&key);
        } else {
            st.random_faults.insert(key, (probability.min(1.0), faults));
        }
    }

    /// Answers every later call `latency` after it arrives (recorded arrival times stay those
    /// of arrival), as a Bot API across a network would; zero, the default, answers at once.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// The webhook's URL, while one is set.
    pub fn webhook(&self) -> Option<String> {
        self.shared
            .lock()
            .webhook
            .as_ref()
            .map(|(url, _)| url.clone())
    }

    /// Every delivery of an update to a webhook, in order.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.shared.lock().deliveries.clone()
    }

    /// Every call received, in order (including refused and failed ones).
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// The calls of `method` (any case).
    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .cloned()
            .collect()
    }

    pub fn sent_messages(&self) -> Vec<SentMessage> {
        self.shared.lock().sent.clone()
    }

    /// How many messages were sent, without copying them (for polling while sends go on: a
    /// copy holds the lock that every request handler takes).
    pub fn sent_count(&self) -> usize {
        self.shared.lock().sent.len()
    }

    pub fn edited_messages(&self) -> Vec<EditedMessage> {
        self.shared.lock().edited.clone()
    }

    pub fn answered_callbacks(&self) -> Vec<AnsweredCallback> {
        self.shared.lock().answered.clone()
    }

    /// Updates queued and not yet confirmed by an offset.
    pub fn pending_updates(&self) -> Vec<Value> {
        self.shared.lock().updates.iter().cloned().collect()
    }

    /// Waits up to `timeout` until at least `count` messages have been sent; returns them
    /// all (fewer if the time ran out).
    pub async fn wait_for_sent(&self, count: usize, timeout: Duration) -> Vec<SentMessage> {
        self.wait_until(timeout, |st| st.sent.len() >= count).await;
        self.sent_messages()
    }

    /// Waits up to `timeout` until at least `count` calls of `method` (any case) arrived;
    /// returns them all (fewer if the time ran out).
    pub async fn wait_for_calls(&self, method: &str, count: usize, timeout: Duration) -> Vec<Call> {
        self.wait_until(timeout, |st| {
            st.calls
                .iter()
                .filter(|c| c.method.eq_ignore_ascii_case(method))
                .count()
                >= count
        })
        .await;
        self.calls_to(method)
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&FakeState) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.activity.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(&self.shared.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(&self.shared.lock());
            }
        }
    }

    /// Stops the server: waiting polls and faults return at once, then it waits (briefly) for
    /// connections to close.
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

    fn stored_or_stub(&self, chat_id: i64, message_id: i64) -> Value {
        match self.shared.lock().messages.get(&(chat_id, message_id)) {
            Some(m) => m.json.clone(),
            None => json!({"message_id": message_id, "date": now_secs(), "chat": chat(chat_id)}),
        }
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn chat(chat_id: i64) -> Value {
    if chat_id < 0 {
        json!({"id": chat_id, "type": "supergroup", "title": format!("group {chat_id}")})
    } else {
        json!({"id": chat_id, "type": "private", "first_name": format!("user{chat_id}")})
    }
}

fn user(id: i64) -> Value {
    json!({"id": id, "is_bot": false, "first_name": format!("User{id}"), "username": format!("user{id}")})
}

fn bot_user() -> Value {
    json!({"id": BOT_USER_ID, "is_bot": true, "first_name": "Gaia Test Bot", "username": "gaia_test_bot"})
}

fn user_message(chat_id: i64, from: i64, text: &str) -> Value {
    json!({"chat": chat(chat_id), "from": user(from), "text": text})
}

/// Fills in a queued message's missing `message_id` and `date`.
fn fill_message(st: &mut FakeState, m: &mut Value) {
    let Some(obj) = m.as_object_mut() else { return };
    if !obj.contains_key("message_id") {
        obj.insert("message_id".into(), json!(st.next_message_id));
        st.next_message_id += 1;
    }
    obj.entry("date").or_insert_with(|| json!(now_secs()));
}

/// A Bot API error object with that status.
fn api_error(status: u16, description: &str, retry_after: Option<u64>) -> Response {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if let Some(secs) = retry_after {
        body["parameters"] = json!({ "retry_after": secs });
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(body)).into_response()
}

fn api_ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

fn bad_request(what: &str) -> Response {
    api_error(400, &format!("Bad Request: {what}"), None)
}

fn fault_response(fault: Fault) -> Response {
    match fault {
        Fault::RetryAfter(secs) => api_error(
            429,
            &format!("Too Many Requests: retry after {secs}"),
            Some(secs),
        ),
        Fault::ServerError(502) => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>",
        )
            .into_response(),
        Fault::ServerError(code) => api_error(code, "Internal Server Error", None),
        Fault::Conflict => api_error(409, CONFLICT, None),
        Fault::BadRequest(text) => bad_request(&text),
        Fault::Forbidden(text) => api_error(403, &format!("Forbidden: {text}"), None),
        // Handled before answering.
        Fault::Timeout(_) => api_error(500, "Internal Server Error", None),
    }
}

const CONFLICT: &str = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";

async fn handle(
    State(sh): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let response = handle_inner(&sh, &bot, &method, &body).await;
    sh.activity.notify_waiters();
    response
}

async fn handle_inner(sh: &Arc<Shared>, bot: &str, method: &str, body: &[u8]) -> Response {
    let Some(token) = bot.strip_prefix("bot") else {
        return api_error(404, "Not Found", None);
    };
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return bad_request("request body must be a JSON object"),
        }
    };
    let lower = method.to_ascii_lowercase();
    let (fault, latency) = {
        let mut st = sh.lock();
        st.calls.push(Call {
            method: method.to_owned(),
            token: token.to_owned(),
            body: body.clone(),
            at: Instant::now(),
            fault: None,
        });
        let fault = if token != sh.token {
            None
        } else {
            st.faults
                .get_mut(&lower)
                .and_then(VecDeque::pop_front)
                .or_else(|| {
                    let (p, faults) = st.random_faults.get(&lower)?;
                    (rand::random::<f64>() < *p)
                        .then(|| faults[rand::random_range(0..faults.len())].clone())
                })
        };
        if let Some(call) = st.calls.last_mut() {
            call.fault.clone_from(&fault);
        }
        (fault, st.latency)
    };
    sh.activity.notify_waiters();
    if !latency.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            () = sh.cancel.cancelled() => return api_error(500, "Internal Server Error", None),
        }
    }
    if token != sh.token {
        return api_error(401, "Unauthorized", None);
    }
    match fault {
        None => {}
        Some(Fault::Timeout(delay)) => {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = sh.cancel.cancelled() => return api_error(500, "Internal Server Error", None),
            }
        }
        Some(fault) => return fault_response(fault),
    }
    match lower.as_str() {
        "getme" => api_ok(bot_user()),
        "setmycommands" => api_ok(json!(true)),
        "setwebhook" => set_webhook(sh, &body),
        "deletewebhook" => {
            sh.lock().webhook = None;
            api_ok(json!(true))
        }
        "getwebhookinfo" => webhook_info(sh),
        "getupdates" if sh.lock().webhook.is_some() => api_error(409, WEBHOOK_ACTIVE, None),
        "getupdates" => get_updates(sh, &body).await,
        "sendmessage" => send_message(sh, &body),
        "editmessagetext" => edit_message_text(sh, &body),
        "answercallbackquery" => answer_callback_query(sh, &body),
        _ => api_error(404, "Not Found", None),
    }
}

const WEBHOOK_ACTIVE: &str = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";

fn set_webhook(sh: &Arc<Shared>, body: &Value) -> Response {
    let url = body.get("url").and_then(Value::as_str).unwrap_or("");
    let secret = body.get("secret_token").and_then(Value::as_str);
    if let Some(s) = secret
        && (s.is_empty()
            || s.len() > 256
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    {
        return bad_request("secret token contains unallowed characters");
    }
    let mut st = sh.lock();
    if url.is_empty() {
        // As Telegram: an empty URL removes the webhook.
        st.webhook = None;
    } else if url.starts_with("http://") || url.starts_with("https://") {
        st.webhook = Some((url.to_owned(), secret.map(str::to_owned)));
    } else {
        return bad_request("bad webhook: An HTTPS URL must be provided for webhook");
    }
    api_ok(json!(true))
}

fn webhook_info(sh: &Arc<Shared>) -> Response {
    let st = sh.lock();
    api_ok(json!({
        "url": st.webhook.as_ref().map_or("", |(url, _)| url.as_str()),
        "has_custom_certificate": false,
        "pending_update_count": st.updates.len(),
    }))
}

/// While a webhook is set, POSTs the oldest queued update to it until it answers 2xx, then
/// the next; until the fake stops.
async fn push_to_webhook(sh: Arc<Shared>) {
    let http = reqwest::Client::new();
    loop {
        let next = {
            let st = sh.lock();
            st.webhook
                .clone()
                .and_then(|hook| Some((hook, st.updates.front()?.clone())))
        };
        let Some(((url, secret), update)) = next else {
            tokio::select! {
                () = sh.cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(20)) => continue,
            }
        };
        let update_id = update.get("update_id").and_then(Value::as_i64).unwrap_or(0);
        let mut req = http
            .post(&url)
            .json(&update)
            .timeout(Duration::from_secs(10));
        if let Some(secret) = &secret {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        let status = tokio::select! {
            () = sh.cancel.cancelled() => return,
            r = req.send() => r.map_or(0, |r| r.status().as_u16()),
        };
        {
            let mut st = sh.lock();
            st.deliveries.push(WebhookDelivery { update_id, status });
            if (200..300).contains(&status) {
                let id_of = |u: &Value| u.get("update_id").and_then(Value::as_i64);
                if st.updates.front().and_then(id_of) == Some(update_id) {
                    st.updates.pop_front();
                }
            }
        }
        sh.activity.notify_waiters();
        if !(200..300).contains(&status) {
            tokio::select! {
                () = sh.cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

fn int_param(body: &Value, key: &str) -> Option<i64> {
    match body.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

async fn get_updates(sh: &Arc<Shared>, body: &Value) -> Response {
    let offset = int_param(body, "offset");
    let timeout = int_param(body, "timeout")
        .unwrap_or(0)
        .clamp(0, MAX_POLL_SECS as i64);
    let limit = int_param(body, "limit").unwrap_or(100).clamp(1, 100);
    let generation = {
        let mut st = sh.lock();
        st.poll_generation += 1;
        st.poll_generation
    };
    // A poll still waiting is ended with 409, as Telegram does.
    sh.updates_changed.notify_waiters();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout.unsigned_abs());
    loop {
        let notified = sh.updates_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let batch: Vec<Value> = {
            let mut st = sh.lock();
            if st.poll_generation != generation {
                return api_error(409, CONFLICT, None);
            }
            let id_of = |u: &Value| u.get("update_id").and_then(Value::as_i64).unwrap_or(0);
            if let Some(offset) = offset {
                st.updates.retain(|u| id_of(u) >= offset);
            }
            st.updates
                .iter()
                .take(usize::try_from(limit).unwrap_or(100))
                .cloned()
                .collect()
        };
        if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
            return api_ok(Value::Array(batch));
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(deadline) => {}
            () = sh.cancel.cancelled() => return api_ok(json!([])),
        }
    }
}

/// Why a request is refused with 400: the text after "Bad Request: ".
type Refusal = String;

/// Checks text as Telegram would for `parse_mode`; returns the text as sent and as users
/// see it.
fn check_text(body: &Value) -> Result<(String, String), Refusal> {
    let text = body.get("text").and_then(Value::as_str).unwrap_or("");
    let plain = match body.get("parse_mode").and_then(Value::as_str) {
        Some(mode) if mode.eq_ignore_ascii_case("html") => {
            parse_html(text).map_err(|e| format!("can't parse entities: {e}"))?
        }
        _ => text.to_owned(),
    };
    if plain.trim().is_empty() {
        return Err("message text is empty".into());
    }
    if plain.chars().map(char::len_utf16).sum::<usize>() > MAX_TEXT_UNITS {
        return Err("message is too long".into());
    }
    Ok((text.to_owned(), plain))
}

fn check_markup(body: &Value) -> Result<Option<Value>, Refusal> {
    let Some(markup) = body.get("reply_markup").filter(|m| !m.is_null()) else {
        return Ok(None);
    };
    let rows = markup
        .get("inline_keyboard")
        .and_then(Value::as_array)
        .ok_or("can't parse reply keyboard markup JSON object")?;
    for button in rows.iter().filter_map(Value::as_array).flatten() {
        if let Some(data) = button.get("callback_data").and_then(Value::as_str)
            && (data.is_empty() || data.len() > 64)
        {
            return Err("BUTTON_DATA_INVALID".into());
        }
    }
    Ok(Some(markup.clone()))
}

fn chat_id_param(body: &Value) -> Result<i64, Refusal> {
    match body.get("chat_id") {
        None | Some(Value::Null) => Err("chat_id is empty".into()),
        Some(_) => int_param(body, "chat_id").ok_or_else(|| "chat not found".into()),
    }
}

fn send_message(sh: &Arc<Shared>, body: &Value) -> Response {
    send_message_inner(sh, body).unwrap_or_else(|e| bad_request(&e))
}

fn send_message_inner(sh: &Arc<Shared>, body: &Value) -> Result<Response, Refusal> {
    let chat_id = chat_id_param(body)?;
    let (text, plain) = check_text(body)?;
    let reply_markup = check_markup(body)?;
    let reply_to = body
        .get("reply_parameters")
        .and_then(|p| int_param(p, "message_id"))
        .or_else(|| int_param(body, "reply_to_message_id"));
    let mut st = sh.lock();
    let message_id = st.next_message_id;
    st.next_message_id += 1;
    let mut message = json!({
        "message_id": message_id,
        "date": now_secs(),
        "chat": chat(chat_id),
        "from": bot_user(),
        "text": plain,
    });
    if let Some(markup) = &reply_markup {
        message["reply_markup"] = markup.clone();
    }
    if let Some(reply_to) = reply_to {
        message["reply_to_message"] = match st.messages.get(&(chat_id, reply_to)) {
            Some(m) => m.json.clone(),
            None => json!({"message_id": reply_to, "date": now_secs(), "chat": chat(chat_id)}),
        };
    }
    st.messages.insert(
        (chat_id, message_id),
        StoredMessage {
            json: message.clone(),
            text: text.clone(),
            reply_markup: reply_markup.clone(),
        },
    );
    st.sent.push(SentMessage {
        chat_id,
        message_id,
        text,
        plain_text: plain,
        parse_mode: body
            .get("parse_mode")
            .and_then(Value::as_str)
            .map(str::to_owned),
        reply_markup,
        reply_to,
        body: body.clone(),
    });
    Ok(api_ok(message))
}

fn edit_message_text(sh: &Arc<Shared>, body: &Value) -> Response {
    edit_message_text_inner(sh, body).unwrap_or_else(|e| bad_request(&e))
}

fn edit_message_text_inner(sh: &Arc<Shared>, body: &Value) -> Result<Response, Refusal> {
    if body.get("inline_message_id").is_some() {
        return Err("inline messages are not supported by the fake".into());
    }
    let chat_id = chat_id_param(body)?;
    let message_id = int_param(body, "message_id").ok_or("message identifier is not specified")?;
    let (text, plain) = check_text(body)?;
    let reply_markup = check_markup(body)?;
    let mut st = sh.lock();
    let stored = st
        .messages
        .get_mut(&(chat_id, message_id))
        .ok_or("message to edit not found")?;
    if stored.text == text && stored.reply_markup == reply_markup {
        return Err("message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message".into());
    }
    stored.text = text.clone();
    stored.reply_markup = reply_markup.clone();
    stored.json["text"] = json!(plain);
    stored.json["edit_date"] = json!(now_secs());
    match &reply_markup {
        Some(m) => stored.json["reply_markup"] = m.clone(),
        None => {
            if let Some(obj) = stored.json.as_object_mut() {
                obj.remove("reply_markup");
            }
        }
    }
    let result = stored.json.clone();
    st.edited.push(EditedMessage {
        chat_id,
        message_id,
        text,
        plain_text: plain,
        reply_markup,
        body: body.clone(),
    });
    Ok(api_ok(result))
}

fn answer_callback_query(sh: &Arc<Shared>, body: &Value) -> Response {
    let Some(id) = body.get("callback_query_id").and_then(Value::as_str) else {
        return bad_request("query is too old and response timeout expired or query ID is invalid");
    };
    let text = body.get("text").and_then(Value::as_str).map(str::to_owned);
    sh.lock().answered.push(AnsweredCallback {
        callback_query_id: id.to_owned(),
        text,
        body: body.clone(),
    });
    api_ok(json!(true))
}

/// Tags Telegram's HTML parse mode accepts.
const TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
];

/// A strict reading of Telegram's HTML parse mode: known tags, balanced, and `&` only in the
/// entities `&lt;` `&gt;` `&amp;` `&quot;` or numeric ones. Returns the visible text.
fn parse_html(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut open: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        match c {
            '<' => {
                let end = text[i..]
                    .find('>')
                    .map(|j| i + j)
                    .ok_or_else(|| format!("Unclosed start tag at byte offset {i}"))?;
                let inner = &text[i + 1..end];
                let (closing, inner) = match inner.strip_prefix('/') {
                    Some(rest) => (true, rest),
                    None => (false, inner),
                };
                let name = inner
                    .split(|c: char| c.is_whitespace() || c == '/')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if !TAGS.contains(&name.as_str()) {
                    return Err(format!(
                        "Unsupported start tag \"{name}\" at byte offset {i}"
                    ));
                }
                if closing {
                    if open.pop().as_deref() != Some(name.as_str()) {
                        return Err(format!(
                            "Unmatched end tag at byte offset {i}, expected \"</{name}>\""
                        ));
                    }
                } else {
                    open.push(name);
                }
                i = end + 1;
            }
            '&' => {
                let end = text[i..]
                    .char_indices()
                    .take(12)
                    .find(|(_, c)| *c == ';')
                    .map(|(j, _)| i + j)
                    .ok_or_else(|| {
                        format!("Can't find end of the entity starting at byte offset {i}")
                    })?;
                let name = &text[i + 1..end];
                let decoded = match name {
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "amp" => Some('&'),
                    "quot" => Some('"'),
                    _ => name.strip_prefix('#').and_then(|n| {
                        match n.strip_prefix('x').or_else(|| n.strip_prefix('X')) {
                            Some(hex) => u32::from_str_radix(hex, 16).ok(),
                            None => n.parse().ok(),
                        }
                        .and_then(char::from_u32)
                    }),
                };
                let decoded = decoded.ok_or_else(|| {
                    format!("Unsupported HTML entity \"&{name};\" at byte offset {i}")
                })?;
                out.push(decoded);
                i = end + 1;
            }
            c => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    if let Some(name) = open.pop() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{name}\""
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_checked_like_telegram() {
        assert_eq!(
            parse_html("<b>Run</b> <code>ls &lt;dir&gt; &amp;&amp; x</code> &#128640;"),
            Ok("Run ls <dir> && x 🚀".to_owned())
        );
        assert!(parse_html("a < b").is_err());
        assert!(parse_html("<div>x</div>").is_err());
        assert!(parse_html("<b>x").is_err());
        assert!(parse_html("<b>x</i>").is_err());
        assert!(parse_html("AT&T").is_err());
        assert_eq!(
            parse_html("<a href=\"https://x\">x</a>"),
            Ok("x".to_owned())
        );
    }
}
