//! The poll thread: it owns the consumer, copies each message into the flush window,
//! hands the window to the flusher when the policy says so, and applies each flush's
//! outcome (offsets committed to Kafka, or a re-read).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hourlake_catalog::TableId;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::runtime::Handle;

use super::consumer::IngestContext;
use super::flush::{Flushed, Flusher, Tables};
use super::lock;
use crate::backlog::Backlog;
use crate::clock::Clock;
use crate::config::IngestConfig;
use crate::message::{kafka_timestamp_micros, MessageMeta};
use crate::metrics::IngestMetrics;
use crate::offsets::{CommittedOffsets, TopicPartition};
use crate::window::Window;
use crate::IngestError;

/// Everything the poll loop and the rebalance callback share.
pub(super) struct Pipeline {
    pub(super) config: IngestConfig,
    pub(super) metrics: IngestMetrics,
    pub(super) flusher: Flusher,
    /// The offsets each table is believed to hold (what the flusher last reported).
    pub(super) committed: CommittedOffsets,
    pub(super) assigned: BTreeSet<TopicPartition>,
    pub(super) window: Window,
    pub(super) clock: Clock,
    /// The partition of the last message (messages come in runs per partition).
    pub(super) current: Option<TopicPartition>,
    /// The offset of the last message.
    last_offset: i64,
    /// How much waits in Kafka behind what was read (the flush policy asks it).
    pub(super) backlog: Backlog,
    /// Where `config.start_at` puts each partition that no table holds offsets of,
    /// once asked of Kafka (the same answer on every later assignment).
    pub(super) start_at_offsets: HashMap<TopicPartition, Offset>,
}

impl Pipeline {
    /// A pipeline whose flusher owns `tables`; decoding and commits run on `runtime`.
    pub(super) fn new(
        config: IngestConfig,
        metrics: IngestMetrics,
        runtime: Handle,
        tables: Tables,
    ) -> Pipeline {
        let flusher = Flusher::start(&runtime, tables, &config, metrics.clone());
        let window = Window::new(runtime, config.validation, metrics.clone());
        Pipeline {
            config,
            metrics,
            flusher,
            committed: CommittedOffsets::default(),
            assigned: BTreeSet::new(),
            window,
            clock: Clock::default(),
            current: None,
            last_offset: -1,
            backlog: Backlog::default(),
            start_at_offsets: HashMap::new(),
        }
    }

    fn handle_message(&mut self, m: &BorrowedMessage<'_>) {
        // rdkafka checks a topic name's UTF-8 on every call: read it once.
        let topic = m.topic();
        let partition = m.partition();
        let is_current = |tp: &TopicPartition| tp.partition == partition && &*tp.topic == topic;
        if !self.current.as_ref().is_some_and(is_current) {
            if let Some(ended) = &self.current {
                self.backlog.read(ended, self.last_offset);
            }
            self.current = self.assigned.iter().find(|tp| is_current(tp)).cloned();
        }
        let Some(tp) = self.current.as_ref() else {
            // A message of a partition we no longer own: its new owner reads it.
            return;
        };
        self.clock.tick();
        self.metrics.consumed.inc();
        self.last_offset = m.offset();
        let meta = MessageMeta {
            topic,
            partition,
            offset: m.offset(),
            key: m.key(),
            timestamp_micros: kafka_timestamp_micros(m.timestamp(), &self.metrics),
            ingested_at_micros: self.clock.micros(),
        };
        let payload = m.payload().unwrap_or_default();
        self.window.add(tp, payload, &meta, &self.committed);
    }

    /// Starts writing the window if it is due and nothing else is being written;
    /// applies a finished flush. Blocks only when the window grew far past its limits.
    fn step(&mut self, consumer: &BaseConsumer<IngestContext>) -> Result<(), IngestError> {
        if let Some(flushed) = self.flusher.finished()? {
            self.apply(flushed, consumer)?;
        }
        self.flusher.write_ahead(&mut self.window)?;
        if !self.is_due() {
            return Ok(());
        }
        if self.flusher.is_busy() {
            if !self.window.is_over(&self.config.flush) {
                return Ok(());
            }
            // Backpressure: wait for the write in flight before buffering more.
            self.finish_in_flight(consumer)?;
            if !self.is_due() {
                return Ok(()); // a failed commit re-reads, and dropped this window
            }
        }
        self.start_flush()
    }

    /// Whether the window is due by the flush policy, given the backlog behind it.
    fn is_due(&mut self) -> bool {
        let (backlog, current, last) = (&self.backlog, &self.current, self.last_offset);
        self.window
            .is_due(&self.config.flush, self.clock.instant(), || {
                backlog.waiting(current.as_ref().map(|tp| (tp, last)))
            })
    }

