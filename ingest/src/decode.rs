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

/// A top-level wire field ingest knows by name: a column of some event table, or
/// `properties`. Every other top-level field is kept in `properties`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    EventId,
    EventType,
    EventTime,
    UserId,
    Properties,
    SessionId,
    Device,
    Country,
    Screen,
    ItemId,
    Query,
    SessionLengthMs,
    Amount,
    Currency,
    NotificationId,
    RequestId,
    ModelVersion,
    Surface,
    Items,
    Rank,
}

const FIELD_COUNT: usize = 20;

impl Field {
    /// Every known field, in declaration order.
    pub const ALL: [Field; FIELD_COUNT] = [
        Field::EventId,
        Field::EventType,
        Field::EventTime,
        Field::UserId,
        Field::Properties,
        Field::SessionId,
        Field::Device,
        Field::Country,
        Field::Screen,
        Field::ItemId,
        Field::Query,
        Field::SessionLengthMs,
        Field::Amount,
        Field::Currency,
        Field::NotificationId,
        Field::RequestId,
        Field::ModelVersion,
        Field::Surface,
        Field::Items,
        Field::Rank,
    ];

    /// The field's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Field::EventId => "event_id",
            Field::EventType => "event_type",
            Field::EventTime => "event_time",
            Field::UserId => "user_id",
            Field::Properties => "properties",
            Field::SessionId => "session_id",
            Field::Device => "device",
            Field::Country => "country",
            Field::Screen => "screen",
            Field::ItemId => "item_id",
            Field::Query => "query",
            Field::SessionLengthMs => "session_length_ms",
            Field::Amount => "amount",
            Field::Currency => "currency",
            Field::NotificationId => "notification_id",
            Field::RequestId => "request_id",
            Field::ModelVersion => "model_version",
            Field::Surface => "surface",
            Field::Items => "items",
            Field::Rank => "rank",
        }
    }

    fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "event_id" => Field::EventId,
            "event_type" => Field::EventType,
            "event_time" => Field::EventTime,
            "user_id" => Field::UserId,
            "properties" => Field::Properties,
            "session_id" => Field::SessionId,
            "device" => Field::Device,
            "country" => Field::Country,
            "screen" => Field::Screen,
            "item_id" => Field::ItemId,
            "query" => Field::Query,
            "session_length_ms" => Field::SessionLengthMs,
            "amount" => Field::Amount,
            "currency" => Field::Currency,
            "notification_id" => Field::NotificationId,
            "request_id" => Field::RequestId,
            "model_version" => Field::ModelVersion,
            "surface" => Field::Surface,
            "items" => Field::Items,
            "rank" => Field::Rank,
            _ => return None,
        })
    }

    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// A set of known fields: the wire fields a table has columns for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSet(u32);

impl FieldSet {
    /// The set of `fields`.
    pub const fn of(fields: &[Field]) -> FieldSet {
        let mut bits = 0;
        let mut i = 0;
        while i < fields.len() {
            bits |= fields[i].bit();
            i += 1;
        }
        FieldSet(bits)
    }

    /// Whether `field` is in the set.
    pub const fn contains(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }
}

/// The top-level fields of a JSON object, each as borrowed raw JSON text: known
/// fields in a slot each (found without string searches), the rest in message order.
#[derive(Debug)]
pub struct RawFields<'a> {
    known: [Option<&'a RawValue>; FIELD_COUNT],
    present: u32,
    unknown: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'de> Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = RawFields {
                    known: [None; FIELD_COUNT],
                    present: 0,
                    unknown: Vec::new(),
                };
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    match key {
                        // The first occurrence of a repeated known field wins.
                        Key::Known(field) if fields.present & field.bit() == 0 => {
                            fields.known[field as usize] = Some(value);
                            fields.present |= field.bit();
                        }
                        Key::Known(_) => {}
                        Key::Unknown(name) => fields.unknown.push((name, value)),
                    }
                }
                Ok(fields)
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

