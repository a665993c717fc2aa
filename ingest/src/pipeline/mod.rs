//! The ingest pipeline: a consumer-group member that copies messages into a flush
//! window on its own thread while the flusher writes and commits the previous window
//! on the runtime.
//!
//! - `consumer`: the consumer's settings; its context runs rebalances on the pipeline.
//! - `poll`: the poll thread — messages into the window, flushes when due, outcomes
//!   applied (offsets committed to Kafka, or a re-read).
//! - `rebalance`: where each partition starts, on assignment and after a failed flush.
//! - `flush`: the flusher task, which owns the tables and reports each flush's outcome.

mod consumer;
pub(crate) mod flush;
mod poll;
mod rebalance;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hourlake_catalog::Lake;
use rdkafka::consumer::Consumer;
use tokio::runtime::Handle;

use crate::config::IngestConfig;
use crate::metrics::IngestMetrics;
use crate::IngestError;
use poll::Pipeline;

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
        let tables = flush::open_tables(&self.lake).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_on_signal = stop.clone();
        let signal = tokio::spawn(async move {
            shutdown.await;
            stop_on_signal.store(true, Ordering::SeqCst);
        });
        let pipeline = Arc::new(Mutex::new(Pipeline::new(
            self.config.clone(),
            self.metrics.clone(),
            Handle::current(),
            tables,
        )));
        let consumer = consumer::consumer(&self.config, pipeline.clone(), self.metrics.clone())?;
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        tracing::info!(group = %self.config.group, topics = ?self.config.topics, lake = %self.lake.root(), "ingest started");
        let metrics = self.metrics.clone();
        let result =
            tokio::task::spawn_blocking(move || poll::poll_loop(consumer, pipeline, stop, metrics))
                .await
                .map_err(|e| IngestError::Thread(e.to_string()))?;
        signal.abort();
        result
    }
}

/// Locks a mutex of the pipeline; a panic elsewhere does not poison it for the rest.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
