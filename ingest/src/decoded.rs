//! Messages decoded into rows: each table's rows (or dead letters), the offsets they
//! came from, and the partitions each table has rows from. A chunk of the flush window
//! decodes into one [`DecodedRows`]; its [`FlushJob`] is what a flush writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use hourlake_catalog::schema::accounting_time_micros;
use hourlake_catalog::{EventKind, TableId};

use crate::dead_letter::DeadLetterRows;
use crate::decode::{self, Validation};
use crate::first_hour::FirstHourRows;
use crate::message::MessageMeta;
use crate::minute_counts::MinuteCounts;
use crate::offsets::{CommittedOffsets, HeldOffsets, TopicPartition};
use crate::rows::{EngagementRows, RecommendationRows};
use crate::IngestError;

/// First and last offset of a partition read into a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    pub first: i64,
    pub last: i64,
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Buffered for this table.
    Buffered(TableId),
    /// Already in its table (a re-read after a restart): skipped.
    AlreadyCommitted(TableId),
}

/// Rows of every table decoded from a run of messages, and the offsets they came from.
pub struct DecodedRows<'a> {
    /// What each table already holds: such messages are skipped for it.
    committed: &'a CommittedOffsets,
    validation: &'a Validation,
    engagement: FirstHourRows<EngagementRows>,
    recommendation: FirstHourRows<RecommendationRows>,
    dead_letters: DeadLetterRows,
    /// Messages read per partition and minute, for `ingested_minutes`.
    minutes: MinuteCounts,
    /// The partition of the latest messages (they come in runs per partition): what
    /// is known of it, kept here until another partition's message or `take`.
    current: Option<Run>,
    ranges: BTreeMap<TopicPartition, OffsetRange>,
    touched: BTreeMap<TableId, BTreeSet<TopicPartition>>,
}

// `Run::touched` has a bit per table.
const _: () = assert!(TableId::ALL.len() <= u32::BITS as usize);

/// A run of messages of one partition: their offsets, what each table already holds
/// of the partition, and the tables they went to, looked up once per run.
struct Run {
    tp: TopicPartition,
    range: OffsetRange,
    held: HeldOffsets,
    /// The tables with rows from the run, one bit per `TableId as usize`.
    touched: u32,
}

/// Rows ready to be written: each table's batches (per decoded chunk its first hour's
/// rows, then the others', each in message order; never merged, so a window's rows are
/// held once), and the offsets.
pub struct FlushJob {
    pub batches: BTreeMap<TableId, Vec<RecordBatch>>,
    /// Partitions each table has rows from.
    pub touched: BTreeMap<TableId, BTreeSet<TopicPartition>>,
    pub ranges: BTreeMap<TopicPartition, OffsetRange>,
}

impl FlushJob {
    /// How many rows of `table` the job holds.
    pub fn num_rows(&self, table: TableId) -> usize {
        self.batches
            .get(&table)
            .map_or(0, |b| b.iter().map(RecordBatch::num_rows).sum())
    }

    /// All rows of `table` in one batch (tests only: the pipeline never merges).
    #[cfg(test)]
    pub(crate) fn merged(&self, table: TableId) -> RecordBatch {
        let batches = &self.batches[&table];
        arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap()
    }
}

