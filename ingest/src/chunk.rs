//! A chunk: messages copied off the consumer (payloads and keys in one arena), waiting
//! to be decoded on the blocking pool while the poll thread goes on polling.

use std::ops::Range;

use crate::decode::Validation;
use crate::decoded::{DecodedRows, FlushJob, Routed};
use crate::message::MessageMeta;
use crate::metrics::IngestMetrics;
use crate::offsets::{CommittedOffsets, TopicPartition};
use crate::IngestError;

/// Messages per chunk: large enough that handing a chunk over costs nothing per
/// message, small enough that the last chunk of a flush decodes in milliseconds.
pub const CHUNK_MESSAGES: usize = 2048;

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
pub struct Chunk {
    arena: Vec<u8>,
    partitions: Vec<TopicPartition>,
    messages: Vec<Copied>,
}

impl Chunk {
    /// Copies one message in.
    pub fn push(&mut self, tp: &TopicPartition, payload: &[u8], meta: &MessageMeta<'_>) {
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

    /// An empty chunk with room for as many bytes as this one holds and for
    /// [`CHUNK_MESSAGES`] messages: the next chunk is filled without regrowing (and
    /// copying) its arena a dozen times.
    pub fn empty_like(&self) -> Chunk {
        Chunk {
            arena: Vec::with_capacity(self.arena.len()),
            partitions: Vec::new(),
            messages: Vec::with_capacity(CHUNK_MESSAGES),
        }
    }

    /// Whether it holds [`CHUNK_MESSAGES`]: time to hand it over.
    pub fn is_full(&self) -> bool {
        self.messages.len() >= CHUNK_MESSAGES
    }

    /// Whether no message was copied in.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Decodes every message of the chunk into rows of its own.
    pub fn decode(
        self,
        committed: &CommittedOffsets,
        validation: &Validation,
        metrics: &IngestMetrics,
    ) -> Result<FlushJob, IngestError> {
        // Kafka append → read, observed here for the whole chunk, off the poll thread.
        metrics
            .read_lag
            .observe_all(self.messages.iter().filter_map(|m| {
                let appended = m.timestamp_micros?;
                Some(m.ingested_at_micros.saturating_sub(appended) as f64 / 1e6)
            }));
        let mut rows = DecodedRows::new(committed, validation);
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
            if let Routed::AlreadyCommitted(_) = rows.add(tp, payload, &meta) {
                metrics.skipped_committed.inc();
            }
        }
        rows.take()
    }
}
