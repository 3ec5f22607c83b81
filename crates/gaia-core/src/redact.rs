//! Keeps secrets out of what Gaia stores and prints: known secret values are replaced wherever
//! they appear in free-form text an agent or person supplies.

/// What a redacted secret is replaced by.
pub const REDACTED: &str = "[redacted]";

/// Shortest value treated as a secret; shorter ones would redact ordinary words.
const MIN_SECRET_LEN: usize = 6;

/// Replaces every occurrence of the configured secret values.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    /// Redacts every string (keys included) inside a JSON value.
    pub fn json(&self, v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.secrets.is_empty() {
            return v;
        }
        match v {
            Value::String(s) => Value::String(self.text(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|i| self.json(i)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.text(&k), self.json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_secrets_everywhere() {
        let r = Redactor::new(["s3cr3t-token".to_owned(), "abc".to_owned()]);
        let v =
            r.json(serde_json::json!({"msg": "token=s3cr3t-token!", "s3cr3t-token": [1, "abc"]}));
        assert_eq!(
            v,
            serde_json::json!({"msg": "token=[redacted]!", "[redacted]": [1, "abc"]})
        );
    }
}