impl<'a> DecodedRows<'a> {
    /// No rows yet; messages will be checked against `validation`, and skipped for a
    /// table that already holds them by `committed`.
    pub fn new(committed: &'a CommittedOffsets, validation: &'a Validation) -> DecodedRows<'a> {
        DecodedRows {
            committed,
            validation,
            engagement: FirstHourRows::default(),
            recommendation: FirstHourRows::default(),
            dead_letters: DeadLetterRows::default(),
            minutes: MinuteCounts::default(),
            current: None,
            ranges: BTreeMap::new(),
            touched: BTreeMap::new(),
        }
    }

    /// The run `tp`'s message at `offset` belongs to: the current one, or a new one
    /// (the current run recorded first).
    fn run_of(&mut self, tp: &TopicPartition, offset: i64) -> &mut Run {
        let same = self.current.as_ref().is_some_and(|run| {
            run.tp.partition == tp.partition
                && (Arc::ptr_eq(&run.tp.topic, &tp.topic) || run.tp.topic == tp.topic)
        });
        if !same {
            self.end_run();
        }
        let committed = self.committed;
        let run = self.current.get_or_insert_with(|| Run {
            tp: tp.clone(),
            range: OffsetRange {
                first: offset,
                last: offset,
            },
            held: committed.held(tp),
            touched: 0,
        });
        run.range.last = offset;
        run
    }

    /// Records the current run's offsets and tables.
    fn end_run(&mut self) {
        let Some(run) = self.current.take() else {
            return;
        };
        for &table in TableId::ALL {
            if run.touched & (1 << table as u32) != 0 {
                let partitions = self.touched.entry(table).or_default();
                if !partitions.contains(&run.tp) {
                    partitions.insert(run.tp.clone());
                }
            }
        }
        self.ranges
            .entry(run.tp)
            .and_modify(|range| range.last = run.range.last)
            .or_insert(run.range);
    }

    /// Decodes and validates one message and appends it to its table's rows, or to the
    /// dead letters; a message its table already holds is skipped.
    pub fn add(&mut self, tp: &TopicPartition, payload: &[u8], meta: &MessageMeta<'_>) -> Routed {
        let held = self.run_of(tp, meta.offset).held;
        let rejection = match decode::event(payload, self.validation, meta.ingested_at_micros) {
            Ok((fields, header)) => {
                let table = header.event_type.kind().table();
                if held.already_in(table, meta.offset) {
                    self.count(tp, header.event_time_micros, meta, held);
                    return Routed::AlreadyCommitted(table);
                }
                let time = header.event_time_micros;
                let appended = match header.event_type.kind() {
                    EventKind::Engagement => self
                        .engagement
                        .rows_for(time)
                        .append(&fields, &header, meta),
                    EventKind::Recommendation => self
                        .recommendation
                        .rows_for(time)
                        .append(&fields, &header, meta),
                };
                match appended {
                    Ok(()) => {
                        self.count(tp, header.event_time_micros, meta, held);
                        return self.buffered(table);
                    }
                    Err(rejection) => rejection,
                }
            }
            Err(rejection) => rejection,
        };
        let table = TableId::DeadLetters;
        self.count(
            tp,
            accounting_time_micros(meta.timestamp_micros, meta.ingested_at_micros),
            meta,
            held,
        );
        if held.already_in(table, meta.offset) {
            return Routed::AlreadyCommitted(table);
        }
        self.dead_letters.append(meta, payload, &rejection);
        self.buffered(table)
    }

    /// Counts the message in `ingested_minutes` under the minute of `at_micros`,
    /// unless that table already holds it (by `held`, what the tables hold of `tp`).
    fn count(
        &mut self,
        tp: &TopicPartition,
        at_micros: i64,
        meta: &MessageMeta<'_>,
        held: HeldOffsets,
    ) {
        // Most messages follow one of the same partition and minute at a higher offset:
        // counted there without looking anything up.
        if self
            .minutes
            .add_to_last(tp, at_micros, meta.offset, meta.ingested_at_micros)
        {
            return;
        }
        if held.already_in(TableId::IngestedMinutes, meta.offset) {
            return;
        }
        self.minutes
            .add(tp, at_micros, meta.offset, meta.ingested_at_micros);
        self.buffered(TableId::IngestedMinutes);
    }

    /// Marks the message being added (the current run's) as buffered for `table`.
    fn buffered(&mut self, table: TableId) -> Routed {
        if let Some(run) = self.current.as_mut() {
            run.touched |= 1 << table as u32;
        }
        Routed::Buffered(table)
    }

    /// Takes everything decoded, leaving no rows behind.
    pub fn take(&mut self) -> Result<FlushJob, IngestError> {
        self.end_run();
        let mut batches = BTreeMap::new();
        if !self.engagement.is_empty() {
            batches.insert(TableId::EngagementEvents, self.engagement.finish()?);
        }
        if !self.recommendation.is_empty() {
            batches.insert(TableId::RecommendationEvents, self.recommendation.finish()?);
        }
        if !self.dead_letters.is_empty() {
            batches.insert(TableId::DeadLetters, vec![self.dead_letters.finish()?]);
        }
        if !self.minutes.is_empty() {
            batches.insert(TableId::IngestedMinutes, vec![self.minutes.finish()?]);
        }
        Ok(FlushJob {
            batches,
            touched: std::mem::take(&mut self.touched),
            ranges: std::mem::take(&mut self.ranges),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use arrow::array::AsArray;

    use super::*;

    const NOW: i64 = 1_795_355_100_000_000;

    /// A message of partition `t-0` at `offset`, read at `NOW`.
    pub(crate) fn meta(offset: i64) -> MessageMeta<'static> {
        MessageMeta {
            topic: "t",
            partition: 0,
            offset,
            key: None,
            timestamp_micros: None,
            ingested_at_micros: NOW,
        }
    }

    #[test]
    fn routes_good_bad_and_already_committed_messages() {
        let tp = TopicPartition::new("t", 0);
        let mut committed = CommittedOffsets::default();
        committed.set(TableId::EngagementEvents, tp.clone(), 0);
        let v = Validation::default();
        let mut w = DecodedRows::new(&committed, &v);
        let good = br#"{"event_id":"e1","event_type":"click","event_time":1795355100000,"user_id":"u","device":{"type":"phone","os":"ios","app_version":"1"}}"#;
        let rec = br#"{"event_id":"e2","event_type":"rec_served","event_time":1795355100000,"user_id":"u","items":[{"item_id":"i","score":0.5,"rank":1}]}"#;
        assert_eq!(
            w.add(&tp, good, &meta(0)),
            Routed::AlreadyCommitted(TableId::EngagementEvents)
        );
        assert_eq!(
            w.add(&tp, good, &meta(1)),
            Routed::Buffered(TableId::EngagementEvents)
        );
        assert_eq!(
            w.add(&tp, rec, &meta(2)),
            Routed::Buffered(TableId::RecommendationEvents)
        );
        assert_eq!(
            w.add(&tp, b"{oops", &meta(3)),
            Routed::Buffered(TableId::DeadLetters)
        );
        let wrong = br#"{"event_id":"e3","event_type":"session_end","event_time":1795355100000,"user_id":"u","session_length_ms":"long"}"#;
        assert_eq!(
            w.add(&tp, wrong, &meta(4)),
            Routed::Buffered(TableId::DeadLetters)
        );
        let big = vec![b' '; v.max_message_bytes + 1];
        assert_eq!(
            w.add(&tp, &big, &meta(5)),
            Routed::Buffered(TableId::DeadLetters)
        );
        let job = w.take().unwrap();
        assert_eq!(job.ranges[&tp], OffsetRange { first: 0, last: 5 });
        assert_eq!(job.num_rows(TableId::EngagementEvents), 1);
        assert_eq!(job.num_rows(TableId::RecommendationEvents), 1);
        let dead = &job.merged(TableId::DeadLetters);
        assert_eq!(dead.num_rows(), 3);
        let raw = dead.column_by_name("raw").unwrap().as_binary::<i32>();
        assert_eq!(
            raw.value(2).len(),
            crate::dead_letter::OVERSIZED_RAW_KEEP,
            "oversized raw is cut"
        );
        // Every message read is counted once per minute: events by event time, dead
        // letters (no Kafka timestamp here) by when they were read.
        let minutes = &job.merged(TableId::IngestedMinutes);
        let minute = minutes.column_by_name("minute").unwrap();
        let minute = minute.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let messages = minutes.column_by_name("messages").unwrap();
        let messages = messages.as_primitive::<arrow::datatypes::Int64Type>();
        let counted: Vec<(i64, i64)> = (0..minutes.num_rows())
            .map(|i| (minute.value(i), messages.value(i)))
            .collect();
        assert_eq!(
            counted,
            [(1_795_355_100_000_000, 6)],
            "the events' minute is the minute they were read in"
        );
        assert_eq!(job.touched[&TableId::IngestedMinutes].len(), 1);
        let again = w.take().unwrap();
        assert!(
            again.batches.is_empty() && again.ranges.is_empty() && again.touched.is_empty(),
            "take leaves nothing behind"
        );
    }

    #[test]
    fn interleaved_partitions_keep_their_own_offsets_tables_and_committed_state() {
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        let mut committed = CommittedOffsets::default();
        committed.set(TableId::EngagementEvents, b.clone(), 20);
        let v = Validation::default();
        let mut w = DecodedRows::new(&committed, &v);
        let click =
            br#"{"event_id":"e","event_type":"click","event_time":1795355100000,"user_id":"u"}"#;
        let rec = br#"{"event_id":"r","event_type":"rec_impression","event_time":1795355100000,"user_id":"u"}"#;
        let at = |tp: &TopicPartition, offset| MessageMeta {
            topic: "t",
            partition: tp.partition,
            ..meta(offset)
        };
        // a: 10, 11 · b: 20 (held already), 21 · a: 12 (a dead letter) · b: 22 (rec).
        let steps: [(&TopicPartition, &[u8], i64, Routed); 5] = [
            (&a, click, 10, Routed::Buffered(TableId::EngagementEvents)),
            (&a, click, 11, Routed::Buffered(TableId::EngagementEvents)),
            (
                &b,
                click,
                20,
                Routed::AlreadyCommitted(TableId::EngagementEvents),
            ),
            (&b, click, 21, Routed::Buffered(TableId::EngagementEvents)),
            (&a, b"{", 12, Routed::Buffered(TableId::DeadLetters)),
        ];
        for (tp, payload, offset, routed) in steps {
            assert_eq!(w.add(tp, payload, &at(tp, offset)), routed, "{tp} {offset}");
        }
        // The same partition under another `Arc` of its topic name is the same run.
        let b_again = TopicPartition::new("t", 1);
        assert_eq!(
            w.add(&b_again, rec, &at(&b, 22)),
            Routed::Buffered(TableId::RecommendationEvents)
        );
        let job = w.take().unwrap();
        assert_eq!(
            job.ranges[&a],
            OffsetRange {
                first: 10,
                last: 12
            }
        );
        assert_eq!(
            job.ranges[&b],
            OffsetRange {
                first: 20,
                last: 22
            }
        );
        assert_eq!(job.ranges.len(), 2);
        let touched = |t: TableId| {
            job.touched
                .get(&t)
                .map(|s| s.iter().cloned().collect::<Vec<_>>())
        };
        assert_eq!(
            touched(TableId::EngagementEvents),
            Some(vec![a.clone(), b.clone()])
        );
        assert_eq!(touched(TableId::DeadLetters), Some(vec![a.clone()]));
        assert_eq!(
            touched(TableId::RecommendationEvents),
            Some(vec![b.clone()])
        );
        assert_eq!(
            touched(TableId::IngestedMinutes),
            Some(vec![a.clone(), b.clone()])
        );
        assert_eq!(job.num_rows(TableId::EngagementEvents), 3);
        let again = w.take().unwrap();
        assert!(again.ranges.is_empty() && again.touched.is_empty());
    }

    #[test]
    fn a_message_counted_before_is_not_counted_again() {
        let tp = TopicPartition::new("t", 0);
        let mut committed = CommittedOffsets::default();
        committed.set(TableId::IngestedMinutes, tp.clone(), 1);
        let v = Validation::default();
        let mut w = DecodedRows::new(&committed, &v);
        for offset in 0..4 {
            assert_eq!(
                w.add(&tp, b"{oops", &meta(offset)),
                Routed::Buffered(TableId::DeadLetters)
            );
        }
        let job = w.take().unwrap();
        assert_eq!(job.num_rows(TableId::DeadLetters), 4);
        let minutes = &job.merged(TableId::IngestedMinutes);
        let messages = minutes.column_by_name("messages").unwrap();
        let messages = messages.as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(messages.values().to_vec(), vec![2], "offsets 2 and 3 only");
    }

    #[test]
    fn extreme_event_times_are_partitioned_or_dead_lettered() {
        use arrow::array::{Date32Array, Int32Array, StringArray};
        let tp = TopicPartition::new("t", 0);
        let c = CommittedOffsets::default();
        // No window limits and a clock at 1970, so the extremes reach the partition columns.
        let meta = |offset: i64| MessageMeta {
            ingested_at_micros: 0,
            ..meta(offset)
        };
        let v = Validation {
            max_future_micros: i64::MAX,
            retention_micros: i64::MAX,
            ..Validation::default()
        };
        let event = |time: String| {
            format!(r#"{{"event_id":"e","event_type":"click","event_time":{time},"user_id":"u"}}"#)
        };
        let mut w = DecodedRows::new(&c, &v);
        let stored = [i64::MAX / 1000, i64::MIN / 1000, -1];
        for (offset, millis) in stored.iter().enumerate() {
            let routed = w.add(
                &tp,
                event(millis.to_string()).as_bytes(),
                &meta(offset as i64),
            );
            assert_eq!(
                routed,
                Routed::Buffered(TableId::EngagementEvents),
                "{millis}"
            );
        }
        let rejected = [
            i64::MAX.to_string(),
            i64::MIN.to_string(),
            "1e400".to_string(),
        ];
        for (offset, time) in rejected.iter().enumerate() {
            let routed = w.add(
                &tp,
                event(time.clone()).as_bytes(),
                &meta(10 + offset as i64),
            );
            assert_eq!(routed, Routed::Buffered(TableId::DeadLetters), "{time}");
        }
        let job = w.take().unwrap();
        let rows = &job.merged(TableId::EngagementEvents);
        let dates = rows.column_by_name("event_date").unwrap();
        let dates = dates.as_any().downcast_ref::<Date32Array>().unwrap();
        let hours = rows.column_by_name("event_hour").unwrap();
        let hours = hours.as_any().downcast_ref::<Int32Array>().unwrap();
        for (i, millis) in stored.iter().enumerate() {
            let (date, hour) = hourlake_catalog::partition::date_and_hour(millis * 1000);
            assert_eq!((dates.value(i), hours.value(i)), (date, hour));
            assert!((0..24).contains(&hour));
        }
        assert_eq!(
            (dates.value(2), hours.value(2)),
            (-1, 23),
            "just before 1970"
        );
        let dead = &job.merged(TableId::DeadLetters);
        let codes = dead.column_by_name("reason_code").unwrap();
        let codes = codes.as_any().downcast_ref::<StringArray>().unwrap();
        let codes: Vec<&str> = codes.iter().flatten().collect();
        assert_eq!(codes, ["invalid_value", "invalid_value", "wrong_type"]);
    }

    /// Every buffer of `data` (and of its children) is exactly as long as its contents.
    fn assert_fitted(data: &arrow::array::ArrayData, what: &str) {
        for buffer in data.buffers() {
            assert_eq!(buffer.capacity(), buffer.len(), "{what}: spare capacity");
        }
        if let Some(nulls) = data.nulls() {
            let buffer = nulls.buffer();
            assert_eq!(
                buffer.capacity(),
                buffer.len(),
                "{what}: spare null capacity"
            );
        }
        for child in data.child_data() {
            assert_fitted(child, what);
        }
    }

    #[test]
    fn decoded_rows_hold_no_spare_capacity() {
        let tp = TopicPartition::new("t", 0);
        let (committed, v) = (CommittedOffsets::default(), Validation::default());
        let mut w = DecodedRows::new(&committed, &v);
        for offset in 0..1500 {
            let payload = match offset % 3 {
                0 => format!(
                    r#"{{"event_id":"e{offset}","event_type":"rec_served","event_time":1795355100000,"user_id":"u{offset}","request_id":"r","items":[{{"item_id":"i","score":0.5,"rank":1}}]}}"#
                ),
                1 => "{broken".to_string(),
                _ => format!(
                    r#"{{"event_id":"e{offset}","event_type":"screen_view","event_time":1795355100000,"user_id":"u{offset}","screen":"home","device":{{"type":"phone"}}}}"#
                ),
            };
            w.add(&tp, payload.as_bytes(), &meta(offset));
        }
        let job = w.take().unwrap();
        for table in [
            TableId::EngagementEvents,
            TableId::RecommendationEvents,
            TableId::DeadLetters,
        ] {
            let batches = &job.batches[&table];
            assert_eq!(batches.len(), 1);
            assert_eq!(batches[0].num_rows(), 500);
            for (field, column) in batches[0]
                .schema()
                .fields()
                .iter()
                .zip(batches[0].columns())
            {
                assert_fitted(&column.to_data(), &format!("{table}.{}", field.name()));
            }
        }
    }
}
