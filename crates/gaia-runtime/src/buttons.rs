//! The Approve / Deny buttons of Telegram approval messages: how the sender draws them and how
//! the listener reads a press back. The callback data is `a:ID` or `d:ID`, written and parsed
//! only here.

use gaia_core::commands::parse_id;
use gaia_telegram::{InlineKeyboardButton, InlineKeyboardMarkup};

/// What a pressed button asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    Approve,
    Deny,
}

/// The keyboard of the approval message for request `id`.
pub fn keyboard(id: &str) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup {
        inline_keyboard: vec![vec![
            InlineKeyboardButton::callback("Approve", format!("a:{id}")),
            InlineKeyboardButton::callback("Deny", format!("d:{id}")),
        ]],
    }
}

/// The press and request id a callback's data stands for; `None` for anything Gaia did not
/// draw (another bot's buttons, forged data).
pub fn parse(data: &str) -> Option<(Press, String)> {
    let (verb, id) = data.split_once(':')?;
    let press = match verb {
        "a" => Press::Approve,
        "d" => Press::Deny,
        _ => return None,
    };
    Some((press, parse_id(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_buttons_parse_back() {
        let k = keyboard("k7m2qx");
        let row = &k.inline_keyboard[0];
        assert_eq!(row.len(), 2);
        let data: Vec<_> = row
            .iter()
            .map(|b| parse(b.callback_data.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(
            data,
            [
                Some((Press::Approve, "k7m2qx".to_owned())),
                Some((Press::Deny, "k7m2qx".to_owned()))
            ]
        );
        for b in row {
            let data = b.callback_data.as_deref().unwrap_or_default();
            assert!(data.len() <= 64, "callback data fits Telegram's 64 bytes");
        }
        for forged in ["x:k7m2qx", "a:", "a:../../", "approve", ""] {
            assert_eq!(parse(forged), None, "{forged}");
        }
    }
}
