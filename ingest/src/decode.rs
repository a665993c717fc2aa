//! Bytes → a validated event, or the reason it is a dead letter.
//!
//! One pass of `serde_json` over the message borrows every top-level field as raw
//! JSON text (no `serde_json::Value` tree); each known field is then parsed straight
//! into its typed form and appended to the table's Arrow builders (`rows.rs`).
//! Unknown fields are kept: they are merged into the `properties` JSON text.

use std::borrow::Cow;
use std::fmt;

use chrono::DateTime;
use hourlake_catalog::EventType;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::dead_letter::ReasonCode;

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ReasonCode,
    pub reason: String,
}

impl Rejection {
    pub fn new(code: ReasonCode, reason: impl Into<String>) -> Rejection {
        Rejection {
            code,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.reason)
    }
}

/// Limits applied while validating events.
#[derive(Debug, Clone, Copy)]
pub struct Validation {
    /// Messages larger than this are dead-lettered as `oversized`.
    pub max_message_bytes: usize,
    /// Events further than this ahead of the ingest clock are `future_event_time`.
    pub max_future_micros: i64,
    /// Events older than this are `expired_event_time`.
    pub retention_micros: i64,
}

impl Default for Validation {
    fn default() -> Self {
        Validation {
            max_message_bytes: 1024 * 1024,
            max_future_micros: 24 * 3_600_000_000,
            retention_micros: 30 * 24 * 3_600_000_000,
        }
    }
}

/// The top-level fields of a JSON object, each as borrowed raw JSON text.
#[derive(Debug)]
pub struct RawFields<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(16);
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    fields.push((key, value));
                }
                Ok(RawFields(fields))
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

impl<'a> RawFields<'a> {
    /// Parses a message's bytes as a JSON object.
    pub fn parse(bytes: &'a [u8]) -> Result<RawFields<'a>, Rejection> {
        if bytes.is_empty() {
            return Err(Rejection::new(ReasonCode::BadJson, "empty message"));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| Rejection::new(ReasonCode::BadJson, format!("not a JSON object: {e}")))
    }

    /// The raw value of a field, treating JSON `null` as absent.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .filter(|v| v.get() != "null")
    }
}

/// A string field borrowed from the message where it has no escapes.
#[derive(Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

fn wrong_type(field: &str, e: serde_json::Error) -> Rejection {
    Rejection::new(ReasonCode::WrongType, format!("field `{field}`: {e}"))
}

/// An optional string field.
pub fn opt_str<'a>(fields: &RawFields<'a>, name: &str) -> Result<Option<Cow<'a, str>>, Rejection> {
    match fields.get(name) {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<Text<'a>>(raw.get())
            .map(|t| Some(t.0))
            .map_err(|e| wrong_type(name, e)),
    }
}

/// A required, non-empty string field.
pub fn req_str<'a>(fields: &RawFields<'a>, name: &str) -> Result<Cow<'a, str>, Rejection> {
    match opt_str(fields, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(Rejection::new(
            ReasonCode::MissingField,
            format!("field `{name}` is empty"),
        )),
        None => Err(Rejection::new(
            ReasonCode::MissingField,
            format!("field `{name}` is missing"),
        )),
    }
}

/// An optional field of any other deserializable type.
pub fn opt<'a, T: Deserialize<'a>>(
    fields: &RawFields<'a>,
    name: &str,
) -> Result<Option<T>, Rejection> {
    match fields.get(name) {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<T>(raw.get())
            .map(Some)
            .map_err(|e| wrong_type(name, e)),
    }
}

/// The fields every event has, validated.
#[derive(Debug)]
pub struct Header<'a> {
    pub event_id: Cow<'a, str>,
    pub event_type: EventType,
    pub event_time_micros: i64,
    pub user_id: Cow<'a, str>,
}

const MAX_ID_BYTES: usize = 256;

