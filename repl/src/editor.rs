//! Line editing: tab completion of keywords, table and column names, and multi-line
//! statements that end at `;`.

use std::sync::{Arc, RwLock};

use rustyline::completion::{Completer, Pair};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper, Highlighter, Hinter};

use hourlake_sql::script::split_statements;

/// The REPL's rustyline helper.
#[derive(Helper, Hinter, Highlighter)]
pub struct SqlHelper {
    /// Table and column names, refreshed when the REPL learns the catalog.
    names: Arc<RwLock<Vec<String>>>,
}

impl SqlHelper {
    /// A helper completing `names` and the SQL keywords.
    pub fn new(names: Arc<RwLock<Vec<String>>>) -> SqlHelper {
        SqlHelper { names }
    }

    /// Candidates for the word `prefix` (case-insensitive; keywords keep the case typed).
    pub fn candidates(&self, prefix: &str) -> Vec<String> {
        let lower = prefix.to_ascii_lowercase();
        let upper = prefix
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase());
        let names = self.names.read().map(|n| n.clone()).unwrap_or_default();
        let mut out: Vec<String> = names
            .into_iter()
            .filter(|n| n.to_ascii_lowercase().starts_with(&lower))
            .collect();
        out.extend(
            hourlake_sql::dialect::KEYWORDS
                .iter()
                .filter(|k| k.starts_with(&lower))
                .map(|k| {
                    if upper {
                        k.to_ascii_uppercase()
                    } else {
                        k.to_string()
                    }
                }),
        );
        out.sort();
        out.dedup();
        out
    }
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map(|(i, c)| i + c.len_utf8())
            .unwrap_or(0);
        let prefix = &line[start..pos];
        if prefix.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let pairs = self
            .candidates(prefix)
            .into_iter()
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Validator for SqlHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        if input.trim().is_empty() || input.trim_start().starts_with('\\') {
            return Ok(ValidationResult::Valid(None));
        }
        let (_, rest) = split_statements(input);
        Ok(if rest.is_none() {
            ValidationResult::Valid(None)
        } else {
            ValidationResult::Incomplete
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_names_and_keywords() {
        let names = Arc::new(RwLock::new(vec![
            "engagement_events".to_string(),
            "event_time".to_string(),
        ]));
        let helper = SqlHelper::new(names);
        assert_eq!(
            helper.candidates("eng"),
            vec!["engagement_events".to_string()]
        );
        assert_eq!(helper.candidates("ev"), vec!["event_time".to_string()]);
        assert!(helper.candidates("SEL").contains(&"SELECT".to_string()));
        assert!(helper.candidates("sel").contains(&"select".to_string()));
        assert!(helper.candidates("zzz").is_empty());
    }
}
