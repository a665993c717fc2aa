//! JDBC/ODBC-style `?` parameters, numbered into the `$1, $2, ...` DataFusion plans.
//!
//! BI tools (the Flight SQL JDBC driver, ADBC, Superset) write `WHERE user_id = ?`;
//! DataFusion's placeholders are positional `$n`. Only real `?` tokens are renumbered:
//! a `?` inside a string literal, a quoted identifier or a comment is left alone.

use std::borrow::Cow;
use std::fmt::Write;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::source::Source;
use crate::SqlError;

/// The most `?` placeholders one statement may have: PostgreSQL's limit on bind
/// parameters (its wire protocol counts them in 16 bits).
pub const MAX_PARAMETERS: usize = 65_535;

/// `sql` with every `?` placeholder replaced by `$1`, `$2`, ... in order of appearance,
/// in time linear in the length of `sql`.
/// SQL that does not tokenize is returned unchanged, for the parser to report.
///
/// # Errors
///
/// [`SqlError::Parameter`] if `sql` has more than [`MAX_PARAMETERS`] placeholders.
pub fn number_question_marks(sql: &str) -> Result<Cow<'_, str>, SqlError> {
    number_up_to(sql, MAX_PARAMETERS)
}

fn number_up_to(sql: &str, max: usize) -> Result<Cow<'_, str>, SqlError> {
    if !sql.contains('?') {
        return Ok(Cow::Borrowed(sql));
    }
    let dialect = GenericDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return Ok(Cow::Borrowed(sql));
    };
    // Tokens come in order, so each offset is found from the previous one.
    let mut source = Source::new(sql);
    let mut out = String::with_capacity(sql.len() + 8);
    let mut copied = 0;
    let mut number = 0usize;
    for token in tokens {
        if !matches!(&token.token, Token::Placeholder(p) if p == "?") {
            continue;
        }
        let Some(at) = source.offset(token.span.start) else {
            return Ok(Cow::Borrowed(sql));
        };
        // Not where a `?` is (a token re-read from inside a `/*! ... */` comment).
        if at < copied || sql.as_bytes().get(at) != Some(&b'?') {
            return Ok(Cow::Borrowed(sql));
        }
        number += 1;
        if number > max {
            continue; // only counted, for the error
        }
        out.push_str(&sql[copied..at]);
        let _ = write!(out, "${number}");
        copied = at + 1;
    }
    if number > max {
        return Err(SqlError::Parameter(format!(
            "{number} `?` placeholders in one statement; at most {max} are allowed"
        )));
    }
    if number == 0 {
        return Ok(Cow::Borrowed(sql));
    }
    out.push_str(&sql[copied..]);
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::{number_question_marks, number_up_to, MAX_PARAMETERS};
    use crate::SqlError;

    #[test]
    fn numbers_only_real_placeholders() {
        assert_eq!(
            number_question_marks("SELECT * FROM t WHERE a = ? AND b > ?").unwrap(),
            "SELECT * FROM t WHERE a = $1 AND b > $2"
        );
        assert_eq!(
            number_question_marks("SELECT 'why?' AS \"q?\", x\nFROM t -- really?\nWHERE y = ?")
                .unwrap(),
            "SELECT 'why?' AS \"q?\", x\nFROM t -- really?\nWHERE y = $1"
        );
        assert_eq!(
            number_question_marks("SELECT 'é ü', ? , 'it''s?', ?").unwrap(),
            "SELECT 'é ü', $1 , 'it''s?', $2"
        );
        assert_eq!(number_question_marks("SELECT $1").unwrap(), "SELECT $1");
        // Unterminated literal: left as it is for the parser to report.
        assert_eq!(number_question_marks("SELECT '?").unwrap(), "SELECT '?");
    }

    #[test]
    fn numbers_many_placeholders_on_one_line() {
        let n = 200_000;
        let sql = format!("SELECT 'é?' AS \"ü?\", {} -- ?", vec!["?"; n].join(", "));
        let numbered = number_up_to(&sql, usize::MAX).unwrap();
        let values: Vec<&str> = numbered
            .strip_prefix("SELECT 'é?' AS \"ü?\", ")
            .unwrap()
            .strip_suffix(" -- ?")
            .unwrap()
            .split(", ")
            .collect();
        assert_eq!(values.len(), n);
        assert_eq!(values[0], "$1");
        assert_eq!(values[n - 1], "$200000");
        assert!(values
            .iter()
            .enumerate()
            .all(|(i, v)| *v == format!("${}", i + 1)));

        // Over the limit: an error; up to it (across lines): numbered.
        let err = number_question_marks(&sql).unwrap_err();
        assert!(
            matches!(&err, SqlError::Parameter(m) if m.contains("200000") && m.contains("65535")),
            "{err}"
        );
        let sql = format!(
            "SELECT {}\n, 'é?', ?",
            vec!["?"; MAX_PARAMETERS - 1].join(",")
        );
        let numbered = number_question_marks(&sql).unwrap();
        assert!(numbered.starts_with("SELECT $1,$2,"));
        assert!(numbered.ends_with(",$65534\n, 'é?', $65535"));
        let sql = format!("SELECT {}", vec!["?"; MAX_PARAMETERS + 1].join(","));
        assert!(number_question_marks(&sql).is_err());
    }
}
