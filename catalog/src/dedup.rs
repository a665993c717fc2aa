//! Which copy of a resent event counts. Producers resend at least once, so one
//! `event_id` can arrive more than once; everywhere (the compactor's rewrites and
//! rollups, the views' raw hours) the copy ingested first is kept, ties broken by its
//! Kafka position, and every later copy is a duplicate.

use crate::schema::{EVENT_ID, INGESTED_AT, KAFKA_OFFSET, KAFKA_PARTITION, KAFKA_TOPIC};

/// The order the copies of one event are ranked in; the first is kept.
pub const COPY_ORDER: [&str; 4] = [INGESTED_AT, KAFKA_TOPIC, KAFKA_PARTITION, KAFKA_OFFSET];

/// SQL numbering the copies of each event 1, 2, … in [`COPY_ORDER`]: copy 1 is the one
/// kept. `alias` qualifies the columns (`Some("s")`: `s.event_id`, …).
pub fn copy_number_sql(alias: Option<&str>) -> String {
    let prefix = alias.map(|a| format!("{a}.")).unwrap_or_default();
    let order = COPY_ORDER
        .iter()
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("row_number() OVER (PARTITION BY {prefix}{EVENT_ID} ORDER BY {order})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_ingested_copy_is_numbered_one() {
        assert_eq!(
            copy_number_sql(None),
            "row_number() OVER (PARTITION BY event_id \
             ORDER BY _ingested_at, _kafka_topic, _kafka_partition, _kafka_offset)"
        );
        assert_eq!(
            copy_number_sql(Some("s")),
            "row_number() OVER (PARTITION BY s.event_id \
             ORDER BY s._ingested_at, s._kafka_topic, s._kafka_partition, s._kafka_offset)"
        );
    }
}
