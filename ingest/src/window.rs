//! The flush window: decoded rows of every table, and the offsets they came from,
//! buffered until the flush policy says to commit.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use hourlake_catalog::{EventKind, TableId};

use crate::config::FlushPolicy;
use crate::dead_letter::{DeadLetterRows, ReasonCode};
use crate::decode::{Header, RawFields, Rejection, Validation};
use crate::message::MessageMeta;
use crate::offsets::{CommittedOffsets, TopicPartition};
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

/// Rows and offsets buffered since the last flush.
#[derive(Default)]
pub struct Window {
    engagement: EngagementRows,
    recommendation: RecommendationRows,
    dead_letters: DeadLetterRows,
    ranges: BTreeMap<TopicPartition, OffsetRange>,
    touched: BTreeMap<TableId, BTreeSet<TopicPartition>>,
    bytes: usize,
    opened_at: Option<Instant>,
}

/// A window ready to be written: one batch per table that has rows, and the offsets.
pub struct FlushJob {
    pub batches: BTreeMap<TableId, RecordBatch>,
    /// Partitions each table has rows from.
    pub touched: BTreeMap<TableId, BTreeSet<TopicPartition>>,
    pub ranges: BTreeMap<TopicPartition, OffsetRange>,
}

impl Window {
    /// Decodes, validates and buffers one message, or buffers it as a dead letter.
    pub fn add(
        &mut self,
        tp: &TopicPartition,
        payload: &[u8],
        meta: &MessageMeta<'_>,
        committed: &CommittedOffsets,
        validation: &Validation,
    ) -> Routed {
        self.opened_at.get_or_insert_with(Instant::now);
        match self.ranges.get_mut(tp) {
            Some(range) => range.last = meta.offset,
            None => {
                self.ranges.insert(
                    tp.clone(),
                    OffsetRange {
                        first: meta.offset,
                        last: meta.offset,
                    },
                );
            }
        }

        let decoded = if payload.len() > validation.max_message_bytes {
            Err(Rejection::new(
                ReasonCode::Oversized,
                format!(
                    "message is {} bytes, the limit is {}",
                    payload.len(),
                    validation.max_message_bytes
                ),
            ))
        } else {
            self.try_route(tp, payload, meta, committed, validation)
        };
        match decoded {
            Ok(routed) => routed,
            Err(rejection) => {
                let table = TableId::DeadLetters;
                if committed.already_in(table, tp, meta.offset) {
                    return Routed::AlreadyCommitted(table);
                }
                self.dead_letters.append(meta, payload, &rejection);
                self.bytes += payload.len().min(crate::dead_letter::OVERSIZED_RAW_KEEP)
                    + rejection.reason.len();
                self.touch(table, tp);
                Routed::Buffered(table)
            }
        }
    }

    fn try_route(
        &mut self,
        tp: &TopicPartition,
        payload: &[u8],
        meta: &MessageMeta<'_>,
        committed: &CommittedOffsets,
        validation: &Validation,
    ) -> Result<Routed, Rejection> {
        let fields = RawFields::parse(payload)?;
        let header = Header::parse(&fields, validation, meta.ingested_at_micros)?;
        let table = header.event_type.kind().table();
        if committed.already_in(table, tp, meta.offset) {
            return Ok(Routed::AlreadyCommitted(table));
        }
        match header.event_type.kind() {
            EventKind::Engagement => self.engagement.append(&fields, &header, meta)?,
            EventKind::Recommendation => self.recommendation.append(&fields, &header, meta)?,
        }
        self.bytes += payload.len();
        self.touch(table, tp);
        Ok(Routed::Buffered(table))
    }

    fn touch(&mut self, table: TableId, tp: &TopicPartition) {
        let partitions = self.touched.entry(table).or_default();
        if !partitions.contains(tp) {
            partitions.insert(tp.clone());
        }
    }

    /// Rows buffered across all tables.
    pub fn rows(&self) -> usize {
        self.engagement.len() + self.recommendation.len() + self.dead_letters.len()
    }

    /// Whether any message was read into the window.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether the policy says it is time to commit, `now` being the current time.
    pub fn is_due(&self, policy: &FlushPolicy, now: Instant) -> bool {
        !self.is_empty() && is_due(policy, self.rows(), self.bytes, self.opened_at, now)
    }

    /// Whether the window holds twice what the policy allows: time to stop reading
    /// until the previous window is written.
    pub fn is_over(&self, policy: &FlushPolicy) -> bool {
        is_over(policy, self.rows(), self.bytes)
    }

    /// Takes everything buffered, leaving an empty window.
    pub fn take(&mut self) -> Result<FlushJob, IngestError> {
        let mut batches = BTreeMap::new();
        if !self.engagement.is_empty() {
            batches.insert(TableId::EngagementEvents, self.engagement.finish()?);
        }
        if !self.recommendation.is_empty() {
            batches.insert(TableId::RecommendationEvents, self.recommendation.finish()?);
        }
        if !self.dead_letters.is_empty() {
            batches.insert(TableId::DeadLetters, self.dead_letters.finish()?);
        }
        let job = FlushJob {
            batches,
            touched: std::mem::take(&mut self.touched),
            ranges: std::mem::take(&mut self.ranges),
        };
        self.bytes = 0;
        self.opened_at = None;
        Ok(job)
    }

