//! The Kafka side of the collector: an idempotent producer with `acks=all`, and a batch
//! send that returns only once the broker has acknowledged every event of the batch.

use std::sync::RwLock;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::batch::Outgoing;
use crate::{CollectError, CollectorConfig};

/// Why a batch is not (entirely) in Kafka. Some of its events may be: a client resends
/// the whole batch, and the duplicates are removed by `event_id` when compacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProduceError {
    /// The producer's queue is full: come back later (429).
    #[error("the collector's Kafka queue is full ({0} events waiting); retry later")]
    QueueFull(usize),
    /// Kafka did not acknowledge within the timeout, or refused (503).
    #[error("Kafka did not acknowledge the batch: {0}")]
    Unavailable(String),
}

/// The collector's producer; rebuilt if librdkafka reports a fatal error.
pub struct EventProducer {
    settings: ClientConfig,
    producer: RwLock<FutureProducer>,
    engagement_topic: String,
    recommendation_topic: String,
    max_queued: usize,
    timeout: Duration,
}

impl EventProducer {
    /// A producer for `config`'s brokers and topics (it connects lazily).
    pub fn new(config: &CollectorConfig) -> Result<EventProducer, CollectError> {
        let mut settings = ClientConfig::new();
        settings
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set(
                "message.timeout.ms",
                config.produce_timeout.as_millis().to_string(),
            )
            .set(
                "queue.buffering.max.messages",
                config.max_queued_events.to_string(),
            )
            .set("queue.buffering.max.kbytes", "1048576")
            .set(
                "message.max.bytes",
                (config.validation.max_message_bytes + 64 * 1024).to_string(),
            );
        for (key, value) in &config.producer_overrides {
            settings.set(key, value);
        }
        let producer = settings.create()?;
        Ok(EventProducer {
            settings,
            producer: RwLock::new(producer),
            engagement_topic: config.engagement_topic.clone(),
            recommendation_topic: config.recommendation_topic.clone(),
            max_queued: config.max_queued_events,
            timeout: config.produce_timeout,
        })
    }

    fn current(&self) -> FutureProducer {
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Events produced but not yet acknowledged (or failed).
    pub fn queued(&self) -> usize {
        usize::try_from(self.current().in_flight_count()).unwrap_or(0)
    }

    /// Produces every event and waits until Kafka has acknowledged all of them.
    pub async fn send(&self, events: &[Outgoing<'_>]) -> Result<(), ProduceError> {
        let producer = self.current();
        let queued = usize::try_from(producer.in_flight_count()).unwrap_or(0);
        if queued + events.len() > self.max_queued {
            return Err(ProduceError::QueueFull(queued));
        }
        let mut deliveries = Vec::with_capacity(events.len());
        for event in events {
            let topic = match event.kind {
                hourlake_catalog::EventKind::Engagement => &self.engagement_topic,
                hourlake_catalog::EventKind::Recommendation => &self.recommendation_topic,
            };
            let record = FutureRecord::to(topic)
                .key(event.key.as_bytes())
                .payload(event.payload);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    return Err(ProduceError::QueueFull(queued));
                }
                Err((e, _)) => return Err(ProduceError::Unavailable(e.to_string())),
            }
        }
        // librdkafka fails each message after `message.timeout.ms`; the extra second only
        // guards against a delivery report that never comes.
        let results =
            tokio::time::timeout(self.timeout + Duration::from_secs(1), join_all(deliveries))
                .await
                .map_err(|_| {
                    ProduceError::Unavailable(format!(
                        "no acknowledgement within {:?}",
                        self.timeout
                    ))
                })?;
        for result in results {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    self.replace_if_fatal(&producer);
                    return Err(ProduceError::Unavailable(e.to_string()));
                }
                Err(_canceled) => {
                    return Err(ProduceError::Unavailable(
                        "the producer went away before acknowledging".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// After a fatal error (e.g. an idempotence sequence the broker refuses) the
    /// producer cannot send again; a new one takes its place.
    fn replace_if_fatal(&self, failed: &FutureProducer) {
        let Some((code, reason)) = failed.client().fatal_error() else {
            return;
        };
        tracing::error!(%code, %reason, "the Kafka producer hit a fatal error; creating a new one");
        match self.settings.create::<FutureProducer>() {
            Ok(fresh) => match self.producer.write() {
                Ok(mut p) => *p = fresh,
                Err(poisoned) => *poisoned.into_inner() = fresh,
            },
            Err(e) => tracing::error!(error = %e, "creating a new Kafka producer failed"),
        }
    }

    /// Waits up to `timeout` for queued events to be acknowledged (on shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.current().flush(timeout) {
            tracing::warn!(error = %e, "events still queued at shutdown");
        }
    }
}
