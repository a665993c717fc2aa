//! Ingest metrics, exposed in Prometheus text format.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::batch_histogram::BatchHistogram;

type TableLabel = Vec<(&'static str, &'static str)>;
/// `topic` and `partition` of one Kafka partition (bounded: the topics' partitions).
pub(crate) type PartitionLabel = Vec<(&'static str, String)>;

/// Counters and distributions of one ingest process.
#[derive(Clone)]
pub struct IngestMetrics {
    /// Messages read from Kafka.
    pub consumed: Counter,
    /// Messages skipped because their table already held them (re-reads after a restart).
    pub skipped_committed: Counter,
    /// Rows committed, by table.
    pub rows_committed: Family<TableLabel, Counter>,
    /// Messages committed to `dead_letters`.
    pub dead_letters: Counter,
    /// Delta commits, by table.
    pub commits: Family<TableLabel, Counter>,
    /// Failed commit attempts (retried or re-read later; nothing is lost).
    pub commit_errors: Counter,
    /// Windows dropped because another consumer owns a partition now.
    pub fenced: Counter,
    /// Messages whose Kafka timestamp does not fit in microseconds: their
    /// `kafka_timestamp` is stored as null (the event itself is unaffected).
    pub kafka_timestamp_out_of_range: Counter,
    /// Seconds from the start of a flush to its last Delta commit.
    pub commit_latency: Histogram,
    /// Seconds between an event's time and its commit.
    pub event_time_lag: BatchHistogram,
    /// Seconds from a message's Kafka timestamp (append) to ingest reading it.
    pub read_lag: BatchHistogram,
    /// Seconds from ingest reading a message to the Delta commit holding its row.
    pub read_to_commit: BatchHistogram,
    /// p95 of (commit time − event time) over the last minute of commits: the
    /// end-to-end freshness of what this process commits.
    pub event_to_commit_p95: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Per partition assigned to this member: messages not yet in the lake (the
    /// partition's high watermark minus the offset committed after the Delta commit).
    pub consumer_lag: Family<PartitionLabel, Gauge>,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        IngestMetrics {
            consumed: Counter::default(),
            skipped_committed: Counter::default(),
            rows_committed: Family::default(),
            dead_letters: Counter::default(),
            commits: Family::default(),
            commit_errors: Counter::default(),
            fenced: Counter::default(),
            kafka_timestamp_out_of_range: Counter::default(),
            commit_latency: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            event_time_lag: BatchHistogram::new(exponential_buckets(0.05, 1.5, 30)),
            read_lag: BatchHistogram::new(exponential_buckets(0.001, 2.0, 20)),
            read_to_commit: BatchHistogram::new(exponential_buckets(0.01, 1.5, 24)),
            event_to_commit_p95: Gauge::default(),
            consumer_lag: Family::default(),
        }
    }
}

impl IngestMetrics {
    /// Registers every metric under `hourlake_ingest_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("hourlake_ingest");
        r.register(
            "consumer_lag_messages",
            "Messages of an assigned partition not yet committed to the lake (high watermark minus committed offset; from librdkafka statistics every 5 s)",
            self.consumer_lag.clone(),
        );
        r.register(
            "consumed_messages",
            "Messages read from Kafka",
            self.consumed.clone(),
        );
        r.register(
            "skipped_committed_messages",
            "Messages skipped because their table already held them",
            self.skipped_committed.clone(),
        );
        r.register(
            "committed_rows",
            "Rows committed to Delta, by table",
            self.rows_committed.clone(),
        );
        r.register(
            "dead_letter_messages",
            "Messages committed to dead_letters",
            self.dead_letters.clone(),
        );
        r.register(
            "delta_commits",
            "Delta commits, by table",
            self.commits.clone(),
        );
        r.register(
            "commit_errors",
            "Failed commit attempts",
            self.commit_errors.clone(),
        );
        r.register(
            "fenced_windows",
            "Windows dropped because another consumer owns a partition",
            self.fenced.clone(),
        );
        r.register(
            "kafka_timestamp_out_of_range_messages",
            "Messages whose Kafka timestamp does not fit in microseconds (stored as null)",
            self.kafka_timestamp_out_of_range.clone(),
        );
        r.register(
            "commit_latency_seconds",
            "Flush start to last Delta commit",
            self.commit_latency.clone(),
        );
        r.register(
            "event_time_lag_seconds",
            "Commit time minus event time",
            self.event_time_lag.clone(),
        );
        r.register(
            "read_lag_seconds",
            "Read time minus Kafka timestamp (Kafka append to ingest read)",
            self.read_lag.clone(),
        );
        r.register(
            "read_to_commit_seconds",
            "Delta commit time minus read time, per committed row",
            self.read_to_commit.clone(),
        );
        r.register(
            "event_to_commit_p95_seconds",
            "p95 of commit time minus event time over the last minute of commits (end-to-end freshness; servers add at most max_staleness)",
            self.event_to_commit_p95.clone(),
        );
    }

    /// Rows committed to one table so far.
    pub fn rows_of(&self, table: &'static str) -> u64 {
        self.rows_committed
            .get_or_create(&vec![("table", table)])
            .get()
    }

    pub(crate) fn table(table: &'static str) -> TableLabel {
        vec![("table", table)]
    }
}
