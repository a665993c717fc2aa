//! # hourlake-sql
//!
//! The DataFusion session every hourlake reader uses (the server, the REPL, the
//! compactor and the tests): the lake's Delta tables registered under their catalog
//! names, each at its newest committed version.
//!
//! - [`SessionFactory`]: opens a [`SessionContext`] over a [`Lake`](hourlake_catalog::Lake).
//! - [`LiveLake`]: the newest committed version of every table, refreshed within a bound,
//!   pinned per query as a [`LakeSnapshot`] (its versions key caches).
//! - [`ScanKind`]: how sessions read the tables — [`snapshot_scan`] (the default): a
//!   Parquet scan over the pinned snapshot's files whose plans serialize, or deltalake's
//!   own provider (kept to compare answers with).
//! - [`distributed`]: plans that only scan lake files run on worker processes
//!   (datafusion-distributed) when a [`SessionFactory`] is given workers.
//! - [`pruning`]: hidden partitioning — `event_time` filters prune hour partitions.
//! - [`limit_barrier`]: keeps a `LIMIT` above scans that cannot take one.
//! - [`dialect`]: the keywords and function names clients are told about.
//! - [`pass_through`]: the one-input plan node those two rules insert.
//! - [`probe_slices`]: keeps nested-loop joins cancellable within milliseconds.
//! - [`limits`]: bounds on a statement's size and nesting, checked before planning.
//! - [`guard`]: the read-only guard; [`params`]: `$1` / `$name` parameters from JSON or
//!   an Arrow row, bound with casts; [`placeholders`]: `?` numbered into `$n`;
//!   [`script`]: text split into statements;
//!   [`plan_info`]: tables a plan reads, files and bytes it scanned.
//! - [`views`]: dashboard views (`hourly_engagement`, `daily_active_users`,
//!   `recommendation_ctr`, `session_length`, `bounce_rate`), generated from the rollup
//!   declarations (`hourlake_catalog::rollup`): rollup rows where they cover, raw events
//!   (or sessions) elsewhere; `top_session_paths` and `session_consistency` over
//!   `sessions` ([`views::session_consistency_sql`] for chosen hours).
//! - [`functions`]: mergeable sketch functions (`hll_sketch`, `hll_union`, `hll_estimate`,
//!   `hll_count_distinct`) and KLL quantiles (`quantile_sketch`, `quantile_union`,
//!   `quantile_estimate`) over Apache DataSketches.
//! - [`SqlError`]: what can go wrong.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hourlake_sql::SqlError> {
//! use hourlake_catalog::Lake;
//! use hourlake_sql::SessionFactory;
//! let lake = Lake::local("./lake").map_err(hourlake_sql::SqlError::from)?;
//! let ctx = SessionFactory::new(lake).session().await?;
//! let df = ctx.sql("SELECT event_type, count(*) FROM engagement_events GROUP BY 1").await?;
//! df.show().await?;
//! # Ok(()) }
//! ```

pub mod dialect;
pub mod distributed;
mod error;
pub mod functions;
pub mod guard;
pub mod limit_barrier;
pub mod limits;
mod live;
pub mod params;
pub mod pass_through;
pub mod placeholders;
pub mod plan_info;
pub mod probe_slices;
pub mod pruning;
pub mod script;
mod session;
pub mod snapshot_scan;
mod source;
pub mod views;

pub use datafusion::prelude::SessionContext;
pub use error::SqlError;
/// How stale a reader's view of the tables may be by default: a new commit is visible
/// to queries within this time.
pub const DEFAULT_MAX_STALENESS: std::time::Duration = std::time::Duration::from_millis(500);

pub use live::{rollup_hours, LakeSnapshot, LiveLake};
pub use session::{register_table, ScanKind, SessionFactory};
