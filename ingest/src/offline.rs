//! Ingest without Kafka, for benchmarks and profiling: messages given in memory go
//! through the pipeline's own flush window (chunks decoded on the blocking pool, merged
//! in order) and its flusher (one commit per table, with `txn` offsets).

use hourlake_catalog::{Lake, TableId};
use tokio::runtime::Handle;

use crate::clock::Clock;
use crate::commit::CommitOutcome;
use crate::config::IngestConfig;
use crate::decoded::FlushJob;
use crate::message::MessageMeta;
use crate::metrics::IngestMetrics;
use crate::offsets::{CommittedOffsets, TopicPartition};
use crate::pipeline::flush::{open_tables, Flusher};
use crate::window::Window;
use crate::IngestError;

/// Ingests messages held in memory into a lake, window by window: [`OfflineIngest::add`]
/// the messages of a window, [`OfflineIngest::decode`] it, [`OfflineIngest::commit`] it.
/// Every method blocks: call them off the runtime's threads.
pub struct OfflineIngest {
    window: Window,
    flusher: Flusher,
    committed: CommittedOffsets,
    metrics: IngestMetrics,
    clock: Clock,
}

/// A window decoded into rows, waiting to be written.
pub struct DecodedWindow {
    job: FlushJob,
}

impl DecodedWindow {
    /// Rows decoded and not yet handed to the writer by [`OfflineIngest::write_ahead`],
    /// across the ingested tables (dead letters included; the per-minute counts are not
    /// rows).
    pub fn rows(&self) -> usize {
        TableId::INGESTED
            .iter()
            .map(|table| self.job.num_rows(*table))
            .sum()
    }
}

impl OfflineIngest {
    /// Opens (or creates) the lake's tables and reads what they hold of `partitions`,
    /// as an assignment would; decoding and commits run on `runtime`. Messages a table
    /// already holds are skipped for it, as in the pipeline.
    pub fn open(
        runtime: &Handle,
        lake: &Lake,
        config: &IngestConfig,
        partitions: &[TopicPartition],
    ) -> Result<OfflineIngest, IngestError> {
        let tables = runtime.block_on(open_tables(lake))?;
        let metrics = IngestMetrics::default();
        let flusher = Flusher::start(runtime, tables, config, metrics.clone());
        let mut committed = CommittedOffsets::default();
        committed.replace(partitions, flusher.load_offsets(partitions)?);
        Ok(OfflineIngest {
            window: Window::new(runtime.clone(), config.validation, metrics.clone()),
            flusher,
            committed,
            metrics,
            clock: Clock::default(),
        })
    }

    /// Reads one message of `tp` (one of the partitions given to `open`) into the
    /// window, with no key and no Kafka timestamp.
    pub fn add(&mut self, tp: &TopicPartition, offset: i64, payload: &[u8]) {
        self.clock.tick();
        let meta = MessageMeta {
            topic: &tp.topic,
            partition: tp.partition,
            offset,
            key: None,
            timestamp_micros: None,
            ingested_at_micros: self.clock.micros(),
        };
        self.window.add(tp, payload, &meta, &self.committed);
    }

    /// Hands the chunks decoded so far to the writer, which streams them into their hour
    /// files, and waits while more than a few chunks wait for it: the window's rows are
    /// then never all in memory at once (as in the Kafka pipeline). Optional: without
    /// it, [`OfflineIngest::decode`] holds the whole window's rows, which lets a
    /// benchmark time decoding and writing apart.
    pub fn write_ahead(&mut self) -> Result<(), IngestError> {
        self.flusher.write_ahead(&mut self.window)
    }

    /// The decode half of a flush: waits for the window's chunks and merges them.
    pub fn decode(&mut self) -> Result<DecodedWindow, IngestError> {
        Ok(DecodedWindow {
            job: self.window.take(&self.committed)?,
        })
    }

    /// The write half: writes and commits each table's rows with the offsets read.
    /// A table that does not commit is an error (there is no re-read without Kafka).
    pub fn commit(&mut self, decoded: DecodedWindow) -> Result<(), IngestError> {
        self.start_commit(decoded)?;
        self.finish_commit()
    }

    /// Starts writing a decoded window on the runtime and returns at once, so the next
    /// window can be read meanwhile; [`OfflineIngest::finish_commit`] waits for it (call
    /// it before starting another).
    pub fn start_commit(&mut self, decoded: DecodedWindow) -> Result<(), IngestError> {
        self.flusher.flush(decoded.job, &self.committed)
    }

    /// Waits for the window [`OfflineIngest::start_commit`] started (none: returns at
    /// once) and records what it committed.
    pub fn finish_commit(&mut self) -> Result<(), IngestError> {
        let Some(flushed) = self.flusher.wait()? else {
            return Ok(());
        };
        if flushed.record(&mut self.committed, &self.metrics) {
            return Ok(());
        }
        for outcome in flushed.tables {
            match outcome.result {
                Err(e) => return Err(e),
                Ok(CommitOutcome::Fenced { partition, .. }) => {
                    return Err(IngestError::Fenced {
                        table: outcome.table.name(),
                        partition: partition.to_string(),
                    })
                }
                Ok(CommitOutcome::Committed { .. }) => {}
            }
        }
        Ok(())
    }

    /// The metrics it updated (rows committed, commits, skipped messages).
    pub fn metrics(&self) -> IngestMetrics {
        self.metrics.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hourlake_catalog::TableId;

    #[test]
    fn windows_commit_with_their_offsets_and_a_reopen_skips_what_is_held() {
        let runtime = crate::test_runtime::one_worker_runtime();
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        let config = IngestConfig::new("unused", vec!["t".into()], "g");
        let tp = TopicPartition::new("t", 0);
        let now = chrono::Utc::now().timestamp_millis();
        let event = |i: i64| {
            format!(
                r#"{{"event_id":"e{i}","event_type":"click","event_time":{now},"user_id":"u"}}"#
            )
        };
        let parts = std::slice::from_ref(&tp);
        let mut ingest = OfflineIngest::open(runtime.handle(), &lake, &config, parts).unwrap();
        for window in [0..3000, 3000..3500] {
            for i in window {
                let payload = if i == 10 {
                    "{bad".to_string()
                } else {
                    event(i)
                };
                ingest.add(&tp, i, payload.as_bytes());
            }
            let decoded = ingest.decode().unwrap();
            assert!(decoded.rows() > 0);
            ingest.commit(decoded).unwrap();
        }
        let metrics = ingest.metrics();
        assert_eq!(metrics.rows_of(TableId::EngagementEvents.name()), 3499);
        assert_eq!(metrics.dead_letters.get(), 1);
        assert_eq!(
            ingest.committed.get(TableId::EngagementEvents, &tp),
            Some(3499)
        );
        drop(ingest);

        // Offsets live in the tables: a second writer skips what they hold.
        let mut again = OfflineIngest::open(runtime.handle(), &lake, &config, parts).unwrap();
        for i in 3400..3600 {
            again.add(&tp, i, event(i).as_bytes());
        }
        let decoded = again.decode().unwrap();
        assert_eq!(decoded.rows(), 100, "offsets up to 3499 are in the table");
        again.commit(decoded).unwrap();
        assert_eq!(again.metrics().skipped_committed.get(), 100);
        let table = runtime
            .block_on(lake.open(TableId::EngagementEvents))
            .unwrap()
            .unwrap();
        let files = table.snapshot().unwrap().log_data().num_files();
        assert_eq!(files, 3, "one file per window (all in one hour)");
    }
}
