//! Bytes → a validated event, or the reason it is a dead letter.
//!
//! One pass of `serde_json` over the message borrows every top-level field as raw
//! JSON text (no `serde_json::Value` tree); each known field is then parsed straight
//! into its typed form and appended to the table's Arrow builders (`rows.rs`).
//! Unknown fields are kept: they are merged into the `properties` JSON text.

use std::borrow::Cow;
use std::fmt;
use std::num::{IntErrorKind, ParseIntError};

use chrono::DateTime;
use hourlake_catalog::{EventKind, EventType};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::rejection::{ReasonCode, Rejection};

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
    #[cfg(test)]
    pub const fn contains(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }
}

/// An engagement event's `device` object.
#[derive(Debug, Clone, Deserialize)]
pub struct Device<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub os: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub app_version: Option<Cow<'a, str>>,
}

/// One entry of a recommendation's `items` list.
#[derive(Debug, Clone, Deserialize)]
pub struct RecItem<'a> {
    #[serde(borrow)]
    pub item_id: Cow<'a, str>,
    pub score: Option<f64>,
    pub rank: Option<i32>,
}

/// The top-level fields of a JSON object, each as borrowed raw JSON text: known
/// fields in a slot each (found without string searches), the rest in message order.
/// `items` and `device` may instead have been parsed in the same pass ([`event`]'s
/// fast path).
#[derive(Debug)]
pub struct RawFields<'a> {
    known: [Option<&'a RawValue>; FIELD_COUNT],
    present: u32,
    unknown: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// `items` and `device` as parsed by the first pass, when they were (their raw
    /// text is then not kept).
    parsed_items: Option<Vec<RecItem<'a>>>,
    parsed_device: Option<Device<'a>>,
}

/// Reads a JSON object into [`RawFields`]; with `parse_nested`, the `items` and
/// `device` fields are parsed into their types in the same pass, and a value of
/// another shape fails the whole parse.
struct FieldsSeed {
    parse_nested: bool,
}

