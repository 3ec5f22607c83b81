//! Statements sent with `BEGIN` or `COMMIT` in one message.
//!
//! sqlx sends each statement with its arguments bound (the extended protocol) and waits for
//! its answer before sending the next, so `BEGIN` and `COMMIT` each cost a round trip of their
//! own: they were two of a claim batch's four round trips. PostgreSQL's simple protocol takes
//! several statements in one message, but no bound arguments; so the claim writer prepares
//! its statements on each connection (`PREPARE`, once) and sends `BEGIN; EXECUTE name(args)`
//! and `EXECUTE name(args); COMMIT`, its arguments written as literals. Preparing also keeps
//! the plan: the batch's statement takes about 0.25 ms to plan, as long as the round trip
//! saved.
//!
//! The arguments are the same, in the same order, whichever way they are sent: the code that
//! binds a statement's arguments writes them to a [`Sink`], which is either a sqlx query or
//! a list of [`Literals`].
//!
//! Every argument is a literal of no type yet, which the statement's declared parameter type
//! reads as the `EXECUTE` is parsed (arrays in PostgreSQL's text form, `{"a","b",NULL}`):
//! writing `ARRAY[...]::TEXT[]` instead costs a cast and a constructor to plan and evaluate
//! per argument. Literals are escape strings (`E'...'`, backslashes and quotes doubled), read
//! the same whatever `standard_conforming_strings` says. PostgreSQL text cannot hold a
//! NUL character, and a bound argument holding one is refused; so is a literal, before
//! anything is sent, as a NUL would otherwise end the message's text early.

use gaia_core::StoreError;
use sqlx::PgConnection;
use sqlx::postgres::{PgArguments, PgRow};

/// Where a statement's arguments go, in order.
pub(crate) trait Sink<'q>: Sized {
    fn arg<T: Arg<'q>>(self, v: T) -> Self;
}

/// An argument that can be bound or written as a literal.
pub(crate) trait Arg<'q>:
    sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'q
{
    fn write(&self, out: &mut Literals);
}

impl<'q> Sink<'q> for sqlx::query::Query<'q, sqlx::Postgres, PgArguments> {
    fn arg<T: Arg<'q>>(self, v: T) -> Self {
        self.bind(v)
    }
}

/// Arguments written as SQL literals, `(a, b, ...)`, for `EXECUTE`.
#[derive(Debug, Default)]
pub(crate) struct Literals {
    text: String,
    /// The first argument that cannot be written.
    error: Option<&'static str>,
}

impl<'q> Sink<'q> for Literals {
    fn arg<T: Arg<'q>>(mut self, v: T) -> Self {
        self.text.push(if self.text.is_empty() { '(' } else { ',' });
        v.write(&mut self);
        self
    }
}

impl Literals {
    /// The arguments in parentheses, as `EXECUTE` takes them.
    pub(crate) fn finish(self) -> Result<String, StoreError> {
        match self.error {
            Some(e) => Err(StoreError::Backend(e.into())),
            None if self.text.is_empty() => Ok(String::new()),
            None => Ok(self.text + ")"),
        }
    }

    /// `v` as a quoted literal of no type yet: the statement's declared parameter type reads
    /// it once, as the statement is parsed, with no cast or array constructor to plan and
    /// evaluate for each argument.
    fn str(&mut self, v: &str) {
        if v.contains('\0') {
            self.error
                .get_or_insert("text holds a NUL character, which PostgreSQL cannot store");
            self.text.push_str("NULL");
            return;
        }
        self.text.push_str("E'");
        for c in v.chars() {
            match c {
                '\'' => self.text.push_str("''"),
                '\\' => self.text.push_str("\\\\"),
                c => self.text.push(c),
            }
        }
        self.text.push('\'');
    }
}

/// `v` as one quoted literal, for a statement written out here.
pub(crate) fn quoted(v: &str) -> Result<String, StoreError> {
    let mut out = Literals::default();
    out.str(v);
    match out.error {
        Some(e) => Err(StoreError::Backend(e.into())),
        None => Ok(out.text),
    }
}

/// A value that can be an argument or an array element: its text as PostgreSQL reads it
/// (`None`: NULL).
pub(crate) trait Element {
    fn text(&self) -> Option<std::borrow::Cow<'_, str>>;
}

impl Element for i64 {
    fn text(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.to_string().into())
    }
}

