//! Positions in SQL text: the tokenizer's (line, character) locations as byte offsets.

use datafusion::sql::sqlparser::tokenizer::Location;

/// Maps tokenizer locations of one text to byte offsets into it.
///
/// Locations are looked up from a cursor left at the previous one: a location further
/// on the same line costs the characters between the two, one on a later line the
/// characters from that line's start. Tokens asked for in order (as the tokenizer
/// yields them) thus cost O(length of the text) in all, however long a line is.
pub(crate) struct Source<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    /// The last location found: its 1-based line and character, and its byte offset.
    cursor: (u64, u64, usize),
}

impl<'a> Source<'a> {
    pub(crate) fn new(text: &'a str) -> Source<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            text,
            line_starts,
            cursor: (1, 1, 0),
        }
    }

    /// The byte offset of a 1-based (line, character) location, if it is in the text
    /// (or just past its last character).
    pub(crate) fn offset(&mut self, location: Location) -> Option<usize> {
        let (line, column) = (location.line, location.column);
        if line == 0 || column == 0 {
            return None;
        }
        let (at_line, at_column, at) = self.cursor;
        let (mut current, mut offset) = if line == at_line && column >= at_column {
            (at_column, at)
        } else {
            let index = usize::try_from(line - 1).ok()?;
            (1, *self.line_starts.get(index)?)
        };
        if current < column {
            // Characters of this line only: the tokenizer counts a new line after '\n'.
            let mut chars = self.text[offset..].chars();
            while current < column {
                match chars.next() {
                    Some(c) if c != '\n' => {
                        offset += c.len_utf8();
                        current += 1;
                    }
                    _ => return None,
                }
            }
        }
        self.cursor = (line, column, offset);
        Some(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::Source;
    use datafusion::sql::sqlparser::tokenizer::Location;

    #[test]
    fn locations_in_any_order() {
        let text = "ab\nçé?\n\nx";
        let mut source = Source::new(text);
        let mut at = |line, column| source.offset(Location::new(line, column));
        assert_eq!(at(1, 1), Some(0));
        assert_eq!(at(2, 3), Some(7));
        assert_eq!(&text[7..8], "?");
        assert_eq!(at(2, 4), Some(8)); // the '\n' ending line 2
        assert_eq!(at(2, 5), None); // past it
        assert_eq!(at(1, 3), Some(2)); // backwards
        assert_eq!(at(3, 1), Some(9));
        assert_eq!(at(4, 2), Some(text.len())); // just past the end
        assert_eq!(at(4, 3), None);
        assert_eq!(at(5, 1), None);
        assert_eq!(at(0, 1), None);
        assert_eq!(at(2, 2), Some(5));
    }
}
