//! Query-server metrics in Prometheus form.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The HTTP status class of an answered query.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The HTTP status code.
    pub status: u16,
}

/// Counters and latencies of the SQL endpoint.
#[derive(Debug, Clone)]
pub struct QueryMetrics {
    /// Queries answered, by HTTP status.
    pub queries: Family<StatusLabel, Counter>,
    /// Seconds from request to response, by HTTP status.
    pub latency: Family<StatusLabel, Histogram>,
    /// Answers served from the result cache.
    pub cache_hits: Counter,
    /// `304 Not Modified` answers (the client's copy was current).
    pub not_modified: Counter,
    /// Recommendation lookups answered, by HTTP status.
    pub lookups: Family<StatusLabel, Counter>,
    /// Seconds per recommendation lookup.
    pub lookup_latency: Histogram,
}

impl Default for QueryMetrics {
    fn default() -> Self {
        QueryMetrics {
            queries: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            cache_hits: Counter::default(),
            not_modified: Counter::default(),
            lookups: Family::default(),
            lookup_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        }
    }
}

impl QueryMetrics {
    /// Registers everything under the `hourlake_query_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("hourlake_query");
        sub.register(
            "requests",
            "SQL requests answered, by HTTP status",
            self.queries.clone(),
        );
        sub.register(
            "duration_seconds",
            "SQL request latency, by HTTP status",
            self.latency.clone(),
        );
        sub.register(
            "cache_hits",
            "SQL answers served from the result cache",
            self.cache_hits.clone(),
        );
        sub.register(
            "not_modified",
            "SQL answers 304 Not Modified",
            self.not_modified.clone(),
        );
        sub.register(
            "lookups",
            "Recommendation lookups answered, by HTTP status",
            self.lookups.clone(),
        );
        sub.register(
            "lookup_duration_seconds",
            "Recommendation lookup latency",
            self.lookup_latency.clone(),
        );
    }

    /// Records one recommendation lookup.
    pub fn observe_lookup(&self, status: u16, seconds: f64) {
        self.lookups.get_or_create(&StatusLabel { status }).inc();
        self.lookup_latency.observe(seconds);
    }

    /// Records one answered request.
    pub fn observe(&self, status: u16, seconds: f64) {
        let label = StatusLabel { status };
        self.queries.get_or_create(&label).inc();
        self.latency.get_or_create(&label).observe(seconds);
    }
}

/// Size of the recommendation lookup index, set after each batch of rows it applies and
/// each eviction pass.
#[derive(Debug, Clone, Default)]
pub struct LookupIndexMetrics {
    /// Users with a list or a click kept.
    pub users: Gauge,
    /// Served lists kept.
    pub lists: Gauge,
    /// Clicks kept.
    pub clicks: Gauge,
    /// Distinct item ids, model versions and surfaces interned.
    pub strings: Gauge,
    /// Estimated bytes of the index (users, lists, clicks, interned strings, tables).
    pub bytes: Gauge,
}

impl LookupIndexMetrics {
    /// Registers `hourlake_query_lookup_index_{users,lists,clicks,strings,bytes}`.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("hourlake_query_lookup_index");
        sub.register(
            "users",
            "Users in the recommendation lookup index",
            self.users.clone(),
        );
        sub.register(
            "lists",
            "Served lists in the recommendation lookup index",
            self.lists.clone(),
        );
        sub.register(
            "clicks",
            "Clicks in the recommendation lookup index",
            self.clicks.clone(),
        );
        sub.register(
            "strings",
            "Distinct strings interned by the recommendation lookup index",
            self.strings.clone(),
        );
        sub.register(
            "bytes",
            "Estimated bytes held by the recommendation lookup index",
            self.bytes.clone(),
        );
    }
}

/// The gRPC outcome of a Flight SQL query.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `ok`, `cancelled`, `deadline_exceeded`, `invalid_argument`, ...
    pub outcome: String,
}

/// Counters of the Flight SQL server.
#[derive(Debug, Clone, Default)]
pub struct FlightMetrics {
    /// Queries finished, by outcome (a client that goes away counts as `cancelled`).
    pub queries: Family<OutcomeLabel, Counter>,
    /// Queries executing now.
    pub running: Gauge,
    /// Rows sent.
    pub rows: Counter,
}

impl FlightMetrics {
    /// Registers everything under the `hourlake_flight_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("hourlake_flight");
        sub.register(
            "queries",
            "Flight SQL queries finished, by outcome",
            self.queries.clone(),
        );
        sub.register(
            "running_queries",
            "Flight SQL queries executing now",
            self.running.clone(),
        );
        sub.register("rows", "Rows sent over Flight SQL", self.rows.clone());
    }

    /// Counts one finished (or refused) query.
    pub fn observe(&self, outcome: &str) {
        self.queries
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

/// Outcomes of queries that ran on workers (`hourlake serve --workers`).
#[derive(Debug, Clone, Default)]
pub struct DistributedMetrics {
    /// By outcome: `ok`, `retried_locally` (a worker failed before the first row),
    /// `worker_lost` (after rows were sent: 503).
    pub queries: Family<OutcomeLabel, Counter>,
}

impl DistributedMetrics {
    /// Registers `hourlake_distributed_queries_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "hourlake_distributed_queries",
            "Queries planned to run on workers, by outcome",
            self.queries.clone(),
        );
    }

    /// Counts one query's outcome.
    pub fn observe(&self, outcome: &str) {
        self.queries
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}