impl Element for &str {
    fn text(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some((*self).into())
    }
}

impl Element for String {
    fn text(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.as_str().into())
    }
}

impl<E: Element> Element for Option<E> {
    fn text(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.as_ref().and_then(Element::text)
    }
}

impl<'q, E: Element> Arg<'q> for E
where
    E: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'q,
{
    fn write(&self, out: &mut Literals) {
        match self.text() {
            Some(t) => out.str(&t),
            None => out.text.push_str("NULL"),
        }
    }
}

/// An array in PostgreSQL's text form: `{"a","b",NULL}`, each element quoted, with
/// backslashes and double quotes escaped inside the quotes.
impl<'q, E: Element> Arg<'q> for Vec<E>
where
    Vec<E>: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'q,
{
    fn write(&self, out: &mut Literals) {
        let mut array = String::from("{");
        for (i, e) in self.iter().enumerate() {
            if i > 0 {
                array.push(',');
            }
            match e.text() {
                None => array.push_str("NULL"),
                Some(t) => {
                    array.push('"');
                    for c in t.chars() {
                        if c == '"' || c == '\\' {
                            array.push('\\');
                        }
                        array.push(c);
                    }
                    array.push('"');
                }
            }
        }
        array.push('}');
        out.str(&array);
    }
}

/// A statement prepared on each connection that sends it: its name, its arguments' types
/// and its text.
pub(crate) struct Prepared {
    pub(crate) name: &'static str,
    pub(crate) types: &'static str,
    pub(crate) sql: &'static std::sync::LazyLock<String>,
}

impl Prepared {
    /// `EXECUTE` of this statement with `args`.
    pub(crate) fn execute(&self, args: Literals) -> Result<String, StoreError> {
        Ok(format!("EXECUTE {}{}", self.name, args.finish()?))
    }
}

/// Prepares `statements` on `conn`, each that is not prepared there yet.
pub(crate) async fn prepare(
    conn: &mut PgConnection,
    statements: &[&Prepared],
) -> Result<(), sqlx::Error> {
    for s in statements {
        let sql = format!("PREPARE {}({}) AS {}", s.name, s.types, s.sql.as_str());
        match run(conn, &sql).await {
            Ok(_) => {}
            Err(e) if code(&e).as_deref() == Some(DUPLICATE_PREPARED) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs `sql` (statements separated by `;`) as one message; returns the rows they return.
/// An error ends the message: the statements after it do not run.
pub(crate) async fn run(conn: &mut PgConnection, sql: &str) -> Result<Vec<PgRow>, sqlx::Error> {
    // A query string with no arguments goes as a simple query, as `raw_sql` sends it.
    sqlx::Executor::fetch_all(conn, sql).await
}

/// `invalid_sql_statement_name`: `EXECUTE` of a statement this connection has not prepared.
pub(crate) const NOT_PREPARED: &str = "26000";
/// `duplicate_prepared_statement`.
const DUPLICATE_PREPARED: &str = "42P05";

/// The SQLSTATE of a database error.
pub(crate) fn code(e: &sqlx::Error) -> Option<std::borrow::Cow<'_, str>> {
    match e {
        sqlx::Error::Database(db) => db.code(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit<'q, T: Arg<'q>>(v: T) -> String {
        Literals::default().arg(v).finish().expect("writable")
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(lit(5i64), "(E'5')");
        assert_eq!(lit("it's a \\ test"), "(E'it''s a \\\\ test')");
        assert_eq!(lit(None::<&str>), "(NULL)");
        assert_eq!(lit(Vec::<i64>::new()), "(E'{}')");
        // In the array: `"` and `\` escaped with a backslash, and that backslash escaped
        // again for the E'' literal around the array.
        assert_eq!(
            lit(vec![Some("a\"b"), None, Some("c\\")]),
            "(E'{\"a\\\\\"b\",NULL,\"c\\\\\\\\\"}')"
        );
        let two = Literals::default().arg(1i64).arg(vec![2i64, -3]);
        assert_eq!(two.finish().expect("writable"), "(E'1',E'{\"2\",\"-3\"}')");
    }

    #[test]
    fn a_nul_character_is_refused() {
        let out = Literals::default().arg("a\0b").finish();
        assert!(matches!(out, Err(StoreError::Backend(m)) if m.contains("NUL")));
    }
}
