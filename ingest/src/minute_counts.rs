//! The "ingested" side of the loss accounting: how many messages of each partition a
//! flush read per minute (of event time, or of the dead-letter rule in
//! [`hourlake_catalog::schema::accounting_time_micros`]), written to `ingested_minutes`
//! with the flush's `txn` offsets so each offset is counted exactly once. The compactor
//! compares these counts with what the tables hold (`loss_minutely`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use hourlake_catalog::schema::minute_of;
use hourlake_catalog::{partition, TableId};

use crate::offsets::TopicPartition;

/// One partition's messages of one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MinuteCount {
    tp: TopicPartition,
    minute: i64,
    messages: i64,
    first_offset: i64,
    last_offset: i64,
    last_read_micros: i64,
}

/// Messages counted per partition and minute, in the order first seen.
#[derive(Debug, Default)]
pub struct MinuteCounts {
    counts: Vec<MinuteCount>,
    /// The entry the last message went to: runs of one partition and minute are the
    /// common case, so most messages cost one comparison.
    last: Option<usize>,
}

impl MinuteCounts {
    /// Counts the message at `offset` of `tp`, whose accounting time is `at_micros`,
    /// read at `read_micros`.
    pub fn add(&mut self, tp: &TopicPartition, at_micros: i64, offset: i64, read_micros: i64) {
        let minute = minute_of(at_micros);
        let found = self
            .last
            .filter(|&i| self.counts[i].minute == minute && self.counts[i].tp == *tp)
            .or_else(|| {
                self.counts
                    .iter()
                    .position(|c| c.minute == minute && c.tp == *tp)
            });
        match found {
            Some(i) => {
                let c = &mut self.counts[i];
                c.messages += 1;
                c.first_offset = c.first_offset.min(offset);
                c.last_offset = c.last_offset.max(offset);
                c.last_read_micros = c.last_read_micros.max(read_micros);
                self.last = Some(i);
            }
            None => {
                self.counts.push(MinuteCount {
                    tp: tp.clone(),
                    minute,
                    messages: 1,
                    first_offset: offset,
                    last_offset: offset,
                    last_read_micros: read_micros,
                });
                self.last = Some(self.counts.len() - 1);
            }
        }
    }

    /// Counts the message in the entry the last one went to, when it is of the same
    /// partition and minute at a higher offset (so, like that one, not yet held by the
    /// table); whether it did. Otherwise the caller checks and calls [`MinuteCounts::add`].
    pub fn add_to_last(
        &mut self,
        tp: &TopicPartition,
        at_micros: i64,
        offset: i64,
        read_micros: i64,
    ) -> bool {
        let Some(c) = self.last.map(|i| &mut self.counts[i]) else {
            return false;
        };
        if c.minute != minute_of(at_micros) || offset <= c.last_offset || c.tp != *tp {
            return false;
        }
        c.messages += 1;
        c.last_offset = offset;
        c.last_read_micros = c.last_read_micros.max(read_micros);
        true
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The counts as `ingested_minutes` rows, leaving none behind.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let counts = std::mem::take(&mut self.counts);
        self.last = None;
        let n = counts.len();
        let mut topic = StringBuilder::with_capacity(n, n * 16);
        let mut partition_col = Int32Builder::with_capacity(n);
        let mut minute = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut messages = Int64Builder::with_capacity(n);
        let mut first = Int64Builder::with_capacity(n);
        let mut last = Int64Builder::with_capacity(n);
        let mut read = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut date = Date32Builder::with_capacity(n);
        let mut hour = Int32Builder::with_capacity(n);
        for c in &counts {
            topic.append_value(&c.tp.topic);
            partition_col.append_value(c.tp.partition);
            minute.append_value(c.minute);
            messages.append_value(c.messages);
            first.append_value(c.first_offset);
            last.append_value(c.last_offset);
            read.append_value(c.last_read_micros);
            let (d, h) = partition::date_and_hour(c.minute);
            date.append_value(d);
            hour.append_value(h);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(topic.finish()),
            Arc::new(partition_col.finish()),
            Arc::new(minute.finish()),
            Arc::new(messages.finish()),
            Arc::new(first.finish()),
            Arc::new(last.finish()),
            Arc::new(read.finish()),
            Arc::new(date.finish()),
            Arc::new(hour.finish()),
        ];
        RecordBatch::try_new(TableId::IngestedMinutes.schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};

    use super::*;

    #[test]
    fn counts_per_partition_and_minute_with_offset_bounds() {
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        let m0 = 1_795_355_100_000_000; // a whole minute
        let mut counts = MinuteCounts::default();
        counts.add(&a, m0 + 1, 10, 5);
        counts.add(&a, m0 + 59_999_999, 11, 6);
        counts.add(&b, m0, 3, 7);
        counts.add(&a, m0 + 60_000_000, 12, 8);
        counts.add(&a, m0 + 2, 13, 4); // back to the first minute
        let batch = counts.finish().unwrap();
        assert!(counts.is_empty(), "finish leaves nothing behind");
        assert_eq!(batch.num_rows(), 3);
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let minutes = col("minute");
        let minutes = minutes.as_primitive::<TimestampMicrosecondType>();
        let messages = col("messages");
        let messages = messages.as_primitive::<Int64Type>();
        let first = col("first_offset");
        let first = first.as_primitive::<Int64Type>();
        let last = col("last_offset");
        let last = last.as_primitive::<Int64Type>();
        let read = col("_ingested_at");
        let read = read.as_primitive::<TimestampMicrosecondType>();
        let row = |i: usize| {
            (
                minutes.value(i),
                messages.value(i),
                first.value(i),
                last.value(i),
                read.value(i),
            )
        };
        assert_eq!(row(0), (m0, 3, 10, 13, 6));
        assert_eq!(row(1), (m0, 1, 3, 3, 7));
        assert_eq!(row(2), (m0 + 60_000_000, 1, 12, 12, 8));
        let partitions = col("_kafka_partition");
        let partitions = partitions.as_primitive::<arrow::datatypes::Int32Type>();
        assert_eq!(partitions.values().to_vec(), vec![0, 1, 0]);
        // The fast path takes only a later offset of the last entry's partition and minute.
        let mut fast = MinuteCounts::default();
        assert!(!fast.add_to_last(&a, m0, 1, 0), "nothing counted yet");
        fast.add(&a, m0, 1, 0);
        assert!(fast.add_to_last(&a, m0 + 5, 2, 3));
        assert!(!fast.add_to_last(&a, m0 + 6, 2, 3), "not a later offset");
        assert!(!fast.add_to_last(&b, m0, 3, 3), "another partition");
        assert!(
            !fast.add_to_last(&a, m0 + 60_000_000, 3, 3),
            "another minute"
        );
        let batch = fast.finish().unwrap();
        let messages = batch.column_by_name("messages").unwrap().clone();
        assert_eq!(
            messages.as_primitive::<Int64Type>().values().to_vec(),
            vec![2]
        );
        // A minute before 1970 starts at or before its instant.
        counts.add(&a, -1, 0, 0);
        let batch = counts.finish().unwrap();
        let minutes = batch.column_by_name("minute").unwrap().clone();
        assert_eq!(
            minutes.as_primitive::<TimestampMicrosecondType>().value(0),
            -60_000_000
        );
    }
}
