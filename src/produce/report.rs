use std::collections::BTreeMap;

use serde::Serialize;

use super::world::What;

/// What `hourlake produce` delivered, printed as JSON at the end so tests can reconcile.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Messages acknowledged by Kafka, of every kind.
    pub sent: u64,
    /// Distinct valid events (first sends), by `event_type`.
    pub events_by_type: BTreeMap<&'static str, u64>,
    /// Valid events whose event time was pushed hours into the past.
    pub late: u64,
    /// Resends of an already-sent event (same bytes, same event_id), by `event_type`.
    pub duplicates_by_type: BTreeMap<&'static str, u64>,
    /// All resends.
    pub duplicates: u64,
    /// Malformed messages by kind.
    pub malformed_by_kind: BTreeMap<&'static str, u64>,
    /// Malformed messages by the `reason_code` ingest should give them.
    pub malformed_by_reason_code: BTreeMap<&'static str, u64>,
    /// All malformed messages.
    pub malformed: u64,
    /// Messages Kafka did not acknowledge.
    pub failed: u64,
    /// Wall time of the run, seconds.
    pub elapsed_s: f64,
}

impl Report {
    pub(super) fn record(&mut self, what: What) {
        self.sent += 1;
        match what {
            What::Event { event_type, late } => {
                *self.events_by_type.entry(event_type.as_str()).or_default() += 1;
                self.late += u64::from(late);
            }
            What::Duplicate { event_type } => {
                *self
                    .duplicates_by_type
                    .entry(event_type.as_str())
                    .or_default() += 1;
                self.duplicates += 1;
            }
            What::Malformed(kind) => {
                *self.malformed_by_kind.entry(kind.name()).or_default() += 1;
                *self
                    .malformed_by_reason_code
                    .entry(kind.expected_reason_code())
                    .or_default() += 1;
                self.malformed += 1;
            }
        }
    }
}
