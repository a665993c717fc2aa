//! Accepted events per minute of event time: the first column of the loss table
//! (collected, then ingested, then in the lake).

use std::collections::BTreeMap;

use serde::Serialize;

/// Counts of accepted events by event minute, for the most recent minutes only.
#[derive(Debug)]
pub struct AcceptedPerMinute {
    counts: BTreeMap<i64, u64>,
    kept: usize,
}

/// One minute's count, as `/v1/accepted` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MinuteCount {
    /// Start of the minute, RFC 3339 UTC.
    pub minute: String,
    pub accepted: u64,
}

impl AcceptedPerMinute {
    /// Keeps the `kept` latest minutes of event time.
    pub fn new(kept: usize) -> AcceptedPerMinute {
        AcceptedPerMinute {
            counts: BTreeMap::new(),
            kept: kept.max(1),
        }
    }

    /// Counts `n` more events of `minute` (minutes since the Unix epoch).
    pub fn add(&mut self, minute: i64, n: u64) {
        *self.counts.entry(minute).or_default() += n;
        while self.counts.len() > self.kept {
            self.counts.pop_first();
        }
    }

    /// Every kept minute, oldest first.
    pub fn list(&self) -> Vec<MinuteCount> {
        self.counts
            .iter()
            .map(|(minute, accepted)| MinuteCount {
                minute: chrono::DateTime::from_timestamp(minute.saturating_mul(60), 0)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
                accepted: *accepted,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_minutes() {
        let mut m = AcceptedPerMinute::new(2);
        m.add(29_409_132, 3);
        m.add(29_409_130, 1);
        m.add(29_409_132, 2);
        m.add(29_409_131, 4);
        assert_eq!(
            m.list(),
            vec![
                MinuteCount {
                    minute: "2025-12-01T00:11:00Z".into(),
                    accepted: 4
                },
                MinuteCount {
                    minute: "2025-12-01T00:12:00Z".into(),
                    accepted: 5
                },
            ]
        );
    }
}
