//! Dead letters: messages ingest could not accept, kept with their reason.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, Date32Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use hourlake_catalog::{partition, TableId};

use crate::message::MessageMeta;
use crate::rejection::{ReasonCode, Rejection};

/// How many bytes of an oversized message are kept in `raw`.
pub const OVERSIZED_RAW_KEEP: usize = 64 * 1024;

/// Arrow builders for `dead_letters` rows.
pub struct DeadLetterRows {
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    key: BinaryBuilder,
    kafka_timestamp: TimestampMicrosecondBuilder,
    raw: BinaryBuilder,
    raw_size: Int64Builder,
    reason_code: StringBuilder,
    reason: StringBuilder,
    ingested_at: TimestampMicrosecondBuilder,
    ingest_date: Date32Builder,
}

impl Default for DeadLetterRows {
    fn default() -> Self {
        DeadLetterRows {
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            key: BinaryBuilder::new(),
            kafka_timestamp: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            raw: BinaryBuilder::new(),
            raw_size: Int64Builder::new(),
            reason_code: StringBuilder::new(),
            reason: StringBuilder::new(),
            ingested_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            ingest_date: Date32Builder::new(),
        }
    }
}

impl DeadLetterRows {
    /// Adds one rejected message.
    pub fn append(&mut self, meta: &MessageMeta<'_>, payload: &[u8], rejection: &Rejection) {
        self.topic.append_value(meta.topic);
        self.partition.append_value(meta.partition);
        self.offset.append_value(meta.offset);
        self.key.append_option(meta.key);
        self.kafka_timestamp.append_option(meta.timestamp_micros);
        let keep = if rejection.code == ReasonCode::Oversized {
            payload.len().min(OVERSIZED_RAW_KEEP)
        } else {
            payload.len()
        };
        self.raw.append_value(&payload[..keep]);
        self.raw_size.append_value(payload.len() as i64);
        self.reason_code.append_value(rejection.code.as_str());
        self.reason.append_value(&rejection.reason);
        self.ingested_at.append_value(meta.ingested_at_micros);
        self.ingest_date
            .append_value(partition::date_of(meta.ingested_at_micros));
    }

    /// Rows buffered so far.
    pub fn len(&self) -> usize {
        self.topic.len()
    }

    /// Whether no row is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the buffered rows as a batch with the `dead_letters` schema.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.kafka_timestamp.finish()),
            Arc::new(self.raw.finish()),
            Arc::new(self.raw_size.finish()),
            Arc::new(self.reason_code.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.ingested_at.finish()),
            Arc::new(self.ingest_date.finish()),
        ];
        RecordBatch::try_new(TableId::DeadLetters.schema(), crate::rows::fitted(columns))
    }
}
