//! A small typed client for the Telegram Bot API.
//!
//! [`BotClient`] speaks JSON over HTTPS to a configurable base URL (the public API, a
//! self-hosted Bot API server, or a fake in tests). Failures are [`TelegramError`]s classified
//! so that a caller can decide what to do: wait (`RetryAfter`), retry with backoff
//! (`Retryable`), stop polling (`Conflict`) or give up (`Fatal`). [`RateLimits`] is a pure
//! bookkeeping structure for Telegram's sending limits; [`split_text`] and [`html_escape`]
//! prepare texts for the 4096-unit message limit and the HTML parse mode.
//!
//! The bot token is a secret: it appears only in the request URL and never in an error
//! message or `Debug` output.

mod client;
mod error;
mod rate;
mod text;
mod types;

pub use client::{
    BotClient, DEFAULT_BASE_URL, DEFAULT_POLL_MARGIN, DEFAULT_REQUEST_TIMEOUT, WebhookInfo,
    lenient_update,
};
pub use error::TelegramError;
pub use rate::{Limits, RateLimits};
pub use text::{MAX_MESSAGE_UNITS, html_escape, split_text, utf16_len};
pub use types::{
    CallbackQuery, Chat, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update, User,
};