    /// Drops everything buffered (the partitions will be re-read).
    pub fn discard(&mut self) {
        *self = Window::default();
    }
}

/// The flush policy's "commit now" test for a window of `rows` and `bytes` opened at
/// `opened_at`.
pub(crate) fn is_due(
    policy: &FlushPolicy,
    rows: usize,
    bytes: usize,
    opened_at: Option<Instant>,
    now: Instant,
) -> bool {
    rows >= policy.max_rows
        || bytes >= policy.max_bytes
        || opened_at.is_some_and(|t| now.saturating_duration_since(t) >= policy.max_latency)
}

/// Twice what the policy allows: stop reading until the previous window is written.
pub(crate) fn is_over(policy: &FlushPolicy, rows: usize, bytes: usize) -> bool {
    rows >= 2 * policy.max_rows || bytes >= 2 * policy.max_bytes
}

#[cfg(test)]
pub(crate) mod tests {
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
        let mut w = Window::default();
        let good = br#"{"event_id":"e1","event_type":"click","event_time":1795355100000,"user_id":"u","device":{"type":"phone","os":"ios","app_version":"1"}}"#;
        let rec = br#"{"event_id":"e2","event_type":"rec_served","event_time":1795355100000,"user_id":"u","items":[{"item_id":"i","score":0.5,"rank":1}]}"#;
        assert_eq!(
            w.add(&tp, good, &meta(0), &committed, &v),
            Routed::AlreadyCommitted(TableId::EngagementEvents)
        );
        assert_eq!(
            w.add(&tp, good, &meta(1), &committed, &v),
            Routed::Buffered(TableId::EngagementEvents)
        );
        assert_eq!(
            w.add(&tp, rec, &meta(2), &committed, &v),
            Routed::Buffered(TableId::RecommendationEvents)
        );
        assert_eq!(
            w.add(&tp, b"{oops", &meta(3), &committed, &v),
            Routed::Buffered(TableId::DeadLetters)
        );
        let wrong = br#"{"event_id":"e3","event_type":"session_end","event_time":1795355100000,"user_id":"u","session_length_ms":"long"}"#;
        assert_eq!(
            w.add(&tp, wrong, &meta(4), &committed, &v),
            Routed::Buffered(TableId::DeadLetters)
        );
        let big = vec![b' '; v.max_message_bytes + 1];
        assert_eq!(
            w.add(&tp, &big, &meta(5), &committed, &v),
            Routed::Buffered(TableId::DeadLetters)
        );
        assert_eq!(w.rows(), 5);
        let job = w.take().unwrap();
        assert_eq!(job.ranges[&tp], OffsetRange { first: 0, last: 5 });
        assert_eq!(job.batches[&TableId::EngagementEvents].num_rows(), 1);
        assert_eq!(job.batches[&TableId::RecommendationEvents].num_rows(), 1);
        let dead = &job.batches[&TableId::DeadLetters];
        assert_eq!(dead.num_rows(), 3);
        let raw = dead
            .column_by_name("raw")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::BinaryArray>()
            .unwrap();
        assert_eq!(
            raw.value(2).len(),
            crate::dead_letter::OVERSIZED_RAW_KEEP,
            "oversized raw is cut"
        );
        assert!(w.is_empty() && w.rows() == 0);
    }

    #[test]
    fn flush_policy_due_then_over() {
        let tp = TopicPartition::new("t", 0);
        let policy = FlushPolicy {
            max_rows: 2,
            max_bytes: usize::MAX / 4,
            max_latency: std::time::Duration::from_secs(3600),
        };
        let (c, v) = (CommittedOffsets::default(), Validation::default());
        let mut w = Window::default();
        assert!(
            !w.is_due(&policy, Instant::now()),
            "an empty window is never due"
        );
        for offset in 0..4 {
            assert!(!w.is_over(&policy));
            w.add(&tp, b"not json", &meta(offset), &c, &v);
            assert_eq!(
                w.is_due(&policy, Instant::now()),
                offset >= 1,
                "due at max_rows"
            );
        }
        assert!(w.is_over(&policy), "over at twice max_rows");
        let by_time = FlushPolicy {
            max_rows: 100,
            max_bytes: usize::MAX / 4,
            max_latency: std::time::Duration::ZERO,
        };
        let mut w = Window::default();
        w.add(&tp, b"{}", &meta(0), &c, &v);
        assert!(
            w.is_due(&by_time, Instant::now()),
            "due once max_latency has passed"
        );
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
        let mut w = Window::default();
        let stored = [i64::MAX / 1000, i64::MIN / 1000, -1];
        for (offset, millis) in stored.iter().enumerate() {
            let routed = w.add(
                &tp,
                event(millis.to_string()).as_bytes(),
                &meta(offset as i64),
                &c,
                &v,
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
                &c,
                &v,
            );
            assert_eq!(routed, Routed::Buffered(TableId::DeadLetters), "{time}");
        }
        let job = w.take().unwrap();
        let rows = &job.batches[&TableId::EngagementEvents];
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
        let dead = &job.batches[&TableId::DeadLetters];
        let codes = dead.column_by_name("reason_code").unwrap();
        let codes = codes.as_any().downcast_ref::<StringArray>().unwrap();
        let codes: Vec<&str> = codes.iter().flatten().collect();
        assert_eq!(codes, ["invalid_value", "invalid_value", "wrong_type"]);
    }
}