impl<'a> Header<'a> {
    /// Validates the common fields against `validation`, with `now_micros` as the clock.
    pub fn parse(
        fields: &RawFields<'a>,
        validation: &Validation,
        now_micros: i64,
    ) -> Result<Header<'a>, Rejection> {
        let event_id = req_str(fields, "event_id")?;
        let user_id = req_str(fields, "user_id")?;
        for (name, value) in [("event_id", &event_id), ("user_id", &user_id)] {
            if value.len() > MAX_ID_BYTES {
                return Err(Rejection::new(
                    ReasonCode::InvalidValue,
                    format!(
                        "field `{name}` is {} bytes long (at most {MAX_ID_BYTES})",
                        value.len()
                    ),
                ));
            }
        }
        let type_name = req_str(fields, "event_type")?;
        let event_type: EventType = type_name
            .parse()
            .map_err(|e| Rejection::new(ReasonCode::UnknownEventType, format!("{e}")))?;
        let raw_time = fields.get("event_time").ok_or_else(|| {
            Rejection::new(ReasonCode::MissingField, "field `event_time` is missing")
        })?;
        let event_time_micros = parse_event_time(raw_time)?;
        if event_time_micros > now_micros + validation.max_future_micros {
            return Err(Rejection::new(
                ReasonCode::FutureEventTime,
                format!(
                    "event_time {} is more than {}s ahead of the ingest clock",
                    raw_time.get(),
                    validation.max_future_micros / 1_000_000
                ),
            ));
        }
        if event_time_micros < now_micros - validation.retention_micros {
            return Err(Rejection::new(
                ReasonCode::ExpiredEventTime,
                format!(
                    "event_time {} is older than the retention window of {}s",
                    raw_time.get(),
                    validation.retention_micros / 1_000_000
                ),
            ));
        }
        Ok(Header {
            event_id,
            event_type,
            event_time_micros,
            user_id,
        })
    }
}

/// `event_time` as RFC 3339 text or integer epoch milliseconds → microseconds UTC.
fn parse_event_time(raw: &RawValue) -> Result<i64, Rejection> {
    let text = raw.get();
    if text.starts_with('"') {
        let s: Text<'_> = serde_json::from_str(text).map_err(|e| wrong_type("event_time", e))?;
        let t = DateTime::parse_from_rfc3339(&s.0).map_err(|e| {
            Rejection::new(
                ReasonCode::InvalidValue,
                format!("field `event_time`: {:?} is not RFC 3339: {e}", s.0),
            )
        })?;
        Ok(t.timestamp_micros())
    } else {
        let millis: i64 = serde_json::from_str(text).map_err(|_| {
            Rejection::new(
                ReasonCode::WrongType,
                format!("field `event_time`: expected an RFC 3339 string or integer epoch milliseconds, got {text}"),
            )
        })?;
        millis.checked_mul(1000).ok_or_else(|| {
            Rejection::new(
                ReasonCode::InvalidValue,
                format!("field `event_time`: {millis} is out of range"),
            )
        })
    }
}

