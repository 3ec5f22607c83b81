//! Outbox lanes against the fake Bot API, under Telegram's limits: 200 messages to one chat
//! and one to each of 50 other chats (half of them groups), sent by two nodes started right
//! after the enqueue. The 50 do not wait behind the busy chat: each arrives before the busy
//! chat's third message (which Telegram's 1 message/s keeps at least 2 s after its first), a
//! bound that holds however slow the machine, where a wall-clock one would not; the time the
//! last of them took from the enqueue is printed (1.4 s to 2.2 s on a busy 2-core machine,
//! where the 30/s limit alone puts the 31st send 1 s after the first). The busy chat's messages arrive in
//! order, once each, a second apart, and no arrival breaks a limit (checked on the fake's
//! arrival times). Only the busy chat's first few are awaited: at one a second, all 200 would
//! take minutes and show nothing more.
//!
//! A test binary of its own, so that no other test competes with it for the machine.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::telegram::{
    Node, alert, assert_within_telegram_rules, chat_of, senders_lease, text_of,
};
use gaia_core::Gaia;
use gaia_core::outbox::NewMessage;
use gaia_core::store::StoreOptions;
use gaia_testkit::fake_telegram::{Call, FakeTelegram};
use gaia_testkit::{TestDb, backend_tests};

backend_tests!(a_busy_chat_holds_up_no_other_chat);

async fn a_busy_chat_holds_up_no_other_chat(db: &TestDb) {
    const BUSY: i64 = 8_000;
    /// How many of the busy chat's messages are awaited (one a second) and checked.
    const FIRST: usize = 8;
    let fake = FakeTelegram::start().await;
    let queue = Gaia::new(db.open(&StoreOptions::default()).await);

    // The busy chat's 200 first, then 50 other chats, half of them groups, queued right before
    // two nodes start (a worker learns of messages queued by another process on its next
    // round, up to a second later: not what this test is about).
    let mut batch: Vec<NewMessage> = (0..200)
        .map(|i| alert(BUSY, &format!("busy {i}")))
        .collect();
    let others: Vec<i64> = (0..50)
        .map(|i| {
            if i % 2 == 0 {
                8_100 + i
            } else {
                -1_008_100 - i
            }
        })
        .collect();
    batch.extend(others.iter().map(|c| alert(*c, &format!("other {c}"))));
    let enqueued = Instant::now();
    queue.enqueue_messages(&batch).await.unwrap();
    let a = Node::start(db, &fake, senders_lease()).await;
    let b = Node::start(db, &fake, senders_lease()).await;

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let calls = fake.calls_to("sendMessage");
        let busy = calls.iter().filter(|c| chat_of(c) == BUSY).count();
        if busy >= FIRST && calls.len() - busy >= others.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{busy} to the busy chat and {} to others",
            calls.len() - busy
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
    b.stop().await;
    let calls = fake.calls_to("sendMessage");
    assert_within_telegram_rules(&calls);

    // The busy chat: in order, once each, a second apart (checked above).
    let busy: Vec<&Call> = calls.iter().filter(|c| chat_of(c) == BUSY).collect();
    let texts: Vec<String> = busy.iter().map(|c| text_of(c)).collect();
    let want: Vec<String> = (0..texts.len()).map(|i| format!("busy {i}")).collect();
    assert_eq!(texts, want, "the busy chat's messages in order, once each");
    assert!(busy.len() >= FIRST);

    // The others did not wait behind it: each arrived once, before the busy chat's third
    // message.
    let third = busy[2].at;
    let latest = others
        .iter()
        .filter_map(|chat| calls.iter().find(|c| chat_of(c) == *chat))
        .map(|c| c.at.duration_since(enqueued))
        .max()
        .unwrap();
    eprintln!(
        "the last of the {} other chats arrived {latest:?} after the enqueue",
        others.len()
    );
    for chat in &others {
        let to: Vec<&Call> = calls.iter().filter(|c| chat_of(c) == *chat).collect();
        assert_eq!(to.len(), 1, "chat {chat}: {} calls", to.len());
        let after = to[0].at.duration_since(enqueued);
        assert!(
            to[0].at < third,
            "chat {chat} arrived {after:?} after the enqueue, behind the busy chat's third"
        );
    }
}
