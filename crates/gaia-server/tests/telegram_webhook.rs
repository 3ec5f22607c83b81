//! Telegram's webhook mode, against the fake Bot API: on start the listener calls `setWebhook`
//! with the secret and polls nothing; the fake pushes a button press to the server's webhook
//! path and it decides; an update delivered twice is applied once (the second answered as a
//! duplicate); a missing or forged secret is refused with 401, changes nothing and is
//! audited; a body that is no update is a 400. Started again in polling mode on the same
//! store, the listener calls `deleteWebhook` and polls, and a press decides again.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::telegram::{eventually, request, wait_status};
use common::{expect_problem, options};
use gaia_core::Gaia;
use gaia_core::commands::Status;
use gaia_core::event::EventFilter;
use gaia_core::store::{Store, StoreOptions};
use gaia_server::AppState;
use gaia_server::telegram::Webhook;
use gaia_telegram::BotClient;
use gaia_testkit::fake_telegram::FakeTelegram;
use gaia_testkit::{TestDb, backend_tests};
use serde_json::{Value, json};

backend_tests!(webhook_updates_apply_once_and_polling_deletes_the_webhook);

const CHAT: i64 = -100_556;
const ALICE: i64 = 1001;
const PATH: &str = "/telegram/hook-7f3a";
const SECRET: &str = "webhook_Secret-42";

/// A server on `store` with the Telegram listener, in webhook mode when `webhook` is set.
struct Node {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Node {
    async fn start(
        db: &TestDb,
        store: std::sync::Arc<dyn Store>,
        fake: &FakeTelegram,
        webhook: bool,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bot = BotClient::new(fake.base_url(), fake.token()).unwrap();
        let mut state = AppState::new(Gaia::new(store), options(db), Some("admin-t"))
            .await
            .unwrap()
            .with_telegram(bot, vec![ALICE], "node-a".into());
        if webhook {
            state = state.with_telegram_webhook(Webhook {
                url: format!("{url}{PATH}"),
                path: PATH.into(),
                secret: SECRET.into(),
            });
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(gaia_server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Self { url, stop, server }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// A button press as Telegram delivers it.
fn press(update_id: i64, callback: &str, data: &str) -> Value {
    json!({
        "update_id": update_id,
        "callback_query": {
            "id": callback,
            "from": {"id": ALICE, "is_bot": false, "first_name": "Alice", "username": "alice"},
            "message": {"message_id": 1, "date": 0, "chat": {"id": CHAT, "type": "supergroup"}},
            "chat_instance": "1",
            "data": data,
        },
    })
}

async fn decisions(gaia: &Gaia, kind: &str, id: &str) -> usize {
    gaia.list_events_after(
        0,
        &EventFilter {
            type_prefix: Some(kind.into()),
            subject: None,
        },
        1000,
    )
    .await
    .unwrap()
    .iter()
    .filter(|e| e.kind == kind && e.subject.contains(id))
    .count()
}

async fn webhook_updates_apply_once_and_polling_deletes_the_webhook(db: &TestDb) {
    let fake = FakeTelegram::start().await;
    let store = db.open(&StoreOptions::default()).await;
    let gaia = Gaia::new(store.clone());
    let node = Node::start(db, store.clone(), &fake, true).await;
    let hook = format!("{}{PATH}", node.url);

    // The webhook is registered with the secret; nothing polls.
    eventually("setWebhook", || {
        fake.webhook().as_deref() == Some(hook.as_str())
    })
    .await;
    let set = fake.calls_to("setWebhook");
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].body["secret_token"], SECRET);

    // A press pushed by Telegram decides.
    let r = gaia.request_command(&request("first")).await.unwrap();
    let update = fake.push_callback(CHAT, 1, ALICE, &format!("a:{}", r.id));
    wait_status(&gaia, &r.id, Status::Approved).await;
    eventually("the callback answer", || {
        fake.answered_callbacks()
            .iter()
            .any(|a| a.callback_query_id == update)
    })
    .await;
    assert!(
        fake.webhook_deliveries().iter().all(|d| d.status == 200),
        "{:?}",
        fake.webhook_deliveries()
    );

    // The same update delivered twice: applied once, the second a duplicate.
    let http = reqwest::Client::new();
    let r2 = gaia.request_command(&request("second")).await.unwrap();
    let twice = press(900_001, "cb-twice", &format!("d:{}", r2.id));
    for want_duplicate in [false, true] {
        let res = http
            .post(&hook)
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .json(&twice)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["duplicate"] == json!(true), want_duplicate, "{body}");
    }
    assert_eq!(
        gaia.get_command(&r2.id).await.unwrap().status,
        Status::Denied
    );
    assert_eq!(decisions(&gaia, "command.denied", &r2.id).await, 1);
    let answers = fake
        .answered_callbacks()
        .iter()
        .filter(|a| a.callback_query_id == "cb-twice")
        .count();
    assert_eq!(answers, 1, "the duplicate is not answered again");

    // A missing or forged secret: 401, nothing applied, audited.
    let r3 = gaia.request_command(&request("third")).await.unwrap();
    let forged = press(900_002, "cb-forged", &format!("a:{}", r3.id));
    let missing = http.post(&hook).json(&forged).send().await.unwrap();
    expect_problem(missing, 401, "a missing secret").await;
    for wrong in ["webhook_Secret-43", "webhook_Secret-4", ""] {
        let res = http
            .post(&hook)
            .header("X-Telegram-Bot-Api-Secret-Token", wrong)
            .json(&forged)
            .send()
            .await
            .unwrap();
        expect_problem(res, 401, "a forged secret").await;
    }
    assert_eq!(
        gaia.get_command(&r3.id).await.unwrap().status,
        Status::Pending
    );
    let refused: Vec<_> = gaia
        .list_audit_tail(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "telegram.webhook" && a.outcome == "unauthorized")
        .collect();
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(refused.iter().all(|a| a.subject == PATH));
    assert!(refused.iter().any(|a| a.details.contains("missing")));
    assert!(refused.iter().any(|a| a.details.contains("wrong")));
    // The refused update was not taken: delivered with the secret, it applies.
    let res = http
        .post(&hook)
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .body("not json")
        .send()
        .await
        .unwrap();
    expect_problem(res, 400, "a body that is no update").await;
    let res = http
        .post(&hook)
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        gaia.get_command(&r3.id).await.unwrap().status,
        Status::Approved
    );
    assert!(
        fake.calls_to("getUpdates").is_empty(),
        "webhook mode polls nothing"
    );
    node.stop().await;

    // Back to polling on the same store: the webhook is deleted, then a press is polled.
    let node = Node::start(db, store.clone(), &fake, false).await;
    eventually("deleteWebhook", || fake.webhook().is_none()).await;
    assert_eq!(fake.calls_to("deleteWebhook").len(), 1);
    let r4 = gaia.request_command(&request("fourth")).await.unwrap();
    fake.push_callback(CHAT, 1, ALICE, &format!("a:{}", r4.id));
    wait_status(&gaia, &r4.id, Status::Approved).await;
    assert!(!fake.calls_to("getUpdates").is_empty());
    node.stop().await;
    assert_eq!(gaia.verify_audit().await.unwrap().first_break, None);
}
