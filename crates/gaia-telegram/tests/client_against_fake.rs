//! The real client against the fake Bot API server: messages, edits, callbacks, long polling
//! with offsets, every injected fault mapped to its error, and no token in any error.

use std::time::{Duration, Instant};

use gaia_telegram::{
    BotClient, InlineKeyboardButton, InlineKeyboardMarkup, TelegramError, utf16_len,
};
use gaia_testkit::fake_telegram::{BOT_USER_ID, FAKE_TOKEN, FakeTelegram, Fault};
use serde_json::json;

const CHAT: i64 = 5001;
const GROUP: i64 = -100_777;

async fn setup() -> (FakeTelegram, BotClient) {
    let fake = FakeTelegram::start().await;
    let client = BotClient::new(fake.base_url(), fake.token())
        .expect("client")
        .with_request_timeout(Duration::from_secs(5))
        .with_poll_margin(Duration::from_secs(2));
    (fake, client)
}

/// No error text or debug form carries the token (or its secret half).
fn assert_clean(e: &TelegramError) {
    let text = format!("{e} | {e:?}");
    let secret = FAKE_TOKEN.split(':').nth(1).expect("token has two halves");
    assert!(!text.contains(secret), "token leaked: {text}");
}

fn approve_deny(id: u32) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::row(vec![
        InlineKeyboardButton::callback("Approve", format!("approve:{id}")),
        InlineKeyboardButton::callback("Deny", format!("deny:{id}")),
    ])
}

