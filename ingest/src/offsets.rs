//! Exactly-once bookkeeping: which Kafka offsets each table already holds.
//!
//! Every commit of a table carries Delta `txn` actions with app id
//! `<group>-<topic>-<partition>` and version = the last offset included. On start and on
//! each assignment we read them back: a message at or below a table's stored version
//! for its partition is already in that table and is skipped for it; consumption starts
//! at the lowest position any table still needs.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use deltalake::DeltaTable;
use hourlake_catalog::TableId;

use crate::IngestError;

/// A Kafka topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: Arc::from(topic),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The Delta `txn` app id of a partition for a consumer group.
pub fn app_id(group: &str, tp: &TopicPartition) -> String {
    format!("{group}-{}-{}", tp.topic, tp.partition)
}

/// The last offset of each partition committed to each table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommittedOffsets {
    /// Per partition, the last offset held by each table (indexed by `TableId as usize`).
    last: HashMap<TopicPartition, [Option<i64>; TABLES]>,
}

const TABLES: usize = TableId::ALL.len();

/// What each table holds of one partition: the last offset committed to it, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldOffsets([Option<i64>; TABLES]);

impl HeldOffsets {
    /// Whether `table` already holds `offset`.
    pub fn already_in(self, table: TableId, offset: i64) -> bool {
        self.0[table as usize].is_some_and(|last| offset <= last)
    }
}

impl CommittedOffsets {
    /// What each table holds of `tp`.
    pub fn held(&self, tp: &TopicPartition) -> HeldOffsets {
        self.last
            .get(tp)
            .map_or_else(HeldOffsets::default, |by_table| HeldOffsets(*by_table))
    }

    /// The last offset of `tp` held by `table`, if any was ever committed.
    pub fn get(&self, table: TableId, tp: &TopicPartition) -> Option<i64> {
        self.last
            .get(tp)
            .and_then(|by_table| by_table[table as usize])
    }

    /// Records that `table` now holds `tp` up to `offset`.
    pub fn set(&mut self, table: TableId, tp: TopicPartition, offset: i64) {
        self.last.entry(tp).or_default()[table as usize] = Some(offset);
    }

    /// Forgets what `table` holds of `tp` (it holds nothing of it).
    fn clear(&mut self, table: TableId, tp: &TopicPartition) {
        if let Some(by_table) = self.last.get_mut(tp) {
            by_table[table as usize] = None;
        }
    }

    /// Takes what `loaded` holds of `partitions` (read from the tables), in place of
    /// what was known of them before.
    pub fn replace(&mut self, partitions: &[TopicPartition], mut loaded: CommittedOffsets) {
        for tp in partitions {
            match loaded.last.remove(tp) {
                Some(by_table) => self.last.insert(tp.clone(), by_table),
                None => self.last.remove(tp),
            };
        }
    }

    /// Forgets a partition (it was revoked).
    pub fn forget(&mut self, tp: &TopicPartition) {
        self.last.remove(tp);
    }

    /// Where to start reading `tp` so that every table gets what it lacks:
    /// `None` means from the beginning (some table never saw this partition).
    pub fn start_offset(&self, tables: &[TableId], tp: &TopicPartition) -> Option<i64> {
        tables
            .iter()
            .map(|t| self.get(*t, tp).map(|last| last + 1))
            .min()
            .flatten()
    }
}

/// Reads the stored `txn` version of each partition from a table at its current snapshot.
pub async fn load_from_table(
    table: &DeltaTable,
    id: TableId,
    group: &str,
    partitions: &[TopicPartition],
    into: &mut CommittedOffsets,
) -> Result<(), IngestError> {
    let snapshot = table.snapshot().map_err(id.delta_error())?;
    let log_store = table.log_store();
    for tp in partitions {
        let stored = snapshot
            .transaction_version(log_store.as_ref(), app_id(group, tp))
            .await
            .map_err(id.delta_error())?;
        match stored {
            Some(v) => into.set(id, tp.clone(), v),
            None => into.clear(id, tp),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_the_lowest_need_and_skips_are_per_table() {
        let tp = TopicPartition::new("app-events", 3);
        let all = [TableId::EngagementEvents, TableId::DeadLetters];
        let mut c = CommittedOffsets::default();
        assert_eq!(c.start_offset(&all, &tp), None);
        c.set(TableId::EngagementEvents, tp.clone(), 99);
        assert_eq!(c.start_offset(&all, &tp), None, "dead_letters never saw it");
        c.set(TableId::DeadLetters, tp.clone(), 40);
        assert_eq!(c.start_offset(&all, &tp), Some(41));
        assert!(c.held(&tp).already_in(TableId::EngagementEvents, 99));
        assert!(!c.held(&tp).already_in(TableId::EngagementEvents, 100));
        assert!(!c.held(&tp).already_in(TableId::DeadLetters, 41));
        let other = TopicPartition::new("other", 0);
        assert_eq!(c.held(&other), HeldOffsets::default());
        assert!(!c.held(&other).already_in(TableId::EngagementEvents, 0));
        assert_eq!(app_id("g", &tp), "g-app-events-3");
        c.forget(&tp);
        assert_eq!(c.get(TableId::EngagementEvents, &tp), None);
    }

    #[test]
    fn replace_takes_what_was_loaded_of_those_partitions_only() {
        let (a, b, c) = (
            TopicPartition::new("t", 0),
            TopicPartition::new("t", 1),
            TopicPartition::new("t", 2),
        );
        let mut known = CommittedOffsets::default();
        known.set(TableId::EngagementEvents, a.clone(), 5);
        known.set(TableId::DeadLetters, a.clone(), 3);
        known.set(TableId::EngagementEvents, b.clone(), 7);
        known.set(TableId::EngagementEvents, c.clone(), 9);
        let mut loaded = CommittedOffsets::default();
        loaded.set(TableId::EngagementEvents, a.clone(), 8);
        known.replace(&[a.clone(), b.clone()], loaded);
        assert_eq!(known.get(TableId::EngagementEvents, &a), Some(8));
        assert_eq!(
            known.get(TableId::DeadLetters, &a),
            None,
            "a table that holds nothing of it"
        );
        assert_eq!(
            known.get(TableId::EngagementEvents, &b),
            None,
            "nothing loaded"
        );
        assert_eq!(
            known.get(TableId::EngagementEvents, &c),
            Some(9),
            "not reloaded"
        );
    }
}
