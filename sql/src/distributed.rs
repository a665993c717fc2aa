//! Distributed execution on [datafusion-distributed]: the query server plans as always,
//! and a plan that only scans lake files runs its scan and partial stages on worker
//! processes, streaming Arrow back over gRPC. This is the only module that names the
//! engine.
//!
//! - [`WorkerPool`]: the workers a server may use, health-checked every second; only
//!   healthy ones get tasks.
//! - [`Distribution`]: a pool plus how much data one task reads; given to
//!   [`SessionFactory::with_workers`](crate::SessionFactory::with_workers).
//! - [`WorkerProcess`]: what `hourlake worker` serves — hourlake's functions, the lake's
//!   object store and a memory limit on every task it runs.
//! - `codec`: hourlake's own plan nodes on the wire; `planner`: when to distribute, and
//!   `EXPLAIN` showing the stages.
//!
//! Only plans whose every leaf is a file scan of the pinned snapshot
//! ([`snapshot_scan`](crate::snapshot_scan)) are distributed; anything else (the
//! recommendation index, `information_schema`, constant queries) runs on the server.
//!
//! [datafusion-distributed]: https://github.com/datafusion-contrib/datafusion-distributed

mod codec;
mod failure;
mod planner;
mod worker;
mod workers;

pub use codec::HourlakeCodec;
pub use failure::is_worker_failure;
pub(crate) use planner::install;
pub use planner::{is_distributed, leaf_scan};
pub use worker::{WorkerProcess, WORKER_VERSION};
pub use workers::WorkerPool;

use std::sync::Arc;

/// Workers to run on, and the bytes of Parquet one scan task reads (more tasks for
/// bigger scans, at most one per worker and stage).
#[derive(Debug, Clone)]
pub struct Distribution {
    /// The workers.
    pub pool: Arc<WorkerPool>,
    /// Bytes of files per scan task.
    pub bytes_per_task: usize,
}

/// Bytes of Parquet one scan task reads unless configured.
pub const DEFAULT_BYTES_PER_TASK: usize = 128 * 1024 * 1024;
