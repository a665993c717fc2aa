//! JDBC/ODBC-style `?` parameters, numbered into the `$1, $2, ...` DataFusion plans.
//!
//! BI tools (the Flight SQL JDBC driver, ADBC, Superset) write `WHERE user_id = ?`;
//! DataFusion's placeholders are positional `$n`. Only real `?` tokens are renumbered:
//! a `?` inside a string literal, a quoted identifier or a comment is left alone.

use std::borrow::Cow;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::source::Source;

/// `sql` with every `?` placeholder replaced by `$1`, `$2`, ... in order of appearance.
/// SQL that does not tokenize is returned unchanged, for the parser to report.
pub fn number_question_marks(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let dialect = GenericDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return Cow::Borrowed(sql);
    };
    let source = Source::new(sql);
    let mut out = String::with_capacity(sql.len() + 8);
    let mut copied = 0;
    let mut number = 0;
    for token in tokens {
        if !matches!(&token.token, Token::Placeholder(p) if p == "?") {
            continue;
        }
        let Some(at) = source.offset(token.span.start) else {
            return Cow::Borrowed(sql);
        };
        if sql.as_bytes().get(at) != Some(&b'?') {
            return Cow::Borrowed(sql);
        }
        number += 1;
        out.push_str(&sql[copied..at]);
        out.push_str(&format!("${number}"));
        copied = at + 1;
    }
    if number == 0 {
        return Cow::Borrowed(sql);
    }
    out.push_str(&sql[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::number_question_marks;

    #[test]
    fn numbers_only_real_placeholders() {
        assert_eq!(
            number_question_marks("SELECT * FROM t WHERE a = ? AND b > ?"),
            "SELECT * FROM t WHERE a = $1 AND b > $2"
        );
        assert_eq!(
            number_question_marks("SELECT 'why?' AS \"q?\", x\nFROM t -- really?\nWHERE y = ?"),
            "SELECT 'why?' AS \"q?\", x\nFROM t -- really?\nWHERE y = $1"
        );
        assert_eq!(
            number_question_marks("SELECT 'é ü', ? , 'it''s?', ?"),
            "SELECT 'é ü', $1 , 'it''s?', $2"
        );
        assert_eq!(number_question_marks("SELECT $1"), "SELECT $1");
        // Unterminated literal: left as it is for the parser to report.
        assert_eq!(number_question_marks("SELECT '?"), "SELECT '?");
    }
}
