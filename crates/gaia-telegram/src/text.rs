//! Preparing texts for Telegram: HTML escaping and splitting at the message length limit.
//!
//! Telegram measures text length in UTF-16 code units (an emoji outside the Basic
//! Multilingual Plane counts 2), after entity parsing. [`split_text`] works on plain text, so
//! that each part's escaped form parses back to at most the limit.

/// The longest message text Telegram accepts, in UTF-16 code units.
pub const MAX_MESSAGE_UNITS: usize = 4096;

/// Escapes `&`, `<` and `>` for Telegram's HTML parse mode (`"` too, so that the result is
/// also safe inside an attribute value).
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Length of `text` as Telegram counts it: UTF-16 code units.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Splits `text` into parts of at most `max_units` UTF-16 code units each (at least 2, so that
/// any character fits). A part ends after the last line break that fits; failing that, after
/// the last space; failing that, at the last whole character that fits, so a character (and
/// hence a surrogate pair) is never cut. Concatenating the parts gives back `text`; an empty
/// text gives no parts.
pub fn split_text(text: &str, max_units: usize) -> Vec<&str> {
    let max = max_units.max(2);
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let hard_end = prefix_within(rest, max);
        if hard_end == rest.len() {
            parts.push(rest);
            break;
        }
        let head = &rest[..hard_end];
        let cut = head
            .rfind('\n')
            .or_else(|| head.rfind(' '))
            .map(|i| i + 1)
            .unwrap_or(hard_end);
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    parts
}

/// The byte length of the longest prefix of `text` of at most `max` UTF-16 units.
fn prefix_within(text: &str, max: usize) -> usize {
    let mut units = 0;
    for (i, c) in text.char_indices() {
        units += c.len_utf16();
        if units > max {
            return i;
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_html_specials() {
        assert_eq!(
            html_escape(r#"a < b && c > "d" <b>x</b>"#),
            "a &lt; b &amp;&amp; c &gt; &quot;d&quot; &lt;b&gt;x&lt;/b&gt;"
        );
        assert_eq!(html_escape("plain ünïcode 🚀"), "plain ünïcode 🚀");
        assert_eq!(html_escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn counts_utf16_units() {
        assert_eq!(utf16_len("abc"), 3);
        assert_eq!(utf16_len("é"), 1);
        assert_eq!(utf16_len("🚀"), 2);
        assert_eq!(utf16_len("👨‍👩‍👧"), 8);
    }

    fn check(text: &str, max: usize) -> Vec<&str> {
        let parts = split_text(text, max);
        assert_eq!(
            parts.concat(),
            text,
            "parts must concatenate to the original"
        );
        for p in &parts {
            assert!(!p.is_empty());
            assert!(
                utf16_len(p) <= max.max(2),
                "part of {} units > {max}",
                utf16_len(p)
            );
        }
        parts
    }

    #[test]
    fn short_and_empty_texts() {
        assert!(split_text("", 4096).is_empty());
        assert_eq!(check("hello", 4096), vec!["hello"]);
        let exact = "x".repeat(4096);
        assert_eq!(check(&exact, 4096).len(), 1);
        assert_eq!(check(&"x".repeat(4097), 4096).len(), 2);
    }

    #[test]
    fn prefers_line_boundaries_then_spaces() {
        assert_eq!(check("aaaa\nbbbb\ncccc", 10), vec!["aaaa\nbbbb\n", "cccc"]);
        assert_eq!(check("aaa bbb ccc", 8), vec!["aaa bbb ", "ccc"]);
        assert_eq!(check("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    }

    #[test]
    fn never_cuts_a_surrogate_pair() {
        // Each rocket is 2 units; with an odd limit the cut must fall before the pair.
        let text = "a🚀🚀🚀";
        let parts = check(text, 4);
        assert_eq!(parts, vec!["a🚀", "🚀🚀"]);
        let rockets = "🚀".repeat(10);
        let parts = check(&rockets, 5);
        assert!(parts.iter().all(|p| *p == "🚀🚀"));
        // A limit below one character still makes progress.
        assert_eq!(check("🚀🚀", 1), vec!["🚀", "🚀"]);
    }

    #[test]
    fn ten_thousand_characters_in_lines() {
        let line = format!("{}\n", "y".repeat(99));
        let text = line.repeat(100);
        assert_eq!(text.len(), 10_000);
        let parts = check(&text, 4096);
        assert_eq!(parts.len(), 3);
        // Every part but the last ends on a line boundary: 40 lines of 100 units.
        assert_eq!(utf16_len(parts[0]), 4000);
        assert!(parts[..2].iter().all(|p| p.ends_with('\n')));
    }

    #[test]
    fn ten_thousand_characters_of_emoji_without_breaks() {
        let text = "😀".repeat(10_000);
        let parts = check(&text, 4096);
        assert_eq!(parts.len(), 5); // 20,000 units in parts of 4096
        assert_eq!(utf16_len(parts[0]), 4096);
        // Mixed widths: an odd offset forces a cut before a pair.
        let mixed = format!("a{}", "😀".repeat(5_000));
        let parts = check(&mixed, 4096);
        assert_eq!(utf16_len(parts[0]), 4095);
    }
}
