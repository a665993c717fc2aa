//! # hourlake-collect
//!
//! The collection endpoint apps post their events to. It never acknowledges an event it
//! could still lose: a batch is answered `200` only once Kafka (`acks=all`, idempotent
//! producer) has acknowledged every event it accepted.
//!
//! - [`Collector`] (`http`): `POST /v1/events`, `GET /v1/accepted`, `/health`,
//!   `/metrics`; auth, limits, and the status codes (`400`, `401`, `408`, `413`, `415`,
//!   `429` with `Retry-After`, `503`).
//! - `body`: the request body (JSON array or NDJSON, optionally gzip) → events.
//! - `batch`: each event checked with ingest's decoder ([`hourlake_ingest::check`]):
//!   topic and key of the good ones, index and reason of the others.
//! - `producer`: the Kafka producer and the batch send that waits for every
//!   acknowledgement.
//! - `minutes`: accepted events per minute of event time (the loss table's first column).
//! - [`CollectorConfig`], [`CollectorMetrics`], [`CollectError`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hourlake_collect::{Collector, CollectorConfig};
//! let collector = Collector::new(CollectorConfig::new("127.0.0.1:9092"))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! collector.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod batch;
mod body;
mod config;
mod error;
mod http;
mod metrics;
mod minutes;
mod producer;

pub use config::CollectorConfig;
pub use error::CollectError;
pub use http::Collector;
pub use metrics::CollectorMetrics;
pub use minutes::MinuteCount;
