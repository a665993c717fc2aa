//! The ingest loop: a consumer-group member that decodes messages into a window on
//! its own thread while the previous window is written and committed on the runtime.
//!
//! Rebalances are handled inside the consumer's rebalance callback: the in-flight
//! commit is finished, the open window dropped, and each newly assigned partition is
//! assigned at the offset its tables still need (read from their Delta `txn`
//! actions), so no message is skipped or taken twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow::array::{Array, TimestampMicrosecondArray};
use deltalake::DeltaTable;
use hourlake_catalog::{Lake, TableId};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::chunk::{ChunkedWindow, Decoder};
use crate::clock::Clock;
use crate::commit::{commit_table, CommitOutcome, TableCommit};
use crate::config::IngestConfig;
use crate::message::{kafka_timestamp_micros, MessageMeta};
use crate::metrics::IngestMetrics;
use crate::offsets::{load_from_table, CommittedOffsets, TopicPartition};
use crate::window::OffsetRange;
use crate::IngestError;

type Tables = BTreeMap<TableId, DeltaTable>;

/// One table's part of a flush: the progress it tried to record, and how it ended.
type TableOutcome = (
    TableId,
    Vec<(TopicPartition, i64)>,
    Result<CommitOutcome, IngestError>,
);

/// Results of one flush: the tables back, and each table's outcome.
struct Flushed {
    tables: Tables,
    outcomes: Vec<TableOutcome>,
    ranges: BTreeMap<TopicPartition, OffsetRange>,
    rows: BTreeMap<TableId, usize>,
}

