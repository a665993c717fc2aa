//! One table's rows of a chunk, kept in two sets of builders: the rows of the chunk's
//! first event hour, and all the others (late events, or the next hour at an hour's
//! turn). A chunk is mostly one hour plus a few late events, so its first batch goes
//! to its hour's file as it is and only the few others are split by hour. (Copying
//! every row of such a mixed chunk out by hour cost a twentieth of ingest's CPU:
//! benches/RESULTS.md, session 20.)

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use hourlake_catalog::partition;

/// Rows of one table being built, and taken as one batch.
pub trait TableRows: Default {
    /// Whether no row is buffered.
    fn is_empty(&self) -> bool;
    /// Takes the buffered rows as a batch with the table's schema.
    fn finish(&mut self) -> Result<RecordBatch, ArrowError>;
}

/// A table's rows of one chunk: those in the first row's hour, and the rest.
#[derive(Default)]
pub struct FirstHourRows<R> {
    hour: Option<(i32, i32)>,
    first: R,
    others: Option<R>,
}

impl<R: TableRows> FirstHourRows<R> {
    /// The builders for a row whose event time is `event_time_micros`.
    pub fn rows_for(&mut self, event_time_micros: i64) -> &mut R {
        let hour = partition::date_and_hour(event_time_micros);
        match self.hour {
            Some(first) if first != hour => self.others.get_or_insert_with(R::default),
            Some(_) => &mut self.first,
            None => {
                self.hour = Some(hour);
                &mut self.first
            }
        }
    }

    /// Takes the rows: the first hour's batch, then the others' (if any), none empty.
    /// The next row starts a new first hour.
    pub fn finish(&mut self) -> Result<Vec<RecordBatch>, ArrowError> {
        self.hour = None;
        let mut batches = Vec::new();
        for rows in std::iter::once(&mut self.first).chain(self.others.as_mut()) {
            if !rows.is_empty() {
                batches.push(rows.finish()?);
            }
        }
        self.others = None;
        Ok(batches)
    }

    /// Whether no row is buffered.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty() && self.others.as_ref().is_none_or(R::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;

    use super::*;
    use crate::decoded::tests::meta;
    use crate::decoded::DecodedRows;
    use crate::offsets::{CommittedOffsets, TopicPartition};
    use hourlake_catalog::TableId;

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn a_chunk_splits_into_its_first_hour_and_the_rest_keeping_order_within_each() {
        let tp = TopicPartition::new("t", 0);
        let (committed, validation) = (CommittedOffsets::default(), Default::default());
        let mut decoded = DecodedRows::new(&committed, &validation);
        // 10:00 UTC on its day; the hours, relative to it, of the events at offsets 0, 1, 2…
        let base = 1_795_354_800_000;
        let hours = [0, 0, -1, 0, -3, 1, -1, 0];
        for (offset, h) in hours.iter().enumerate() {
            let payload = format!(
                r#"{{"event_id":"e{offset}","event_type":"click","event_time":{},"user_id":"u"}}"#,
                base + h * HOUR_MS + 1_000
            );
            decoded.add(&tp, payload.as_bytes(), &meta(offset as i64));
        }
        let job = decoded.take().unwrap();
        let batches = &job.batches[&TableId::EngagementEvents];
        let ids = |b: &RecordBatch| -> Vec<String> {
            let ids = b.column_by_name("event_id").unwrap().as_string::<i32>();
            ids.iter().map(|v| v.unwrap().to_string()).collect()
        };
        assert_eq!(batches.len(), 2);
        assert_eq!(ids(&batches[0]), ["e0", "e1", "e3", "e7"]);
        assert_eq!(ids(&batches[1]), ["e2", "e4", "e5", "e6"]);

        // After a take, the next chunk's first hour is its own first row's.
        for offset in 8..11 {
            let payload = format!(
                r#"{{"event_id":"n{offset}","event_type":"click","event_time":{},"user_id":"u"}}"#,
                base - HOUR_MS
            );
            decoded.add(&tp, payload.as_bytes(), &meta(offset));
        }
        let job = decoded.take().unwrap();
        assert_eq!(job.batches[&TableId::EngagementEvents].len(), 1);
    }
}
