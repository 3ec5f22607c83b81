//! Reads env files in the prototype's format (`.tmp/telegram.env`): `KEY=VALUE` lines, `#`
//! comments, an optional `export ` prefix, and single- or double-quoted values.

use std::collections::BTreeMap;
use std::path::Path;

/// Parses env file text. Errors name the line, never its value (it may be a secret).
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected KEY=VALUE", i + 1));
        };
        let key = key.trim();
        let valid_key = !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !key.as_bytes()[0].is_ascii_digit();
        if !valid_key {
            return Err(format!("line {}: '{key}' is not a variable name", i + 1));
        }
        out.insert(
            key.to_owned(),
            unquote(value.trim()).map_err(|e| format!("line {}: {e}", i + 1))?,
        );
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<String, String> {
    if let Some(inner) = v.strip_prefix('\'') {
        return inner
            .strip_suffix('\'')
            .map(str::to_owned)
            .ok_or_else(|| "unterminated single quote".to_owned());
    }
    if let Some(inner) = v.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| "unterminated double quote".to_owned())?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        return Ok(out);
    }
    // Unquoted: a ` #` starts a comment.
    let v = v.split(" #").next().unwrap_or("").trim_end();
    Ok(v.to_owned())
}

/// Reads and parses an env file.
pub fn load(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read env file {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("env file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_prototype_format() {
        let text = "# Telegram\nTELEGRAM_BOT_TOKEN=123:abc\nexport CHAT_ID = -100200\n\
                    ALLOW_COMMAND_EXECUTION=0 # off\nQ=\"a b\\\"c\"\nS='x#y'\nEMPTY=\n";
        let env = parse(text).unwrap();
        assert_eq!(env["TELEGRAM_BOT_TOKEN"], "123:abc");
        assert_eq!(env["CHAT_ID"], "-100200");
        assert_eq!(env["ALLOW_COMMAND_EXECUTION"], "0");
        assert_eq!(env["Q"], "a b\"c");
        assert_eq!(env["S"], "x#y");
        assert_eq!(env["EMPTY"], "");
    }

    #[test]
    fn errors_name_the_line_not_the_value() {
        for (text, line) in [("A=1\nnot a pair\n", 2), ("1A=x", 1), ("K=\"open", 1)] {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with(&format!("line {line}:")), "{err}");
        }
        let err = parse("K='secret-value").unwrap_err();
        assert!(!err.contains("secret-value"));
    }
}