impl<'de> DeserializeSeed<'de> for FieldsSeed {
    type Value = RawFields<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawFields<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed {
    type Value = RawFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = RawFields {
            known: [None; FIELD_COUNT],
            present: 0,
            unknown: Vec::new(),
            parsed_items: None,
            parsed_device: None,
        };
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key {
                // The first occurrence of a repeated known field wins; later ones are
                // still read (the message must be valid JSON) but not kept.
                Key::Known(field) if fields.present & field.bit() != 0 => {
                    map.next_value::<IgnoredAny>()?;
                }
                Key::Known(Field::Items) if self.parse_nested => {
                    fields.parsed_items = map.next_value()?;
                    fields.present |= Field::Items.bit();
                }
                Key::Known(Field::Device) if self.parse_nested => {
                    fields.parsed_device = map.next_value()?;
                    fields.present |= Field::Device.bit();
                }
                Key::Known(field) => {
                    fields.known[field as usize] = Some(map.next_value()?);
                    fields.present |= field.bit();
                }
                Key::Unknown(name) => fields.unknown.push((name, map.next_value()?)),
            }
        }
        Ok(fields)
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
    /// Parses a message's bytes as a JSON object, every field kept as raw text.
    pub fn parse(bytes: &'a [u8]) -> Result<RawFields<'a>, Rejection> {
        Self::parse_with(
            bytes,
            FieldsSeed {
                parse_nested: false,
            },
        )
    }

    /// Like [`RawFields::parse`], but `items` and `device` are parsed in the same
    /// pass, so they are not read twice. Fails on anything `parse` would reject, and
    /// also when `items` is not a list of items or `device` not a device.
    fn parse_nested(bytes: &'a [u8]) -> Result<RawFields<'a>, Rejection> {
        Self::parse_with(bytes, FieldsSeed { parse_nested: true })
    }

    fn parse_with(bytes: &'a [u8], seed: FieldsSeed) -> Result<RawFields<'a>, Rejection> {
        if bytes.is_empty() {
            return Err(Rejection::new(ReasonCode::BadJson, "empty message"));
        }
        // One UTF-8 check of the whole message; the parser then reads it as text.
        let text = std::str::from_utf8(bytes)
            .map_err(|e| Rejection::new(ReasonCode::BadJson, format!("not valid UTF-8: {e}")))?;
        let mut de = serde_json::Deserializer::from_str(text);
        seed.deserialize(&mut de)
            .and_then(|fields| de.end().map(|()| fields))
            .map_err(|e| Rejection::new(ReasonCode::BadJson, format!("not a JSON object: {e}")))
    }

    /// The raw value of a known field, treating JSON `null` as absent.
    pub fn get(&self, field: Field) -> Option<&'a RawValue> {
        self.known[field as usize].filter(|v| v.get() != "null")
    }

    /// Whether `field` was present and parsed by the first pass (its raw text is gone).
    fn was_parsed(&self, field: Field) -> bool {
        self.present & field.bit() != 0 && self.known[field as usize].is_none()
    }

    /// Whether the first pass parsed a field that an event of `kind` keeps raw in its
    /// `properties` (its table has no column for it).
    fn parsed_a_foreign_field(&self, kind: EventKind) -> bool {
        (self.was_parsed(Field::Items) && kind != EventKind::Recommendation)
            || (self.was_parsed(Field::Device) && kind != EventKind::Engagement)
    }

    /// The `items` list, if present and not `null`.
    pub fn items(&self) -> Result<Option<Cow<'_, [RecItem<'a>]>>, Rejection> {
        if self.was_parsed(Field::Items) {
            return Ok(self.parsed_items.as_deref().map(Cow::Borrowed));
        }
        Ok(opt::<Vec<RecItem<'a>>>(self, Field::Items)?.map(Cow::Owned))
    }

    /// The `device` object, if present and not `null`.
    pub fn device(&self) -> Result<Option<Device<'a>>, Rejection> {
        if self.was_parsed(Field::Device) {
            return Ok(self.parsed_device.clone());
        }
        opt(self, Field::Device)
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
        // Saturating: the limits come from the configuration and may be huge ("no limit").
        if event_time_micros > now_micros.saturating_add(validation.max_future_micros) {
            return Err(Rejection::new(
                ReasonCode::FutureEventTime,
                format!(
                    "event_time {} is more than {}s ahead of the ingest clock",
                    raw_time.get(),
                    validation.max_future_micros / 1_000_000
                ),
            ));
        }
        if event_time_micros < now_micros.saturating_sub(validation.retention_micros) {
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

/// A message checked up to its header: within the size limit, a JSON object, valid
/// common fields. The table's own fields are checked as its row is appended (`rows`).
pub fn event<'a>(
    payload: &'a [u8],
    validation: &Validation,
    now_micros: i64,
) -> Result<(RawFields<'a>, Header<'a>), Rejection> {
    if payload.len() > validation.max_message_bytes {
        return Err(Rejection::new(
            ReasonCode::Oversized,
            format!(
                "message is {} bytes, the limit is {}",
                payload.len(),
                validation.max_message_bytes
            ),
        ));
    }
    // The fast path reads `items` and `device` in the first pass. A message it rejects
    // is read again field by field, so its rejection names the field at fault; so is
    // one that keeps such a field in its `properties` text (its table has no column).
    let mut fields = match RawFields::parse_nested(payload) {
        Ok(fields) => fields,
        Err(_) => RawFields::parse(payload)?,
    };
    let header = Header::parse(&fields, validation, now_micros)?;
    if fields.parsed_a_foreign_field(header.event_type.kind()) {
        fields = RawFields::parse(payload)?;
    }
    Ok((fields, header))
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
        let out_of_range = || {
            Rejection::new(
                ReasonCode::InvalidValue,
                format!("field `event_time`: {text} milliseconds is out of range"),
            )
        };
        let millis: i64 = text.parse().map_err(|e: ParseIntError| match e.kind() {
            // An integer, but not one `i64` holds: a value out of range, not a wrong type.
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => out_of_range(),
            _ => Rejection::new(
                ReasonCode::WrongType,
                format!("field `event_time`: expected an RFC 3339 string or integer epoch milliseconds, got {text}"),
            ),
        })?;
        // Milliseconds whose microseconds do not fit in `i64` (beyond ±292 000 years).
        // Every `i64` of microseconds has an `event_date`/`event_hour`
        // (`partition::date_and_hour` cannot overflow), so this is the only check needed.
        millis.checked_mul(1000).ok_or_else(out_of_range)
    }
}

/// Builds the stored `properties` text: the `properties` object, plus every top-level
/// field the target table has no column for (`columns`), appended after the object's
/// own members with their raw JSON values: unknown fields in message order, then known
/// fields of the other table.
///
/// Without such fields the `properties` text is stored as it came. A JSON `null`
/// `properties` counts as absent; any other non-object is `wrong_type`.
///
/// Keys are not deduplicated (that would mean parsing the whole object): a top-level
/// field with the same name as a member of `properties` appears twice in the stored
/// text, the `properties` member first (so does an unknown name repeated at the top
/// level; of a repeated known field only the first is kept). The text is still valid
/// JSON; a reader that keeps the last of repeated keys (serde_json, JavaScript's
/// `JSON.parse`, Python's `json`) sees the top-level field's value.
pub fn properties_text<'a>(
    fields: &RawFields<'a>,
    columns: FieldSet,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    let base = match fields.get(Field::Properties) {
        None => None,
        Some(raw) => match object_members(raw.get()) {
            Some(members) => Some((raw.get(), members)),
            None => {
                return Err(Rejection::new(
                    ReasonCode::WrongType,
                    format!(
                        "field `properties`: expected a JSON object, got {}",
                        raw.get()
                    ),
                ))
            }
        },
    };
    let foreign = fields.present & !columns.0 & !Field::Properties.bit();
    if fields.unknown.is_empty() && foreign == 0 {
        return Ok(base.map(|(text, _)| Cow::Borrowed(text)));
    }
    let mut extras: Vec<(Cow<'_, str>, &RawValue)> = fields.unknown.clone();
    for field in Field::ALL {
        if foreign & field.bit() != 0 {
            if let Some(value) = fields.known[field as usize] {
                extras.push((Cow::Borrowed(field.name()), value));
            }
        }
    }
    let base_len = base.map_or(2, |(text, _)| text.len());
    let mut out = String::with_capacity(base_len + 32 * extras.len());
    out.push('{');
    let mut empty = true;
    if let Some((_, members)) = base {
        if !members.is_empty() {
            out.push_str(members);
            empty = false;
        }
    }
    for (key, value) in &extras {
        if !empty {
            out.push(',');
        }
        empty = false;
        out.push_str(&serde_json::to_string(key.as_ref()).unwrap_or_else(|_| "\"?\"".into()));
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    Ok(Some(Cow::Owned(out)))
}

/// The members of a JSON object, from its raw text: the text between its one outer
/// pair of braces, without the whitespace around them (`{"a": {}}` → `"a": {}`,
/// `{ }` → ``). `None` if the text is not an object.
///
/// `raw` is a whole JSON value (serde_json's `RawValue`), so an object starts with
/// its `{` and ends with its `}`; only those two are removed, never a brace of a
/// nested value at either end.
fn object_members(raw: &str) -> Option<&str> {
    let members = raw.trim().strip_prefix('{')?.strip_suffix('}')?;
    Some(members.trim())
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

    /// The columns of these tests' tables: common ones plus `items` (REC) or `device` (ENG).
    const REC: FieldSet = FieldSet::of(&[
        Field::EventId,
        Field::EventType,
        Field::EventTime,
        Field::UserId,
        Field::Items,
    ]);
    const ENG: FieldSet = FieldSet::of(&[
        Field::EventId,
        Field::EventType,
        Field::EventTime,
        Field::UserId,
        Field::Device,
    ]);

    /// What `event` makes of a message: its items (each as id, score, rank), its device
    /// (type, os, app version) and the `properties` text a table with the given
    /// columns would store, or the rejection.
    type Outcome = Result<
        (
            Option<Vec<Item>>,
            Option<[Option<String>; 3]>,
            Option<String>,
        ),
        Rejection,
    >;
    type Item = (String, Option<f64>, Option<i32>);

    fn outcome(fields: &RawFields<'_>, columns: FieldSet) -> Outcome {
        // Read as its table reads it: a field it has no column for only in `properties`.
        let items = match columns.contains(Field::Items) {
            true => fields.items()?.map(|items| {
                items
                    .iter()
                    .map(|i| (i.item_id.to_string(), i.score, i.rank))
                    .collect()
            }),
            false => None,
        };
        let text = |s: &Option<Cow<'_, str>>| s.as_deref().map(str::to_string);
        let device = match columns.contains(Field::Device) {
            true => fields
                .device()?
                .map(|d| [text(&d.kind), text(&d.os), text(&d.app_version)]),
            false => None,
        };
        Ok((
            items,
            device,
            properties_text(fields, columns)?.map(Cow::into_owned),
        ))
    }

    #[test]
    fn fields_read_in_the_first_pass_are_what_a_field_by_field_read_gives() {
        let head = r#""event_id":"e","event_time":1795355100000,"user_id":"u""#;
        let served = |rest: &str| format!(r#"{{{head},"event_type":"rec_served"{rest}}}"#);
        let click = |rest: &str| format!(r#"{{{head},"event_type":"click"{rest}}}"#);
        // (message, the table's columns, kept from the first pass, the field at fault)
        let cases = [
            (
                served(
                    r#","items":[{"item_id":"a","score":0.5,"rank":1},{"item_id":"b\"c","x":[1]}]"#,
                ),
                REC,
                true,
                None,
            ),
            (served(r#","items":[]"#), REC, true, None),
            (served(r#","items":null"#), REC, true, None),
            (served(""), REC, true, None),
            // The first of repeated fields wins; a later one of any shape is skipped.
            (
                served(r#","items":[{"item_id":"a"}],"items":7"#),
                REC,
                true,
                None,
            ),
            (
                click(r#","device":{"os":"ios"},"device":[]"#),
                ENG,
                true,
                None,
            ),
            // Not of their type: read again field by field, rejected naming the field.
            (served(r#","items":7"#), REC, false, Some("items")),
            (
                served(r#","items":[{"rank":1}]"#),
                REC,
                false,
                Some("items"),
            ),
            (
                served(r#","items":[{"item_id":"a","rank":"1"}]"#),
                REC,
                false,
                Some("items"),
            ),
            (
                served(r#","items":7,"items":[]"#),
                REC,
                false,
                Some("items"),
            ),
            (click(r#","device":"phone""#), ENG, false, Some("device")),
            (click(r#","device":{"os":1}"#), ENG, false, Some("device")),
            (
                click(r#","device":{"os":"a","os":"b"}"#),
                ENG,
                false,
                Some("device"),
            ),
            // Kept raw in `properties` (null included) by a table without the column.
            (
                click(r#","items":[{"item_id":"a","score":1.0}]"#),
                ENG,
                false,
                None,
            ),
            (click(r#","items":null"#), ENG, false, None),
            (click(r#","items":"x""#), ENG, false, None),
            (
                served(r#","device":{"type":"phone","os":"ios","app_version":"1.0"}"#),
                REC,
                false,
                None,
            ),
            (served(r#","device":null,"items":[]"#), REC, false, None),
            // What each table has a column for.
            (
                click(r#","device":{"type":"phone","os":"i\u006fs","x":{}}"#),
                ENG,
                true,
                None,
            ),
            (click(r#","device":null"#), ENG, true, None),
            (click(""), ENG, true, None),
        ];
        for (message, columns, fast, fault) in cases {
            let bytes = message.as_bytes();
            let (fields, header) = event(bytes, &Validation::default(), NOW)
                .unwrap_or_else(|e| panic!("{message}: {e}"));
            assert_eq!(header.event_id, "e", "{message}");
            let nested = message.contains("items") || message.contains("device");
            let parsed = fields.was_parsed(Field::Items) || fields.was_parsed(Field::Device);
            assert_eq!(parsed, fast && nested, "{message}");
            let slow = RawFields::parse(bytes).unwrap();
            assert!(!slow.was_parsed(Field::Items) && !slow.was_parsed(Field::Device));
            let (got, expected) = (outcome(&fields, columns), outcome(&slow, columns));
            assert_eq!(got, expected, "{message}");
            match fault {
                Some(field) => {
                    let e = got.expect_err(&message);
                    assert_eq!(e.code, ReasonCode::WrongType, "{message}: {e}");
                    assert!(e.reason.contains(&format!("`{field}`")), "{message}: {e}");
                }
                None => assert!(got.is_ok(), "{message}: {got:?}"),
            }
        }
        let device = outcome(
            &event(
                click(r#","device":{"type":"phone","os":"i\u006fs"}"#).as_bytes(),
                &Validation::default(),
                NOW,
            )
            .unwrap()
            .0,
            ENG,
        )
        .unwrap()
        .1;
        assert_eq!(
            device,
            Some([Some("phone".into()), Some("ios".into()), None])
        );
        // Malformed JSON is rejected as such whichever pass reads it.
        let broken = served(r#","items":[{"item_id":"a"}"#);
        let e = event(broken.as_bytes(), &Validation::default(), NOW).unwrap_err();
        assert_eq!(e.code, ReasonCode::BadJson);
        let items = outcome(
            &event(
                served(r#","items":[{"item_id":"a","score":0.5,"rank":1}]"#).as_bytes(),
                &Validation::default(),
                NOW,
            )
            .unwrap()
            .0,
            REC,
        )
        .unwrap()
        .0;
        assert_eq!(items, Some(vec![("a".to_string(), Some(0.5), Some(1))]));
    }

    #[test]
    fn absurdly_deep_nesting_gets_the_same_answer_from_either_pass_without_a_crash() {
        let head = r#""event_id":"e","event_time":1795355100000,"user_id":"u""#;
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let hostile = deep(100_000);
        let served = |rest: String| format!(r#"{{{head},"event_type":"rec_served"{rest}}}"#);
        let click = |rest: String| format!(r#"{{{head},"event_type":"click"{rest}}}"#);
        // (message, its table's columns, the field rejected, if any). serde_json skips a
        // value it does not parse into a type without recursing (any depth is read); one
        // it parses into `items` or `device` fails at its first level of the wrong shape.
        let cases = [
            (served(format!(r#","items":{hostile}"#)), REC, Some("items")),
            (
                served(format!(r#","items":[{{"item_id":"a","x":{hostile}}}]"#)),
                REC,
                None,
            ),
            (
                served(format!(r#","items":[],"items":{hostile}"#)),
                REC,
                None,
            ),
            (
                click(format!(r#","device":{hostile}"#)),
                ENG,
                Some("device"),
            ),
            (
                click(format!(r#","device":{{"os":"a","x":{hostile}}}"#)),
                ENG,
                None,
            ),
            (
                click(format!(r#","device":null,"device":{hostile}"#)),
                ENG,
                None,
            ),
            (
                click(format!(r#","properties":{{"x":{hostile}}}"#)),
                ENG,
                None,
            ),
            (click(format!(r#","items":{hostile}"#)), ENG, None),
        ];
        for (message, columns, fault) in cases {
            let bytes = message.as_bytes();
            let (fields, _) = event(bytes, &Validation::default(), NOW).unwrap();
            let slow = RawFields::parse(bytes).unwrap();
            let (got, expected) = (outcome(&fields, columns), outcome(&slow, columns));
            assert_eq!(got, expected);
            match fault {
                Some(field) => {
                    let e = got.unwrap_err();
                    assert_eq!(e.code, ReasonCode::WrongType, "{e}");
                    assert!(e.reason.contains(&format!("`{field}`")), "{e}");
                }
                None => assert!(got.is_ok()),
            }
        }
        // Where a deep value is kept, it is kept whole.
        let message = click(format!(r#","items":{hostile}"#));
        let (fields, _) = event(message.as_bytes(), &Validation::default(), NOW).unwrap();
        let properties = properties_text(&fields, ENG).unwrap().unwrap();
        assert_eq!(properties, format!(r#"{{"items":{hostile}}}"#));
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

    /// The stored `properties` of `json` for a table whose columns are the common four.
    fn stored_properties(json: &str) -> Result<Option<String>, Rejection> {
        let fields = RawFields::parse(json.as_bytes())?;
        let columns = FieldSet::of(&[
            Field::EventId,
            Field::EventType,
            Field::EventTime,
            Field::UserId,
        ]);
        Ok(properties_text(&fields, columns)?.map(Cow::into_owned))
    }

    #[test]
    fn only_the_outer_braces_of_properties_are_removed() {
        // (message, exact stored text, what it parses to)
        let cases = [
            (
                r#"{"properties": {"a": {"b": 1}}, "extra_field": 2}"#,
                r#"{"a": {"b": 1},"extra_field":2}"#,
                serde_json::json!({"a": {"b": 1}, "extra_field": 2}),
            ),
            (
                r#"{"properties": {"a": {}}, "extra_field": 2}"#,
                r#"{"a": {},"extra_field":2}"#,
                serde_json::json!({"a": {}, "extra_field": 2}),
            ),
            (
                r#"{"properties":{"a":{"b":{"c":{}}}},"x":[]}"#,
                r#"{"a":{"b":{"c":{}}},"x":[]}"#,
                serde_json::json!({"a": {"b": {"c": {}}}, "x": []}),
            ),
            (
                r#"{"properties":{"a":[{}]},"x":{}}"#,
                r#"{"a":[{}],"x":{}}"#,
                serde_json::json!({"a": [{}], "x": {}}),
            ),
            (
                r#"{"properties":{"{":"}"},"x":"{"}"#,
                r#"{"{":"}","x":"{"}"#,
                serde_json::json!({"{": "}", "x": "{"}),
            ),
            // Whitespace only inside: an empty object.
            (
                "{\"properties\": { \n\t\r }, \"x\": 1}",
                r#"{"x":1}"#,
                serde_json::json!({"x": 1}),
            ),
            (
                "{\"properties\":\n{\n  \"a\": {}\n}\n, \"x\": 1}",
                "{\"a\": {},\"x\":1}",
                serde_json::json!({"a": {}, "x": 1}),
            ),
            // No properties: the extra fields alone.
            (
                r#"{"x":{"y":{}},"properties":null}"#,
                r#"{"x":{"y":{}}}"#,
                serde_json::json!({"x": {"y": {}}}),
            ),
        ];
        for (json, text, value) in cases {
            let stored = stored_properties(json).unwrap().unwrap();
            assert_eq!(stored, text, "{json}");
            let parsed: serde_json::Value = serde_json::from_str(&stored)
                .unwrap_or_else(|e| panic!("{json} stored invalid JSON {stored}: {e}"));
            assert_eq!(parsed, value, "{json}");
        }
        // Without extra fields the object is stored as it came, braces and all.
        assert_eq!(
            stored_properties(r#"{"properties":{"a":{"b":{}}}}"#)
                .unwrap()
                .as_deref(),
            Some(r#"{"a":{"b":{}}}"#)
        );
    }

    #[test]
    fn properties_that_are_not_an_object_are_a_wrong_type() {
        for json in [
            r#"{"properties":[{}],"x":1}"#,
            r#"{"properties":"{}","x":1}"#,
            r#"{"properties":1}"#,
        ] {
            let e = stored_properties(json).unwrap_err();
            assert_eq!(e.code, ReasonCode::WrongType, "{json}: {e}");
        }
    }

    /// A top-level field named like a member of `properties` is kept as a second
    /// member of that name (no deduplication): the stored text is valid JSON, and a
    /// reader that keeps the last of repeated keys — serde_json, JavaScript, Python —
    /// sees the top-level field's value.
    #[test]
    fn a_top_level_field_named_like_a_properties_member_comes_after_it() {
        let stored = stored_properties(r#"{"properties":{"a":1,"b":{"c":{}}},"a":{"d":[]}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(stored, r#"{"a":1,"b":{"c":{}},"a":{"d":[]}}"#);
        let v: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(v, serde_json::json!({"a": {"d": []}, "b": {"c": {}}}));
        // The same for a name repeated at the top level: both are kept, in order.
        let stored = stored_properties(r#"{"properties":{},"x":1,"x":2}"#)
            .unwrap()
            .unwrap();
        assert_eq!(stored, r#"{"x":1,"x":2}"#);
        let v: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(v, serde_json::json!({"x": 2}));
    }

    #[test]
    fn event_time_out_of_range_is_an_invalid_value() {
        for millis in [
            i64::MAX.to_string(),
            i64::MIN.to_string(),
            (i64::MAX / 1000 + 1).to_string(),
            (i64::MIN / 1000 - 1).to_string(),
            // Integers `i64` does not hold at all.
            "9223372036854775808".to_string(),
            "-9223372036854775809".to_string(),
            "123456789012345678901234567890".to_string(),
        ] {
            let json = format!(
                r#"{{"event_id":"e","event_type":"click","event_time":{millis},"user_id":"u"}}"#
            );
            let e = header(&json).expect_err(&json);
            assert_eq!(e.code, ReasonCode::InvalidValue, "{json}: {e}");
            assert!(e.reason.contains("out of range"), "{e}");
        }
        // Representable but far away: outside the validation window.
        let (min, max) = ((i64::MIN / 1000).to_string(), (i64::MAX / 1000).to_string());
        let cases = [
            ("-1", ReasonCode::ExpiredEventTime),
            ("0", ReasonCode::ExpiredEventTime),
            (&min, ReasonCode::ExpiredEventTime),
            (&max, ReasonCode::FutureEventTime),
            ("\"0000-01-01T00:00:00Z\"", ReasonCode::ExpiredEventTime),
            (
                "\"9999-12-31T23:59:59.999999+00:00\"",
                ReasonCode::FutureEventTime,
            ),
            ("1.5e12", ReasonCode::WrongType),
            ("\"+10000-01-01T00:00:00Z\"", ReasonCode::InvalidValue),
        ];
        for (time, code) in cases {
            let json = format!(
                r#"{{"event_id":"e","event_type":"click","event_time":{time},"user_id":"u"}}"#
            );
            let e = header(&json).expect_err(&json);
            assert_eq!(e.code, code, "{json}: {e}");
        }
    }

    #[test]
    fn a_validation_window_without_limits_does_not_overflow() {
        let unlimited = Validation {
            max_future_micros: i64::MAX,
            retention_micros: i64::MAX,
            ..Validation::default()
        };
        let parse = |millis: i64, now: i64| {
            let json = format!(
                r#"{{"event_id":"e","event_type":"click","event_time":{millis},"user_id":"u"}}"#
            );
            let fields = RawFields::parse(json.as_bytes()).unwrap();
            Header::parse(&fields, &unlimited, now)
                .map(|h| h.event_time_micros)
                .map_err(|e| e.code)
        };
        let (max, min) = (i64::MAX / 1000, i64::MIN / 1000);
        // At 1970 every representable time is within the window.
        for millis in [max, min, -1] {
            assert_eq!(parse(millis, 0), Ok(millis * 1000));
        }
        // `now + max_future` saturates at `i64::MAX`: nothing is in the future.
        assert!(parse(max, NOW).is_ok());
        assert!(parse(max, i64::MAX).is_ok());
        assert_eq!(parse(-1, i64::MAX), Err(ReasonCode::ExpiredEventTime));
        // `now - retention` saturates at `i64::MIN`: nothing has expired.
        assert!(parse(min, i64::MIN).is_ok());
        assert!(parse(-1, i64::MIN).is_ok());
        assert_eq!(parse(0, i64::MIN), Err(ReasonCode::FutureEventTime));
    }

    /// Property test: whatever the `properties` object and the unknown top-level
    /// fields hold, the stored text is valid JSON with every one of them.
    mod merged_properties {
        use std::fmt::Write as _;

        use proptest::prelude::*;
        use serde_json::{Map, Value};

        use super::super::*;

        /// A JSON value as written on the wire: numbers as text, objects as member
        /// lists (a key may repeat).
        #[derive(Debug, Clone)]
        enum Json {
            Null,
            Bool(bool),
            Number(String),
            Str(String),
            Array(Vec<Json>),
            Object(Vec<(String, Json)>),
        }

        /// How the producer writes its JSON.
        #[derive(Debug, Clone)]
        struct Style {
            /// Between every two tokens.
            space: &'static str,
            /// Non-ASCII characters as `\uXXXX` escapes (surrogate pairs beyond U+FFFF).
            escape_non_ascii: bool,
            upper_hex: bool,
            escape_slash: bool,
        }

        impl Style {
            fn string(&self, s: &str, out: &mut String) {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str("\\t"),
                        '/' if self.escape_slash => out.push_str("\\/"),
                        c if (c as u32) < 0x20 || (self.escape_non_ascii && !c.is_ascii()) => {
                            let mut units = [0u16; 2];
                            for unit in c.encode_utf16(&mut units) {
                                if self.upper_hex {
                                    let _ = write!(out, "\\u{unit:04X}");
                                } else {
                                    let _ = write!(out, "\\u{unit:04x}");
                                }
                            }
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }

            fn members<'j>(
                &self,
                members: impl IntoIterator<Item = (&'j str, &'j Json)>,
                out: &mut String,
            ) {
                for (i, (key, value)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.space);
                        out.push(',');
                    }
                    out.push_str(self.space);
                    self.string(key, out);
                    out.push_str(self.space);
                    out.push(':');
                    out.push_str(self.space);
                    self.value(value, out);
                }
                out.push_str(self.space);
            }

            fn value(&self, v: &Json, out: &mut String) {
                match v {
                    Json::Null => out.push_str("null"),
                    Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                    Json::Number(n) => out.push_str(n),
                    Json::Str(s) => self.string(s, out),
                    Json::Array(items) => {
                        out.push('[');
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            out.push_str(self.space);
                            self.value(item, out);
                        }
                        out.push_str(self.space);
                        out.push(']');
                    }
                    Json::Object(members) => {
                        out.push('{');
                        self.members(members.iter().map(|(k, v)| (k.as_str(), v)), out);
                        out.push('}');
                    }
                }
            }

            fn text(&self, v: &Json) -> String {
                let mut out = String::new();
                self.value(v, &mut out);
                out
            }
        }

        fn style() -> impl Strategy<Value = Style> {
            (
                prop::sample::select(vec!["", " ", "\n", " \t\r\n "]),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(space, escape_non_ascii, upper_hex, escape_slash)| Style {
                    space,
                    escape_non_ascii,
                    upper_hex,
                    escape_slash,
                })
        }

        /// Text heavy in what JSON escapes, braces, and characters beyond ASCII and
        /// beyond the Basic Multilingual Plane.
        fn text(max_len: usize) -> impl Strategy<Value = String> {
            let c = prop_oneof![
                3 => proptest::char::range('a', 'c'),
                2 => prop::sample::select(vec![
                    '"', '\\', '\n', '\t', '\0', '\u{1f}', '/', '{', '}', '[', ']', ',', ':',
                    ' ', 'é', '\u{2028}', '\u{fffd}', '😀', '\u{10ffff}',
                ]),
                1 => any::<char>(),
            ];
            prop::collection::vec(c, 0..max_len).prop_map(|cs| cs.into_iter().collect())
        }

        /// JSON number text: integers of any size, fractions, exponents.
        fn number() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                proptest::string::string_regex(
                    "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,2})?"
                )
                .expect("a valid regex"),
            ]
        }

        /// Object keys: a few short names (so keys repeat) or any text.
        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec!["a", "b", "x"]).prop_map(String::from),
                text(6),
            ]
        }

        fn json() -> impl Strategy<Value = Json> {
            let leaf = prop_oneof![
                Just(Json::Null),
                any::<bool>().prop_map(Json::Bool),
                number().prop_map(Json::Number),
                text(8).prop_map(Json::Str),
                // Empty containers as leaves too, so they often end an object.
                Just(Json::Object(Vec::new())),
                Just(Json::Array(Vec::new())),
            ];
            leaf.prop_recursive(5, 64, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                    prop::collection::vec((key(), inner), 0..4).prop_map(Json::Object),
                ]
            })
        }

        /// The table's columns in this test.
        const COLUMNS: FieldSet = FieldSet::of(&[
            Field::EventId,
            Field::EventType,
            Field::EventTime,
            Field::UserId,
        ]);

        /// Names of top-level fields the table has no column for: any text, names of
        /// `properties` members, and known fields of the other table.
        fn extra_name() -> impl Strategy<Value = String> {
            prop_oneof![
                2 => key(),
                1 => prop::sample::select(vec!["items", "rank", "surface", "session_id"])
                    .prop_map(String::from),
            ]
            .prop_filter("not a column, not `properties`", |name| {
                Field::from_name(name)
                    .is_none_or(|f| f != Field::Properties && !COLUMNS.contains(f))
            })
        }

        #[derive(Debug, Clone)]
        enum Properties {
            Absent,
            Null,
            Object(Vec<(String, Json)>),
        }

        fn properties() -> impl Strategy<Value = Properties> {
            prop_oneof![
                1 => Just(Properties::Absent),
                1 => Just(Properties::Null),
                8 => prop::collection::vec((key(), json()), 0..5).prop_map(Properties::Object),
            ]
        }

        fn parse(text: &str) -> Value {
            serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("the test wrote invalid JSON {text:?}: {e}"))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn stored_properties_are_valid_json_with_every_field(
                props in properties(),
                extras in prop::collection::vec((extra_name(), json()), 0..4),
                before in 0usize..4,
                style in style(),
            ) {
                // One top-level field per name (a repeated known field keeps its
                // first value only, so repeats would need their own model).
                let mut seen = std::collections::HashSet::new();
                let extras: Vec<(String, Json)> =
                    extras.into_iter().filter(|(n, _)| seen.insert(n.clone())).collect();
                let before = before.min(extras.len());

                // The message, extra fields before and after `properties`.
                let props_text = match &props {
                    Properties::Absent => None,
                    Properties::Null => Some("null".to_string()),
                    Properties::Object(m) => Some(style.text(&Json::Object(m.clone()))),
                };
                let mut members: Vec<(&str, Json)> = vec![("event_id", Json::Str("e".into()))];
                members.extend(extras[..before].iter().map(|(n, v)| (n.as_str(), v.clone())));
                let mut message = String::from("{");
                style.members(members.iter().map(|(k, v)| (*k, v)), &mut message);
                if let Some(p) = &props_text {
                    message.push(',');
                    message.push_str(style.space);
                    style.string("properties", &mut message);
                    message.push_str(style.space);
                    message.push(':');
                    message.push_str(style.space);
                    message.push_str(p);
                }
                for (name, value) in &extras[before..] {
                    message.push(',');
                    style.members([(name.as_str(), value)], &mut message);
                }
                message.push('}');

                // Expected: the members of `properties`, then each extra field, a
                // later one replacing an earlier one of the same name.
                let mut expected = match &props {
                    Properties::Object(m) => match parse(&style.text(&Json::Object(m.clone()))) {
                        Value::Object(map) => map,
                        other => panic!("not an object: {other}"),
                    },
                    _ => Map::new(),
                };
                let has_object = matches!(props, Properties::Object(_));
                for (name, value) in &extras {
                    expected.insert(name.clone(), parse(&style.text(value)));
                }

                let fields = RawFields::parse(message.as_bytes())
                    .unwrap_or_else(|e| panic!("{message}: {e}"));
                let stored = properties_text(&fields, COLUMNS)
                    .unwrap_or_else(|e| panic!("{message}: {e}"));
                match stored {
                    None => prop_assert!(
                        !has_object && extras.is_empty(),
                        "nothing stored for {}", message
                    ),
                    Some(text) => {
                        let got: Value = serde_json::from_str(&text).map_err(|e| {
                            TestCaseError::fail(format!(
                                "{message}\nstored invalid JSON {text}: {e}"
                            ))
                        })?;
                        prop_assert_eq!(&got, &Value::Object(expected), "{}", message);
                        if extras.is_empty() {
                            prop_assert_eq!(Some(text.as_ref()), props_text.as_deref());
                        }
                    }
                }
            }
        }
    }
}
