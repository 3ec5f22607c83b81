//! Approvals from Telegram, against the fake Bot API: a button press decides and edits the
//! approval message; two approvers pressing Approve and Deny together make one decision and
//! the other is told it was already decided; a reply saying "approve" decides; a non-approver,
//! an anonymous admin and a forged callback change nothing and are audited; /pending answers.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::options;
use common::telegram::{eventually, request, status, wait_status};
use gaia_core::Gaia;
use gaia_core::commands::Status;
use gaia_core::outbox::{Channel, Target};
use gaia_core::store::StoreOptions;
use gaia_server::AppState;
use gaia_server::senders::Senders;
use gaia_telegram::BotClient;
use gaia_testkit::fake_telegram::FakeTelegram;
use gaia_testkit::{TestDb, backend_tests};
use serde_json::json;

backend_tests!(decisions_from_telegram);

const CHAT: i64 = -100_555;
const ALICE: i64 = 1001;
const BOB: i64 = 1002;
const MALLORY: i64 = 6666;

async fn decisions_from_telegram(db: &TestDb) {
    let fake = FakeTelegram::start().await;
    let store = db.open(&StoreOptions::default()).await;
    let targets = vec![Target {
        channel: Channel::Telegram,
        target: CHAT.to_string(),
    }];
    let bot = BotClient::new(fake.base_url(), fake.token()).unwrap();
    let state = AppState::new(
        Gaia::new(store).with_notify(targets),
        options(db),
        Some("admin-t"),
    )
    .await
    .unwrap()
    .with_senders(Senders::new(Some(bot.clone()), None))
    .with_telegram(bot, vec![ALICE, BOB], "node-a".into());
    let gaia = state.gaia.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gaia_server::serve(listener, state, async move {
        let _ = stopped.await;
    }));

    // A button press decides, is answered, and the approval message is edited.
    let r = gaia
        .request_command(&request("plan looks good"))
        .await
        .unwrap();
    let sent = fake.wait_for_sent(1, Duration::from_secs(10)).await;
    let approval_msg = sent[0].message_id;
    let cb = fake.push_callback(CHAT, approval_msg, ALICE, &format!("a:{}", r.id));
    wait_status(&gaia, &r.id, Status::Approved).await;
    eventually("the callback answer", || {
        fake.answered_callbacks()
            .iter()
            .any(|a| a.callback_query_id == cb)
    })
    .await;
    eventually("the edit", || {
        fake.edited_messages()
            .iter()
            .any(|e| e.message_id == approval_msg)
    })
    .await;
    let decided = gaia.get_command(&r.id).await.unwrap();
    assert_eq!(decided.decided_via.as_deref(), Some("telegram"));
    assert!(decided.decided_by.unwrap().contains(&ALICE.to_string()));

    // Double tap: Approve and Deny from two approvers at once: one decision.
    let r2 = gaia.request_command(&request("second")).await.unwrap();
    let sent = fake.wait_for_sent(2, Duration::from_secs(10)).await;
    let m2 = sent[1].message_id;
    let c1 = fake.push_callback(CHAT, m2, ALICE, &format!("a:{}", r2.id));
    let c2 = fake.push_callback(CHAT, m2, BOB, &format!("d:{}", r2.id));
    eventually("both answers", || {
        let a = fake.answered_callbacks();
        a.iter().any(|x| x.callback_query_id == c1) && a.iter().any(|x| x.callback_query_id == c2)
    })
    .await;
    let answers: Vec<String> = fake
        .answered_callbacks()
        .into_iter()
        .filter(|a| a.callback_query_id == c1 || a.callback_query_id == c2)
        .map(|a| a.text.unwrap_or_default())
        .collect();
    assert_eq!(
        answers.iter().filter(|t| t.contains("already")).count(),
        1,
        "{answers:?}"
    );
    assert!(matches!(
        status(&gaia, &r2.id).await,
        Status::Approved | Status::Denied
    ));

    // Refusals change nothing and are audited.
    let r3 = gaia.request_command(&request("third")).await.unwrap();
    let sent = fake.wait_for_sent(3, Duration::from_secs(10)).await;
    let m3 = sent[2].message_id;
    let c3 = fake.push_callback(CHAT, m3, MALLORY, &format!("a:{}", r3.id));
    let c4 = fake.push_callback(CHAT, m3, ALICE, "a:../../etc");
    let mut anonymous = json!({
        "message_id": 90_001, "date": 1, "chat": {"id": CHAT, "type": "supergroup"},
        "sender_chat": {"id": CHAT, "type": "supergroup", "title": "ops"},
        "text": format!("/approve {}", r3.id)
    });
    anonymous["from"] = json!({"id": 1_087_968_824, "is_bot": true, "first_name": "Group", "username": "GroupAnonymousBot"});
    fake.push_update(json!({ "message": anonymous }));
    eventually("refusal answers", || {
        let a = fake.answered_callbacks();
        a.iter().any(|x| x.callback_query_id == c3) && a.iter().any(|x| x.callback_query_id == c4)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&gaia, &r3.id).await, Status::Pending);
    let refused: Vec<_> = gaia
        .list_audit_tail(50)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.outcome == "refused")
        .collect();
    assert!(refused.len() >= 3, "{refused:?}");

    // A reply to the approval message decides.
    fake.push_reply(CHAT, ALICE, "approve", m3);
    wait_status(&gaia, &r3.id, Status::Approved).await;

    // /pending answers in the chat.
    let r4 = gaia.request_command(&request("fourth")).await.unwrap();
    fake.push_text(CHAT, BOB, "/pending");
    eventually("the /pending answer", || {
        fake.sent_messages()
            .iter()
            .any(|m| m.plain_text.contains(&r4.id) && !m.plain_text.contains("Approval needed"))
    })
    .await;
    // /deny by command.
    fake.push_text(CHAT, BOB, &format!("/deny {} not today", r4.id));
    wait_status(&gaia, &r4.id, Status::Denied).await;
    assert_eq!(
        gaia.get_command(&r4.id)
            .await
            .unwrap()
            .decision_reason
            .as_deref(),
        Some("not today")
    );
    assert_eq!(gaia.verify_audit().await.unwrap().first_break, None);

    // An edit of an old message is answered, not read.
    fake.push_update(json!({ "edited_message": {
        "message_id": 90_002, "date": 1, "edit_date": 2,
        "chat": {"id": CHAT, "type": "supergroup"},
        "from": {"id": ALICE, "is_bot": false, "first_name": "Alice"},
        "text": "/approve zzzzzz"
    }}));
    eventually("the edit answer", || {
        fake.sent_messages()
            .iter()
            .any(|m| m.plain_text.contains("Edits are not read"))
    })
    .await;

    // A 409 (another poller or a webhook) raises an alert.
    fake.fail_next("getUpdates", gaia_testkit::fake_telegram::Fault::Conflict);
    // End the poll in progress so that the next one meets the fault.
    fake.push_text(CHAT, BOB, "/help");
    eventually("the conflict alert", || {
        fake.sent_messages()
            .iter()
            .any(|m| m.plain_text.contains("getUpdates conflict"))
    })
    .await;

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
