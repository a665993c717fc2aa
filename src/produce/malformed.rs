//! Malformed messages of every kind ingest must dead-letter (see `docs/events.md`).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::world::{Outgoing, What};

/// The kinds of bad message the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MalformedKind {
    /// Truncated JSON text.
    BadJson,
    /// Valid JSON, but an array instead of an object.
    NotAnObject,
    /// `user_id` removed.
    MissingField,
    /// `event_time` given as a boolean.
    WrongType,
    /// `event_type` that does not exist.
    UnknownEventType,
    /// `event_time` 30 days ahead.
    FutureEventTime,
    /// `event_time` 400 days ago.
    ExpiredEventTime,
    /// `event_time` text that is not a timestamp.
    InvalidValue,
    /// Larger than ingest's message limit (1.5 MiB).
    Oversized,
}

impl MalformedKind {
    /// Every kind, in report order.
    pub const ALL: &'static [MalformedKind] = &[
        MalformedKind::BadJson,
        MalformedKind::NotAnObject,
        MalformedKind::MissingField,
        MalformedKind::WrongType,
        MalformedKind::UnknownEventType,
        MalformedKind::FutureEventTime,
        MalformedKind::ExpiredEventTime,
        MalformedKind::InvalidValue,
        MalformedKind::Oversized,
    ];

    /// The name used in the report.
    pub fn name(self) -> &'static str {
        match self {
            MalformedKind::BadJson => "bad_json",
            MalformedKind::NotAnObject => "not_an_object",
            MalformedKind::MissingField => "missing_field",
            MalformedKind::WrongType => "wrong_type",
            MalformedKind::UnknownEventType => "unknown_event_type",
            MalformedKind::FutureEventTime => "future_event_time",
            MalformedKind::ExpiredEventTime => "expired_event_time",
            MalformedKind::InvalidValue => "invalid_value",
            MalformedKind::Oversized => "oversized",
        }
    }

    /// The `reason_code` ingest is expected to give this message in `dead_letters`.
    pub fn expected_reason_code(self) -> &'static str {
        match self {
            MalformedKind::NotAnObject => "bad_json",
            other => other.name(),
        }
    }
}

/// Picks a kind; oversized messages are rare because they are large.
pub fn pick(rng: &mut ChaCha8Rng) -> MalformedKind {
    if rng.random_range(0..100) == 0 {
        return MalformedKind::Oversized;
    }
    let common = &MalformedKind::ALL[..MalformedKind::ALL.len() - 1];
    common[rng.random_range(0..common.len())]
}

const DAY_MICROS: i64 = 86_400_000_000;

/// Turns a good event into a bad message of the given kind (same key and topic).
pub fn corrupt(good: Outgoing, kind: MalformedKind, now_micros: i64) -> Outgoing {
    let mut value: Value = serde_json::from_slice(&good.payload).unwrap_or(Value::Null);
    let payload = match kind {
        MalformedKind::BadJson => good.payload[..good.payload.len() / 2].to_vec(),
        MalformedKind::NotAnObject => {
            serde_json::to_vec(&Value::Array(vec![value])).unwrap_or_default()
        }
        MalformedKind::Oversized => {
            value["properties"] = serde_json::json!({ "blob": "x".repeat(1536 * 1024) });
            serde_json::to_vec(&value).unwrap_or_default()
        }
        _ => {
            if let Some(obj) = value.as_object_mut() {
                match kind {
                    MalformedKind::MissingField => {
                        obj.remove("user_id");
                    }
                    MalformedKind::WrongType => {
                        obj.insert("event_time".into(), Value::Bool(true));
                    }
                    MalformedKind::UnknownEventType => {
                        obj.insert("event_type".into(), Value::from("app_crashed_weirdly"));
                    }
                    MalformedKind::FutureEventTime => {
                        obj.insert(
                            "event_time".into(),
                            Value::from((now_micros + 30 * DAY_MICROS) / 1000),
                        );
                    }
                    MalformedKind::ExpiredEventTime => {
                        obj.insert(
                            "event_time".into(),
                            Value::from((now_micros - 400 * DAY_MICROS) / 1000),
                        );
                    }
                    MalformedKind::InvalidValue => {
                        obj.insert("event_time".into(), Value::from("yesterday-ish"));
                    }
                    _ => {}
                }
            }
            serde_json::to_vec(&value).unwrap_or_default()
        }
    };
    Outgoing {
        payload,
        what: What::Malformed(kind),
        ..good
    }
}