/// Everything the poll loop and the rebalance callback share.
struct Pipeline {
    config: IngestConfig,
    metrics: IngestMetrics,
    runtime: Handle,
    tables: Option<Tables>,
    in_flight: Option<JoinHandle<Flushed>>,
    committed: CommittedOffsets,
    assigned: BTreeSet<TopicPartition>,
    window: ChunkedWindow,
    last_progress: HashMap<TableId, Instant>,
    fatal: Option<IngestError>,
    clock: Clock,
    /// The partition of the last message (messages come in runs per partition).
    current: Option<TopicPartition>,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Pipeline {
    fn handle_message(&mut self, m: &BorrowedMessage<'_>) {
        let is_current =
            |tp: &TopicPartition| tp.partition == m.partition() && &*tp.topic == m.topic();
        if !self.current.as_ref().is_some_and(is_current) {
            self.current = self.assigned.iter().find(|tp| is_current(tp)).cloned();
        }
        let Some(tp) = self.current.as_ref() else {
            // A message of a partition we no longer own: its new owner reads it.
            return;
        };
        self.clock.tick();
        self.metrics.consumed.inc();
        let meta = MessageMeta {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
            timestamp_micros: kafka_timestamp_micros(m.timestamp(), &self.metrics),
            ingested_at_micros: self.clock.micros(),
        };
        let payload = m.payload().unwrap_or_default();
        let decoder = Decoder {
            runtime: &self.runtime,
            committed: &self.committed,
            validation: &self.config.validation,
            metrics: &self.metrics,
        };
        self.window.add(tp, payload, &meta, &decoder);
    }

    /// Starts writing the window if it is due and nothing else is being written;
    /// applies a finished flush. Blocks only when the window grew far past its limits.
    fn step(&mut self, consumer: &BaseConsumer<IngestContext>) {
        if self.in_flight.as_ref().is_some_and(JoinHandle::is_finished) {
            self.finish_in_flight(consumer);
        }
        if !self.window.is_due(&self.config.flush, self.clock.instant()) {
            return;
        }
        if self.in_flight.is_some() {
            if !self.window.is_over(&self.config.flush) {
                return;
            }
            // Backpressure: wait for the write in flight before buffering more.
            self.finish_in_flight(consumer);
            if !self.window.is_due(&self.config.flush, self.clock.instant()) {
                return; // a failed commit re-reads, and dropped this window
            }
        }
        self.start_flush();
    }

    fn start_flush(&mut self) {
        let decoder = Decoder {
            runtime: &self.runtime,
            committed: &self.committed,
            validation: &self.config.validation,
            metrics: &self.metrics,
        };
        let job = match self.window.take(&decoder) {
            Ok(job) => job,
            Err(e) => {
                self.fatal = Some(e);
                return;
            }
        };
        let Some(tables) = self.tables.take() else {
            self.fatal = Some(IngestError::Thread(
                "tables missing while starting a flush".into(),
            ));
            return;
        };
        let commits = self.plan_commits(job.batches, &job.touched, &job.ranges);
        let rows: BTreeMap<TableId, usize> = commits
            .iter()
            .map(|c| (c.table, c.batch.as_ref().map_or(0, |b| b.num_rows())))
            .collect();
        let group = self.config.group.clone();
        let checkpoint_interval = self.config.checkpoint_interval;
        let metrics = self.metrics.clone();
        let ranges = job.ranges;
        self.in_flight = Some(self.runtime.spawn(async move {
            let started = Instant::now();
            let mut commits: BTreeMap<TableId, TableCommit> =
                commits.into_iter().map(|c| (c.table, c)).collect();
            let work = tables.into_iter().map(|(id, mut table)| {
                let job = commits.remove(&id);
                let group = group.clone();
                let metrics = metrics.clone();
                async move {
                    let Some(job) = job else {
                        return (id, table, Vec::new(), None);
                    };
                    let progress: Vec<(TopicPartition, i64)> = job
                        .progress
                        .iter()
                        .map(|(tp, last, _)| (tp.clone(), *last))
                        .collect();
                    let times = job.batch.as_ref().and_then(event_times);
                    let result = commit_table(&mut table, &group, job, checkpoint_interval).await;
                    if let (Ok(CommitOutcome::Committed { .. }), Some(times)) = (&result, times) {
                        let now = now_micros();
                        for t in times.iter().flatten() {
                            metrics
                                .event_time_lag
                                .observe(now.saturating_sub(*t) as f64 / 1e6);
                        }
                    }
                    (id, table, progress, Some(result))
                }
            });
            let done = futures::future::join_all(work).await;
            metrics
                .commit_latency
                .observe(started.elapsed().as_secs_f64());
            let mut tables = Tables::new();
            let mut outcomes = Vec::new();
            for (id, table, progress, result) in done {
                tables.insert(id, table);
                if let Some(result) = result {
                    outcomes.push((id, progress, result));
                }
            }
            Flushed {
                tables,
                outcomes,
                ranges,
                rows,
            }
        }));
    }

    /// Decides what each table's commit holds: its rows, and `txn` progress for the
    /// partitions it has rows from — or for every partition read, when its progress is due.
    fn plan_commits(
        &mut self,
        mut batches: BTreeMap<TableId, arrow::record_batch::RecordBatch>,
        touched: &BTreeMap<TableId, BTreeSet<TopicPartition>>,
        ranges: &BTreeMap<TopicPartition, OffsetRange>,
    ) -> Vec<TableCommit> {
        let mut commits = Vec::new();
        for &table in TableId::INGESTED {
            let due = self
                .last_progress
                .get(&table)
                .is_none_or(|t| t.elapsed() >= self.config.progress_interval);
            let rows_from = touched.get(&table);
            let progress: Vec<(TopicPartition, i64, Option<i64>)> = ranges
                .iter()
                .filter(|(tp, _)| due || rows_from.is_some_and(|s| s.contains(*tp)))
                .filter_map(|(tp, range)| {
                    let believed = self.committed.get(table, tp);
                    (believed.is_none_or(|b| range.last > b))
                        .then(|| (tp.clone(), range.last, believed))
                })
                .collect();
            let batch = batches.remove(&table);
            if batch.is_none() && progress.is_empty() {
                continue;
            }
            if due {
                self.last_progress.insert(table, Instant::now());
            }
            commits.push(TableCommit {
                table,
                batch,
                progress,
            });
        }
        commits
    }

    /// Waits for the in-flight flush, records what it committed, commits the offsets
    /// to Kafka, and re-reads from the tables' state if anything did not commit.
    fn finish_in_flight(&mut self, consumer: &BaseConsumer<IngestContext>) {
        let Some(handle) = self.in_flight.take() else {
            return;
        };
        let flushed = match self.runtime.block_on(handle) {
            Ok(flushed) => flushed,
            Err(e) => {
                self.fatal = Some(IngestError::Thread(format!("flush task failed: {e}")));
                return;
            }
        };
        self.tables = Some(flushed.tables);
        let mut clean = true;
        for (table, progress, result) in flushed.outcomes {
            match result {
                Ok(CommitOutcome::Committed { version }) => {
                    for (tp, last) in progress {
                        self.committed.set(table, tp, last);
                    }
                    let rows = flushed.rows.get(&table).copied().unwrap_or(0) as u64;
                    self.metrics
                        .rows_committed
                        .get_or_create(&IngestMetrics::table(table.name()))
                        .inc_by(rows);
                    self.metrics
                        .commits
                        .get_or_create(&IngestMetrics::table(table.name()))
                        .inc();
                    if table == TableId::DeadLetters {
                        self.metrics.dead_letters.inc_by(rows);
                    }
                    tracing::debug!(%table, version, rows, "committed");
                }
                Ok(CommitOutcome::Fenced {
                    partition,
                    expected,
                    found,
                }) => {
                    clean = false;
                    self.metrics.fenced.inc();
                    tracing::warn!(%table, %partition, ?expected, ?found, "another consumer wrote this partition; re-reading from the table's offsets");
                }
                Err(e) => {
                    clean = false;
                    self.metrics.commit_errors.inc();
                    tracing::error!(%table, error = %e, "commit failed; re-reading the window from Kafka");
                }
            }
        }
        if clean {
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
        } else {
            self.reset(consumer);
        }
    }

    /// Drops the open window and re-reads every assigned partition from where its
    /// tables need it.
    fn reset(&mut self, consumer: &BaseConsumer<IngestContext>) {
        self.window.discard();
        let partitions: Vec<TopicPartition> = self.assigned.iter().cloned().collect();
        if let Err(e) = self.load_committed(&partitions) {
            tracing::error!(error = %e, "reading offsets from the lake failed; retrying");
            std::thread::sleep(Duration::from_secs(1));
            if let Err(e) = self.load_committed(&partitions) {
                self.fatal = Some(e);
                return;
            }
        }
        let mut tpl = TopicPartitionList::new();
        for tp in &partitions {
            let offset = self.start_offset(tp);
            tracing::info!(%tp, ?offset, "re-reading");
            let _ = tpl.add_partition_offset(&tp.topic, tp.partition, offset);
        }
        // Re-assigning at explicit offsets restarts each fetcher there and drops
        // whatever was fetched before.
        if let Err(e) = consumer.assign(&tpl) {
            self.fatal = Some(e.into());
        }
    }

    fn start_offset(&self, tp: &TopicPartition) -> Offset {
        match self.committed.start_offset(TableId::INGESTED, tp) {
            Some(o) => Offset::Offset(o),
            None => Offset::Beginning,
        }
    }

    /// Reads the tables' stored offsets for these partitions (at the newest versions).
    fn load_committed(&mut self, partitions: &[TopicPartition]) -> Result<(), IngestError> {
        let Some(tables) = self.tables.as_mut() else {
            return Err(IngestError::Thread(
                "tables missing while loading offsets".into(),
            ));
        };
        let group = self.config.group.clone();
        let committed = &mut self.committed;
        self.runtime.block_on(async {
            for (id, table) in tables.iter_mut() {
                table.update_state().await.map_err(|e| IngestError::Delta {
                    table: id.name(),
                    source: Box::new(e),
                })?;
                load_from_table(table, *id, &group, partitions, committed).await?;
            }
            Ok(())
        })
    }

    fn on_assign(&mut self, consumer: &BaseConsumer<IngestContext>, tpl: &mut TopicPartitionList) {
        self.finish_in_flight(consumer);
        self.window.discard();
        self.current = None;
        let partitions: Vec<TopicPartition> = tpl
            .elements()
            .iter()
            .map(|e| TopicPartition::new(e.topic(), e.partition()))
            .collect();
        let mut loaded = self.load_committed(&partitions);
        for attempt in 1..=5 {
            if loaded.is_ok() {
                break;
            }
            tracing::warn!(attempt, "reading offsets from the lake failed; retrying");
            std::thread::sleep(Duration::from_millis(500 * attempt));
            loaded = self.load_committed(&partitions);
        }
        if let Err(e) = loaded {
            self.fatal = Some(e);
            return;
        }
        for tp in &partitions {
            let offset = self.start_offset(tp);
            if let Err(e) = tpl.set_partition_offset(&tp.topic, tp.partition, offset) {
                tracing::warn!(%tp, error = %e, "setting the start offset failed");
            }
            tracing::info!(%tp, ?offset, "assigned");
        }
        self.assigned = partitions.into_iter().collect();
        if let Err(e) = consumer.assign(tpl) {
            self.fatal = Some(e.into());
        }
    }

    fn on_revoke(&mut self, consumer: &BaseConsumer<IngestContext>) {
        // What is in flight may still commit: its txn fence makes that safe.
        self.finish_in_flight(consumer);
        self.window.discard();
        self.current = None;
        for tp in std::mem::take(&mut self.assigned) {
            tracing::info!(%tp, "revoked");
            self.committed.forget(&tp);
        }
        if let Err(e) = consumer.unassign() {
            tracing::warn!(error = %e, "unassign failed");
        }
    }
}

/// The event times of a batch, for the lag histogram.
fn event_times(batch: &arrow::record_batch::RecordBatch) -> Option<Vec<Option<i64>>> {
    let col = batch.column_by_name("event_time")?;
    let times = col.as_any().downcast_ref::<TimestampMicrosecondArray>()?;
    Some(
        (0..times.len())
            .map(|i| times.is_valid(i).then(|| times.value(i)))
            .collect(),
    )
}

/// The consumer context: routes rebalances into the pipeline.
struct IngestContext {
    pipeline: Arc<Mutex<Pipeline>>,
}

impl IngestContext {
    fn lock(&self) -> MutexGuard<'_, Pipeline> {
        self.pipeline
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut pipeline = self.lock();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                pipeline.on_assign(consumer, tpl)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => pipeline.on_revoke(consumer),
            other => {
                tracing::error!(?other, "rebalance error; dropping the assignment");
                pipeline.on_revoke(consumer);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(error = %e, "kafka offset commit failed");
        }
    }
}

