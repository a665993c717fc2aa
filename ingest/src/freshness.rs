//! The end-to-end freshness objective as one number: the p95, over the last minute of
//! commits, of how long after its event time a row became queryable (committed: every
//! new reader sees it; a query server adds at most its `max_staleness`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far back the p95 looks.
const WINDOW: Duration = Duration::from_secs(60);
/// Rows sampled per commit (evenly spread), so a big commit costs no more than a small.
const SAMPLE: usize = 512;

/// Recent commits' samples of (commit time − event time), in seconds.
#[derive(Debug, Default)]
pub struct RecentLags {
    samples: Mutex<VecDeque<(Instant, Vec<f64>)>>,
}

impl RecentLags {
    /// Adds one commit's lags (every row's, sampled down) and returns the p95 over the
    /// last minute of commits.
    pub fn add(&self, lags: &[f64]) -> Option<f64> {
        let now = Instant::now();
        let step = lags.len().div_ceil(SAMPLE).max(1);
        let sample: Vec<f64> = lags.iter().step_by(step).copied().collect();
        let mut samples = self.samples.lock().ok()?;
        samples.push_back((now, sample));
        while samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
        {
            samples.pop_front();
        }
        let mut all: Vec<f64> = samples
            .iter()
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        if all.is_empty() {
            return None;
        }
        all.sort_by(f64::total_cmp);
        let rank = ((all.len() as f64) * 0.95).ceil() as usize;
        all.get(rank.saturating_sub(1).min(all.len() - 1)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p95_covers_recent_commits_and_samples_big_ones() {
        let lags = RecentLags::default();
        assert_eq!(lags.add(&[]), None);
        let first: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(lags.add(&first), Some(95.0));
        // A big commit is sampled down to SAMPLE rows but keeps its shape.
        let big: Vec<f64> = (0..100_000)
            .map(|i| 1000.0 + f64::from(i) / 1000.0)
            .collect();
        let p95 = lags.add(&big).unwrap();
        assert!(p95 > 1000.0 && p95 < 1100.0, "{p95}");
        assert!(lags.samples.lock().unwrap().back().unwrap().1.len() <= SAMPLE);
    }
}
