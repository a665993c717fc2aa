//! Decoding off the poll thread: the poll loop copies messages into chunks, and each
//! full chunk is decoded into Arrow on the blocking pool while polling goes on. A flush
//! waits for its chunks and merges them into one [`FlushJob`].
//!
//! Decoding is most of the per-message work; with it on other threads the consumer
//! keeps fetching, and on a multi-core machine chunks decode in parallel.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::OnceLock;
use std::time::Instant;

use arrow::compute::concat_batches;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::config::FlushPolicy;
use crate::decode::Validation;
use crate::message::MessageMeta;
use crate::metrics::IngestMetrics;
use crate::offsets::{CommittedOffsets, TopicPartition};
use crate::window::{self, FlushJob, OffsetRange, Routed, Window};
use crate::IngestError;

/// Messages per chunk: large enough that handing a chunk over costs nothing per
/// message, small enough that the last chunk of a flush decodes in milliseconds.
const CHUNK_MESSAGES: usize = 2048;

/// One message inside a chunk: where its bytes are in the arena, and its metadata.
struct Copied {
    partition: usize,
    offset: i64,
    key: Option<Range<usize>>,
    payload: Range<usize>,
    timestamp_micros: Option<i64>,
    ingested_at_micros: i64,
}

/// Messages copied out of the consumer, waiting to be decoded.
#[derive(Default)]
struct Chunk {
    arena: Vec<u8>,
    partitions: Vec<TopicPartition>,
    messages: Vec<Copied>,
}

impl Chunk {
    fn push(&mut self, tp: &TopicPartition, payload: &[u8], meta: &MessageMeta<'_>) {
        let partition = match self.partitions.iter().rposition(|p| p == tp) {
            Some(i) => i,
            None => {
                self.partitions.push(tp.clone());
                self.partitions.len() - 1
            }
        };
        let key = meta.key.map(|k| self.copy(k));
        let payload = self.copy(payload);
        self.messages.push(Copied {
            partition,
            offset: meta.offset,
            key,
            payload,
            timestamp_micros: meta.timestamp_micros,
            ingested_at_micros: meta.ingested_at_micros,
        });
    }

    fn copy(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        start..self.arena.len()
    }

    /// Decodes every message of the chunk into a window of its own.
    fn decode(
        self,
        committed: &CommittedOffsets,
        validation: &Validation,
        metrics: &IngestMetrics,
    ) -> Result<FlushJob, IngestError> {
        let mut window = Window::default();
        for m in &self.messages {
            let tp = &self.partitions[m.partition];
            let meta = MessageMeta {
                topic: &tp.topic,
                partition: tp.partition,
                offset: m.offset,
                key: m.key.clone().map(|k| &self.arena[k]),
                timestamp_micros: m.timestamp_micros,
                ingested_at_micros: m.ingested_at_micros,
            };
            let payload = &self.arena[m.payload.clone()];
            if let Routed::AlreadyCommitted(_) =
                window.add(tp, payload, &meta, committed, validation)
            {
                metrics.skipped_committed.inc();
            }
        }
        window.take()
    }
}

/// The open flush window of the poll loop: chunks being decoded, the chunk being
/// filled, and the totals the flush policy looks at.
#[derive(Default)]
pub struct ChunkedWindow {
    /// Chunks handed over and not yet awaited, oldest first.
    decoding: VecDeque<JoinHandle<Result<FlushJob, IngestError>>>,
    /// Chunks already decoded, in order (all older than those in `decoding`).
    decoded: Vec<Result<FlushJob, IngestError>>,
    filling: Chunk,
    messages: usize,
    bytes: usize,
    opened_at: Option<Instant>,
}

impl ChunkedWindow {
    /// Copies one message in; hands the chunk to the blocking pool once it is full.
    /// `committed` and `validation` are what a full chunk is decoded against.
    pub fn add(
        &mut self,
        tp: &TopicPartition,
        payload: &[u8],
        meta: &MessageMeta<'_>,
        decoder: &Decoder<'_>,
    ) {
        self.opened_at.get_or_insert_with(Instant::now);
        self.filling.push(tp, payload, meta);
        self.messages += 1;
        self.bytes += payload.len().min(decoder.validation.max_message_bytes);
        if self.filling.messages.len() >= CHUNK_MESSAGES {
            self.dispatch(decoder);
        }
    }

