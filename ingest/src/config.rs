//! Ingest settings: where to read, how often to commit, what to reject.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::decode::Validation;
use crate::StartAt;

/// A table's Delta checkpoint is written every this many of its commits by default.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 100;
/// How often a table records progress for partitions that send it no rows, by default.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// When a buffered window of messages is written and committed.
#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    /// Commit once this many rows are read. Rows are written into their files as they
    /// decode, so this sets how often a backlog commits (and how many files its late
    /// events make) more than how much memory ingest holds.
    pub max_rows: usize,
    /// Commit once this many payload bytes are buffered.
    pub max_bytes: usize,
    /// Commit at least this often while anything is buffered, unless a backlog in
    /// Kafka will fill the window to `max_rows`: catching up, a window runs on to
    /// [`FlushPolicy::catch_up_latency`] (the backlog's messages are late already, and
    /// full windows make fewer files and cost less CPU per event).
    pub max_latency: Duration,
}

/// How many times `max_latency` a window may stay open while a backlog fills it.
pub const CATCH_UP_LATENCY_FACTOR: u32 = 4;

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            // 200 000: a window's rows are written into their files as they decode, so
            // a larger window costs little memory, and fewer windows make fewer files
            // (each window's late events make a file in each of their hours): the same
            // throughput and CPU as 100 000 held in memory, a sixth less peak memory
            // (benches/RESULTS.md, 2026-12-03 session 18). 500 ms: p95 freshness 0.8 s
            // at 50 000 ev/s for twice the commits of 1 s (session 14).
            max_rows: 200_000,
            max_bytes: 128 * 1024 * 1024,
            max_latency: Duration::from_millis(500),
        }
    }
}

impl FlushPolicy {
    /// The longest a window stays open while catching up on a backlog:
    /// [`CATCH_UP_LATENCY_FACTOR`] × `max_latency`.
    pub fn catch_up_latency(&self) -> Duration {
        self.max_latency.saturating_mul(CATCH_UP_LATENCY_FACTOR)
    }
}

/// Everything `Ingestor` needs besides the lake.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group; also the prefix of the Delta `txn` app ids.
    pub group: String,
    pub flush: FlushPolicy,
    pub validation: Validation,
    /// Write a Delta checkpoint every this many commits of a table.
    pub checkpoint_interval: u64,
    /// A table that receives no rows from a partition still records its progress
    /// (a `txn`-only commit) this often, so restarts re-read little.
    pub progress_interval: Duration,
    /// Extra librdkafka consumer settings (e.g. `fetch.max.bytes`).
    pub kafka_overrides: BTreeMap<String, String>,
    /// Where partitions that no table holds offsets of start (a replay from a point in
    /// time); partitions with offsets in the lake always continue from them.
    pub start_at: StartAt,
}

impl IngestConfig {
    /// A configuration with defaults for everything but the essentials.
    pub fn new(
        brokers: impl Into<String>,
        topics: Vec<String>,
        group: impl Into<String>,
    ) -> IngestConfig {
        IngestConfig {
            brokers: brokers.into(),
            topics,
            group: group.into(),
            flush: FlushPolicy::default(),
            validation: Validation::default(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            kafka_overrides: BTreeMap::new(),
            start_at: StartAt::Earliest,
        }
    }
}
