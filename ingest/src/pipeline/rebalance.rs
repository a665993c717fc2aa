//! Where each partition starts: on assignment, and again after a flush that did not
//! commit. The in-flight flush is finished, the open window dropped, and each partition
//! is assigned at the offset its tables still need (read from their Delta `txn`
//! actions), so no message is skipped or taken twice. A partition that some table holds
//! nothing of starts where [`StartAt`](crate::StartAt) says: the log start, or the first
//! message at or after a point in time (asked of Kafka once, then kept).

use std::time::{Duration, Instant};

/// How long ingest keeps trying to read the lake's offsets (a storage outage) before it
/// gives up: below Kafka's `max.poll.interval.ms` (300 s), so the member keeps its
/// partitions meanwhile.
const OFFSETS_PATIENCE: Duration = Duration::from_secs(240);
/// How long Kafka may take to answer which offset a `--start-at` time falls on.
const OFFSETS_FOR_TIMES_TIMEOUT: Duration = Duration::from_secs(30);

use hourlake_catalog::TableId;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::consumer::IngestContext;
use super::poll::Pipeline;
use crate::offsets::TopicPartition;
use crate::IngestError;

impl Pipeline {
    /// Partitions assigned to this member: each starts where its tables need it.
    pub(super) fn on_assign(
        &mut self,
        consumer: &BaseConsumer<IngestContext>,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), IngestError> {
        self.finish_in_flight(consumer)?;
        self.discard_window()?;
        let partitions: Vec<TopicPartition> = tpl
            .elements()
            .iter()
            .map(|e| TopicPartition::new(e.topic(), e.partition()))
            .collect();
        self.load_committed_patiently(&partitions)?;
        self.resolve_start_at(consumer, &partitions)?;
        for tp in &partitions {
            let offset = self.start_offset(tp);
            if let Err(e) = tpl.set_partition_offset(&tp.topic, tp.partition, offset) {
                tracing::warn!(%tp, error = %e, "setting the start offset failed");
            }
            tracing::info!(%tp, ?offset, "assigned");
        }
        self.assigned = partitions.into_iter().collect();
        self.forget_positions();
        consumer.assign(tpl)?;
        Ok(())
    }

    /// Partitions taken away: what is buffered of them is dropped.
    pub(super) fn on_revoke(
        &mut self,
        consumer: &BaseConsumer<IngestContext>,
    ) -> Result<(), IngestError> {
        // What is in flight may still commit: its txn fence makes that safe.
        let finished = self.finish_in_flight(consumer);
        let discarded = self.discard_window();
        for tp in std::mem::take(&mut self.assigned) {
            tracing::info!(%tp, "revoked");
            self.committed.forget(&tp);
        }
        self.forget_positions();
        if let Err(e) = consumer.unassign() {
            tracing::warn!(error = %e, "unassign failed");
        }
        finished.and(discarded)
    }

    /// Drops the open window and re-reads every assigned partition from where its
    /// tables need it (after a flush that did not commit).
    pub(super) fn reread(
        &mut self,
        consumer: &BaseConsumer<IngestContext>,
    ) -> Result<(), IngestError> {
        self.discard_window()?;
        let partitions: Vec<TopicPartition> = self.assigned.iter().cloned().collect();
        self.load_committed_patiently(&partitions)?;
        self.resolve_start_at(consumer, &partitions)?;
        let mut tpl = TopicPartitionList::new();
        for tp in &partitions {
            let offset = self.start_offset(tp);
            tracing::info!(%tp, ?offset, "re-reading");
            let _ = tpl.add_partition_offset(&tp.topic, tp.partition, offset);
        }
        // Re-assigning at explicit offsets restarts each fetcher there and drops
        // whatever was fetched before.
        self.forget_positions();
        consumer.assign(&tpl)?;
        Ok(())
    }

    fn start_offset(&self, tp: &TopicPartition) -> Offset {
        match self.committed.start_offset(TableId::INGEST_WRITES, tp) {
            Some(o) => Offset::Offset(o),
            None => self
                .start_at_offsets
                .get(tp)
                .copied()
                .unwrap_or(Offset::Beginning),
        }
    }

    /// Asks Kafka where the `--start-at` time falls in each of `partitions` that some
    /// table holds nothing of, unless it was asked before. Only such partitions start
    /// there: a table that holds offsets skips what it holds, so a restarted replay
    /// continues exactly once from the lake.
    fn resolve_start_at(
        &mut self,
        consumer: &BaseConsumer<IngestContext>,
        partitions: &[TopicPartition],
    ) -> Result<(), IngestError> {
        let Some(millis) = self.config.start_at.timestamp_millis() else {
            return Ok(());
        };
        // "Nothing at or after the time yet" is asked again: messages may have come since.
        self.start_at_offsets
            .retain(|_, o| matches!(o, Offset::Offset(_)));
        let mut wanted = TopicPartitionList::new();
        for tp in partitions {
            let unheld = self
                .committed
                .start_offset(TableId::INGEST_WRITES, tp)
                .is_none();
            if unheld && !self.start_at_offsets.contains_key(tp) {
                wanted.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(millis))?;
            }
        }
        if wanted.count() == 0 {
            return Ok(());
        }
        let found = consumer.offsets_for_times(wanted, OFFSETS_FOR_TIMES_TIMEOUT)?;
        for e in found.elements() {
            e.error()?;
            let tp = TopicPartition::new(e.topic(), e.partition());
            // `End`: no message at or after the time yet; the next one is the first.
            let offset = e.offset();
            if !matches!(offset, Offset::Offset(_) | Offset::End) {
                return Err(IngestError::StartOffset(format!(
                    "Kafka answered {offset:?} for {tp} at --start-at {}",
                    self.config.start_at
                )));
            }
            tracing::info!(%tp, start_at = %self.config.start_at, ?offset, "start-at offset");
            self.start_at_offsets.insert(tp, offset);
        }
        Ok(())
    }

    /// Reads the tables' stored offsets for these partitions (at the newest versions).
    /// [`Pipeline::load_committed`], retried with backoff while the lake's storage is
    /// unreachable, for up to [`OFFSETS_PATIENCE`]: an outage of the object store then
    /// only pauses ingest (nothing is read that could not be committed), and a longer one
    /// ends the process with the storage error.
    fn load_committed_patiently(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<(), IngestError> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(500);
        loop {
            match self.load_committed(partitions) {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() + wait < OFFSETS_PATIENCE => {
                    tracing::warn!(error = %e, retry_in = ?wait, "reading offsets from the lake failed; retrying");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(15));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn load_committed(&mut self, partitions: &[TopicPartition]) -> Result<(), IngestError> {
        let loaded = self.flusher.load_offsets(partitions)?;
        self.committed.replace(partitions, loaded);
        Ok(())
    }
}
