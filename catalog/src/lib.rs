//! # hourlake-catalog
//!
//! The vocabulary every other hourlake crate shares, and nothing else: no Kafka,
//! no DataFusion session, no HTTP.
//!
//! - [`EventType`]: the event types on the wire and which table each lands in.
//! - [`TableId`]: the lake's tables, with their Arrow [`schema`]s and partition columns.
//! - [`Lake`]: where the tables live (a local folder or an object-store URL), how to
//!   open or create each of them as a Delta table, and the lake's object store as
//!   DataFusion scans address it (one URL for every process that opens the lake).
//! - [`partition`]: the hidden hour partitioning (`event_time` → `event_date`,
//!   `event_hour`), and [`Hour`], one such partition (parsed from Delta partition
//!   values, selected by a SQL predicate).
//! - [`rollup`]: the rollup contract — each hourly rollup declared once ([`Rollup`]:
//!   source, dimensions, measures and how they merge), its schema derived from that.
//! - [`dedup`]: which copy of a resent event counts (the first ingested).
//!
//! ```no_run
//! # async fn demo() -> Result<(), hourlake_catalog::CatalogError> {
//! use hourlake_catalog::{Lake, TableId};
//! let lake = Lake::local("./lake")?;
//! let table = lake.open_or_create(TableId::EngagementEvents).await?;
//! println!("{} is at version {:?}", TableId::EngagementEvents, table.version());
//! # Ok(()) }
//! ```

pub mod dedup;
mod error;
mod event_type;
mod lake;
pub mod partition;
pub mod rollup;
pub mod schema;
mod table;

pub use error::{CatalogError, DeltaError};
pub use event_type::{EventKind, EventType};
pub use lake::Lake;
pub use partition::Hour;
pub use rollup::Rollup;
pub use table::TableId;

/// The Kafka topic that carries app-engagement events by default.
pub const APP_EVENTS_TOPIC: &str = "app-events";
/// The Kafka topic that carries recommendation events by default.
pub const REC_EVENTS_TOPIC: &str = "rec-events";