/// A consumer-group member that ingests Kafka topics into the lake exactly once.
pub struct Ingestor {
    config: IngestConfig,
    lake: Lake,
    metrics: IngestMetrics,
}

impl Ingestor {
    /// An ingestor for `lake` with `config`.
    pub fn new(config: IngestConfig, lake: Lake) -> Ingestor {
        Ingestor {
            config,
            lake,
            metrics: IngestMetrics::default(),
        }
    }

    /// The metrics this ingestor updates (clone freely; they are shared).
    pub fn metrics(&self) -> IngestMetrics {
        self.metrics.clone()
    }

    /// Runs until `shutdown` completes, then commits what is buffered and leaves the group.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), IngestError> {
        if self.config.topics.is_empty() {
            return Err(IngestError::Config("no topics to consume".into()));
        }
        let mut tables = Tables::new();
        for &id in TableId::INGESTED {
            tables.insert(id, self.lake.open_or_create(id).await?);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stop_on_signal = stop.clone();
        let signal = tokio::spawn(async move {
            shutdown.await;
            stop_on_signal.store(true, Ordering::SeqCst);
        });
        let pipeline = Arc::new(Mutex::new(Pipeline {
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            runtime: Handle::current(),
            tables: Some(tables),
            in_flight: None,
            committed: CommittedOffsets::default(),
            assigned: BTreeSet::new(),
            window: ChunkedWindow::default(),
            last_progress: HashMap::new(),
            fatal: None,
            clock: Clock::default(),
            current: None,
        }));
        let consumer = self.consumer(pipeline.clone())?;
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        tracing::info!(group = %self.config.group, topics = ?self.config.topics, lake = %self.lake.root(), "ingest started");
        let metrics = self.metrics.clone();
        let result =
            tokio::task::spawn_blocking(move || poll_loop(consumer, pipeline, stop, metrics))
                .await
                .map_err(|e| IngestError::Thread(e.to_string()))?;
        signal.abort();
        result
    }

