//! Settings of the collector.

use std::collections::BTreeMap;
use std::time::Duration;

use hourlake_catalog::{APP_EVENTS_TOPIC, REC_EVENTS_TOPIC};
use hourlake_ingest::Validation;

use crate::CollectError;

/// Settings of one collector process.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic of engagement events.
    pub engagement_topic: String,
    /// Topic of recommendation events.
    pub recommendation_topic: String,
    /// Bearer tokens accepted; empty means no authentication.
    pub tokens: Vec<String>,
    /// Largest request body, before and after gzip decompression (413 above it).
    pub max_body_bytes: usize,
    /// Most events in one batch (413 above it).
    pub max_batch_events: usize,
    /// How long Kafka may take to acknowledge a batch before the answer is 503.
    pub produce_timeout: Duration,
    /// Events waiting in the producer's queue at most; a batch that does not fit gets 429.
    pub max_queued_events: usize,
    /// A client that sends its request (headers or body) more slowly than this, or stops
    /// reading the answer, is cut off.
    pub client_timeout: Duration,
    /// The event contract's limits, as ingest applies them.
    pub validation: Validation,
    /// Minutes of event time whose accepted counts are kept for `/v1/accepted`.
    pub minutes_kept: usize,
    /// Extra librdkafka producer settings.
    pub producer_overrides: BTreeMap<String, String>,
}

impl CollectorConfig {
    /// Defaults for a broker at `brokers`.
    pub fn new(brokers: impl Into<String>) -> CollectorConfig {
        CollectorConfig {
            brokers: brokers.into(),
            engagement_topic: APP_EVENTS_TOPIC.into(),
            recommendation_topic: REC_EVENTS_TOPIC.into(),
            tokens: Vec::new(),
            max_body_bytes: 8 * 1024 * 1024,
            max_batch_events: 10_000,
            produce_timeout: Duration::from_secs(10),
            max_queued_events: 200_000,
            client_timeout: Duration::from_secs(30),
            validation: Validation::default(),
            minutes_kept: 24 * 60,
            producer_overrides: BTreeMap::new(),
        }
    }

    /// Refuses settings that would open the collector or make it refuse everything.
    pub fn validate(&self) -> Result<(), CollectError> {
        for (name, value) in [
            ("max_body_bytes", self.max_body_bytes),
            ("max_batch_events", self.max_batch_events),
            ("max_queued_events", self.max_queued_events),
            ("minutes_kept", self.minutes_kept),
            ("produce_timeout", self.produce_timeout.as_millis() as usize),
            ("client_timeout", self.client_timeout.as_millis() as usize),
        ] {
            if value == 0 {
                return Err(CollectError::Zero(name));
            }
        }
        hourlake_net::Tokens::new(&self.tokens)?;
        Ok(())
    }
}