/// An object key: a known field, or another name borrowed from the message where it
/// has no escapes (serde's own `Cow<str>` would allocate every key).
enum Key<'de> {
    Known(Field),
    Unknown(Cow<'de, str>),
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Field::from_name(key).map_or(Key::Unknown(Cow::Borrowed(key)), Key::Known))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Field::from_name(key)
                    .map_or_else(|| Key::Unknown(Cow::Owned(key.to_owned())), Key::Known))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'a> RawFields<'a> {
    /// Parses a message's bytes as a JSON object.
    pub fn parse(bytes: &'a [u8]) -> Result<RawFields<'a>, Rejection> {
        if bytes.is_empty() {
            return Err(Rejection::new(ReasonCode::BadJson, "empty message"));
        }
        // One UTF-8 check of the whole message; the parser then reads it as text.
        let text = std::str::from_utf8(bytes)
            .map_err(|e| Rejection::new(ReasonCode::BadJson, format!("not valid UTF-8: {e}")))?;
        serde_json::from_str(text)
            .map_err(|e| Rejection::new(ReasonCode::BadJson, format!("not a JSON object: {e}")))
    }

    /// The raw value of a known field, treating JSON `null` as absent.
    pub fn get(&self, field: Field) -> Option<&'a RawValue> {
        self.known[field as usize].filter(|v| v.get() != "null")
    }
}

/// A string field borrowed from the message where it has no escapes.
#[derive(Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// The contents of a JSON string without escapes, straight from its raw text.
fn plain_str(raw: &RawValue) -> Option<&str> {
    let inner = raw.get().strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

fn wrong_type(field: Field, e: serde_json::Error) -> Rejection {
    Rejection::new(
        ReasonCode::WrongType,
        format!("field `{}`: {e}", field.name()),
    )
}

/// An optional string field.
pub fn opt_str<'a>(
    fields: &RawFields<'a>,
    field: Field,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    match fields.get(field) {
        None => Ok(None),
        Some(raw) => match plain_str(raw) {
            Some(text) => Ok(Some(Cow::Borrowed(text))),
            None => serde_json::from_str::<Text<'a>>(raw.get())
                .map(|t| Some(t.0))
                .map_err(|e| wrong_type(field, e)),
        },
    }
}

/// A required, non-empty string field.
pub fn req_str<'a>(fields: &RawFields<'a>, field: Field) -> Result<Cow<'a, str>, Rejection> {
    match opt_str(fields, field)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(Rejection::new(
            ReasonCode::MissingField,
            format!("field `{}` is empty", field.name()),
        )),
        None => Err(Rejection::new(
            ReasonCode::MissingField,
            format!("field `{}` is missing", field.name()),
        )),
    }
}

