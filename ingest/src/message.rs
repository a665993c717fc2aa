//! What ingest knows about a Kafka message besides its payload.

/// Where a message came from and when it was read.
#[derive(Debug, Clone, Copy)]
pub struct MessageMeta<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    /// The Kafka message timestamp, microseconds UTC, when the broker gave one.
    pub timestamp_micros: Option<i64>,
    /// Ingest's clock when the message was decoded, microseconds UTC.
    pub ingested_at_micros: i64,
}
