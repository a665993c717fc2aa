//! Why a message is not an event: the reason code stored in `dead_letters.reason_code`
//! and the human-readable reason beside it.

use std::fmt;

/// Machine-readable reason a message was rejected (the `reason_code` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonCode {
    BadJson,
    MissingField,
    WrongType,
    InvalidValue,
    UnknownEventType,
    FutureEventTime,
    ExpiredEventTime,
    Oversized,
}

impl ReasonCode {
    /// The code as stored, e.g. `missing_field`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::BadJson => "bad_json",
            ReasonCode::MissingField => "missing_field",
            ReasonCode::WrongType => "wrong_type",
            ReasonCode::InvalidValue => "invalid_value",
            ReasonCode::UnknownEventType => "unknown_event_type",
            ReasonCode::FutureEventTime => "future_event_time",
            ReasonCode::ExpiredEventTime => "expired_event_time",
            ReasonCode::Oversized => "oversized",
        }
    }
}

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ReasonCode,
    pub reason: String,
}

impl Rejection {
    /// A rejection with `code` and a reason a person can act on.
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
