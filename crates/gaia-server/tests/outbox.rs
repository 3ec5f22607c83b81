//! The outbox delivered through the fake Telegram Bot API: an approval request is sent with
//! Approve / Deny buttons, the decision edits it, `retry_after` is honoured without using up
//! attempts, a blocked bot sends the message to the dead set at once, and a requeued message is
//! delivered.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::options;
use gaia_core::Gaia;
use gaia_core::commands::{Action, CommandSpec, Decider, NewCommand, Status};
use gaia_core::outbox::{Channel, Status as OutboxStatus, Target};
use gaia_core::store::StoreOptions;
use gaia_server::AppState;
use gaia_server::senders::Senders;
use gaia_telegram::BotClient;
use gaia_testkit::fake_telegram::{FakeTelegram, Fault};
use gaia_testkit::{TestDb, backend_tests};

backend_tests!(approvals_reach_telegram_and_decisions_edit_them);

const CHAT: i64 = -100_777;

fn request(is_test: bool) -> NewCommand {
    NewCommand::new(
        CommandSpec::Argv(vec!["make".into(), "deploy".into()]),
        Some("/srv/app".into()),
        Some("release".into()),
        None,
        Some("ship <it> & go".into()),
        "agent-7",
        is_test,
        None,
    )
    .unwrap()
}

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn approvals_reach_telegram_and_decisions_edit_them(db: &TestDb) {
    let fake = FakeTelegram::start().await;
    let store = db.open(&StoreOptions::default()).await;
    let targets = vec![Target {
        channel: Channel::Telegram,
        target: CHAT.to_string(),
    }];
    let bot = BotClient::new(fake.base_url(), fake.token()).unwrap();
    let mut senders = Senders::new(Some(bot), None);
    senders.retry.base_delay = Duration::from_millis(50);
    let state = AppState::new(
        Gaia::new(store).with_notify(targets),
        options(db),
        Some("admin-t"),
    )
    .await
    .unwrap()
    .with_senders(senders);
    let gaia: Gaia = state.gaia.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gaia_server::serve(listener, state, async move {
        let _ = stopped.await;
    }));

    // The first send is rate limited: retried after retry_after, without using up an attempt.
    fake.fail_next("sendMessage", Fault::RetryAfter(1));
    let r = gaia.request_command(&request(false)).await.unwrap();
    let sent = fake.wait_for_sent(1, Duration::from_secs(10)).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].chat_id, CHAT);
    assert!(
        sent[0].plain_text.contains("make deploy") && sent[0].plain_text.contains("ship <it> & go"),
        "{}",
        sent[0].plain_text
    );
    let buttons = sent[0].reply_markup.clone().unwrap();
    assert_eq!(
        buttons["inline_keyboard"][0][0]["callback_data"],
        format!("a:{}", r.id)
    );
    // The attempt is recorded just after the fake answers.
    let approval = loop {
        let m = gaia
            .list_messages(None, 10)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.kind == "approval")
            .unwrap();
        if m.status == OutboxStatus::Sent {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (approval.status, approval.attempts),
        (OutboxStatus::Sent, 1)
    );

    // The decision edits that message.
    gaia.apply_command(
        &r.id,
        &Action::Approve {
            by: Decider {
                name: "alice".into(),
                via: "cli".into(),
            },
            reason: None,
        },
    )
    .await
    .unwrap()
    .into_result()
    .unwrap();
    wait_for("the edit", || !fake.edited_messages().is_empty()).await;
    let edit = &fake.edited_messages()[0];
    assert_eq!(edit.message_id, sent[0].message_id);
    assert!(
        edit.plain_text.contains("approved by alice"),
        "{}",
        edit.plain_text
    );

    // A blocked bot: dead at once; requeued, it is delivered.
    fake.fail_next(
        "sendMessage",
        Fault::Forbidden("bot was blocked by the user".into()),
    );
    let t = gaia.request_command(&request(true)).await.unwrap();
    let dead = loop {
        let dead = gaia
            .list_messages(Some(OutboxStatus::Dead), 10)
            .await
            .unwrap();
        if !dead.is_empty() {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead[0].payload["command_id"], t.id.as_str());
    assert!(dead[0].last_error.as_deref().unwrap().contains("blocked"));
    gaia.requeue_message(dead[0].id, "alice").await.unwrap();
    let sent = fake.wait_for_sent(2, Duration::from_secs(10)).await;
    assert!(
        sent[1].plain_text.starts_with("[TEST]"),
        "{}",
        sent[1].plain_text
    );
    assert_eq!(
        gaia.get_command(&t.id).await.unwrap().status,
        Status::Pending
    );
    assert!(
        gaia.list_messages(Some(OutboxStatus::Dead), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let kinds: Vec<String> = gaia
        .list_events_after(
            0,
            &gaia_core::event::EventFilter {
                type_prefix: Some("notify".into()),
                subject: None,
            },
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for k in [
        "notify.retry",
        "notify.sent",
        "notify.dead",
        "notify.requeued",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
