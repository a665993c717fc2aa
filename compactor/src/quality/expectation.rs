//! What the same hour of previous days leads to expect of a figure, and whether the
//! figure is an anomaly: median and MAD (median absolute deviation, × 1.4826 so it
//! estimates a standard deviation under normal noise) of the previous days' values,
//! expected range median ± k·MAD. The MAD is taken as at least
//! `max(anomaly_min_mad_fraction × |median|, the metric's floor)`, so a history that
//! is flat (MAD 0) accepts ordinary noise instead of flagging every change. A history
//! that never went below zero does not expect a negative value (the range starts at 0).

use std::collections::BTreeMap;
use std::fmt;

use hourlake_catalog::Hour;

use super::{Figure, FigureKey, QualityConfig};

/// Scales a MAD to a standard deviation under normal noise.
pub const MAD_SCALE: f64 = 1.4826;

/// Above or below the expected range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Above the range.
    High,
    /// Below the range.
    Low,
}

impl Direction {
    /// The `anomaly` column's value.
    pub fn name(self) -> &'static str {
        match self {
            Direction::High => "high",
            Direction::Low => "low",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What previous days lead to expect of a figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    /// Lowest value expected.
    pub low: f64,
    /// Highest value expected.
    pub high: f64,
    /// Median of the previous days.
    pub median: f64,
    /// The flag, when the value is outside `low..=high`.
    pub anomaly: Option<Direction>,
}

/// The values of each figure by hour: what `judge` compares with.
pub type History = BTreeMap<FigureKey, BTreeMap<Hour, f64>>;

/// The median of `values` (the mean of the middle two for an even count); None for
/// none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The expected range of a value of `metric` given `previous` values (at least one).
pub fn expect(previous: &[f64], mad_floor: f64, config: &QualityConfig) -> Option<Expected> {
    let m = median(previous)?;
    let deviations: Vec<f64> = previous.iter().map(|x| (x - m).abs()).collect();
    let mad = median(&deviations)? * MAD_SCALE;
    let scale = mad
        .max(config.anomaly_min_mad_fraction * m.abs())
        .max(mad_floor);
    // A history that never went below zero (counts, shares) expects no negative value.
    let floor = if previous.iter().all(|x| *x >= 0.0) {
        0.0
    } else {
        f64::NEG_INFINITY
    };
    Some(Expected {
        low: (m - config.anomaly_k * scale).max(floor),
        high: m + config.anomaly_k * scale,
        median: m,
        anomaly: None,
    })
}

impl Expected {
    /// This expectation with the flag for `value`.
    fn flagging(mut self, value: Option<f64>) -> Expected {
        self.anomaly = match value {
            Some(v) if v > self.high => Some(Direction::High),
            Some(v) if v < self.low => Some(Direction::Low),
            _ => None,
        };
        self
    }
}

/// Sets `history_days` and `expected` of every watched figure in `figures` from the
/// values of the same hour on each of the previous `anomaly_days` days, looked up in
/// `figures` themselves first, then in `stored` (rows of `quality_hourly`).
pub fn judge(figures: &mut [Figure], stored: &History, config: &QualityConfig) {
    let mut history = stored.clone();
    for f in figures.iter() {
        let values = history.entry(f.key()).or_default();
        match f.value {
            Some(v) => values.insert(f.hour, v),
            None => values.remove(&f.hour),
        };
    }
    for f in figures.iter_mut().filter(|f| f.metric.is_watched()) {
        let values = history.get(&f.key());
        let previous: Vec<f64> = (1..=i32::try_from(config.anomaly_days).unwrap_or(i32::MAX))
            .filter_map(|days| {
                let hour = Hour {
                    date: f.hour.date.checked_sub(days)?,
                    hour: f.hour.hour,
                };
                values?.get(&hour).copied()
            })
            .collect();
        f.history_days = Some(i32::try_from(previous.len()).unwrap_or(i32::MAX));
        f.expected = (previous.len() >= config.anomaly_min_days as usize)
            .then(|| expect(&previous, f.metric.mad_floor(), config))
            .flatten()
            .map(|e| e.flagging(f.value));
    }
}

#[cfg(test)]
mod tests {
    use hourlake_catalog::TableId;