    /// Forgets where each partition was read (it is about to be re-read from
    /// elsewhere, or was taken away).
    pub(super) fn forget_positions(&mut self) {
        self.current = None;
        self.backlog.reset(&self.assigned);
    }

    /// Hands the window to the flusher (after waiting for its chunks to decode).
    fn start_flush(&mut self) -> Result<(), IngestError> {
        let job = self.window.take(&self.committed)?;
        self.flusher.flush(job, &self.committed)
    }

    /// Waits for the flush in flight, if any, and applies its outcome.
    pub(super) fn finish_in_flight(
        &mut self,
        consumer: &BaseConsumer<IngestContext>,
    ) -> Result<(), IngestError> {
        match self.flusher.wait()? {
            Some(flushed) => self.apply(flushed, consumer),
            None => Ok(()),
        }
    }

    /// Drops the open window, and the files its rows were being written into.
    pub(super) fn discard_window(&mut self) -> Result<(), IngestError> {
        self.window.discard();
        self.flusher.discard()
    }

    /// Records what a flush committed and commits its offsets to Kafka; re-reads from
    /// the tables' state if anything did not commit.
    fn apply(
        &mut self,
        flushed: Flushed,
        consumer: &BaseConsumer<IngestContext>,
    ) -> Result<(), IngestError> {
        if !flushed.record(&mut self.committed, &self.metrics) {
            return self.reread(consumer);
        }
        let mut tpl = TopicPartitionList::new();
        for (tp, range) in &flushed.ranges {
            if self.assigned.contains(tp) {
                let _ = tpl.add_partition_offset(
                    &tp.topic,
                    tp.partition,
                    Offset::Offset(range.last + 1),
                );
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(error = %e, "committing offsets to Kafka failed (the lake holds them; lag tools may lag)");
            }
        }
        Ok(())
    }

    /// Shutdown: waits for the flush in flight, then writes what is buffered.
    fn flush_rest(&mut self, consumer: &BaseConsumer<IngestContext>) -> Result<(), IngestError> {
        self.finish_in_flight(consumer)?;
        if !self.window.is_empty() {
            self.start_flush()?;
            self.finish_in_flight(consumer)?;
        }
        Ok(())
    }
}

/// Polls until `stop` is set, then writes what is buffered and leaves the group.
pub(super) fn poll_loop(
    consumer: BaseConsumer<IngestContext>,
    pipeline: Arc<Mutex<Pipeline>>,
    stop: Arc<AtomicBool>,
    metrics: IngestMetrics,
) -> Result<(), IngestError> {
    let mut last_summary = Instant::now();
    let mut last_error_log = Instant::now()
        .checked_sub(Duration::from_secs(60))
        .unwrap_or_else(Instant::now);
    // While messages flow, the next poll does not wait (librdkafka then reads no clock
    // for its timeout); after an empty poll it waits up to 50 ms for the next message.
    let mut wait = Duration::from_millis(50);
    while !stop.load(Ordering::SeqCst) {
        // Never poll while holding the pipeline: the rebalance callback runs inside
        // poll and takes it. A message returned by a poll that also ran the callback
        // already belongs to the new assignment.
        let polled = consumer.poll(wait);
        wait = if matches!(polled, Some(Ok(_))) {
            Duration::ZERO
        } else {
            Duration::from_millis(50)
        };
        if let Some(e) = consumer.context().take_failure() {
            return Err(e);
        }
        let mut p = lock(&pipeline);
        match polled {
            Some(Ok(m)) => p.handle_message(&m),
            Some(Err(e)) => {
                p.clock.tick();
                if p.clock.instant() >= last_error_log + Duration::from_secs(5) {
                    last_error_log = p.clock.instant();
                    tracing::warn!(error = %e, "kafka consumer error (retrying)");
                }
            }
            None => p.clock.tick(),
        }
        p.step(&consumer)?;
        let now = p.clock.instant();
        drop(p);
        if now >= last_summary + Duration::from_secs(5) {
            last_summary = now;
            tracing::info!(
                consumed = metrics.consumed.get(),
                engagement_rows = metrics.rows_of(TableId::EngagementEvents.name()),
                recommendation_rows = metrics.rows_of(TableId::RecommendationEvents.name()),
                dead_letters = metrics.dead_letters.get(),
                skipped = metrics.skipped_committed.get(),
                commit_errors = metrics.commit_errors.get(),
                "ingest progress"
            );
        }
    }
    let flushed = lock(&pipeline).flush_rest(&consumer);
    consumer.unsubscribe();
    tracing::info!(consumed = metrics.consumed.get(), "ingest stopped");
    flushed
}
