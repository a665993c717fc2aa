//! The flush window: the messages read since the last flush. The poll thread copies
//! them into chunks; each full chunk is decoded on tokio's blocking pool while polling
//! goes on. Decoded chunks' rows are handed out in order as they are ready (to be
//! written while the window is still read); a flush waits for the rest and hands it
//! over with the whole window's offsets as one [`FlushJob`] (each table's chunks side
//! by side, never concatenated).
//!
//! Decoding is most of the per-message work; with it on other threads the consumer
//! keeps fetching, and on a multi-core machine chunks decode in parallel.

use std::collections::{BTreeMap, VecDeque};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use hourlake_catalog::TableId;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::chunk::Chunk;
use crate::config::FlushPolicy;
use crate::decode::Validation;
use crate::decoded::{FlushJob, OffsetRange};
use crate::message::MessageMeta;
use crate::metrics::IngestMetrics;
use crate::offsets::{CommittedOffsets, TopicPartition};
use crate::IngestError;

/// The open flush window: chunks being decoded, the chunk being filled, and the totals
/// the flush policy looks at. Its methods block on chunks being decoded: call them off
/// the runtime's threads.
pub struct Window {
    /// Runs the decoding of full chunks (on its blocking pool).
    runtime: Handle,
    validation: Validation,
    metrics: IngestMetrics,
    /// Chunks handed over and not yet awaited, oldest first.
    decoding: VecDeque<JoinHandle<Result<FlushJob, IngestError>>>,
    /// Chunks already decoded, in order (all older than those in `decoding`).
    decoded: VecDeque<Result<FlushJob, IngestError>>,
    /// Chunks whose rows [`Window::ready`] handed out (oldest of all): their offsets
    /// and partitions, without rows.
    handed: Vec<FlushJob>,
    filling: Chunk,
    messages: usize,
    bytes: usize,
    opened_at: Option<Instant>,
    /// Whether a backlog will fill this window (decided once, at `max_latency`).
    catching_up: Option<bool>,
}

impl Window {
    /// An empty window whose chunks decode on `runtime` against `validation`.
    pub fn new(runtime: Handle, validation: Validation, metrics: IngestMetrics) -> Window {
        Window {
            runtime,
            validation,
            metrics,
            decoding: VecDeque::new(),
            decoded: VecDeque::new(),
            handed: Vec::new(),
            filling: Chunk::default(),
            messages: 0,
            bytes: 0,
            opened_at: None,
            catching_up: None,
        }
    }

    /// Copies one message in; hands the chunk to the blocking pool once it is full, to
    /// be decoded against `committed` (messages a table already holds are skipped).
    pub fn add(
        &mut self,
        tp: &TopicPartition,
        payload: &[u8],
        meta: &MessageMeta<'_>,
        committed: &CommittedOffsets,
    ) {
        self.opened_at.get_or_insert_with(Instant::now);
        self.filling.push(tp, payload, meta);
        self.messages += 1;
        self.bytes += payload.len().min(self.validation.max_message_bytes);
        if self.filling.is_full() {
            self.dispatch(committed);
        }
    }

    fn dispatch(&mut self, committed: &CommittedOffsets) {
        if self.filling.is_empty() {
            return;
        }
        let next = self.filling.empty_like();
        let chunk = std::mem::replace(&mut self.filling, next);
        let committed = committed.clone();
        let validation = self.validation;
        let metrics = self.metrics.clone();
        self.decoding.push_back(
            self.runtime
                .spawn_blocking(move || chunk.decode(&committed, &validation, &metrics)),
        );
        // At most one chunk per core decodes at a time: when the decoders fall behind, the
        // poll thread waits here instead of copying ever more messages.
        while self.decoding.len() > decode_threads() {
            let Some(oldest) = self.decoding.pop_front() else {
                break;
            };
            self.decoded.push_back(await_chunk(&self.runtime, oldest));
        }
        self.collect_decoded();
    }

