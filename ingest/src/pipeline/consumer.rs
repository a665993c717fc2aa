//! The Kafka consumer: its settings, and the context that routes rebalances into the
//! pipeline.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Statistics};

use super::lock;
use super::poll::Pipeline;
use crate::config::IngestConfig;
use crate::metrics::{IngestMetrics, PartitionLabel};
use crate::IngestError;

/// How often librdkafka reports its statistics: the consumer lag, and the readable end
/// of each partition that tells the flush policy whether ingest is catching up.
const STATISTICS_INTERVAL_MS: &str = "1000";

/// librdkafka's prefetch limit (`queued.max.messages.kbytes`), which it applies to
/// each assigned partition, not to the member as a whole.
const PREFETCH_KBYTES_PER_PARTITION: &str = "2048";

/// The consumer context: runs rebalances on the pipeline.
pub(super) struct IngestContext {
    pipeline: Arc<Mutex<Pipeline>>,
    /// What a rebalance could not do: the callback cannot return it, so the poll loop
    /// takes it after each poll and stops.
    failure: Mutex<Option<IngestError>>,
    metrics: IngestMetrics,
    /// The partitions whose lag was last reported (a revoked one's gauge is removed).
    lagging: Mutex<HashSet<PartitionLabel>>,
}

impl IngestContext {
    /// The failure of a rebalance since the last call, if any.
    pub(super) fn take_failure(&self) -> Option<IngestError> {
        lock(&self.failure).take()
    }
}

impl ClientContext for IngestContext {
    /// Hands the partitions' readable ends to the pipeline's backlog, and publishes each
    /// assigned partition's consumer lag.
    fn stats(&self, statistics: Statistics) {
        // librdkafka's statistics arrive inside `BaseConsumer::poll`, which the poll
        // loop never calls while it holds the pipeline.
        {
            let mut pipeline = lock(&self.pipeline);
            let pipeline = &mut *pipeline;
            pipeline.backlog.report(&statistics, &pipeline.assigned);
        }
        let mut now = HashSet::new();
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // -1: librdkafka's internal "unassigned" partition.
                if *partition < 0 {
                    continue;
                }
                let lag = if p.consumer_lag >= 0 {
                    p.consumer_lag
                } else if p.hi_offset >= 0 && p.committed_offset < 0 {
                    // Nothing committed for it yet: all it holds is still to come
                    // (an empty partition: nothing).
                    p.hi_offset - p.lo_offset.max(0)
                } else {
                    // No high watermark yet: unknown.
                    continue;
                };
                let label = vec![
                    ("topic", topic.clone()),
                    ("partition", partition.to_string()),
                ];
                self.metrics.consumer_lag.get_or_create(&label).set(lag);
                now.insert(label);
            }
        }
        let mut lagging = lock(&self.lagging);
        for gone in lagging.difference(&now) {
            self.metrics.consumer_lag.remove(gone);
        }
        *lagging = now;
    }
}

impl ConsumerContext for IngestContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut pipeline = lock(&self.pipeline);
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                pipeline.on_assign(consumer, tpl)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => pipeline.on_revoke(consumer),
            other => {
                tracing::error!(?other, "rebalance error; dropping the assignment");
                pipeline.on_revoke(consumer)
            }
        };
        drop(pipeline);
        if let Err(e) = result {
            *lock(&self.failure) = Some(e);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(error = %e, "kafka offset commit failed");
        }
    }
}

/// A consumer-group member for `config` whose rebalances run on `pipeline`. Offsets
/// are never committed automatically: ingest commits them after the Delta commits.
pub(super) fn consumer(
    config: &IngestConfig,
    pipeline: Arc<Mutex<Pipeline>>,
    metrics: IngestMetrics,
) -> Result<BaseConsumer<IngestContext>, IngestError> {
    let context = IngestContext {
        pipeline,
        failure: Mutex::new(None),
        metrics,
        lagging: Mutex::new(HashSet::new()),
    };
    Ok(client_config(config).create_with_context(context)?)
}

/// The librdkafka settings of a member: ingest's own, then `config.kafka_overrides`.
fn client_config(config: &IngestConfig) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("partition.assignment.strategy", "range,roundrobin")
        .set("enable.partition.eof", "false")
        // librdkafka pauses a partition's fetcher for this long once its prefetch
        // queue is full (default 1 s): decoding drains the queue in milliseconds, so a
        // long pause starves the pipeline (it cut throughput to a third here).
        .set("fetch.queue.backoff.ms", "10")
        // librdkafka prefetches up to this much per assigned partition (default 64 MiB;
        // it checks each partition's fetch queue) and keeps each fetched message set,
        // decompressed, until its last message is read. At 16 MiB a member of 8
        // partitions held over 100 MiB of prefetch, a third of its peak while catching
        // up (heaptrack); at 2 MiB it caught up as fast with 100 MiB less
        // (benches/RESULTS.md, 2026-12-03 session 19); `[kafka.consumer]` overrides it.
        .set("queued.max.messages.kbytes", PREFETCH_KBYTES_PER_PARTITION)
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    for (k, v) in &config.kafka_overrides {
        cfg.set(k, v);
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_is_bounded_per_partition_unless_the_config_overrides_it() {
        let mut config = IngestConfig::new("127.0.0.1:9092", vec!["app".into()], "g");
        let defaults = client_config(&config);
        assert_eq!(defaults.get("queued.max.messages.kbytes"), Some("2048"));
        assert_eq!(defaults.get("enable.auto.commit"), Some("false"));

        config
            .kafka_overrides
            .insert("queued.max.messages.kbytes".into(), "65536".into());
        config
            .kafka_overrides
            .insert("fetch.max.bytes".into(), "1048576".into());
        let overridden = client_config(&config);
        assert_eq!(overridden.get("queued.max.messages.kbytes"), Some("65536"));
        assert_eq!(overridden.get("fetch.max.bytes"), Some("1048576"));
        assert_eq!(overridden.get("group.id"), Some("g"));
    }
}
