//! Compactor counters in Prometheus form.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// What the compactor has done since it started.
#[derive(Debug, Clone)]
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
    /// Seconds from the oldest rewritten file's commit to the rewrite's commit.
    pub commit_to_compacted: Histogram,
    /// Seconds from an hour's end to the commit of its (re)computed rollup rows.
    pub hour_end_to_rollup: Histogram,
    /// Per Kafka partition, at the last audit: offsets found nowhere in the lake
    /// (neither a row, a dead letter nor a removed duplicate). Must be 0.
    pub audit_missing: Family<PartitionLabel, Gauge>,
    /// Per Kafka partition, at the last audit: offsets found in more than one row.
    /// Must be 0.
    pub audit_doubled: Family<PartitionLabel, Gauge>,
    /// Audits completed (every maintenance pass).
    pub audits: Counter,
    /// Users erased (`hourlake forget-user` requests carried out).
    pub erased_users: Counter,
    /// Audits that failed.
    pub audit_errors: Counter,
    /// Per topic: messages `loss_minutely` shows missing over its last day of minutes.
    pub loss_missing: Family<TopicLabel, Gauge>,
    /// Per topic: messages `loss_minutely` shows held more than once over its last day.
    pub loss_surplus: Family<TopicLabel, Gauge>,
    /// Hour partitions of `loss_minutely` (re)computed.
    pub loss_hours: Counter,
    /// Loss-table passes that failed (the next pass retries).
    pub loss_errors: Counter,
    /// Per table: partitions dropped by retention (hours of event tables, days otherwise).
    pub retention_dropped_partitions: Family<TableLabel, Counter>,
    /// Per table: rows dropped by retention (from the log's file statistics).
    pub retention_dropped_rows: Family<TableLabel, Counter>,
    /// Per watched quality figure (`table`, `metric`, `dimension`): how many of the last
    /// 24 hours computed (up to the newest) flagged it as an anomaly.
    pub quality_anomalies: Family<FigureLabel, Gauge>,
    /// Per event table: the HLL distinct-user estimate's relative error against the
    /// exact count, on the newest sampled hour ((estimate − exact) / exact).
    pub quality_hll_error: Family<TableLabel, Gauge<f64, AtomicU64>>,
    /// Hours whose quality figures were computed.
    pub quality_hours: Counter,
    /// Quality steps that failed (their hours are retried at the next pass).
    pub quality_errors: Counter,
}

