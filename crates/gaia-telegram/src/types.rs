//! Bot API objects, limited to the fields Gaia reads; unknown fields are ignored.

use serde::{Deserialize, Serialize};

/// One incoming update from `getUpdates`. At most one of the optional fields is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub update_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_query: Option<CallbackQuery>,
}

/// A message. A callback query's message may be "inaccessible" (`date` 0, no text): it still
/// carries the chat and the message id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub message_id: i64,
    /// Unix time in seconds.
    #[serde(default)]
    pub date: i64,
    pub chat: Chat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<User>,
    /// Set when the message was sent on behalf of a chat (channels, anonymous admins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_chat: Option<Chat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_message: Option<Box<Message>>,
}

/// A chat. Group and channel ids are negative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chat {
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// A user or bot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub first_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// A press on an inline keyboard button. Must be answered with `answerCallbackQuery`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackQuery {
    pub id: String,
    pub from: User,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// An inline keyboard shown under a message: rows of buttons.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineKeyboardMarkup {
    pub inline_keyboard: Vec<Vec<InlineKeyboardButton>>,
}

impl InlineKeyboardMarkup {
    /// A keyboard with a single row.
    pub fn row(buttons: Vec<InlineKeyboardButton>) -> Self {
        Self {
            inline_keyboard: vec![buttons],
        }
    }
}

/// One inline keyboard button. Telegram accepts 1 to 64 bytes of `callback_data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineKeyboardButton {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<String>,
}

impl InlineKeyboardButton {
    /// A button that sends `data` back in a callback query when pressed.
    pub fn callback(text: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            callback_data: Some(data.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_with_callback_and_inaccessible_message_parses() {
        let json = r#"{"update_id":7,"callback_query":{"id":"cb1","from":{"id":42,"is_bot":false,
            "first_name":"Ann","username":"ann"},"message":{"message_id":5,"date":0,
            "chat":{"id":-100123,"type":"supergroup","title":"ops"}},"data":"approve:9",
            "chat_instance":"x"}}"#;
        let u: Update = serde_json::from_str(json).expect("parse");
        let cb = u.callback_query.expect("callback");
        assert_eq!(cb.from.id, 42);
        assert_eq!(cb.data.as_deref(), Some("approve:9"));
        let m = cb.message.expect("message");
        assert_eq!(
            (m.message_id, m.chat.id, m.chat.kind.as_str()),
            (5, -100123, "supergroup")
        );
    }

    #[test]
    fn reply_message_parses_with_sender_chat() {
        let json = r#"{"message_id":10,"date":1700000000,"chat":{"id":5,"type":"private"},
            "sender_chat":{"id":-1001,"type":"channel"},"text":"yes",
            "reply_to_message":{"message_id":9,"date":1,"chat":{"id":5,"type":"private"},"text":"q"}}"#;
        let m: Message = serde_json::from_str(json).expect("parse");
        assert_eq!(m.sender_chat.map(|c| c.id), Some(-1001));
        assert_eq!(m.reply_to_message.map(|r| r.message_id), Some(9));
        assert!(m.from.is_none());
    }

    #[test]
    fn keyboard_serializes_as_telegram_expects() {
        let kb = InlineKeyboardMarkup::row(vec![
            InlineKeyboardButton::callback("Approve", "a:1"),
            InlineKeyboardButton::callback("Deny", "d:1"),
        ]);
        assert_eq!(
            serde_json::to_value(&kb).expect("json"),
            serde_json::json!({"inline_keyboard":[[{"text":"Approve","callback_data":"a:1"},
                {"text":"Deny","callback_data":"d:1"}]]})
        );
    }
}
