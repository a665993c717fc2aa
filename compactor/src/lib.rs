//! # hourlake-compactor
//!
//! Keeps the event tables healthy while ingest keeps committing:
//!
//! - [`Compactor`]: passes over `engagement_events` and `recommendation_events`; per hour
//!   it decides ([`plan`]) whether to [`rewrite`] the hour's undersized files into few
//!   large ones sorted by `user_id, event_time`, removing duplicate `event_id`s
//!   ([`dedup`]), and recomputes the [`rollup`] rows (of every rollup declared on the
//!   table in [`hourlake_catalog::rollup`]) of every closed hour whose data changed;
//!   every so often it checkpoints, cleans up the log and vacuums ([`maintenance`]).
//! - [`sessions`]: the `sessions` table derived from the deduplicated engagement events
//!   (a user's events with no gap longer than the session gap; provisional until the gap
//!   has passed in closed hours, recomputed around late events) and its rollup
//!   `sessions_hourly`, kept current by the same passes.
//! - [`ledger`]: every removed duplicate recorded in `removed_duplicates`; [`audit`]:
//!   every Kafka offset accounted for, per partition (rows, dead letters, removed
//!   duplicates, expired, missing, doubled); [`loss`]: the same per minute of event
//!   time, `ingested_minutes` (what ingest read) against the tables, in `loss_minutely`.
//! - [`quality`]: per closed hour, after its rollups, data-quality figures in
//!   `quality_hourly` (rows, dead letters by reason, duplicates removed, late and null
//!   shares, HLL against exact distinct users; once `sessions_hourly` rolled the hour
//!   up, the sessions' consistency with the app's own session events) and anomaly
//!   flags on the headline ones against the same hour of previous days
//!   ([`QualityConfig`]).
//! - [`retention`]: at maintenance passes, partitions past their keep time
//!   ([`RetentionConfig`]) dropped whole, their offsets recorded in `expired_offsets`.
//! - [`Lease`]: only one compactor acts on a table at a time.
//! - [`status`]: the lake at a glance (`hourlake status`): versions, rows, files per
//!   hour, commit and checkpoint ages, lease holders, rollup coverage.
//! - [`PassReport`]: what a pass did (files in/out, bytes, duplicates, rollup hours).
//!
//! ```no_run
//! # async fn demo() -> Result<(), hourlake_compactor::CompactorError> {
//! use hourlake_catalog::Lake;
//! use hourlake_compactor::{Compactor, CompactorConfig};
//! let lake = Lake::local("./lake")?;
//! let compactor = Compactor::new(lake, CompactorConfig::default(), "compactor-1");
//! let report = compactor.run_pass().await?;
//! println!("{report}");
//! compactor.release().await?;
//! # Ok(()) }
//! ```

pub mod audit;
mod batch;
mod compactor;
mod config;
pub mod dedup;
pub mod erasure;
mod error;
mod lease;
pub mod ledger;
pub mod loss;
pub mod maintenance;
mod metrics;
pub mod plan;
pub mod quality;
mod report;
pub mod retention;
pub mod rewrite;
pub mod rollup;
pub mod sessions;
pub mod status;
#[cfg(test)]
mod tests;

pub use compactor::Compactor;
pub use config::CompactorConfig;
pub use error::CompactorError;
pub use lease::{Lease, LeaseState};
pub use maintenance::Maintenance;
pub use metrics::CompactorMetrics;
pub use quality::{QualityConfig, QualityReport};
pub use report::{PassReport, TableReport};
pub use retention::{Dropped, RetentionConfig};
pub use rewrite::HourRewrite;
pub use sessions::SessionsReport;