    use super::super::Metric;
    use super::*;

    #[test]
    fn medians_of_odd_even_and_no_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn the_range_is_median_plus_minus_k_scaled_mads_with_a_floor() {
        let config = QualityConfig::default();
        // Median 100, deviations 0 0 2 2 4 10 20: MAD 2 × 1.4826, under 5 % of the
        // median, so that floor (5) makes the range.
        let e = expect(
            &[100.0, 100.0, 98.0, 102.0, 104.0, 110.0, 80.0],
            1.0,
            &config,
        )
        .unwrap();
        assert_eq!(e.median, 100.0);
        assert_eq!((e.low, e.high), (80.0, 120.0));
        // A wide history: the MAD wins.
        let e = expect(&[100.0, 60.0, 140.0, 100.0, 20.0], 1.0, &config).unwrap();
        let mad = 40.0 * MAD_SCALE;
        assert!((e.high - (100.0 + 4.0 * mad)).abs() < 1e-9, "{e:?}");
        // A flat zero history: the metric's floor.
        let e = expect(&[0.0, 0.0, 0.0], 0.005, &config).unwrap();
        assert_eq!((e.low, e.high), (0.0, 0.02));
        assert_eq!(e.clone().flagging(Some(0.019)).anomaly, None);
        assert_eq!(
            e.clone().flagging(Some(0.03)).anomaly,
            Some(Direction::High)
        );
        assert_eq!(
            e.clone().flagging(Some(-0.03)).anomaly,
            Some(Direction::Low)
        );
        assert_eq!(e.flagging(None).anomaly, None);
        // Below zero only when the history went there.
        let e = expect(&[-1.0, 0.0, 1.0], 1.0, &config).unwrap();
        assert_eq!((e.low, e.high), (-4.0 * MAD_SCALE, 4.0 * MAD_SCALE));
    }

    fn figure(date: i32, metric: Metric, value: f64) -> Figure {
        Figure::new(
            Hour { date, hour: 10 },
            TableId::EngagementEvents,
            metric,
            Some(value),
        )
    }

    #[test]
    fn each_figure_is_judged_against_the_same_hour_of_the_previous_days_only() {
        let config = QualityConfig {
            anomaly_days: 3,
            anomaly_min_days: 2,
            ..QualityConfig::default()
        };
        // Stored: days 1 and 2 at 100; another hour of day 3 at 1000 (not compared).
        let mut stored = History::new();
        let key = (TableId::EngagementEvents, Metric::Events, "ALL".to_string());
        let values = stored.entry(key).or_default();
        values.insert(Hour { date: 1, hour: 10 }, 100.0);
        values.insert(Hour { date: 2, hour: 10 }, 100.0);
        values.insert(Hour { date: 3, hour: 11 }, 1000.0);
        // Computed together: day 3 (normal), day 4 (a spike), day 0 (no history, an
        // outlier the median ignores), and an unwatched figure.
        let mut figures = vec![
            figure(3, Metric::Events, 101.0),
            figure(4, Metric::Events, 300.0),
            figure(0, Metric::Events, 5.0),
            figure(4, Metric::LateShare, 0.9),
        ];
        judge(&mut figures, &stored, &config);
        // Day 3 compares with days 0–2: 5 (the fresh day 0), 100, 100.
        assert_eq!(figures[0].history_days, Some(3));
        assert_eq!(figures[0].expected.as_ref().unwrap().median, 100.0);
        assert_eq!(figures[0].anomaly(), None);
        // Day 4 compares with days 1–3: 100, 100, 101 (the fresh day 3).
        assert_eq!(figures[1].history_days, Some(3));
        let e = figures[1].expected.clone().unwrap();
        assert_eq!(e.median, 100.0);
        assert_eq!(e.anomaly, Some(Direction::High));
        assert_eq!(figures[2].history_days, Some(0));
        assert_eq!(figures[2].expected, None);
        assert_eq!(figures[3].history_days, None);
        assert_eq!(figures[3].expected, None);
    }
}