#[tokio::test]
async fn send_edit_and_answer_a_callback() {
    let (fake, client) = setup().await;
    let me = client.get_me().await.expect("getMe");
    assert_eq!((me.id, me.is_bot), (BOT_USER_ID, true));
    client.delete_webhook().await.expect("deleteWebhook");

    let kb = approve_deny(7);
    let html = format!(
        "<b>Approve?</b> <code>{}</code>",
        gaia_telegram::html_escape("rm -rf a && b < c")
    );
    let m = client
        .send_message(CHAT, &html, Some(&kb), None)
        .await
        .expect("sendMessage");
    assert_eq!(m.chat.id, CHAT);
    assert_eq!(m.text.as_deref(), Some("Approve? rm -rf a && b < c"));
    let sent = fake.sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message_id, m.message_id);
    assert_eq!(sent[0].text, html);
    assert_eq!(sent[0].parse_mode.as_deref(), Some("HTML"));
    assert_eq!(
        sent[0].reply_markup,
        Some(serde_json::to_value(&kb).expect("json"))
    );

    // A reply, then ids keep increasing.
    let r = client
        .send_message(CHAT, "second", None, Some(m.message_id))
        .await
        .expect("reply");
    assert!(r.message_id > m.message_id);
    assert_eq!(r.reply_to_message.map(|q| q.message_id), Some(m.message_id));
    assert_eq!(fake.sent_messages()[1].reply_to, Some(m.message_id));

    // The button is pressed: the update carries the message and the data.
    let cb_id = fake.push_callback(CHAT, m.message_id, 42, "approve:7");
    let updates = client
        .get_updates(None, 0, &["callback_query"])
        .await
        .expect("updates");
    let cb = updates[0].callback_query.clone().expect("callback");
    assert_eq!(cb.id, cb_id);
    assert_eq!(cb.from.id, 42);
    assert_eq!(cb.data.as_deref(), Some("approve:7"));
    assert_eq!(cb.message.map(|m| m.message_id), Some(m.message_id));

    client
        .answer_callback_query(&cb_id, Some("Approved"))
        .await
        .expect("answer");
    let answered = fake.answered_callbacks();
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].callback_query_id, cb_id);
    assert_eq!(answered[0].text.as_deref(), Some("Approved"));

    client
        .edit_message_text(CHAT, m.message_id, "<b>Approved</b> by ann", None)
        .await
        .expect("edit");
    let edited = fake.edited_messages();
    assert_eq!(edited.len(), 1);
    assert_eq!(
        (edited[0].chat_id, edited[0].message_id),
        (CHAT, m.message_id)
    );
    assert_eq!(edited[0].plain_text, "Approved by ann");
    assert_eq!(edited[0].reply_markup, None);

    // The same edit again is "not modified", which callers can recognise.
    let e = client
        .edit_message_text(CHAT, m.message_id, "<b>Approved</b> by ann", None)
        .await
        .expect_err("not modified");
    assert!(e.is_message_not_modified(), "{e:?}");
    // Editing a message that does not exist is a refusal.
    let e = client
        .edit_message_text(CHAT, 999_999, "x", None)
        .await
        .expect_err("missing");
    assert!(
        matches!(e, TelegramError::Fatal { status: 400, .. }),
        "{e:?}"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn long_texts_are_split_escaped_and_accepted() {
    let (fake, client) = setup().await;
    let line = "output <tag> & \"quotes\" 🚀 ok\n"; // 30 UTF-16 units, 6 characters to escape
    let text = line.repeat(340);
    assert!(utf16_len(&text) > 10_000);
    let kb = approve_deny(1);
    let parts = client
        .send_long_message(GROUP, &text, Some(&kb), Some(3))
        .await
        .expect("long message");
    assert_eq!(parts.len(), 3);
    let sent = fake.sent_messages();
    assert_eq!(sent.len(), 3);
    let seen: String = sent.iter().map(|s| s.plain_text.as_str()).collect();
    assert_eq!(seen, text, "the parts read back as the original text");
    for s in &sent {
        assert!(utf16_len(&s.plain_text) <= 4096);
        assert!(s.plain_text.ends_with('\n'), "split on a line boundary");
    }
    assert_eq!(sent[0].reply_to, Some(3));
    assert!(sent[0].reply_markup.is_none() && sent[1].reply_markup.is_none());
    assert!(sent[2].reply_markup.is_some());
    assert!(sent[1].reply_to.is_none());

    let e = client
        .send_long_message(CHAT, " \n ", None, None)
        .await
        .expect_err("empty");
    assert!(matches!(e, TelegramError::InvalidRequest { .. }));
    assert_eq!(
        fake.sent_messages().len(),
        3,
        "nothing sent for an empty text"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn unescaped_html_is_refused_as_telegram_does() {
    let (fake, client) = setup().await;
    let e = client
        .send_message(CHAT, "a < b & c", None, None)
        .await
        .expect_err("bad html");
    assert!(
        matches!(&e, TelegramError::Fatal { status: 400, description } if description.contains("can't parse entities")),
        "{e:?}"
    );
    assert!(fake.sent_messages().is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn get_updates_honours_offsets() {
    let (fake, client) = setup().await;
    let a = fake.push_text(CHAT, 42, "/pending");
    let b = fake.push_text(GROUP, 43, "/status");
    let c = fake.push_reply(CHAT, 42, "yes", 77);
    assert_eq!((a, b, c), (1, 2, 3));

    let all = client.get_updates(None, 0, &[]).await.expect("all");
    assert_eq!(
        all.iter().map(|u| u.update_id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let m = all[0].message.clone().expect("message");
    assert_eq!(m.text.as_deref(), Some("/pending"));
    assert_eq!(m.from.map(|u| u.id), Some(42));
    assert_eq!(all[1].message.as_ref().map(|m| m.chat.id), Some(GROUP));
    let reply = all[2].message.clone().expect("reply");
    assert_eq!(reply.reply_to_message.map(|q| q.message_id), Some(77));
    // Message ids were assigned and differ.
    assert_ne!(
        all[0].message.as_ref().map(|m| m.message_id),
        all[1].message.as_ref().map(|m| m.message_id)
    );

    // Without an offset nothing is confirmed: the same updates come again.
    assert_eq!(
        client.get_updates(None, 0, &[]).await.expect("again").len(),
        3
    );
    // Offset 2 confirms update 1.
    let rest = client.get_updates(Some(2), 0, &[]).await.expect("rest");
    assert_eq!(rest.iter().map(|u| u.update_id).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(fake.pending_updates().len(), 2);
    // Past the last: nothing left.
    assert!(
        client
            .get_updates(Some(4), 0, &[])
            .await
            .expect("none")
            .is_empty()
    );
    assert!(fake.pending_updates().is_empty());
    // A new update gets the next id.
    assert_eq!(fake.push_text(CHAT, 42, "/status"), 4);

    let polls = fake.calls_to("getUpdates");
    assert_eq!(polls[2].body["offset"], json!(2));
    assert_eq!(polls[3].body["timeout"], json!(0));
    assert!(polls[0].body.get("offset").is_none());
    fake.shutdown().await;
}

#[tokio::test]
async fn long_poll_wakes_up_on_a_new_update() {
    let (fake, client) = setup().await;
    let started = Instant::now();
    let empty = client
        .get_updates(None, 1, &["message"])
        .await
        .expect("empty poll");
    assert!(empty.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited the poll timeout"
    );

    let poller = {
        let client = client.clone();
        tokio::spawn(async move { client.get_updates(Some(1), 20, &["message"]).await })
    };
    fake.wait_for_calls("getUpdates", 2, Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    fake.push_text(CHAT, 42, "/approve 12");
    let got = poller.await.expect("join").expect("poll");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woke up on the push"
    );
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].message.as_ref().and_then(|m| m.text.as_deref()),
        Some("/approve 12")
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn a_second_poller_ends_the_first_with_a_conflict() {
    let (fake, client) = setup().await;
    let first = {
        let client = client.clone();
        tokio::spawn(async move { client.get_updates(None, 20, &[]).await })
    };
    fake.wait_for_calls("getUpdates", 1, Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = {
        let client = client.clone();
        tokio::spawn(async move { client.get_updates(None, 20, &[]).await })
    };
    let e = first.await.expect("join").expect_err("first is terminated");
    assert!(matches!(e, TelegramError::Conflict { .. }), "{e:?}");
    assert!(!e.is_retryable());
    fake.push_text(CHAT, 1, "hi");
    assert_eq!(second.await.expect("join").expect("second").len(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn every_fault_maps_to_its_error() {
    let (fake, client) = setup().await;
    let client = client.with_request_timeout(Duration::from_millis(300));

    fake.fail_next("sendMessage", Fault::RetryAfter(3));
    fake.fail_next("sendMessage", Fault::ServerError(500));
    fake.fail_next("sendMessage", Fault::ServerError(502));
    fake.fail_next("sendMessage", Fault::Timeout(Duration::from_secs(2)));
    fake.fail_next("sendMessage", Fault::BadRequest("chat not found".into()));
    fake.fail_next(
        "sendMessage",
        Fault::Forbidden("bot was blocked by the user".into()),
    );

    let mut errors = Vec::new();
    for _ in 0..6 {
        errors.push(
            client
                .send_message(CHAT, "hello", None, None)
                .await
                .expect_err("fault"),
        );
    }
    // Faults are used up: the next send succeeds.
    client
        .send_message(CHAT, "hello", None, None)
        .await
        .expect("after the faults");

    assert_eq!(
        errors[0],
        TelegramError::RetryAfter {
            retry_after: Duration::from_secs(3)
        }
    );
    assert!(matches!(
        errors[1],
        TelegramError::Retryable {
            status: Some(500),
            ..
        }
    ));
    assert!(matches!(
        errors[2],
        TelegramError::Retryable {
            status: Some(502),
            ..
        }
    ));
    assert!(
        matches!(&errors[3], TelegramError::Retryable { status: None, description } if description.contains("timed out")),
        "{:?}",
        errors[3]
    );
    assert!(
        matches!(&errors[4], TelegramError::Fatal { status: 400, description } if description == "Bad Request: chat not found"),
        "{:?}",
        errors[4]
    );
    assert!(
        matches!(&errors[5], TelegramError::Fatal { status: 403, description } if description.contains("blocked")),
        "{:?}",
        errors[5]
    );
    let retryable: Vec<bool> = errors.iter().map(TelegramError::is_retryable).collect();
    assert_eq!(retryable, [true, true, true, true, false, false]);
    errors.iter().for_each(assert_clean);

    // getUpdates: a conflict, and a poll whose answer never comes within timeout + margin.
    let poller = client.clone().with_poll_margin(Duration::from_millis(300));
    fake.fail_next("getUpdates", Fault::Conflict);
    fake.fail_next("getUpdates", Fault::Timeout(Duration::from_secs(3)));
    let e = poller
        .get_updates(None, 0, &[])
        .await
        .expect_err("conflict");
    assert!(
        matches!(&e, TelegramError::Conflict { description } if description.contains("other getUpdates request")),
        "{e:?}"
    );
    assert_clean(&e);
    let started = Instant::now();
    let e = poller.get_updates(None, 0, &[]).await.expect_err("timeout");
    assert!(
        matches!(e, TelegramError::Retryable { status: None, .. }),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_clean(&e);
    assert!(
        poller
            .get_updates(None, 0, &[])
            .await
            .expect("ok again")
            .is_empty()
    );

    // Faults on the other methods.
    fake.fail_next("editMessageText", Fault::RetryAfter(1));
    let e = client
        .edit_message_text(CHAT, 1, "x", None)
        .await
        .expect_err("429");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    fake.fail_next("answerCallbackQuery", Fault::ServerError(503));
    let e = client
        .answer_callback_query("q", None)
        .await
        .expect_err("503");
    assert!(matches!(
        e,
        TelegramError::Retryable {
            status: Some(503),
            ..
        }
    ));
    fake.shutdown().await;
}

#[tokio::test]
async fn method_names_match_case_insensitively() {
    let (fake, client) = setup().await;
    // A fault registered under any spelling applies to the client's camelCase call.
    fake.fail_next("SENDMESSAGE", Fault::BadRequest("chat not found".into()));
    let e = client
        .send_message(CHAT, "x", None, None)
        .await
        .expect_err("fault");
    assert!(matches!(e, TelegramError::Fatal { status: 400, .. }));

    // PascalCase and lower-case requests are served like camelCase ones.
    let http = reqwest::Client::new();
    for method in ["SendMessage", "sendmessage"] {
        let url = format!("{}/bot{}/{method}", fake.base_url(), fake.token());
        let answer: serde_json::Value = http
            .post(url)
            .json(&json!({"chat_id": CHAT, "text": method}))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(answer["ok"], json!(true), "{answer}");
    }
    let texts: Vec<String> = fake.sent_messages().into_iter().map(|s| s.text).collect();
    assert_eq!(texts, ["SendMessage", "sendmessage"]);
    assert_eq!(fake.calls_to("sendMessage").len(), 3);
    assert_eq!(fake.calls_to("SENDMESSAGE")[1].method, "SendMessage");
    // An unknown method is a 404 refusal.
    let url = format!("{}/bot{}/noSuchMethod", fake.base_url(), fake.token());
    let status = http.post(url).send().await.expect("send").status();
    assert_eq!(status.as_u16(), 404);
    fake.shutdown().await;
}

#[tokio::test]
async fn the_token_never_appears_in_errors() {
    let fake = FakeTelegram::start().await;
    // A wrong token: Telegram answers 401.
    let wrong_token = "999:wrong-secret-token";
    let client = BotClient::new(fake.base_url(), wrong_token).expect("client");
    let e = client.get_me().await.expect_err("unauthorized");
    assert!(
        matches!(e, TelegramError::Fatal { status: 401, .. }),
        "{e:?}"
    );
    let text = format!("{e} {e:?} {client:?}");
    assert!(!text.contains("wrong-secret-token"), "{text}");
    assert_eq!(
        fake.calls()[0].token,
        wrong_token,
        "the fake records the token used"
    );

    // Network errors: the server is gone.
    let client = BotClient::new(fake.base_url(), fake.token())
        .expect("client")
        .with_request_timeout(Duration::from_secs(2));
    fake.shutdown().await;
    for e in [
        client.get_me().await.expect_err("gone"),
        client
            .send_message(CHAT, "x", None, None)
            .await
            .expect_err("gone"),
        client.get_updates(Some(1), 1, &[]).await.expect_err("gone"),
    ] {
        assert!(
            matches!(e, TelegramError::Retryable { status: None, .. }),
            "{e:?}"
        );
        assert_clean(&e);
    }
}

#[tokio::test]
async fn oversized_callback_data_is_refused() {
    let (fake, client) = setup().await;
    let kb = InlineKeyboardMarkup::row(vec![InlineKeyboardButton::callback("x", "d".repeat(65))]);
    let e = client
        .send_message(CHAT, "x", Some(&kb), None)
        .await
        .expect_err("too long");
    assert!(
        matches!(&e, TelegramError::Fatal { status: 400, description } if description.contains("BUTTON_DATA_INVALID")),
        "{e:?}"
    );
    fake.shutdown().await;
}
