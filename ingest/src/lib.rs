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
//! - [`Ingestor`] runs the loop ([`pipeline`]); [`IngestConfig`] holds its settings.
//! - [`decode`]: bytes → validated fields, or a [`Rejection`].
//! - [`rows`] / [`dead_letter`]: Arrow builders per table; [`window`]: the flush window,
//!   filled in chunks that are decoded off the poll thread (`chunk`).
//! - [`commit`]: one table's atomic commit; [`offsets`]: `txn` bookkeeping.
//! - [`IngestMetrics`]: counters and histograms in Prometheus format.
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

mod chunk;
mod clock;
pub mod commit;
mod config;
pub mod dead_letter;
pub mod decode;
mod error;
mod message;
mod metrics;
pub mod offsets;
pub mod pipeline;
pub mod rows;
pub mod window;

pub use config::{FlushPolicy, IngestConfig};
pub use dead_letter::ReasonCode;
pub use decode::{Rejection, Validation};
pub use error::IngestError;
pub use message::MessageMeta;
pub use metrics::IngestMetrics;
pub use pipeline::Ingestor;
