//! Compactor counters in Prometheus form.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// What the compactor has done since it started.
#[derive(Debug, Clone, Default)]
pub struct CompactorMetrics {
    /// Passes completed.
    pub passes: Counter,
    /// Passes that failed (the next pass retries).
    pub pass_errors: Counter,
    /// Hours rewritten.
    pub hours_rewritten: Counter,
    /// Files read and replaced by rewrites.
    pub files_in: Counter,
    /// Files written by rewrites.
    pub files_out: Counter,
    /// Bytes read by rewrites.
    pub bytes_in: Counter,
    /// Duplicate events removed.
    pub duplicates_removed: Counter,
    /// Hours whose rollups were recomputed.
    pub rollup_hours: Counter,
    /// Data files deleted by vacuum.
    pub files_vacuumed: Counter,
    /// Passes over a table skipped because another compactor held its lease.
    pub lease_busy: Counter,
}

impl CompactorMetrics {
    /// Registers every counter under the `hourlake_compactor_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("hourlake_compactor");
        sub.register("passes", "Compaction passes completed", self.passes.clone());
        sub.register(
            "pass_errors",
            "Compaction passes that failed",
            self.pass_errors.clone(),
        );
        sub.register(
            "rewritten_partitions",
            "Hour partitions rewritten",
            self.hours_rewritten.clone(),
        );
        sub.register(
            "files_in",
            "Files replaced by rewrites",
            self.files_in.clone(),
        );
        sub.register(
            "files_out",
            "Files written by rewrites",
            self.files_out.clone(),
        );
        sub.register("bytes_in", "Bytes read by rewrites", self.bytes_in.clone());
        sub.register(
            "duplicates_removed",
            "Duplicate events removed",
            self.duplicates_removed.clone(),
        );
        sub.register(
            "rolled_up_partitions",
            "Hour partitions whose rollups were recomputed",
            self.rollup_hours.clone(),
        );
        sub.register(
            "files_vacuumed",
            "Data files deleted by vacuum",
            self.files_vacuumed.clone(),
        );
        sub.register(
            "lease_busy",
            "Table passes skipped: another compactor holds the lease",
            self.lease_busy.clone(),
        );
    }
}
