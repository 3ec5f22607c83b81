//! The outbox under Telegram's limits and faults, against the fake Bot API:
//!
//! - a 429 with `retry_after` holds its chat: nothing goes to that chat until the time has
//!   passed (other chats go on), then the message is delivered, without the 429 using up an
//!   attempt;
//! - the pacing keeps within Telegram's limits, checked on the fake's arrival times: at least
//!   1 s between two messages to one chat, at most 20 a minute to a group, at most 30 a second
//!   overall;
//! - the automatic requeue respects each bound (requeued too often, too old, at most so many a
//!   run) and a dry run changes neither the queue nor the event log;
//! - an approval handled again after a crash before its offset was saved (Telegram delivers the
//!   update again) is refused as already decided: one decision in the log;
//! - a 429's hold is kept in the store: a new process (a new store handle and `Senders`) still
//!   leaves the chat alone until `retry_after` has passed;
//! - two senders sharing one store (two nodes) under random 429s and slow answers, with a lease
//!   shorter than their batches take: no `retry_after` broken, no per-chat or group limit
//!   broken, and every message delivered exactly once (nothing crashed, so no duplicate).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::options;
use common::telegram::{
    Node, SLACK, alert, assert_within_telegram_rules, chat_of, senders_lease, text_of,
};
use gaia_core::Gaia;
use gaia_core::commands::{CommandSpec, NewCommand, Status};
use gaia_core::event::EventFilter;
use gaia_core::outbox::{
    Attempt, AutoRequeuePolicy, NewMessage, RetryPolicy, Status as OutboxStatus,
};
use gaia_core::store::StoreOptions;
use gaia_core::time::ManualClock;
use gaia_server::AppState;
use gaia_server::senders::Senders;
use gaia_server::telegram::Listener;
use gaia_telegram::BotClient;
use gaia_testkit::fake_telegram::{Call, FakeTelegram, Fault};
use gaia_testkit::{TestDb, backend_tests};
use serde_json::Value;

backend_tests!(
    retry_after_holds_the_chat,
    sends_keep_within_telegram_limits,
    auto_requeue_respects_its_bounds,
    a_redelivered_approval_is_applied_once,
    a_retry_after_hold_survives_a_restart,
    two_senders_share_the_limits_and_send_once,
);

async fn start_worker(db: &TestDb, fake: &FakeTelegram) -> AppState {
    let store = db.open(&StoreOptions::default()).await;
    let bot = BotClient::new(fake.base_url(), fake.token()).unwrap();
    let mut senders = Senders::new(Some(bot), None);
    senders.retry.base_delay = Duration::from_millis(50);
    let state = AppState::new(Gaia::new(store), options(db), None)
        .await
        .unwrap()
        .with_senders(senders);
    let workers = gaia_server::workers::spawn(&state);
    let cancel = state.shutdown.clone();
    tokio::spawn(async move {
        cancel.cancelled().await;
        workers.join().await;
    });
    state
}

