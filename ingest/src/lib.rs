//! # hourlake-ingest
//!
//! Exactly-once ingest from Kafka into hour-partitioned Delta tables.
//!
//! A consumer-group member reads JSON events, decodes them straight into Arrow
//! builders, and commits them as Parquet files — one Delta commit per table per flush,
//! carrying Delta `txn` actions with the Kafka offsets. On start and on every
//! assignment it reads those offsets back and starts exactly where the lake ends, so a
//! crash anywhere loses nothing and duplicates nothing. Bad messages become rows of
//! `dead_letters` with their reason; they never stop the pipeline.
//!
//! A message's way through the crate:
//!
//! - `pipeline`: [`Ingestor`] — the consumer and its rebalances, the poll thread, and
//!   the flusher task that owns the tables; [`IngestConfig`] holds its settings.
//! - `window`: the flush window, filled in `chunk`s (messages copied off the consumer)
//!   that are decoded on the blocking pool and handed to a flush in order (never
//!   concatenated: `partition_rows` groups the chunks' rows by hour for the writers);
//!   `backlog`: how much waits in Kafka, so catching up fills windows past `max_latency`.
//! - `decoded`: one chunk's messages as rows of each table, with their offset ranges.
//! - `decode`: bytes → validated fields, or a `rejection` ([`ReasonCode`] and reason).
//! - `rows` / `dead_letter`: Arrow builders of the event tables and of `dead_letters`;
//!   `minute_counts`: messages read per partition and minute, for `ingested_minutes`
//!   (the "ingested" side of the compactor's per-minute loss table).
//! - `hour_files`: a table's Parquet files of the open window, written as its chunks
//!   decode (an hour streams into its file once it has enough rows; stragglers are
//!   written at commit).
//! - `commit`: one table's atomic commit of those files with its `txn` offsets;
//!   `fence`: the check that no other consumer wrote its partitions meanwhile, from
//!   `txn` versions it keeps;
//!   `offsets`: which offsets each table holds, and where a partition starts;
//!   [`StartAt`]: where a partition the lake holds nothing of starts (log start, or a
//!   point in time for a replay).
//! - `contract`: [`check`] — the same checks without building rows, for the collector.
//! - `message` (Kafka metadata), `clock` (one clock read per message), [`IngestMetrics`]
//!   (its per-row lag histograms are `batch_histogram`s, observed once per commit).
//! - [`OfflineIngest`]: the same window and flusher over messages held in memory (benches).
//! - `backfill`: [`backfill`] — historical NDJSON (gzip) and Parquet files through
//!   [`OfflineIngest`], each file a pseudo-partition named by its content hash.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hourlake_catalog::Lake;
//! use hourlake_ingest::{IngestConfig, Ingestor};
//! let config = IngestConfig::new("127.0.0.1:9092", vec!["app-events".into(), "rec-events".into()], "hourlake");
//! let ingestor = Ingestor::new(config, Lake::local("./lake")?);
//! ingestor.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod backfill;
mod backlog;
mod batch_histogram;
mod chunk;
mod clock;
mod commit;
mod config;
mod contract;
mod dead_letter;
mod decode;
mod decoded;
mod error;
mod fence;
mod first_hour;
mod freshness;
mod hour_files;
mod message;
mod metrics;
mod minute_counts;
mod offline;
mod offsets;
mod partition_rows;
mod pipeline;
mod rejection;
mod rows;
mod start_at;
#[cfg(test)]
mod test_runtime;
mod window;

pub use backfill::{
    backfill, files_under, BackfillFile, BackfillProgress, FileFormat, BACKFILL_TOPIC_PREFIX,
};
pub use config::{
    FlushPolicy, IngestConfig, CATCH_UP_LATENCY_FACTOR, DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_PROGRESS_INTERVAL,
};
pub use contract::{check, CheckedEvent};
pub use decode::Validation;
pub use error::IngestError;
pub use metrics::IngestMetrics;
pub use offline::{DecodedWindow, OfflineIngest};
pub use offsets::TopicPartition;
pub use pipeline::Ingestor;
pub use rejection::{ReasonCode, Rejection};
pub use start_at::StartAt;
