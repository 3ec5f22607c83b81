//! Limits on free text and JSON that enter the system from outside: every text field has a
//! bound, and none may hold a NUL character.
//!
//! NUL is refused everywhere, not only where a backend would choke on it (PostgreSQL's `text`
//! and `jsonb` cannot hold it; SQLite can): both backends must answer the same input the same
//! way, and a NUL hidden in a reason or an event is never what a person meant.

use crate::ValidationError;

/// Longest reason (of a request or a decision), in characters.
pub const MAX_REASON_CHARS: usize = 2000;
/// Longest error text an executor reports, in characters.
pub const MAX_ERROR_CHARS: usize = 2000;
/// Longest output tail (stdout or stderr) kept with an execution, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// Longest label such as a decider's name or channel, in characters.
pub const MAX_LABEL_CHARS: usize = 200;

/// Checks a free-text field: at most `max_chars` characters and no NUL.
pub fn check_text(what: &str, value: &str, max_chars: usize) -> Result<(), ValidationError> {
    if value.contains('\0') {
        return Err(ValidationError::new(format!(
            "{what} must not contain NUL characters"
        )));
    }
    // Counting stops one past the limit, so a huge value costs no more than a small one.
    if value.chars().take(max_chars + 1).count() > max_chars {
        return Err(ValidationError::new(format!(
            "{what} is longer than {max_chars} characters"
        )));
    }
    Ok(())
}

/// [`check_text`] for an optional field.
pub fn check_opt_text(
    what: &str,
    value: Option<&str>,
    max_chars: usize,
) -> Result<(), ValidationError> {
    value.map_or(Ok(()), |v| check_text(what, v, max_chars))
}

/// Checks that no string or key anywhere in a JSON value holds a NUL.
pub fn check_json(what: &str, value: &serde_json::Value) -> Result<(), ValidationError> {
    if json_has_nul(value) {
        return Err(ValidationError::new(format!(
            "{what} must not contain NUL characters"
        )));
    }
    Ok(())
}

fn json_has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    // An explicit stack: deeply nested input must not exhaust the call stack.
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return true,
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                for (k, item) in map {
                    if k.contains('\0') {
                        return true;
                    }
                    stack.push(item);
                }
            }
            _ => {}
        }
    }
    false
}

/// Output captured from a program, made storable: NUL becomes U+FFFD (programs may print
/// it; no backend can be made to store it the same way) and the text is cut to its last
/// `max_bytes` bytes on a character boundary. Returns whether anything was cut.
pub fn storable_output(text: &str, max_bytes: usize) -> (String, bool) {
    let cleaned = if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    };
    if cleaned.len() <= max_bytes {
        return (cleaned, false);
    }
    let mut start = cleaned.len() - max_bytes;
    while !cleaned.is_char_boundary(start) {
        start += 1;
    }
    (cleaned[start..].to_owned(), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_limits_count_characters_and_refuse_nul() {
        assert!(check_text("reason", &"é".repeat(2000), 2000).is_ok());
        assert!(check_text("reason", &"é".repeat(2001), 2000).is_err());
        let err = check_text("reason", "a\0b", 2000).unwrap_err();
        assert!(err.0.contains("NUL"), "{err}");
        assert!(check_opt_text("reason", None, 1).is_ok());
    }

    #[test]
    fn nul_is_found_anywhere_in_json() {
        assert!(check_json("data", &json!({"a": [1, {"b": "ok"}]})).is_ok());
        assert!(check_json("data", &json!({"a": [1, {"b": "x\u{0}"}]})).is_err());
        assert!(check_json("data", &json!({"k\u{0}": 1})).is_err());
        assert!(check_json("data", &json!("\u{0}")).is_err());
    }

    #[test]
    fn output_is_cleaned_and_cut_on_a_boundary() {
        assert_eq!(storable_output("a\0b", 10), ("a\u{FFFD}b".into(), false));
        let (tail, cut) = storable_output("ééé", 3);
        assert!(cut);
        assert_eq!(tail, "é");
    }
}