/// Builds the stored `properties` text: the `properties` object, plus every top-level
/// field the target table has no column for.
pub fn properties_text(
    fields: &RawFields<'_>,
    known: &[&str],
) -> Result<Option<String>, Rejection> {
    let base = match fields.get("properties") {
        None => None,
        Some(raw) if raw.get().trim_start().starts_with('{') => Some(raw.get()),
        Some(raw) => {
            return Err(Rejection::new(
                ReasonCode::WrongType,
                format!(
                    "field `properties`: expected a JSON object, got {}",
                    raw.get()
                ),
            ))
        }
    };
    let extras: Vec<&(Cow<'_, str>, &RawValue)> = fields
        .0
        .iter()
        .filter(|(k, _)| k != "properties" && !known.contains(&k.as_ref()))
        .collect();
    if extras.is_empty() {
        return Ok(base.map(str::to_owned));
    }
    let mut out = String::with_capacity(base.map_or(2, str::len) + 32 * extras.len());
    match base {
        Some(b) => {
            let inner = b
                .trim()
                .trim_start_matches('{')
                .trim_end_matches('}')
                .trim();
            out.push('{');
            out.push_str(inner);
            if !inner.is_empty() {
                out.push(',');
            }
        }
        None => out.push('{'),
    }
    for (i, (key, value)) in extras.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key.as_ref()).unwrap_or_else(|_| "\"?\"".into()));
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_355_100_000_000;

    fn header(json: &str) -> Result<(EventType, i64), Rejection> {
        let fields = RawFields::parse(json.as_bytes())?;
        Header::parse(&fields, &Validation::default(), NOW)
            .map(|h| (h.event_type, h.event_time_micros))
    }

    #[test]
    fn accepts_both_time_forms() {
        let a = header(
            r#"{"event_id":"e","event_type":"click","event_time":"2026-11-22T13:45:00Z","user_id":"u"}"#,
        );
        let b = header(
            r#"{"event_id":"e","event_type":"click","event_time":1795355100000,"user_id":"u"}"#,
        );
        assert_eq!(a, Ok((EventType::Click, NOW)));
        assert_eq!(a, b);
    }

    #[test]
    fn each_defect_has_its_code() {
        let cases = [
            (r#"{"event_id":"e","#, ReasonCode::BadJson),
            (r#"[1,2]"#, ReasonCode::BadJson),
            ("", ReasonCode::BadJson),
            (
                r#"{"event_id":"e","event_type":"click","event_time":1795355100000}"#,
                ReasonCode::MissingField,
            ),
            (
                r#"{"event_id":"","event_type":"click","event_time":1795355100000,"user_id":"u"}"#,
                ReasonCode::MissingField,
            ),
            (
                r#"{"event_id":"e","event_type":"click","event_time":true,"user_id":"u"}"#,
                ReasonCode::WrongType,
            ),
            (
                r#"{"event_id":7,"event_type":"click","event_time":1795355100000,"user_id":"u"}"#,
                ReasonCode::WrongType,
            ),
            (
                r#"{"event_id":"e","event_type":"nope","event_time":1795355100000,"user_id":"u"}"#,
                ReasonCode::UnknownEventType,
            ),
            (
                r#"{"event_id":"e","event_type":"click","event_time":"soon","user_id":"u"}"#,
                ReasonCode::InvalidValue,
            ),
            (
                r#"{"event_id":"e","event_type":"click","event_time":1995355100000,"user_id":"u"}"#,
                ReasonCode::FutureEventTime,
            ),
            (
                r#"{"event_id":"e","event_type":"click","event_time":1595355100000,"user_id":"u"}"#,
                ReasonCode::ExpiredEventTime,
            ),
        ];
        for (json, code) in cases {
            let got = header(json).expect_err(json);
            assert_eq!(got.code, code, "{json}: {got}");
            assert!(!got.reason.is_empty());
        }
    }

    #[test]
    fn unknown_fields_are_merged_into_properties() {
        let json = r#"{"a":1,"properties":{"x":"y"},"event_id":"e","b":{"c":[1]}}"#;
        let fields = RawFields::parse(json.as_bytes()).unwrap();
        let text = properties_text(&fields, &["event_id"]).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v, serde_json::json!({"x":"y","a":1,"b":{"c":[1]}}));
        let plain = RawFields::parse(br#"{"event_id":"e"}"#).unwrap();
        assert_eq!(properties_text(&plain, &["event_id"]).unwrap(), None);
        let empty = RawFields::parse(br#"{"properties":{},"z":null}"#).unwrap();
        assert_eq!(
            properties_text(&empty, &[]).unwrap().as_deref(),
            Some(r#"{"z":null}"#)
        );
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let fields = RawFields::parse(br#"{"q":"a\"b\u00e9"}"#).unwrap();
        assert_eq!(opt_str(&fields, "q").unwrap().as_deref(), Some("a\"bé"));
    }
}
