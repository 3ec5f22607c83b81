//! Policy: rules that decide a command before a person is asked. Rules are tried in order and
//! the first that matches wins; when none matches, the default applies.
//!
//! A rule matches on the program (the first word, compared by file name) and/or the whole
//! command text, each a glob where `*` matches any run of characters and `?` one character.
//! Shell text is treated with suspicion: an `allow` never applies to shell text that contains
//! control operators or substitutions (`;`, `&`, `|`, `$`, backticks, redirections, newlines),
//! since the text after them would run unchecked; such commands are asked about instead.

use serde::{Deserialize, Serialize};

use crate::commands::CommandSpec;
use crate::error::ValidationError;

/// What a rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
    Ask,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Ask => "ask",
        }
    }
}

/// One rule, as written in `gaia.toml`:
///
/// ```toml
/// [[policy.rules]]
/// name = "read-only git"
/// action = "allow"
/// program = "git"
/// command = "git st*"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub action: Verdict,
    /// Glob over the program's file name (`git`, `rm`, `python3*`).
    #[serde(default)]
    pub program: Option<String>,
    /// Glob over the whole command as one line (`git push *--force*`).
    #[serde(default)]
    pub command: Option<String>,
}

/// The rules and the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "default_verdict")]
    pub default: Verdict,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

fn default_verdict() -> Verdict {
    Verdict::Ask
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            default: Verdict::Ask,
            rules: vec![],
        }
    }
}

/// What the policy decided, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// The rule that matched (`None`: the default applied).
    pub rule: Option<String>,
    pub reason: String,
}

/// Characters that make shell text more than one simple command.
const SHELL_OPERATORS: &[char] = &[';', '&', '|', '$', '`', '<', '>', '\n', '\r', '(', ')'];

impl Policy {
    /// Checks that every rule can match something.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (i, r) in self.rules.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(ValidationError::new(format!(
                    "policy rule #{} has no name",
                    i + 1
                )));
            }
            if r.program.is_none() && r.command.is_none() {
                return Err(ValidationError::new(format!(
                    "policy rule '{}' needs a program or a command pattern",
                    r.name
                )));
            }
        }
        Ok(())
    }

    pub fn check(&self, spec: &CommandSpec) -> Decision {
        // Patterns see the program by its file name: `git st*` matches `/usr/bin/git status`.
        let (program, text, compound) = match spec {
            CommandSpec::Argv(a) => {
                let program = a
                    .first()
                    .map(|p| basename(p).to_owned())
                    .unwrap_or_default();
                let mut short = a.clone();
                if let Some(first) = short.first_mut() {
                    first.clone_from(&program);
                }
                (program, CommandSpec::Argv(short).display(), false)
            }
            CommandSpec::Shell(t) => {
                let t = t.trim();
                let end = t
                    .find(|c: char| c.is_whitespace() || SHELL_OPERATORS.contains(&c))
                    .unwrap_or(t.len());
                let (first, rest) = (&t[..end], t[end..].trim_start());
                let program = basename(first).to_owned();
                let text = if rest.is_empty() {
                    program.clone()
                } else {
                    format!("{program} {rest}")
                };
                (program, text, t.contains(SHELL_OPERATORS))
            }
        };
        for rule in &self.rules {
            let program_ok = rule.program.as_deref().is_none_or(|g| glob(g, &program));
            let command_ok = rule.command.as_deref().is_none_or(|g| glob(g, &text));
            if !(program_ok && command_ok) {
                continue;
            }
            if rule.action == Verdict::Allow && compound {
                return Decision {
                    verdict: Verdict::Ask,
                    rule: Some(rule.name.clone()),
                    reason: format!(
                        "rule '{}' allows this program, but the shell text chains or substitutes commands",
                        rule.name
                    ),
                };
            }
            return Decision {
                verdict: rule.action,
                rule: Some(rule.name.clone()),
                reason: format!("policy rule '{}': {}", rule.name, rule.action.as_str()),
            };
        }
        Decision {
            verdict: if self.default == Verdict::Allow && compound {
                Verdict::Ask
            } else {
                self.default
            },
            rule: None,
            reason: format!("no policy rule matched; default {}", self.default.as_str()),
        }
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Glob match: `*` any run (also empty), `?` any one character; everything else literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        toml_like(vec![
            (
                "no force push",
                Verdict::Deny,
                Some("git"),
                Some("git push *--force*"),
            ),
            (
                "read-only git",
                Verdict::Allow,
                Some("git"),
                Some("git st*"),
            ),
            ("ls", Verdict::Allow, Some("ls"), None),
            ("rm", Verdict::Ask, Some("rm"), None),
        ])
    }

    fn toml_like(rules: Vec<(&str, Verdict, Option<&str>, Option<&str>)>) -> Policy {
        Policy {
            default: Verdict::Deny,
            rules: rules
                .into_iter()
                .map(|(n, a, p, c)| Rule {
                    name: n.into(),
                    action: a,
                    program: p.map(Into::into),
                    command: c.map(Into::into),
                })
                .collect(),
        }
    }

    fn argv(a: &[&str]) -> CommandSpec {
        CommandSpec::Argv(a.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn first_match_wins_then_default() {
        let p = policy();
        let cases: Vec<(CommandSpec, Verdict, Option<&str>)> = vec![
            (
                argv(&["git", "push", "origin", "--force"]),
                Verdict::Deny,
                Some("no force push"),
            ),
            (
                argv(&["/usr/bin/git", "status"]),
                Verdict::Allow,
                Some("read-only git"),
            ),
            (argv(&["ls", "-la"]), Verdict::Allow, Some("ls")),
            (argv(&["rm", "-rf", "x"]), Verdict::Ask, Some("rm")),
            (argv(&["curl", "x"]), Verdict::Deny, None),
            (
                CommandSpec::Shell("git status".into()),
                Verdict::Allow,
                Some("read-only git"),
            ),
            (
                CommandSpec::Shell("ls; rm -rf /".into()),
                Verdict::Ask,
                Some("ls"),
            ),
            (
                CommandSpec::Shell("ls $(rm -rf /)".into()),
                Verdict::Ask,
                Some("ls"),
            ),
            (
                CommandSpec::Shell("ls\nrm -rf /".into()),
                Verdict::Ask,
                Some("ls"),
            ),
            (
                CommandSpec::Shell("git push --force && ls".into()),
                Verdict::Deny,
                Some("no force push"),
            ),
        ];
        for (spec, verdict, rule) in cases {
            let d = p.check(&spec);
            assert_eq!((d.verdict, d.rule.as_deref()), (verdict, rule), "{spec:?}");
        }
    }

    #[test]
    fn an_allow_default_never_lets_compound_shell_through() {
        let p = Policy {
            default: Verdict::Allow,
            rules: vec![],
        };
        assert_eq!(
            p.check(&CommandSpec::Shell("a | b".into())).verdict,
            Verdict::Ask
        );
        assert_eq!(p.check(&argv(&["a", "|", "b"])).verdict, Verdict::Allow);
    }

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("git st*", "git status", true),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*--force*", "git push --force-with-lease", true),
            ("git", "git2", false),
            ("*.sh", "x.sh", true),
        ] {
            assert_eq!(glob(p, t), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn rules_must_match_something() {
        let p = Policy {
            default: Verdict::Ask,
            rules: vec![Rule {
                name: "x".into(),
                action: Verdict::Allow,
                program: None,
                command: None,
            }],
        };
        assert!(p.validate().is_err());
    }
}