    fn dispatch(&mut self, decoder: &Decoder<'_>) {
        if self.filling.messages.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.filling);
        let committed = decoder.committed.clone();
        let validation = *decoder.validation;
        let metrics = decoder.metrics.clone();
        self.decoding.push_back(
            decoder
                .runtime
                .spawn_blocking(move || chunk.decode(&committed, &validation, &metrics)),
        );
        // At most one chunk per core decodes at a time: when the decoders fall behind, the
        // poll thread waits here instead of copying ever more messages.
        while self.decoding.front().is_some_and(JoinHandle::is_finished)
            || self.decoding.len() > decode_threads()
        {
            let Some(oldest) = self.decoding.pop_front() else {
                break;
            };
            self.decoded.push(await_chunk(decoder.runtime, oldest));
        }
    }

    /// Whether any message was read into the window.
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Whether the policy says it is time to commit, `now` being the current time.
    pub fn is_due(&self, policy: &FlushPolicy, now: Instant) -> bool {
        !self.is_empty() && window::is_due(policy, self.messages, self.bytes, self.opened_at, now)
    }

    /// Whether the window holds twice what the policy allows.
    pub fn is_over(&self, policy: &FlushPolicy) -> bool {
        window::is_over(policy, self.messages, self.bytes)
    }

    /// Decodes what is left, waits for every chunk, and merges them into one job;
    /// leaves an empty window. Blocks the calling (non-runtime) thread.
    pub fn take(&mut self, decoder: &Decoder<'_>) -> Result<FlushJob, IngestError> {
        self.dispatch(decoder);
        let running = std::mem::take(&mut self.decoding);
        let mut decoded = std::mem::take(&mut self.decoded);
        *self = ChunkedWindow::default();
        decoded.extend(running.into_iter().map(|h| await_chunk(decoder.runtime, h)));
        merge(decoded.into_iter().collect::<Result<Vec<_>, _>>()?)
    }

    /// Drops everything read (the partitions will be re-read). Chunks still decoding
    /// finish on their own; their results are dropped.
    pub fn discard(&mut self) {
        *self = ChunkedWindow::default();
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

/// What decoding a chunk needs from the pipeline.
pub struct Decoder<'a> {
    pub runtime: &'a Handle,
    pub committed: &'a CommittedOffsets,
    pub validation: &'a Validation,
    pub metrics: &'a IngestMetrics,
}

/// Merges the jobs of consecutive chunks, in order, into one.
fn merge(parts: Vec<FlushJob>) -> Result<FlushJob, IngestError> {
    let mut batches: BTreeMap<_, Vec<_>> = BTreeMap::new();
    let mut job = FlushJob {
        batches: BTreeMap::new(),
        touched: BTreeMap::new(),
        ranges: BTreeMap::new(),
    };
    for part in parts {
        for (table, batch) in part.batches {
            batches.entry(table).or_default().push(batch);
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
    for (table, parts) in batches {
        let batch = match parts.as_slice() {
            [one] => one.clone(),
            _ => concat_batches(&table.schema(), &parts)?,
        };
        job.batches.insert(table, batch);
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hourlake_catalog::TableId;

    /// A message with a key (the chunk copies keys too).
    fn meta(offset: i64) -> MessageMeta<'static> {
        MessageMeta {
            key: Some(b"k"),
            ..crate::window::tests::meta(offset)
        }
    }

    #[test]
    fn chunks_decode_apart_and_merge_in_order() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        let mut committed = CommittedOffsets::default();
        committed.set(TableId::EngagementEvents, a.clone(), 9);
        let (validation, metrics) = (Validation::default(), IngestMetrics::default());
        let decoder = Decoder {
            runtime: runtime.handle(),
            committed: &committed,
            validation: &validation,
            metrics: &metrics,
        };
        let mut window = ChunkedWindow::default();
        let n = CHUNK_MESSAGES as i64 * 2 + 10;
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
            window.add(tp, payload.as_bytes(), &meta(offset), &decoder);
        }
        assert_eq!(window.messages, n as usize);
        assert_eq!(
            window.decoding.len() + window.decoded.len(),
            2,
            "two full chunks handed over"
        );
        assert!(window.decoding.len() <= decode_threads());
        let job = window.take(&decoder).unwrap();
        assert!(window.is_empty());
        let rows = &job.batches[&TableId::EngagementEvents];
        // Offsets 0, 2, 4, 6, 8 of partition 0 are already in the table.
        assert_eq!(rows.num_rows(), n as usize - 5 - 1);
        assert_eq!(metrics.skipped_committed.get(), 5);
        let offsets = rows
            .column_by_name("_kafka_offset")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        assert!(
            offsets.values().windows(2).all(|w| w[0] < w[1]),
            "rows stay in message order across chunks"
        );
        assert_eq!(job.batches[&TableId::DeadLetters].num_rows(), 1);
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
}