/// `table`, `metric` and `dimension` of one quality figure (bounded: the tables, the
/// metrics and the rollup dimension columns).
pub type FigureLabel = Vec<(&'static str, String)>;

/// `table`: one table of the lake (bounded: the lake's tables).
pub type TableLabel = Vec<(&'static str, String)>;

/// `topic`: one Kafka topic (bounded: the topics read).
pub type TopicLabel = Vec<(&'static str, String)>;

/// `topic` and `partition` of one Kafka partition (bounded: the topics' partitions).
pub type PartitionLabel = Vec<(&'static str, String)>;

impl Default for CompactorMetrics {
    fn default() -> Self {
        CompactorMetrics {
            passes: Counter::default(),
            pass_errors: Counter::default(),
            hours_rewritten: Counter::default(),
            files_in: Counter::default(),
            files_out: Counter::default(),
            bytes_in: Counter::default(),
            duplicates_removed: Counter::default(),
            rollup_hours: Counter::default(),
            files_vacuumed: Counter::default(),
            lease_busy: Counter::default(),
            // 1 s … ~9 days.
            commit_to_compacted: Histogram::new(exponential_buckets(1.0, 2.0, 20)),
            hour_end_to_rollup: Histogram::new(exponential_buckets(1.0, 2.0, 20)),
            audit_missing: Family::default(),
            audit_doubled: Family::default(),
            audits: Counter::default(),
            erased_users: Counter::default(),
            audit_errors: Counter::default(),
            loss_missing: Family::default(),
            loss_surplus: Family::default(),
            loss_hours: Counter::default(),
            loss_errors: Counter::default(),
            retention_dropped_partitions: Family::default(),
            retention_dropped_rows: Family::default(),
            quality_anomalies: Family::default(),
            quality_hll_error: Family::default(),
            quality_hours: Counter::default(),
            quality_errors: Counter::default(),
        }
    }
}

impl CompactorMetrics {
    /// Counts what a retention drop removed.
    pub(crate) fn record_drop(&self, dropped: &crate::Dropped) {
        let label = vec![("table", dropped.table.name().to_string())];
        self.retention_dropped_partitions
            .get_or_create(&label)
            .inc_by(dropped.partitions as u64);
        self.retention_dropped_rows
            .get_or_create(&label)
            .inc_by(dropped.rows);
    }

    /// Registers every counter under the `hourlake_compactor_` prefix, and the data
    /// quality figures under `hourlake_quality_`.
    pub fn register(&self, registry: &mut Registry) {
        let quality = registry.sub_registry_with_prefix("hourlake_quality");
        quality.register(
            "anomalies",
            "Per watched figure (table, metric, dimension): hours among the last 24 computed whose figure was outside the range expected from the same hour of previous days",
            self.quality_anomalies.clone(),
        );
        quality.register(
            "hll_relative_error",
            "Per event table: (HLL estimate - exact distinct users) / exact, on the newest hour sampled for an exact count",
            self.quality_hll_error.clone(),
        );
        quality.register(
            "computed_partitions",
            "Hour partitions whose quality figures were computed",
            self.quality_hours.clone(),
        );
        quality.register(
            "errors",
            "Quality steps that failed (retried at the next pass)",
            self.quality_errors.clone(),
        );
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
            "commit_to_compacted_seconds",
            "Seconds from the oldest rewritten file's commit to the rewrite's commit",
            self.commit_to_compacted.clone(),
        );
        sub.register(
            "hour_end_to_rollup_seconds",
            "Seconds from an hour's end to the commit of its rollup rows",
            self.hour_end_to_rollup.clone(),
        );
        sub.register(
            "files_vacuumed",
            "Data files deleted by vacuum",
            self.files_vacuumed.clone(),
        );
        sub.register(
            "audit_missing_offsets",
            "Per partition at the last audit: Kafka offsets in no table, dead letter or removed-duplicate record (must be 0)",
            self.audit_missing.clone(),
        );
        sub.register(
            "audit_doubled_offsets",
            "Per partition at the last audit: Kafka offsets in more than one row (must be 0)",
            self.audit_doubled.clone(),
        );
        sub.register("audits", "Offset audits completed", self.audits.clone());
        sub.register(
            "erased_users",
            "Users erased by forget-user requests",
            self.erased_users.clone(),
        );
        sub.register(
            "audit_errors",
            "Offset audits that failed",
            self.audit_errors.clone(),
        );
        sub.register(
            "loss_missing_messages",
            "Per topic: messages loss_minutely shows missing over its last day of minutes (must be 0)",
            self.loss_missing.clone(),
        );
        sub.register(
            "loss_surplus_messages",
            "Per topic: messages loss_minutely shows held more than once over its last day of minutes (must be 0)",
            self.loss_surplus.clone(),
        );
        sub.register(
            "loss_partitions",
            "Hour partitions of loss_minutely computed",
            self.loss_hours.clone(),
        );
        sub.register(
            "loss_errors",
            "Loss-table passes that failed",
            self.loss_errors.clone(),
        );
        sub.register(
            "retention_dropped_partitions",
            "Per table: partitions dropped by retention (hours of event tables, days otherwise)",
            self.retention_dropped_partitions.clone(),
        );
        sub.register(
            "retention_dropped_rows",
            "Per table: rows dropped by retention",
            self.retention_dropped_rows.clone(),
        );
        sub.register(
            "lease_busy",
            "Table passes skipped: another compactor holds the lease",
            self.lease_busy.clone(),
        );
    }
}