    /// Moves the chunks that finished decoding, oldest first, to `decoded`.
    fn collect_decoded(&mut self) {
        while self.decoding.front().is_some_and(JoinHandle::is_finished) {
            let Some(oldest) = self.decoding.pop_front() else {
                break;
            };
            self.decoded.push_back(await_chunk(&self.runtime, oldest));
        }
    }

    /// The rows of the chunks decoded so far (in order, each table's batches), to be
    /// written while the rest of the window is read; the window keeps only their
    /// offsets. A chunk that failed to decode stays, for [`Window::take`] to report.
    pub fn ready(&mut self) -> BTreeMap<TableId, Vec<RecordBatch>> {
        self.collect_decoded();
        let mut rows: BTreeMap<TableId, Vec<RecordBatch>> = BTreeMap::new();
        while let Some(Ok(_)) = self.decoded.front() {
            let Some(Ok(mut job)) = self.decoded.pop_front() else {
                break;
            };
            for (table, batches) in std::mem::take(&mut job.batches) {
                rows.entry(table).or_default().extend(batches);
            }
            self.handed.push(job);
        }
        rows
    }

    /// Whether any message was read into the window.
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Whether the policy says it is time to commit, `now` being the current time:
    /// `max_rows` messages or `max_bytes` payload bytes; or `max_latency` since the
    /// first message, unless `waiting()` (messages behind it in Kafka, asked once per
    /// window) will fill the window to `max_rows`: then not before
    /// [`FlushPolicy::catch_up_latency`].
    pub fn is_due(
        &mut self,
        policy: &FlushPolicy,
        now: Instant,
        waiting: impl FnOnce() -> u64,
    ) -> bool {
        if self.is_empty() {
            return false;
        }
        if self.messages >= policy.max_rows || self.bytes >= policy.max_bytes {
            return true;
        }
        let open_for = self
            .opened_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if open_for < policy.max_latency {
            return false;
        }
        let rows_to_fill = policy.max_rows.saturating_sub(self.messages) as u64;
        let catching_up = *self
            .catching_up
            .get_or_insert_with(|| waiting() >= rows_to_fill);
        !catching_up || open_for >= policy.catch_up_latency()
    }

    /// Whether the window holds twice what the policy allows: time to stop reading
    /// until the previous window is written. (Stopping at once, at `max_rows`, halves
    /// the rows held while catching up but doubles the commits and their files, which
    /// cost more CPU than the memory is worth: benches/RESULTS.md, session 15.)
    pub fn is_over(&self, policy: &FlushPolicy) -> bool {
        self.messages >= 2 * policy.max_rows || self.bytes >= 2 * policy.max_bytes
    }

    /// Decodes what is left against `committed`, waits for every chunk, and gathers them
    /// into one job (with the rows not handed out by [`Window::ready`], and the offsets
    /// of all); leaves an empty window.
    pub fn take(&mut self, committed: &CommittedOffsets) -> Result<FlushJob, IngestError> {
        self.dispatch(committed);
        let running = std::mem::take(&mut self.decoding);
        let handed = std::mem::take(&mut self.handed);
        let mut parts: Vec<Result<FlushJob, IngestError>> = handed.into_iter().map(Ok).collect();
        parts.extend(std::mem::take(&mut self.decoded));
        self.discard();
        parts.extend(running.into_iter().map(|h| await_chunk(&self.runtime, h)));
        Ok(merge(parts.into_iter().collect::<Result<Vec<_>, _>>()?))
    }

    /// Drops everything read (the partitions will be re-read). Chunks still decoding
    /// finish on their own; their results are dropped.
    pub fn discard(&mut self) {
        self.decoding.clear();
        self.decoded.clear();
        self.handed.clear();
        self.filling = Chunk::default();
        self.messages = 0;
        self.bytes = 0;
        self.opened_at = None;
        self.catching_up = None;
    }
}

