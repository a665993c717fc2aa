//! How many messages wait in Kafka behind what this member has read: the readable end
//! of each assigned partition (from librdkafka's statistics) less the next offset it
//! will read. The flush policy asks it whether a backlog will fill the open window, so
//! that catching up writes full windows instead of one per `max_latency`.

use std::collections::{BTreeSet, HashMap};

use rdkafka::Statistics;

use crate::offsets::TopicPartition;

/// Per assigned partition: its readable end as last reported, and the next offset this
/// member reads. A figure not known yet counts as no backlog.
#[derive(Debug, Default)]
pub struct Backlog {
    readable_end: HashMap<TopicPartition, i64>,
    next: HashMap<TopicPartition, i64>,
}

impl Backlog {
    /// Records each assigned partition's readable end from librdkafka's statistics: the
    /// last stable offset where known (a transaction still open is not readable), else
    /// the high watermark.
    pub fn report(&mut self, statistics: &Statistics, assigned: &BTreeSet<TopicPartition>) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                let tp = TopicPartition::new(topic, *partition);
                if !assigned.contains(&tp) {
                    continue;
                }
                let end = if p.ls_offset >= 0 {
                    p.ls_offset.min(p.hi_offset)
                } else {
                    p.hi_offset
                };
                // librdkafka reports -1001 (invalid) until it has fetched the partition.
                if end >= 0 {
                    self.readable_end.insert(tp, end);
                }
            }
        }
    }

    /// This member has read `tp` up to and including `offset`.
    pub fn read(&mut self, tp: &TopicPartition, offset: i64) {
        match self.next.get_mut(tp) {
            Some(next) => *next = offset + 1,
            None => {
                self.next.insert(tp.clone(), offset + 1);
            }
        }
    }

    /// Messages waiting behind what was read, over every partition with both figures
    /// known; `current` is the partition being read and its last offset read, which
    /// [`Backlog::read`] has not been told yet.
    pub fn waiting(&self, current: Option<(&TopicPartition, i64)>) -> u64 {
        self.readable_end
            .iter()
            .filter_map(|(tp, end)| {
                let next = match current {
                    Some((c, last)) if c == tp => Some(last + 1),
                    _ => self.next.get(tp).copied(),
                }?;
                u64::try_from(end - next).ok()
            })
            .sum()
    }

    /// Forgets every position (partitions are re-read from elsewhere), and the readable
    /// ends of partitions no longer in `assigned`.
    pub fn reset(&mut self, assigned: &BTreeSet<TopicPartition>) {
        self.next.clear();
        self.readable_end.retain(|tp, _| assigned.contains(tp));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rdkafka::statistics::{Partition, Topic};

    use super::*;

    fn statistics(partitions: &[(&str, i32, i64, i64)]) -> Statistics {
        let mut topics: HashMap<String, Topic> = HashMap::new();
        for &(topic, partition, hi_offset, ls_offset) in partitions {
            topics
                .entry(topic.to_string())
                .or_default()
                .partitions
                .insert(
                    partition,
                    Partition {
                        partition,
                        hi_offset,
                        ls_offset,
                        ..Partition::default()
                    },
                );
        }
        Statistics {
            topics,
            ..Statistics::default()
        }
    }

    #[test]
    fn the_backlog_is_the_readable_end_less_the_next_offset_of_assigned_partitions() {
        let (a, b, other) = (
            TopicPartition::new("app", 0),
            TopicPartition::new("app", 1),
            TopicPartition::new("app", 2),
        );
        let assigned: BTreeSet<_> = [a.clone(), b.clone()].into();
        let mut backlog = Backlog::default();
        assert_eq!(backlog.waiting(None), 0, "nothing known: no backlog");
        backlog.report(
            &statistics(&[
                ("app", 0, 1_000, 1_000),
                // An open transaction: only up to the last stable offset is readable.
                ("app", 1, 900, 600),
                // Not ours: never counted.
                ("app", 2, 5_000, 5_000),
                // librdkafka's internal partition, and one not fetched yet.
                ("app", -1, -1001, -1001),
            ]),
            &assigned,
        );
        assert_eq!(backlog.waiting(None), 0, "no position known yet");
        backlog.read(&a, 99);
        assert_eq!(backlog.waiting(None), 900);
        backlog.read(&b, 499);
        assert_eq!(backlog.waiting(None), 900 + 100);
        assert_eq!(
            backlog.waiting(Some((&a, 899))),
            100 + 100,
            "the partition being read counts from its last message"
        );
        backlog.read(&other, 0);
        assert_eq!(backlog.waiting(None), 1_000, "an unassigned one has no end");
        // Read past the reported end (the statistics are a second old): nothing waits.
        backlog.read(&a, 1_200);
        assert_eq!(backlog.waiting(None), 100);
    }

    #[test]
    fn a_reset_forgets_positions_and_partitions_no_longer_assigned() {
        let (a, b) = (TopicPartition::new("app", 0), TopicPartition::new("rec", 0));
        let both: BTreeSet<_> = [a.clone(), b.clone()].into();
        let mut backlog = Backlog::default();
        backlog.report(
            &statistics(&[("app", 0, 1_000, -1), ("rec", 0, 300, 300)]),
            &both,
        );
        backlog.read(&a, 9);
        backlog.read(&b, 9);
        assert_eq!(
            backlog.waiting(None),
            990 + 290,
            "no stable offset: the high watermark"
        );
        let only_b: BTreeSet<_> = [b.clone()].into();
        backlog.reset(&only_b);
        assert_eq!(backlog.waiting(None), 0, "positions are re-read");
        backlog.read(&a, 9);
        backlog.read(&b, 99);
        assert_eq!(backlog.waiting(None), 200, "a's end was forgotten");
    }
}
