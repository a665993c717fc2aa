//! What ingest knows about a Kafka message besides its payload.

use rdkafka::message::Timestamp;

use crate::metrics::IngestMetrics;

/// Where a message came from and when it was read.
#[derive(Debug, Clone, Copy)]
pub struct MessageMeta<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    /// The Kafka message timestamp, microseconds UTC, when the broker gave one that
    /// fits (see `kafka_timestamp_micros`).
    pub timestamp_micros: Option<i64>,
    /// Ingest's clock when the message was decoded, microseconds UTC.
    pub ingested_at_micros: i64,
}

/// A Kafka message timestamp (epoch milliseconds, set by the producer or the broker)
/// in microseconds UTC, as stored in `dead_letters.kafka_timestamp`.
///
/// - No timestamp (`NotAvailable`, or Kafka's `-1` "none"): `None`.
/// - A timestamp whose microseconds fit in `i64` (including other negative values,
///   i.e. before 1970): `Some(millis * 1000)`, unchanged.
/// - A timestamp whose microseconds do not fit in `i64` (beyond about ±292 000 years):
///   `None`, and the `kafka_timestamp_out_of_range` counter of `metrics` goes up by
///   one. The message itself is not affected: the Kafka timestamp is metadata, the
///   event is validated from its payload alone (its own `event_time`), so it is never
///   dropped or dead-lettered for this. A counter rather than a log line: it cannot
///   flood the log when a producer sets such timestamps on every message, and it is
///   visible in the Prometheus metrics (`hourlake_ingest_kafka_timestamp_out_of_range_messages`).
pub fn kafka_timestamp_micros(timestamp: Timestamp, metrics: &IngestMetrics) -> Option<i64> {
    let millis = timestamp.to_millis()?;
    let micros = millis.checked_mul(1000);
    if micros.is_none() {
        metrics.kafka_timestamp_out_of_range.inc();
    }
    micros
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_timestamp_extremes_do_not_panic() {
        let metrics = IngestMetrics::default();
        let convert = |t| kafka_timestamp_micros(t, &metrics);
        // In range: exact conversion, both timestamp types.
        assert_eq!(
            convert(Timestamp::CreateTime(1_795_355_100_000)),
            Some(1_795_355_100_000_000)
        );
        assert_eq!(
            convert(Timestamp::LogAppendTime(1_795_355_100_000)),
            Some(1_795_355_100_000_000)
        );
        assert_eq!(convert(Timestamp::CreateTime(0)), Some(0));
        // Absent.
        assert_eq!(convert(Timestamp::NotAvailable), None);
        assert_eq!(convert(Timestamp::CreateTime(-1)), None);
        assert_eq!(convert(Timestamp::LogAppendTime(-1)), None);
        assert_eq!(metrics.kafka_timestamp_out_of_range.get(), 0);
        // Negative but representable: kept as it is (before 1970).
        assert_eq!(convert(Timestamp::CreateTime(-2)), Some(-2000));
        assert_eq!(
            convert(Timestamp::CreateTime(i64::MIN / 1000)),
            Some(i64::MIN / 1000 * 1000)
        );
        // The largest values that still fit.
        assert_eq!(
            convert(Timestamp::CreateTime(i64::MAX / 1000)),
            Some(i64::MAX / 1000 * 1000)
        );
        assert_eq!(metrics.kafka_timestamp_out_of_range.get(), 0);
        // Out of range: no timestamp, counted once each.
        for millis in [i64::MAX, i64::MIN, i64::MAX / 1000 + 1, i64::MIN / 1000 - 1] {
            assert_eq!(convert(Timestamp::CreateTime(millis)), None, "{millis}");
        }
        assert_eq!(convert(Timestamp::LogAppendTime(i64::MAX)), None);
        assert_eq!(metrics.kafka_timestamp_out_of_range.get(), 5);
    }
}