    fn consumer(
        &self,
        pipeline: Arc<Mutex<Pipeline>>,
    ) -> Result<BaseConsumer<IngestContext>, IngestError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.config.brokers)
            .set("group.id", &self.config.group)
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
            .set("fetch.queue.backoff.ms", "10");
        for (k, v) in &self.config.kafka_overrides {
            cfg.set(k, v);
        }
        Ok(cfg.create_with_context(IngestContext { pipeline })?)
    }
}

fn lock(pipeline: &Mutex<Pipeline>) -> MutexGuard<'_, Pipeline> {
    pipeline
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn poll_loop(
    consumer: BaseConsumer<IngestContext>,
    pipeline: Arc<Mutex<Pipeline>>,
    stop: Arc<AtomicBool>,
    metrics: IngestMetrics,
) -> Result<(), IngestError> {
    let mut last_summary = Instant::now();
    let mut last_error_log = Instant::now()
        .checked_sub(Duration::from_secs(60))
        .unwrap_or_else(Instant::now);
    while !stop.load(Ordering::SeqCst) {
        // Never poll while holding the pipeline: the rebalance callback runs inside
        // poll and takes it. A message returned by a poll that also ran the callback
        // already belongs to the new assignment.
        let polled = consumer.poll(Duration::from_millis(50));
        let mut p = lock(&pipeline);
        if let Some(e) = p.fatal.take() {
            return Err(e);
        }
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
        p.step(&consumer);
        if let Some(e) = p.fatal.take() {
            return Err(e);
        }
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
    // Shutdown: commit what is buffered, then leave the group.
    let mut p = lock(&pipeline);
    p.finish_in_flight(&consumer);
    if !p.window.is_empty() {
        p.start_flush();
        p.finish_in_flight(&consumer);
    }
    let fatal = p.fatal.take();
    drop(p);
    consumer.unsubscribe();
    tracing::info!(consumed = metrics.consumed.get(), "ingest stopped");
    fatal.map_or(Ok(()), Err)
}
