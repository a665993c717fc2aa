//! Positions in SQL text: the tokenizer's (line, character) locations as byte offsets.

use datafusion::sql::sqlparser::tokenizer::Location;

/// Maps tokenizer locations of one text to byte offsets into it.
pub(crate) struct Source<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(text: &'a str) -> Source<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source { text, line_starts }
    }

    /// The byte offset of a 1-based (line, character) location, if it is in the text.
    pub(crate) fn offset(&self, location: Location) -> Option<usize> {
        let line = usize::try_from(location.line).ok()?.checked_sub(1)?;
        let start = *self.line_starts.get(line)?;
        let column = usize::try_from(location.column).ok()?.checked_sub(1)?;
        let rest = &self.text[start..];
        match rest.char_indices().nth(column) {
            Some((i, _)) => Some(start + i),
            // Just past the last character of the text.
            None if rest.chars().count() == column => Some(self.text.len()),
            None => None,
        }
    }
}