fn await_chunk(
    runtime: &Handle,
    handle: JoinHandle<Result<FlushJob, IngestError>>,
) -> Result<FlushJob, IngestError> {
    runtime
        .block_on(handle)
        .map_err(|e| IngestError::Thread(format!("decoding a chunk failed: {e}")))?
}

/// How many chunks may decode at once: one per core.
fn decode_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// Merges the jobs of consecutive chunks, in order, into one. Each table keeps its
/// chunks' batches as they are: concatenating them would hold the window's rows twice.
fn merge(parts: Vec<FlushJob>) -> FlushJob {
    let mut job = FlushJob {
        batches: BTreeMap::new(),
        touched: BTreeMap::new(),
        ranges: BTreeMap::new(),
    };
    for part in parts {
        for (table, batches) in part.batches {
            job.batches.entry(table).or_default().extend(batches);
        }
        for (table, partitions) in part.touched {
            job.touched.entry(table).or_default().extend(partitions);
        }
        for (tp, range) in part.ranges {
            job.ranges
                .entry(tp)
                .and_modify(|r: &mut OffsetRange| r.last = range.last)
                .or_insert(range);
        }
    }
    job
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;

    use super::*;
    use hourlake_catalog::TableId;

    use crate::test_runtime::one_worker_runtime as runtime;

    /// A message with a key (the chunk copies keys too).
    fn meta(offset: i64) -> MessageMeta<'static> {
        MessageMeta {
            key: Some(b"k"),
            ..crate::decoded::tests::meta(offset)
        }
    }

    #[test]
    fn chunks_decode_apart_and_merge_in_order() {
        let runtime = runtime();
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        let mut committed = CommittedOffsets::default();
        committed.set(TableId::EngagementEvents, a.clone(), 9);
        let metrics = IngestMetrics::default();
        let mut window = Window::new(
            runtime.handle().clone(),
            Validation::default(),
            metrics.clone(),
        );
        let n = crate::chunk::CHUNK_MESSAGES as i64 * 2 + 10;
        for offset in 0..n {
            let tp = if offset % 2 == 0 { &a } else { &b };
            let json = format!(
                r#"{{"event_id":"e{offset}","event_type":"click","event_time":1795355100000,"user_id":"u"}}"#
            );
            let payload = if offset == 7 {
                "{bad".to_string()
            } else {
                json
            };
            // Every third message has a Kafka timestamp, 2 s before it was read.
            let meta = MessageMeta {
                timestamp_micros: (offset % 3 == 0)
                    .then(|| meta(offset).ingested_at_micros - 2_000_000),
                ..meta(offset)
            };
            window.add(tp, payload.as_bytes(), &meta, &committed);
        }
        assert_eq!(window.messages, n as usize);
        assert_eq!(
            window.decoding.len() + window.decoded.len(),
            2,
            "two full chunks handed over"
        );
        assert!(window.decoding.len() <= decode_threads());
        let job = window.take(&committed).unwrap();
        assert!(window.is_empty());
        let rows = &job.merged(TableId::EngagementEvents);
        // Offsets 0, 2, 4, 6, 8 of partition 0 are already in the table.
        assert_eq!(rows.num_rows(), n as usize - 5 - 1);
        assert_eq!(metrics.skipped_committed.get(), 5);
        // Each message's read lag is observed once, as its chunk decodes.
        let stamped = (0..n).filter(|o| o % 3 == 0).count() as u64;
        assert_eq!(
            metrics.read_lag.count_and_sum(),
            (stamped, 2.0 * stamped as f64)
        );
        let offsets = rows.column_by_name("_kafka_offset").unwrap();
        let offsets = offsets.as_primitive::<arrow::datatypes::Int64Type>();
        assert!(
            offsets.values().windows(2).all(|w| w[0] < w[1]),
            "rows stay in message order across chunks"
        );
        assert_eq!(job.num_rows(TableId::DeadLetters), 1);
        assert_eq!(
            job.ranges[&a],
            OffsetRange {
                first: 0,
                last: n - 2
            }
        );
        assert_eq!(
            job.ranges[&b],
            OffsetRange {
                first: 1,
                last: n - 1
            }
        );
        assert_eq!(job.touched[&TableId::DeadLetters].len(), 1);
        assert_eq!(job.touched[&TableId::EngagementEvents].len(), 2);
    }

    #[test]
    fn decoded_chunks_are_handed_out_in_order_and_the_flush_has_the_rest_and_every_offset() {
        let runtime = runtime();
        let tp = TopicPartition::new("t", 0);
        let committed = CommittedOffsets::default();
        let mut window = Window::new(
            runtime.handle().clone(),
            Validation::default(),
            IngestMetrics::default(),
        );
        let chunk = crate::chunk::CHUNK_MESSAGES as i64;
        let n = chunk * 3 + 10;
        for offset in 0..n {
            let json = format!(
                r#"{{"event_id":"e{offset}","event_type":"click","event_time":1795355100000,"user_id":"u"}}"#
            );
            window.add(&tp, json.as_bytes(), &meta(offset), &committed);
        }
        // The three full chunks decode on the pool; take what is ready as it comes.
        let mut handed: Vec<RecordBatch> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while handed.iter().map(RecordBatch::num_rows).sum::<usize>() < 3 * chunk as usize {
            assert!(Instant::now() < deadline, "chunks never decoded");
            let mut ready = window.ready();
            handed.extend(ready.remove(&TableId::EngagementEvents).unwrap_or_default());
            assert!(ready.keys().all(|t| *t == TableId::IngestedMinutes));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(window.ready().is_empty(), "nothing is handed out twice");
        let job = window.take(&committed).unwrap();
        assert_eq!(job.num_rows(TableId::EngagementEvents), 10, "the rest");
        assert_eq!(
            job.ranges[&tp],
            OffsetRange {
                first: 0,
                last: n - 1
            }
        );
        assert_eq!(job.touched[&TableId::EngagementEvents].len(), 1);
        handed.extend(job.batches[&TableId::EngagementEvents].iter().cloned());
        let mut offsets: Vec<i64> = Vec::new();
        for batch in &handed {
            let column = batch.column_by_name("_kafka_offset").unwrap();
            offsets.extend(
                column
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values(),
            );
        }
        assert_eq!(
            offsets,
            (0..n).collect::<Vec<_>>(),
            "every row once, in order"
        );
    }

    #[test]
    fn flush_policy_due_then_over() {
        let runtime = runtime();
        let committed = CommittedOffsets::default();
        let validation = Validation {
            max_message_bytes: 100,
            ..Validation::default()
        };
        let new_window = || {
            Window::new(
                runtime.handle().clone(),
                validation,
                IngestMetrics::default(),
            )
        };
        let tp = TopicPartition::new("t", 0);
        let hour = Duration::from_secs(3600);
        let by_rows = FlushPolicy {
            max_rows: 2,
            max_bytes: usize::MAX / 4,
            max_latency: hour,
        };
        let mut window = new_window();
        assert!(
            !window.is_due(&by_rows, Instant::now() + 2 * hour, || 0),
            "an empty window is never due"
        );
        for offset in 0..4 {
            assert!(!window.is_over(&by_rows));
            window.add(&tp, b"not json", &meta(offset), &committed);
            assert_eq!(
                window.is_due(&by_rows, Instant::now(), || 0),
                offset >= 1,
                "due at max_rows messages"
            );
        }
        assert!(window.is_over(&by_rows), "over at twice max_rows");

        let by_bytes = FlushPolicy {
            max_rows: 100,
            max_bytes: 150,
            max_latency: hour,
        };
        let mut window = new_window();
        window.add(&tp, &[b' '; 70], &meta(0), &committed);
        assert!(!window.is_due(&by_bytes, Instant::now(), || 0));
        // A message over the size limit counts as the limit (it is kept cut short).
        window.add(&tp, &[b' '; 1000], &meta(1), &committed);
        assert!(
            window.is_due(&by_bytes, Instant::now(), || 0),
            "due at max_bytes"
        );
        assert!(!window.is_over(&by_bytes), "170 bytes counted, not 1070");
        window.add(&tp, &[b' '; 100], &meta(2), &committed);
        assert!(!window.is_over(&by_bytes));
        window.add(&tp, &[b' '; 100], &meta(3), &committed);
        assert!(window.is_over(&by_bytes), "over at twice max_bytes");

        let by_time = FlushPolicy {
            max_rows: 100,
            max_bytes: usize::MAX / 4,
            max_latency: hour,
        };
        let mut window = new_window();
        window.add(&tp, b"{}", &meta(0), &committed);
        assert!(!window.is_due(&by_time, Instant::now(), || 0));
        assert!(
            window.is_due(&by_time, Instant::now() + 2 * hour, || 0),
            "due once max_latency has passed"
        );
        let job = window.take(&committed).unwrap();
        assert_eq!(job.num_rows(TableId::DeadLetters), 1);
        assert!(
            !window.is_due(&by_time, Instant::now() + 2 * hour, || 0),
            "a flushed window starts empty"
        );
        window.add(&tp, b"{}", &meta(1), &committed);
        window.discard();
        assert!(window.is_empty(), "a discarded window is empty");
    }
    #[test]
    fn a_window_a_backlog_will_fill_runs_past_max_latency_until_max_rows_or_the_bound() {
        let runtime = runtime();
        let committed = CommittedOffsets::default();
        let mut window = Window::new(
            runtime.handle().clone(),
            Validation::default(),
            IngestMetrics::default(),
        );
        let tp = TopicPartition::new("t", 0);
        let second = Duration::from_secs(1);
        let policy = FlushPolicy {
            max_rows: 10,
            max_bytes: usize::MAX / 4,
            max_latency: second,
        };
        assert_eq!(policy.catch_up_latency(), 4 * second);
        let opened = Instant::now();
        for offset in 0..3 {
            window.add(&tp, b"{}", &meta(offset), &committed);
        }
        let asked = std::cell::Cell::new(0);
        let backlog = |n: u64| {
            asked.set(asked.get() + 1);
            n
        };
        assert!(
            !window.is_due(&policy, opened, || backlog(1_000)),
            "before max_latency"
        );
        assert_eq!(asked.get(), 0, "the backlog is asked only at max_latency");
        // 7 more messages fill the window to max_rows: catching up.
        assert!(!window.is_due(&policy, opened + 2 * second, || backlog(7)));
        assert!(
            !window.is_due(&policy, opened + 3 * second, || backlog(0)),
            "decided once per window: the backlog was read meanwhile"
        );
        assert_eq!(asked.get(), 1);
        assert!(
            window.is_due(&policy, opened + 5 * second, || backlog(0)),
            "due at catch_up_latency"
        );
        for offset in 3..10 {
            window.add(&tp, b"{}", &meta(offset), &committed);
        }
        assert!(
            window.is_due(&policy, opened, || backlog(1_000)),
            "due at max_rows whatever waits"
        );

        // The next window: 6 waiting do not fill it (3 read + 6 < 10), so max_latency holds.
        window.take(&committed).unwrap();
        let opened = Instant::now();
        for offset in 10..13 {
            window.add(&tp, b"{}", &meta(offset), &committed);
        }
        assert!(window.is_due(&policy, opened + 2 * second, || backlog(6)));
        window.discard();
        window.add(&tp, b"{}", &meta(13), &committed);
        assert!(
            !window.is_due(&policy, Instant::now() + 2 * second, || backlog(9)),
            "a new window decides anew"
        );
    }
}
