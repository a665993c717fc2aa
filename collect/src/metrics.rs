//! Collector metrics, exposed in Prometheus text format.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// Counters and distributions of one collector process. Label values come from fixed
/// sets (status codes, reason codes, event families), never from requests.
#[derive(Clone)]
pub struct CollectorMetrics {
    /// Requests answered, by status code.
    pub requests: Family<Labels, Counter>,
    /// Events Kafka acknowledged, by family (`engagement`, `recommendation`).
    pub accepted: Family<Labels, Counter>,
    /// Events refused, by reason code.
    pub rejected: Family<Labels, Counter>,
    /// Seconds from the first produce of a batch to the last acknowledgement.
    pub produce_latency: Histogram,
    /// Events per batch (accepted and refused).
    pub batch_events: Histogram,
    /// Events produced and not yet acknowledged.
    pub queued: Gauge,
}

impl Default for CollectorMetrics {
    fn default() -> Self {
        CollectorMetrics {
            requests: Family::default(),
            accepted: Family::default(),
            rejected: Family::default(),
            produce_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            batch_events: Histogram::new(exponential_buckets(1.0, 4.0, 9)),
            queued: Gauge::default(),
        }
    }
}

impl CollectorMetrics {
    /// Registers every metric under `hourlake_collector_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("hourlake_collector");
        r.register(
            "requests",
            "Event batches answered, by HTTP status code",
            self.requests.clone(),
        );
        r.register(
            "accepted_events",
            "Events Kafka acknowledged (answered 200), by family",
            self.accepted.clone(),
        );
        r.register(
            "rejected_events",
            "Events refused by the event contract, by reason code",
            self.rejected.clone(),
        );
        r.register(
            "produce_latency_seconds",
            "First produce of a batch to Kafka's last acknowledgement",
            self.produce_latency.clone(),
        );
        r.register(
            "batch_events",
            "Events per batch, accepted and refused",
            self.batch_events.clone(),
        );
        r.register(
            "queued_events",
            "Events produced to Kafka and not yet acknowledged",
            self.queued.clone(),
        );
    }

    pub(crate) fn answered(&self, status: u16) {
        self.requests
            .get_or_create(&vec![("code", status_label(status))])
            .inc();
    }
}

/// Status codes the collector answers with, as label values.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}
