//! What the compactor aims for and how often it acts.

use std::time::Duration;

use crate::{QualityConfig, RetentionConfig};

/// Settings of a [`Compactor`](crate::Compactor).
#[derive(Debug, Clone)]
pub struct CompactorConfig {
    /// Size the rewritten files aim at.
    pub target_file_size: u64,
    /// An open hour is compacted once it holds more than this many undersized files.
    pub max_small_files: usize,
    /// A file below this fraction of the target counts as undersized.
    pub undersized_fraction: f64,
    /// An hour counts as closed (rolled up, compacted down to few files) this long
    /// after it ends; later events for it are late data and reopen it.
    pub closed_after: Duration,
    /// Files the log no longer references are deleted once they are this old.
    pub vacuum_retention: Duration,
    /// How long a lease stays valid without renewal.
    pub lease_ttl: Duration,
    /// Pause between passes in watch mode.
    pub interval: Duration,
    /// Vacuum and clean up the log every this many passes (0: never).
    pub maintenance_every: u32,
    /// Memory the compactor's queries may hold before sorts spill to disk.
    pub memory_limit: usize,
    /// Rows ingested (and counts of what was read) this long ago are settled: every
    /// table's commit of their window has landed, so the continuous audit and the loss
    /// table judge them.
    pub settle: Duration,
    /// How long each kind of table keeps its partitions (dropped at maintenance passes).
    /// Off by default here; the `hourlake` binary keeps events and dead letters 30 days.
    pub retention: RetentionConfig,
    /// How closed hours' quality figures are computed and judged (`quality_hourly`).
    pub quality: QualityConfig,
    /// Whether passes derive the `sessions` table (and `sessions_hourly`) from
    /// `engagement_events` (see [`crate::sessions`]).
    pub sessionize: bool,
    /// A user's events further apart than this belong to different sessions.
    pub session_gap: Duration,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        CompactorConfig {
            target_file_size: 128 * 1024 * 1024,
            max_small_files: 32,
            undersized_fraction: 0.5,
            closed_after: Duration::from_secs(5 * 60),
            vacuum_retention: Duration::from_secs(7 * 24 * 3600),
            lease_ttl: Duration::from_secs(5 * 60),
            interval: Duration::from_secs(30),
            maintenance_every: 20,
            memory_limit: 1024 * 1024 * 1024,
            settle: Duration::from_secs(120),
            retention: RetentionConfig::default(),
            quality: QualityConfig::default(),
            sessionize: true,
            session_gap: Duration::from_secs(30 * 60),
        }
    }
}

impl CompactorConfig {
    /// Files smaller than this are undersized.
    pub fn undersized_below(&self) -> u64 {
        (self.target_file_size as f64 * self.undersized_fraction) as u64
    }
}
