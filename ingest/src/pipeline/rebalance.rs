//! Where each partition starts: on assignment, and again after a flush that did not
//! commit. The in-flight flush is finished, the open window dropped, and each partition
//! is assigned at the offset its tables still need (read from their Delta `txn`
//! actions), so no message is skipped or taken twice.

use std::time::Duration;

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
        loaded?;
        for tp in &partitions {
            let offset = self.start_offset(tp);
            if let Err(e) = tpl.set_partition_offset(&tp.topic, tp.partition, offset) {
                tracing::warn!(%tp, error = %e, "setting the start offset failed");
            }
            tracing::info!(%tp, ?offset, "assigned");
        }
        self.assigned = partitions.into_iter().collect();
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
        self.window.discard();
        self.current = None;
        for tp in std::mem::take(&mut self.assigned) {
            tracing::info!(%tp, "revoked");
            self.committed.forget(&tp);
        }
        if let Err(e) = consumer.unassign() {
            tracing::warn!(error = %e, "unassign failed");
        }
        finished
    }

    /// Drops the open window and re-reads every assigned partition from where its
    /// tables need it (after a flush that did not commit).
    pub(super) fn reread(
        &mut self,
        consumer: &BaseConsumer<IngestContext>,
    ) -> Result<(), IngestError> {
        self.window.discard();
        let partitions: Vec<TopicPartition> = self.assigned.iter().cloned().collect();
        if let Err(e) = self.load_committed(&partitions) {
            tracing::error!(error = %e, "reading offsets from the lake failed; retrying");
            std::thread::sleep(Duration::from_secs(1));
            self.load_committed(&partitions)?;
        }
        let mut tpl = TopicPartitionList::new();
        for tp in &partitions {
            let offset = self.start_offset(tp);
            tracing::info!(%tp, ?offset, "re-reading");
            let _ = tpl.add_partition_offset(&tp.topic, tp.partition, offset);
        }
        // Re-assigning at explicit offsets restarts each fetcher there and drops
        // whatever was fetched before.
        consumer.assign(&tpl)?;
        Ok(())
    }

    fn start_offset(&self, tp: &TopicPartition) -> Offset {
        match self.committed.start_offset(TableId::INGESTED, tp) {
            Some(o) => Offset::Offset(o),
            None => Offset::Beginning,
        }
    }

    /// Reads the tables' stored offsets for these partitions (at the newest versions).
    fn load_committed(&mut self, partitions: &[TopicPartition]) -> Result<(), IngestError> {
        let loaded = self.flusher.load_offsets(partitions)?;
        self.committed.replace(partitions, loaded);
        Ok(())
    }
}