async fn wait_all_sent(
    gaia: &Gaia,
    count: usize,
    within: Duration,
) -> Vec<gaia_core::outbox::Message> {
    let deadline = Instant::now() + within;
    loop {
        let all = gaia.list_messages(None, 1000).await.unwrap();
        let sent = all
            .iter()
            .filter(|m| m.status == OutboxStatus::Sent)
            .count();
        if sent >= count {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "only {sent} of {count} sent: {:?}",
            all.iter()
                .map(|m| (m.id, m.status, m.last_error.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn retry_after_holds_the_chat(db: &TestDb) {
    const CHAT: i64 = -100_901;
    const OTHER: i64 = 5_001;
    const N: u64 = 2;
    let fake = FakeTelegram::start().await;
    let state = start_worker(db, &fake).await;
    let gaia = state.gaia.clone();

    fake.fail_next("sendMessage", Fault::RetryAfter(N));
    gaia.enqueue_messages(&[alert(CHAT, "held one"), alert(CHAT, "held two")])
        .await
        .unwrap();
    // The first 429 arrives; then a message to another chat is not held.
    let first = fake
        .wait_for_calls("sendMessage", 1, Duration::from_secs(10))
        .await;
    let t429 = first[0].at;
    assert_eq!(text_of(&first[0]), "held one");
    gaia.enqueue_messages(&[alert(OTHER, "elsewhere")])
        .await
        .unwrap();
    let all = wait_all_sent(&gaia, 3, Duration::from_secs(20)).await;

    let calls = fake.calls_to("sendMessage");
    let to_chat: Vec<&Call> = calls.iter().filter(|c| chat_of(c) == CHAT).collect();
    assert_eq!(to_chat.len(), 3, "the 429 and two deliveries: {calls:?}");
    for c in &to_chat[1..] {
        let after = c.at.duration_since(t429);
        assert!(
            after + SLACK >= Duration::from_secs(N),
            "'{}' reached the chat {after:?} after the 429",
            text_of(c)
        );
    }
    let other = calls.iter().find(|c| chat_of(c) == OTHER).unwrap();
    assert!(
        other.at.duration_since(t429) < Duration::from_secs(N),
        "another chat is not held"
    );
    let sent = fake.sent_messages();
    assert_eq!(
        sent.iter().filter(|m| m.text == "held one").count(),
        1,
        "delivered once"
    );
    // The 429 did not use up an attempt: one attempt, the one that succeeded.
    let held = all
        .iter()
        .find(|m| m.payload["text"] == "held one")
        .unwrap();
    assert_eq!((held.status, held.attempts), (OutboxStatus::Sent, 1));
    let retries: Vec<Value> = gaia
        .list_events_after(
            0,
            &EventFilter {
                type_prefix: Some("notify.retry".into()),
                subject: None,
            },
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.data["id"] == held.id)
        .map(|e| e.data)
        .collect();
    assert!(!retries.is_empty());
    for r in &retries {
        assert_eq!(r["outcome"], "retry_after", "{r}");
        assert_eq!(r["attempts"], 0, "{r}");
    }
    state.shutdown.cancel();
}

async fn sends_keep_within_telegram_limits(db: &TestDb) {
    const GROUP: i64 = -100_902;
    let fake = FakeTelegram::start().await;
    let state = start_worker(db, &fake).await;
    let gaia = state.gaia.clone();

    // 40 chats at once (private and group), and a burst of 6 to one group.
    let mut batch: Vec<NewMessage> = (0..40)
        .map(|i| {
            let chat = if i % 2 == 0 {
                7_000 + i
            } else {
                -1_007_000 - i
            };
            alert(chat, &format!("spread {i}"))
        })
        .collect();
    batch.extend((0..6).map(|i| alert(GROUP, &format!("burst {i}"))));
    gaia.enqueue_messages(&batch).await.unwrap();
    wait_all_sent(&gaia, 46, Duration::from_secs(30)).await;

    let calls = fake.calls_to("sendMessage");
    assert_eq!(calls.len(), 46);
    let mut chats: std::collections::BTreeMap<i64, Vec<Instant>> = Default::default();
    for c in &calls {
        chats.entry(chat_of(c)).or_default().push(c.at);
    }
    let second = Duration::from_secs(1);
    for (chat, times) in &chats {
        for w in times.windows(2) {
            let gap = w[1].duration_since(w[0]);
            assert!(
                gap + SLACK >= second,
                "chat {chat}: two messages {gap:?} apart"
            );
        }
        if *chat < 0 {
            for (i, t) in times.iter().enumerate() {
                let in_minute = times[i..]
                    .iter()
                    .take_while(|u| u.duration_since(*t) < Duration::from_secs(60))
                    .count();
                assert!(in_minute <= 20, "group {chat}: {in_minute} in a minute");
            }
        }
    }
    assert_eq!(chats[&GROUP].len(), 6);
    let times: Vec<Instant> = calls.iter().map(|c| c.at).collect();
    for w in times.windows(31) {
        let span = w[30].duration_since(w[0]);
        assert!(span + SLACK >= second, "31 messages within {span:?}");
    }
    state.shutdown.cancel();
}

async fn events_seq(gaia: &Gaia) -> (usize, i64) {
    let all = gaia
        .list_events_after(0, &EventFilter::default(), 10_000)
        .await
        .unwrap();
    (all.len(), all.last().map_or(0, |e| e.seq))
}

async fn auto_requeue_respects_its_bounds(db: &TestDb) {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap());
    let opts = StoreOptions {
        clock: Some(Arc::new(clock.clone())),
        ..StoreOptions::default()
    };
    let gaia = Gaia::new(db.open(&opts).await);
    let policy = AutoRequeuePolicy::default();
    let retry = RetryPolicy::default();
    let fail = |id: i64| {
        let gaia = gaia.clone();
        async move {
            gaia.store()
                .outbox_record(id, &Attempt::Fatal("403 blocked".into()), &retry, 0.5)
                .await
                .unwrap()
                .unwrap();
        }
    };
    // Too old: created 73 hours before the runs.
    let old = gaia.enqueue_messages(&[alert(1, "old")]).await.unwrap()[0];
    fail(old).await;
    clock.advance(Duration::from_secs(73 * 3600));
    // Requeued three times already, and twice (still eligible).
    let tired = gaia.enqueue_messages(&[alert(2, "tired")]).await.unwrap()[0];
    let twice = gaia.enqueue_messages(&[alert(3, "twice")]).await.unwrap()[0];
    for (id, requeues) in [(tired, 3), (twice, 2)] {
        fail(id).await;
        for _ in 0..requeues {
            gaia.requeue_message(id, "alice").await.unwrap();
            fail(id).await;
        }
    }
    // 14 more dead: with `twice`, 15 eligible.
    let batch: Vec<NewMessage> = (0..14).map(|i| alert(10 + i, &format!("m{i}"))).collect();
    let fresh = gaia.enqueue_messages(&batch).await.unwrap();
    for id in &fresh {
        fail(*id).await;
    }
    clock.advance(Duration::from_secs(60));

    // A dry run says which, and changes nothing.
    let queue_before = gaia.list_messages(None, 1000).await.unwrap();
    let events_before = events_seq(&gaia).await;
    let preview = gaia
        .auto_requeue_messages(&policy, true, "auto")
        .await
        .unwrap();
    assert_eq!(preview.len(), 10);
    assert!(preview.iter().all(|m| m.id != old && m.id != tired));
    assert_eq!(gaia.list_messages(None, 1000).await.unwrap(), queue_before);
    assert_eq!(events_seq(&gaia).await, events_before);

    // A run takes the same ten, oldest first.
    let done = gaia
        .auto_requeue_messages(&policy, false, "auto")
        .await
        .unwrap();
    let ids = |v: &[gaia_core::outbox::Message]| v.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(&done), ids(&preview));
    assert!(
        done.iter()
            .all(|m| m.status == OutboxStatus::Pending && m.attempts == 0)
    );
    assert_eq!(done[0].id, twice);
    assert_eq!(done[0].requeues, 3);
    let (count, _) = events_seq(&gaia).await;
    assert_eq!(count, events_before.0 + 10, "one event per requeue");
    // The next run takes the other five; then none is left but the two out of bounds.
    let rest = gaia
        .auto_requeue_messages(&policy, false, "auto")
        .await
        .unwrap();
    assert_eq!(rest.len(), 5);
    assert!(
        gaia.auto_requeue_messages(&policy, false, "auto")
            .await
            .unwrap()
            .is_empty()
    );
    let mut dead = ids(&gaia
        .list_messages(Some(OutboxStatus::Dead), 100)
        .await
        .unwrap());
    dead.sort_unstable();
    assert_eq!(dead, vec![old, tired]);
    let tired_msg = gaia.store().outbox_get(tired).await.unwrap().unwrap();
    assert_eq!(tired_msg.requeues, 3);
}

async fn a_redelivered_approval_is_applied_once(db: &TestDb) {
    const CHAT: i64 = -100_903;
    const ALICE: i64 = 1001;
    let fake = FakeTelegram::start().await;
    let gaia = Gaia::new(db.open(&StoreOptions::default()).await);
    let bot = BotClient::new(fake.base_url(), fake.token()).unwrap();
    let listener = Listener {
        bot: bot.clone(),
        gaia: gaia.clone(),
        approvers: vec![ALICE],
        node: "node-a".into(),
        webhook: None,
    };
    let r = gaia
        .request_command(
            &NewCommand::new(
                CommandSpec::Argv(vec!["make".into(), "release".into()]),
                None,
                None,
                None,
                Some("ship".into()),
                "agent-1",
                false,
                None,
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let cb = fake.push_callback(CHAT, 77, ALICE, &format!("a:{}", r.id));
    let kinds = ["message", "edited_message", "callback_query"];
    let updates = bot.get_updates(None, 0, &kinds).await.unwrap();
    assert_eq!(updates.len(), 1);
    let update_id = updates[0].update_id;
    listener.handle(updates.into_iter().next().unwrap()).await;
    // The process dies here, before saving the offset: after a restart Telegram delivers the
    // same update again.
    let again = bot.get_updates(None, 0, &kinds).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].update_id, update_id);
    listener.handle(again.into_iter().next().unwrap()).await;

    assert_eq!(
        gaia.get_command(&r.id).await.unwrap().status,
        Status::Approved
    );
    let answers: Vec<String> = fake
        .answered_callbacks()
        .into_iter()
        .filter(|a| a.callback_query_id == cb)
        .map(|a| a.text.unwrap_or_default())
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(!answers[0].contains("already"), "{answers:?}");
    assert!(answers[1].contains("already"), "{answers:?}");
    let decisions = gaia
        .list_events_after(
            0,
            &EventFilter {
                type_prefix: Some("command".into()),
                subject: None,
            },
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind.as_str(), "command.approved" | "command.denied"))
        .count();
    assert_eq!(decisions, 1);
}

async fn a_retry_after_hold_survives_a_restart(db: &TestDb) {
    const CHAT: i64 = 5_904;
    const N: u64 = 3;
    let fake = FakeTelegram::start().await;
    fake.fail_next("sendMessage", Fault::RetryAfter(N));
    let first = Node::start(db, &fake, senders_lease()).await;
    let id = first
        .state
        .gaia
        .enqueue_messages(&[alert(CHAT, "before")])
        .await
        .unwrap()[0];
    let calls = fake
        .wait_for_calls("sendMessage", 1, Duration::from_secs(10))
        .await;
    let t429 = calls[0].at;
    // The 429 is recorded, then the process goes away.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = first
            .state
            .gaia
            .store()
            .outbox_get(id)
            .await
            .unwrap()
            .unwrap();
        if m.last_error.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the 429 was never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.stop().await;

    // A new process: a message to the held chat is not sent before retry_after has passed.
    let second = Node::start(db, &fake, senders_lease()).await;
    let gaia = second.state.gaia.clone();
    gaia.enqueue_messages(&[alert(CHAT, "after restart")])
        .await
        .unwrap();
    wait_all_sent(&gaia, 2, Duration::from_secs(20)).await;
    let calls = fake.calls_to("sendMessage");
    assert_eq!(calls.len(), 3, "the 429 and two deliveries: {calls:?}");
    for c in &calls[1..] {
        let after = c.at.duration_since(t429);
        assert!(
            after + SLACK >= Duration::from_secs(N),
            "'{}' reached the chat {after:?} after the 429",
            text_of(c)
        );
    }
    second.stop().await;
}

async fn two_senders_share_the_limits_and_send_once(db: &TestDb) {
    const GROUP: i64 = -100_905;
    let fake = FakeTelegram::start().await;
    // A 429 or a slow answer (well inside the HTTP timeout) on about one call in six.
    fake.fail_randomly(
        "sendMessage",
        0.16,
        vec![
            Fault::RetryAfter(2),
            Fault::Timeout(Duration::from_millis(1500)),
        ],
    );
    // A lease far shorter than a batch takes under pacing and slow answers.
    let lease = Duration::from_secs(2);
    let a = Node::start(db, &fake, lease).await;
    let b = Node::start(db, &fake, lease).await;

    // 22 to one group (the 21st must wait for the first to be a minute old), 5 each to three
    // private chats, and one each to 45 more chats (more than 30 a second if unpaced).
    let mut batch: Vec<NewMessage> = (0..22)
        .map(|i| alert(GROUP, &format!("group {i}")))
        .collect();
    for chat in [6_001, 6_002, 6_003] {
        batch.extend((0..5).map(|i| alert(chat, &format!("chat {chat} #{i}"))));
    }
    batch.extend((0..45).map(|i| alert(7_100 + i, &format!("spread {i}"))));
    let total = batch.len();
    a.state.gaia.enqueue_messages(&batch).await.unwrap();
    let all = wait_all_sent(&a.state.gaia, total, Duration::from_secs(240)).await;
    assert!(all.iter().all(|m| m.status == OutboxStatus::Sent));

    // Each message reached Telegram exactly once.
    let sent = fake.sent_messages();
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for m in &sent {
        *counts.entry(m.text.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "sent more than once: {dups:?}");
    assert_eq!(counts.len(), total);

    let calls = fake.calls_to("sendMessage");
    assert_within_telegram_rules(&calls);
    let group_calls = calls.iter().filter(|c| chat_of(c) == GROUP).count();
    assert!(group_calls >= 22, "{group_calls}");
    a.stop().await;
    b.stop().await;
}
