//! The event contract (`docs/events.md`) checked without building rows: what the
//! collector asks before it accepts an event, answered by the same decoder and with the
//! same reasons as ingest's dead letters.

use std::borrow::Cow;

use hourlake_catalog::{EventKind, EventType};

use crate::decode::{self, Validation};
use crate::rejection::Rejection;
use crate::rows::{EngagementFields, RecommendationFields};

/// An event that passed every check ingest makes.
#[derive(Debug)]
pub struct CheckedEvent<'a> {
    pub event_id: Cow<'a, str>,
    pub event_type: EventType,
    pub user_id: Cow<'a, str>,
    pub event_time_micros: i64,
}

impl CheckedEvent<'_> {
    /// Which table (and topic) the event belongs to.
    pub fn kind(&self) -> EventKind {
        self.event_type.kind()
    }
}

/// Checks one event's bytes against the contract, with `now_micros` as the clock for
/// the event-time window; the rejection is the one ingest would dead-letter it with.
pub fn check<'a>(
    payload: &'a [u8],
    validation: &Validation,
    now_micros: i64,
) -> Result<CheckedEvent<'a>, Rejection> {
    let (fields, header) = decode::event(payload, validation, now_micros)?;
    match header.event_type.kind() {
        EventKind::Engagement => drop(EngagementFields::parse(&fields)?),
        EventKind::Recommendation => drop(RecommendationFields::parse(&fields)?),
    }
    Ok(CheckedEvent {
        event_id: header.event_id,
        event_type: header.event_type,
        user_id: header.user_id,
        event_time_micros: header.event_time_micros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejection::ReasonCode;

    const NOW: i64 = 1_764_547_200_000_000; // 2025-12-01T00:00:00Z

    #[test]
    fn checks_common_and_table_fields_with_ingest_reasons() {
        let v = Validation::default();
        let ok = br#"{"event_id":"e1","event_type":"purchase","event_time":"2025-11-30T23:00:00Z","user_id":"u1","amount":3.5}"#;
        let event = check(ok, &v, NOW).expect("valid");
        assert_eq!(event.kind(), EventKind::Engagement);
        assert_eq!(event.user_id, "u1");
        assert_eq!(event.event_time_micros, NOW - 3_600_000_000);

        let rec = br#"{"event_id":"e2","event_type":"rec_served","event_time":1764543600000,"user_id":"u2","items":[{"item_id":"i","rank":1}]}"#;
        assert_eq!(
            check(rec, &v, NOW).expect("valid").kind(),
            EventKind::Recommendation
        );

        let cases: [(&[u8], ReasonCode); 5] = [
            (b"{not json", ReasonCode::BadJson),
            (br#"{"event_id":"e","event_type":"click","event_time":1764543600000}"#, ReasonCode::MissingField),
            // a table field of the wrong type is caught, not only the common fields
            (br#"{"event_id":"e","event_type":"purchase","event_time":1764543600000,"user_id":"u","amount":"3"}"#, ReasonCode::WrongType),
            (br#"{"event_id":"e","event_type":"purchase","event_time":1764543600000,"user_id":"u","amount":-1}"#, ReasonCode::InvalidValue),
            (br#"{"event_id":"e","event_type":"rec_served","event_time":1764543600000,"user_id":"u","items":[{"rank":1}]}"#, ReasonCode::WrongType),
        ];
        for (payload, code) in cases {
            let rejection = check(payload, &v, NOW).expect_err("rejected");
            assert_eq!(rejection.code, code, "{}", String::from_utf8_lossy(payload));
        }
    }
}