/// An optional number field: plain JSON numbers are read directly; anything else goes
/// through `serde_json`, whose error names the type found.
pub fn opt_number<T>(fields: &RawFields<'_>, field: Field) -> Result<Option<T>, Rejection>
where
    T: std::str::FromStr + for<'de> Deserialize<'de>,
{
    match fields.get(field) {
        None => Ok(None),
        Some(raw) => match raw.get().parse::<T>() {
            Ok(v) => Ok(Some(v)),
            Err(_) => serde_json::from_str::<T>(raw.get())
                .map(Some)
                .map_err(|e| wrong_type(field, e)),
        },
    }
}

/// An optional field of any other deserializable type.
pub fn opt<'a, T: Deserialize<'a>>(
    fields: &RawFields<'a>,
    field: Field,
) -> Result<Option<T>, Rejection> {
    match fields.get(field) {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<T>(raw.get())
            .map(Some)
            .map_err(|e| wrong_type(field, e)),
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
        let event_id = req_str(fields, Field::EventId)?;
        let user_id = req_str(fields, Field::UserId)?;
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
        let type_name = req_str(fields, Field::EventType)?;
        let event_type: EventType = type_name
            .parse()
            .map_err(|e| Rejection::new(ReasonCode::UnknownEventType, format!("{e}")))?;
        let raw_time = fields.get(Field::EventTime).ok_or_else(|| {
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
        let s: Cow<'_, str> = match plain_str(raw) {
            Some(plain) => Cow::Borrowed(plain),
            None => {
                serde_json::from_str::<Text<'_>>(text)
                    .map_err(|e| wrong_type(Field::EventTime, e))?
                    .0
            }
        };
        let t = DateTime::parse_from_rfc3339(&s).map_err(|e| {
            Rejection::new(
                ReasonCode::InvalidValue,
                format!("field `event_time`: {s:?} is not RFC 3339: {e}"),
            )
        })?;
        Ok(t.timestamp_micros())
    } else {
        let millis: i64 = text.parse().map_err(|_| {
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
/// field the target table has no column for (`columns`).
pub fn properties_text<'a>(
    fields: &RawFields<'a>,
    columns: FieldSet,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    let base = match fields.get(Field::Properties) {
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
    let foreign = fields.present & !columns.0 & !Field::Properties.bit();
    if fields.unknown.is_empty() && foreign == 0 {
        return Ok(base.map(Cow::Borrowed));
    }
    let mut extras: Vec<(Cow<'_, str>, &RawValue)> = fields.unknown.clone();
    for field in Field::ALL {
        if foreign & field.bit() != 0 {
            if let Some(value) = fields.known[field as usize] {
                extras.push((Cow::Borrowed(field.name()), value));
            }
        }
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
    Ok(Some(Cow::Owned(out)))
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
        let columns = FieldSet::of(&[Field::EventId]);
        let text = properties_text(&fields, columns).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v, serde_json::json!({"x":"y","a":1,"b":{"c":[1]}}));
        let plain = RawFields::parse(br#"{"event_id":"e"}"#).unwrap();
        assert_eq!(properties_text(&plain, columns).unwrap(), None);
        let empty = RawFields::parse(br#"{"properties":{},"z":null}"#).unwrap();
        assert_eq!(
            properties_text(&empty, FieldSet::of(&[]))
                .unwrap()
                .as_deref(),
            Some(r#"{"z":null}"#)
        );
        // A known field of the other table is kept too, raw.
        let foreign =
            RawFields::parse(br#"{"event_id":"e","items":[{"x":1}],"rank":"2"}"#).unwrap();
        let text = properties_text(&foreign, columns).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v, serde_json::json!({"items":[{"x":1}],"rank":"2"}));
    }

    #[test]
    fn the_first_of_repeated_fields_wins_and_null_is_absent() {
        let fields = RawFields::parse(br#"{"country":"DE","country":"FR","screen":null}"#).unwrap();
        assert_eq!(
            opt_str(&fields, Field::Country).unwrap().as_deref(),
            Some("DE")
        );
        assert_eq!(opt_str(&fields, Field::Screen).unwrap(), None);
        assert_eq!(opt_str(&fields, Field::Query).unwrap(), None);
    }

    #[test]
    fn numbers_are_read_directly_or_rejected_with_the_type_found() {
        let fields = RawFields::parse(
            br#"{"session_length_ms":1500,"amount":2.5e1,"rank":"3","surface":7}"#,
        )
        .unwrap();
        assert_eq!(
            opt_number::<i64>(&fields, Field::SessionLengthMs),
            Ok(Some(1500))
        );
        assert_eq!(opt_number::<f64>(&fields, Field::Amount), Ok(Some(25.0)));
        let rank = opt_number::<i32>(&fields, Field::Rank).unwrap_err();
        assert_eq!(rank.code, ReasonCode::WrongType);
        assert!(
            rank.reason.contains("`rank`") && rank.reason.contains("string"),
            "{rank}"
        );
        let surface = opt_str(&fields, Field::Surface).unwrap_err();
        assert_eq!(surface.code, ReasonCode::WrongType);
        let float_ms = RawFields::parse(br#"{"session_length_ms":1.5}"#).unwrap();
        let e = opt_number::<i64>(&float_ms, Field::SessionLengthMs).unwrap_err();
        assert!(e.reason.contains("floating point"), "{e}");
    }

    #[test]
    fn invalid_utf8_is_bad_json() {
        let e = RawFields::parse(b"{\"event_id\":\"\xff\"}").unwrap_err();
        assert_eq!(e.code, ReasonCode::BadJson);
        assert!(e.reason.contains("UTF-8"), "{e}");
    }

    #[test]
    fn escaped_keys_are_matched_and_kept() {
        let json = br#"{"event_\u0069d":"e","a\"b":1,"plain":2}"#;
        let fields = RawFields::parse(json).unwrap();
        assert_eq!(
            opt_str(&fields, Field::EventId).unwrap().as_deref(),
            Some("e")
        );
        let text = properties_text(&fields, FieldSet::of(&[Field::EventId]))
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v, serde_json::json!({"a\"b": 1, "plain": 2}));
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let fields = RawFields::parse(br#"{"query":"a\"b\u00e9"}"#).unwrap();
        assert_eq!(
            opt_str(&fields, Field::Query).unwrap().as_deref(),
            Some("a\"bé")
        );
    }
}
