//! A Prometheus histogram that takes a whole batch of observations at once.
//!
//! Ingest observes a value per committed row (its lag); `prometheus_client`'s
//! `Histogram` takes a lock and scans its buckets per value, which cost about a
//! hundredth of ingest's CPU. This one takes the lock once per batch and finds each
//! value's bucket by binary search. It is exposed exactly like a classic histogram.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A classic (bucketed) histogram observed in batches; clones share their counts.
#[derive(Debug, Clone)]
pub struct BatchHistogram {
    /// Upper bounds, ascending, the last `+Inf`.
    bounds: Arc<[f64]>,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    sum: f64,
    count: u64,
    /// Observations per bucket (not cumulative), one per bound.
    per_bucket: Vec<u64>,
}

impl BatchHistogram {
    /// A histogram with these upper bounds (`+Inf` is added).
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> BatchHistogram {
        let mut bounds: Vec<f64> = bounds.into_iter().filter(|b| !b.is_nan()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.push(f64::INFINITY);
        let counts = Counts {
            per_bucket: vec![0; bounds.len()],
            ..Counts::default()
        };
        BatchHistogram {
            bounds: bounds.into(),
            counts: Arc::new(Mutex::new(counts)),
        }
    }

    /// Records every value of `values`. A value lands in the first bucket whose bound
    /// is at least the value; NaN (above every bound) in `+Inf`.
    pub fn observe_all(&self, values: impl IntoIterator<Item = f64>) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let last = self.bounds.len() - 1;
        for v in values {
            let bucket = self.bounds.partition_point(|b| *b < v).min(last);
            let bucket = if v.is_nan() { last } else { bucket };
            counts.per_bucket[bucket] += 1;
            counts.sum += v;
            counts.count += 1;
        }
    }

    /// Records one value.
    pub fn observe(&self, value: f64) {
        self.observe_all([value]);
    }

    /// How many values were observed, and their sum.
    #[cfg(test)]
    pub fn count_and_sum(&self) -> (u64, f64) {
        self.counts
            .lock()
            .map_or((0, 0.0), |counts| (counts.count, counts.sum))
    }
}

impl TypedMetric for BatchHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for BatchHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = match self.counts.lock() {
            Ok(counts) => (
                counts.sum,
                counts.count,
                self.bounds
                    .iter()
                    .copied()
                    .zip(counts.per_bucket.iter().copied())
                    .collect::<Vec<(f64, u64)>>(),
            ),
            Err(_) => return Err(std::fmt::Error),
        };
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    fn text(register: impl FnOnce(&mut Registry)) -> String {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn exposes_what_the_classic_histogram_exposes_for_the_same_values() {
        let bounds = [0.1, 0.5, 1.0, 5.0];
        // On a bound, below the first, above the last, negative, NaN, infinities.
        let values = [
            0.1,
            0.05,
            0.7,
            1.0,
            4.99,
            7.0,
            -3.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.5,
        ];
        let batch = BatchHistogram::new(bounds);
        batch.observe_all(values[..6].iter().copied());
        batch.observe_all([]);
        for v in &values[6..] {
            batch.observe(*v);
        }
        let classic = Histogram::new(bounds);
        for v in values {
            classic.observe(v);
        }
        let ours = text(|r| r.register("lag", "Lag", batch.clone()));
        let theirs = text(|r| r.register("lag", "Lag", classic));
        assert_eq!(ours, theirs);
        assert!(ours.contains("lag_count 11"), "{ours}");
        assert!(ours.contains(r#"lag_bucket{le="0.1"} 4"#), "{ours}");
    }

    #[test]
    fn every_value_is_in_the_inf_bucket() {
        let batch = BatchHistogram::new([1.0]);
        batch.observe_all([f64::INFINITY, 0.5, f64::MAX]);
        let out = text(|r| r.register("lag", "Lag", batch));
        assert!(out.contains(r#"lag_bucket{le="1.0"} 1"#), "{out}");
        assert!(out.contains(r#"lag_bucket{le="+Inf"} 3"#), "{out}");
        assert!(out.contains("lag_count 3"), "{out}");
    }
}
