//! Scripts: text split into statements at top-level `;` — not inside quotes or comments.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use crate::source::Source;

/// The statements of `text` that end with `;` (each trimmed, without the `;`), and the
/// unfinished rest after the last `;`, if it holds more than whitespace and comments
/// (with an open quote, the whole text is unfinished).
pub fn split_statements(text: &str) -> (Vec<String>, Option<String>) {
    let dialect = GenericDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, text).tokenize_with_location() else {
        // An unterminated quote or comment: more is to come.
        return (Vec::new(), Some(text.to_string()));
    };
    // Tokens come in order, so each offset is found from the previous one.
    let mut source = Source::new(text);
    let mut statements = Vec::new();
    let mut start = 0;
    let mut meaningful = false;
    for token in tokens {
        match token.token {
            Token::SemiColon => {
                let Some(end) = source.offset(token.span.start) else {
                    return (Vec::new(), Some(text.to_string()));
                };
                if meaningful {
                    statements.push(text[start..end].trim().to_string());
                }
                start = end + 1;
                meaningful = false;
            }
            Token::Whitespace(Whitespace::Space | Whitespace::Tab | Whitespace::Newline)
            | Token::Whitespace(Whitespace::SingleLineComment { .. })
            | Token::Whitespace(Whitespace::MultiLineComment(_))
            | Token::EOF => {}
            _ => meaningful = true,
        }
    }
    let rest = meaningful.then(|| text[start..].trim().to_string());
    (statements, rest)
}

#[cfg(test)]
mod tests {
    use super::split_statements;

    #[test]
    fn splits_at_top_level_semicolons() {
        let (s, rest) = split_statements("SELECT 1; SELECT ';' AS x;\n");
        assert_eq!(s, vec!["SELECT 1", "SELECT ';' AS x"]);
        assert_eq!(rest, None);
        let (s, rest) = split_statements("SELECT 1;\nSELECT 'a;b' AS s");
        assert_eq!(s, vec!["SELECT 1"]);
        assert_eq!(rest.as_deref(), Some("SELECT 'a;b' AS s"));
        let (s, rest) = split_statements("SELECT 'it''s;\n");
        assert!(s.is_empty() && rest.is_some());
        let (s, rest) = split_statements("-- just a comment\n");
        assert!(s.is_empty() && rest.is_none());
        let (s, _) = split_statements("SELECT 'it''s', a\n  FROM t -- note;\n WHERE b = 'é';");
        assert_eq!(
            s,
            vec!["SELECT 'it''s', a\n  FROM t -- note;\n WHERE b = 'é'"]
        );
    }
}
