//! Query strings decoded strictly: a `%XX` escape that does not form UTF-8 is a 400,
//! never silently replaced (a replaced byte could turn one SQL text into another).

use std::collections::HashMap;

use percent_encoding::percent_decode;

use crate::error::ApiError;

/// The parameters of a URL's query string; the last of repeated names wins.
#[derive(Debug, Default)]
pub struct QueryString(HashMap<String, String>);

fn decode(part: &str) -> Result<String, ApiError> {
    let spaced = part.replace('+', " ");
    percent_decode(spaced.as_bytes())
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "the query string is not valid UTF-8 once decoded: {part:?}"
            ))
        })
}

impl QueryString {
    /// Decodes `raw` (the part after `?`, if any).
    pub fn parse(raw: Option<&str>) -> Result<QueryString, ApiError> {
        let mut pairs = HashMap::new();
        for pair in raw.unwrap_or_default().split('&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.insert(decode(name)?, decode(value)?);
        }
        Ok(QueryString(pairs))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_strictly() {
        let q =
            QueryString::parse(Some("sql=SELECT+1%2C%20%27%C3%A9%27&format=csv&&flag")).unwrap();
        assert_eq!(q.get("sql"), Some("SELECT 1, 'é'"));
        assert_eq!(q.get("format"), Some("csv"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("missing"), None);
        for bad in ["sql=SELECT%FF", "sql=%C3", "%FF=1", "sql=%ED%A0%80"] {
            let err = QueryString::parse(Some(bad)).unwrap_err();
            assert_eq!(err.status.as_u16(), 400, "{bad}");
        }
        assert!(QueryString::parse(None).unwrap().get("sql").is_none());
    }
}
