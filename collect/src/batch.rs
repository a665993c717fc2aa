//! A batch's events checked against the event contract: what goes to which topic under
//! which key, and why each of the others was refused.

use std::borrow::Cow;

use hourlake_catalog::EventKind;
use hourlake_ingest::Validation;
use serde::Serialize;

/// An event that passed the contract, ready to be produced.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub kind: EventKind,
    /// The Kafka key: the user id, so a user's events stay in one partition, in order.
    pub key: Cow<'a, str>,
    pub payload: &'a [u8],
    /// Minute of event time (minutes since the Unix epoch).
    pub minute: i64,
}

/// An event of the batch that was refused, with ingest's reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Refused {
    /// Position of the event in the batch (0-based; NDJSON counts non-blank lines).
    pub index: usize,
    pub reason_code: &'static str,
    pub message: String,
}

/// The events of one batch, sorted into what is produced and what is refused.
#[derive(Debug, Default)]
pub struct CheckedBatch<'a> {
    pub outgoing: Vec<Outgoing<'a>>,
    pub refused: Vec<Refused>,
}

/// Checks every event with ingest's decoder, with `now_micros` as the clock.
pub fn check<'a>(
    events: &[&'a [u8]],
    validation: &Validation,
    now_micros: i64,
) -> CheckedBatch<'a> {
    let mut batch = CheckedBatch::default();
    for (index, payload) in events.iter().enumerate() {
        match hourlake_ingest::check(payload, validation, now_micros) {
            Ok(event) => batch.outgoing.push(Outgoing {
                kind: event.kind(),
                key: event.user_id,
                payload,
                minute: event.event_time_micros.div_euclid(60_000_000),
            }),
            Err(rejection) => batch.refused.push(Refused {
                index,
                reason_code: rejection.code.as_str(),
                message: rejection.reason,
            }),
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_events_go_out_keyed_by_user_and_bad_ones_keep_their_index() {
        let now = 1_764_547_200_000_000;
        let events: [&[u8]; 4] = [
            br#"{"event_id":"a","event_type":"click","event_time":1764547140000,"user_id":"u1"}"#,
            b"{oops",
            br#"{"event_id":"b","event_type":"rec_click","event_time":1764547199999,"user_id":"u2"}"#,
            br#"{"event_id":"c","event_type":"teleport","event_time":1764547140000,"user_id":"u3"}"#,
        ];
        let batch = check(&events, &Validation::default(), now);
        let out: Vec<_> = batch
            .outgoing
            .iter()
            .map(|o| (o.kind, o.key.to_string(), o.minute))
            .collect();
        assert_eq!(
            out,
            vec![
                (EventKind::Engagement, "u1".into(), 1_764_547_140 / 60),
                (EventKind::Recommendation, "u2".into(), 1_764_547_199 / 60),
            ]
        );
        let refused: Vec<_> = batch
            .refused
            .iter()
            .map(|r| (r.index, r.reason_code))
            .collect();
        assert_eq!(refused, vec![(1, "bad_json"), (3, "unknown_event_type")]);
    }
}
