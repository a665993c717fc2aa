//! A request body → the events it carries: a JSON array of events, or NDJSON (one event
//! per line; blank lines are skipped), optionally gzip-compressed.

use std::borrow::Cow;
use std::io::Read;

use serde_json::value::RawValue;

/// Why a body cannot be read as a batch of events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {limit} bytes{after}", after = if *.decompressed { " once decompressed" } else { "" })]
    TooLarge { limit: usize, decompressed: bool },
    #[error("the batch has {count} events, at most {limit} are accepted in one request")]
    TooManyEvents { count: usize, limit: usize },
    #[error("Content-Encoding {0:?} is not supported (use gzip or none)")]
    UnsupportedEncoding(String),
    #[error("the body is not valid gzip: {0}")]
    BadGzip(String),
    #[error("the body is not a JSON array of events: {0}")]
    BadArray(String),
    #[error("the body is empty: send a JSON array of events or one event per line (NDJSON)")]
    Empty,
}

/// How the body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    /// The encoding a `Content-Encoding` header value names.
    pub fn from_header(value: Option<&str>) -> Result<Encoding, BodyError> {
        match value.map(str::trim) {
            None | Some("") => Ok(Encoding::Identity),
            Some(v) if v.eq_ignore_ascii_case("identity") => Ok(Encoding::Identity),
            Some(v) if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") => {
                Ok(Encoding::Gzip)
            }
            Some(v) => Err(BodyError::UnsupportedEncoding(v.to_string())),
        }
    }
}

/// The body as sent, decompressed; never more than `max_bytes` (a small gzip body must
/// not expand into gigabytes).
pub fn decode(
    body: &[u8],
    encoding: Encoding,
    max_bytes: usize,
) -> Result<Cow<'_, [u8]>, BodyError> {
    match encoding {
        Encoding::Identity => Ok(Cow::Borrowed(body)),
        Encoding::Gzip => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(max_bytes as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| BodyError::BadGzip(e.to_string()))?;
            if out.len() > max_bytes {
                return Err(BodyError::TooLarge {
                    limit: max_bytes,
                    decompressed: true,
                });
            }
            Ok(Cow::Owned(out))
        }
    }
}

/// Each event's bytes, in order: the members of a JSON array (when the body starts with
/// `[`), else the non-blank lines. An event that is not valid JSON is still returned (it
/// is rejected with its reason like any other bad event); only an array that cannot be
/// read as a whole makes the body unreadable.
pub fn events(body: &[u8], max_events: usize) -> Result<Vec<&[u8]>, BodyError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    let events: Vec<&[u8]> = match start.map(|i| body[i]) {
        None => return Err(BodyError::Empty),
        Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(body)
            .map_err(|e| BodyError::BadArray(e.to_string()))?
            .into_iter()
            .map(|raw| raw.get().as_bytes())
            .collect(),
        Some(_) => body
            .split(|b| *b == b'\n')
            .map(|line| line.trim_ascii())
            .filter(|line| !line.is_empty())
            .collect(),
    };
    if events.len() > max_events {
        return Err(BodyError::TooManyEvents {
            count: events.len(),
            limit: max_events,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn json_array_and_ndjson_give_the_same_events() {
        let array = br#" [ {"a":1}, {"b":[2,3]} ,"not an object"] "#;
        assert_eq!(
            events(array, 10).unwrap(),
            vec![&br#"{"a":1}"#[..], br#"{"b":[2,3]}"#, br#""not an object""#]
        );
        let ndjson = b"{\"a\":1}\r\n\n  {\"b\":[2,3]}\n{broken\n";
        assert_eq!(
            events(ndjson, 10).unwrap(),
            vec![&br#"{"a":1}"#[..], br#"{"b":[2,3]}"#, b"{broken"]
        );
    }

    #[test]
    fn unreadable_bodies_and_limits_are_errors() {
        assert_eq!(events(b" \n ", 10), Err(BodyError::Empty));
        assert!(matches!(
            events(b"[{\"a\":1},", 10),
            Err(BodyError::BadArray(_))
        ));
        assert!(matches!(
            events(b"[1] [2]", 10),
            Err(BodyError::BadArray(_))
        ));
        let deep = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        // deep nesting inside one member is that event's problem (the decoder refuses
        // it as not an object), not the batch's; nothing recurses on it
        assert_eq!(events(deep.as_bytes(), 10).unwrap().len(), 1);
        assert_eq!(
            events(b"{}\n{}\n{}", 2),
            Err(BodyError::TooManyEvents { count: 3, limit: 2 })
        );
        assert!(matches!(
            Encoding::from_header(Some("br")),
            Err(BodyError::UnsupportedEncoding(_))
        ));
        assert_eq!(Encoding::from_header(Some("GZIP")), Ok(Encoding::Gzip));
    }

    #[test]
    fn gzip_is_decompressed_within_the_limit() {
        let gzip = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let small = gzip(b"[{\"a\":1}]");
        assert_eq!(
            &*decode(&small, Encoding::Gzip, 100).unwrap(),
            b"[{\"a\":1}]"
        );
        // a bomb: 10 MB of zeros in a few kB
        let bomb = gzip(&vec![b' '; 10_000_000]);
        assert!(bomb.len() < 100_000);
        assert_eq!(
            decode(&bomb, Encoding::Gzip, 1_000_000),
            Err(BodyError::TooLarge {
                limit: 1_000_000,
                decompressed: true
            })
        );
        assert!(matches!(
            decode(b"not gzip", Encoding::Gzip, 100),
            Err(BodyError::BadGzip(_))
        ));
    }
}
