//! Data quality of every closed hour, in `quality_hourly`, and anomaly flags on its
//! headline figures.
//!
//! **When.** At the end of each pass, for the hours whose rollups the pass recomputed
//! (closed hours whose data changed: the same hours, computed after their rollup rows
//! committed), and for the start hours `sessions_hourly` rolled up in the pass (every
//! session starting there just became final, some time after the hour closed). All of
//! the hours' rows are replaced in one commit (`replaceWhere` on the hours, like the
//! rollups). Hours a failed quality step left are kept and tried again at the next pass
//! of this compactor.
//!
//! **The figures** ([`Figure`], one row each: source table, [`Metric`], dimension):
//!
//! | metric | table | dimension | value (numerator / denominator) |
//! |---|---|---|---|
//! | `events` | each event table | `ALL` | deduplicated events (the rollup's `ALL` row) |
//! | `users` | each event table | `ALL` | distinct users, HLL estimate of the rollup's `ALL` row sketch |
//! | `users_exact` | each event table | `ALL` | `COUNT(DISTINCT user_id)`, on sampled hours only |
//! | `users_hll_error` | each event table | `ALL` | (HLL − exact) / exact, on sampled hours only: the sketch's observed error |
//! | `app_session_starts` | `engagement_events` | `ALL` | the app's `session_start` events (the rollup's `sessions` column) |
//! | `purchases`, `revenue` | `engagement_events` | `ALL` | purchase events, sum of their `amount` |
//! | `ctr` | `recommendation_events` | `ALL` | `rec_click` / `rec_impression` events |
//! | `null_share` | each event table | a rollup dimension column | events whose value is NULL or `unknown` / events |
//! | `late_share` | each event table | `ALL` | events ingested after their hour closed (its end + `closed_after`, when the compactor may first roll it up) / events |
//! | `duplicates_removed` | each event table | `ALL` | copies the compactor removed (`removed_duplicates`, by their event hour; a ledger row whose copy is still in the table is not counted) |
//! | `dead_letters` | `dead_letters` | `ALL` or a `reason_code` | dead letters of the hour |
//! | `dead_letter_rate` | `dead_letters` | `ALL` | dead letters / (dead letters + events of both tables) |
//! | `sessions` | `sessions` | `ALL` | final sessions starting in the hour |
//! | `starts_per_session` | `sessions` | `ALL` | the app's `session_start` events inside them / sessions |
//! | `app_length_ratio` | `sessions` | `ALL` | what the app's `session_end` events inside them report (ms) / sessionized duration, first to last event (ms) |
//! | `agreement_rate` | `sessions` | `ALL` | sessions holding exactly one app start and end of one app session id / sessions |
//!
//! Dead letters have no event time: they are counted in the hour of their Kafka
//! timestamp, or of when ingest wrote them when the message had none (only those
//! ingested from the day before the hour on are looked at: a producer clock more than a
//! day ahead is not attributed). Dead letters ingested after their hour was computed
//! are counted when it is next recomputed (a late event reopens it). Null shares use
//! the rollups' own dimensions ([`hourlake_catalog::rollup`]) and their `unknown`
//! rows, so they cost no scan; late shares and exact users read the hour's events.
//! Exact distinct users are counted on a deterministic sample of hours: those whose
//! `(event_date, event_hour)` hashes to 0 modulo [`QualityConfig::exact_users_every`].
//!
//! **Sessions.** The figures of source table `sessions` are the consistency check
//! [`hourlake_sql::views::session_consistency_sql`] (the `session_consistency` view) of
//! the hour's final sessions. They are written only for hours `sessions_hourly` covers,
//! where every session starting in the hour is final; until then the hour's rows lack
//! them (rather than hold partial figures), and the pass that rolls the hour up in
//! `sessions_hourly` recomputes the hour with them. An hour with events but no session
//! starting in it has no `sessions_hourly` row, so no session figures.
//!
//! **Anomalies** ([`expectation`]): each watched figure ([`Metric::is_watched`]: events,
//! users, app session starts, sessions, purchases, revenue, CTR, dead-letter rate, null
//! shares, and the sessions' agreement rate) is compared with the same hour of the
//! previous [`QualityConfig::anomaly_days`] days: median and MAD (× 1.4826), expected
//! range median ± k·MAD, the MAD taken as at least a floor (a fraction of the median, and
//! a per-metric minimum) so a flat history does not flag noise; no expectation with fewer
//! than [`QualityConfig::anomaly_min_days`] days.
//! The expectation and the flag (`high`/`low`) are stored on the figure's row; the view
//! `quality_anomalies` (`hourlake_sql::views`) lists the flagged rows. An hour is
//! judged against the history stored when it is computed: later recomputes of the
//! history do not revisit it.

pub mod expectation;
mod figures;
mod rows;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use hourlake_catalog::{Hour, Lake, TableId};
use hourlake_sql::SessionFactory;

pub use expectation::{Direction, Expected};

use crate::{CompactorConfig, CompactorError, CompactorMetrics};

/// How quality figures are computed and judged.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityConfig {
    /// Whether passes compute `quality_hourly` at all.
    pub enabled: bool,
    /// Previous days whose same hour make a figure's expectation.
    pub anomaly_days: u32,
    /// Fewer previous days with the figure than this: no expectation, no flag.
    pub anomaly_min_days: u32,
    /// Flagged beyond median ± this many (scaled) MADs.
    pub anomaly_k: f64,
    /// The MAD is taken as at least this fraction of the median's size.
    pub anomaly_min_mad_fraction: f64,
    /// Exact distinct users are counted on one hour in this many (1: every hour; 0:
    /// never).
    pub exact_users_every: u32,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            enabled: true,
            anomaly_days: 7,
            anomaly_min_days: 3,
            anomaly_k: 4.0,
            anomaly_min_mad_fraction: 0.05,
            exact_users_every: 24,
        }
    }
}

impl QualityConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.anomaly_days == 0 {
            return Err("[quality] anomaly_days must be at least 1".into());
        }
        if self.anomaly_min_days == 0 || self.anomaly_min_days > self.anomaly_days {
            return Err(format!(
                "[quality] anomaly_min_days ({}) must be between 1 and anomaly_days ({})",
                self.anomaly_min_days, self.anomaly_days
            ));
        }
        if !(self.anomaly_k.is_finite() && self.anomaly_k > 0.0) {
            return Err(format!(
                "[quality] anomaly_k ({}) must be a positive number",
                self.anomaly_k
            ));
        }
        if !(self.anomaly_min_mad_fraction.is_finite() && self.anomaly_min_mad_fraction >= 0.0) {
            return Err(format!(
                "[quality] anomaly_min_mad_fraction ({}) must be 0 or more",
                self.anomaly_min_mad_fraction
            ));
        }
        Ok(())
    }

    /// Whether exact distinct users are counted for `hour` (a stable hash of the hour,
    /// so every compactor and every recompute picks the same hours).
    pub fn samples_exact_users(&self, hour: Hour) -> bool {
        let every = u64::from(self.exact_users_every);
        every > 0 && stable_hash(hour).is_multiple_of(every)
    }
}

/// SplitMix64 of the hour's number since the epoch: stable across builds and platforms
/// (std's hasher is not promised to be).
fn stable_hash(hour: Hour) -> u64 {
    let n = i64::from(hour.date) * 24 + i64::from(hour.hour);
    let mut z = (n as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a `quality_hourly` row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Deduplicated events.
    Events,
    /// Distinct users, HLL estimate.
    Users,
    /// Distinct users, exact (sampled hours).
    UsersExact,
    /// The HLL estimate's relative error against the exact count (sampled hours).
    UsersHllError,
    /// The app's own session starts (`session_start` events of the hour).
    AppSessionStarts,
    /// Final sessions starting in the hour (the `sessions` table).
    Sessions,
    /// The app's `session_start` events inside those sessions, per session.
    StartsPerSession,
    /// What the app's `session_end` events report as their length, per sessionized
    /// millisecond (first to last event).
    AppLengthRatio,
    /// Sessions holding exactly one app start and end of one app session id, per
    /// session.
    AgreementRate,
    /// Purchase events.
    Purchases,
    /// Sum of purchase amounts.
    Revenue,
    /// Recommendation clicks per impression.
    Ctr,
    /// Share of events ingested after their hour closed.
    LateShare,
    /// Share of events lacking a dimension (NULL or `unknown`).
    NullShare,
    /// Resent copies removed by the compactor.
    DuplicatesRemoved,
    /// Dead letters (all, or of one reason).
    DeadLetters,
    /// Dead letters per message.
    DeadLetterRate,
}

/// How a metric's values are measured, for the smallest MAD its expectation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Events, users, …: a MAD of at least 1.
    Count,
    /// Money: a MAD of at least 1 currency unit.
    Amount,
    /// A share in 0–1, or a ratio near 1: a MAD of at least 0.005 (half a percentage
    /// point).
    Share,
}

impl Metric {
    /// Every metric, in the order rows are written.
    pub const ALL: &'static [Metric] = &[
        Metric::Events,
        Metric::Users,
        Metric::UsersExact,
        Metric::UsersHllError,
        Metric::AppSessionStarts,
        Metric::Sessions,
        Metric::StartsPerSession,
        Metric::AppLengthRatio,
        Metric::AgreementRate,
        Metric::Purchases,
        Metric::Revenue,
        Metric::Ctr,
        Metric::LateShare,
        Metric::NullShare,
        Metric::DuplicatesRemoved,
        Metric::DeadLetters,
        Metric::DeadLetterRate,
    ];

    /// The `metric` column's value.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Events => "events",
            Metric::Users => "users",
            Metric::UsersExact => "users_exact",
            Metric::UsersHllError => "users_hll_error",
            Metric::AppSessionStarts => "app_session_starts",
            Metric::Sessions => "sessions",
            Metric::StartsPerSession => "starts_per_session",
            Metric::AppLengthRatio => "app_length_ratio",
            Metric::AgreementRate => "agreement_rate",
            Metric::Purchases => "purchases",
            Metric::Revenue => "revenue",
            Metric::Ctr => "ctr",
            Metric::LateShare => "late_share",
            Metric::NullShare => "null_share",
            Metric::DuplicatesRemoved => "duplicates_removed",
            Metric::DeadLetters => "dead_letters",
            Metric::DeadLetterRate => "dead_letter_rate",
        }
    }

    /// The metric named `name` in the `metric` column.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// Whether each hour's figure is compared with the same hour of previous days: the
    /// headline figures (app session starts and final sessions among them), the null
    /// shares, and the sessions' agreement rate (a client release that stops sending
    /// `session_end`, or a sessionization that drifted from the app's). The two session
    /// ratios are not: they move with the agreement rate and with the session count, and
    /// would flag the same change twice.
    pub fn is_watched(self) -> bool {
        matches!(
            self,
            Metric::Events
                | Metric::Users
                | Metric::AppSessionStarts
                | Metric::Sessions
                | Metric::AgreementRate
                | Metric::Purchases
                | Metric::Revenue
                | Metric::Ctr
                | Metric::NullShare
                | Metric::DeadLetterRate
        )
    }

    fn unit(self) -> Unit {
        match self {
            Metric::Revenue => Unit::Amount,
            Metric::Ctr
            | Metric::LateShare
            | Metric::NullShare
            | Metric::DeadLetterRate
            | Metric::UsersHllError
            | Metric::StartsPerSession
            | Metric::AppLengthRatio
            | Metric::AgreementRate => Unit::Share,
            Metric::Events
            | Metric::Users
            | Metric::UsersExact
            | Metric::AppSessionStarts
            | Metric::Sessions
            | Metric::Purchases
            | Metric::DuplicatesRemoved
            | Metric::DeadLetters => Unit::Count,
        }
    }

    /// The smallest MAD an expectation of this metric takes, whatever its history.
    pub fn mad_floor(self) -> f64 {
        match self.unit() {
            Unit::Count | Unit::Amount => 1.0,
            Unit::Share => 0.005,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `dimension` of a figure about the whole hour.
pub const WHOLE_HOUR: &str = hourlake_catalog::rollup::ALL_MEMBER;

/// Which figure of an hour a row holds: source table, metric, dimension.
pub type FigureKey = (TableId, Metric, String);

/// One row of `quality_hourly`.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The hour.
    pub hour: Hour,
    /// The table the figure is about.
    pub table: TableId,
    /// What it measures.
    pub metric: Metric,
    /// [`WHOLE_HOUR`], a dimension column or a reason code.
    pub dimension: String,
    /// The figure (None: a share of nothing).
    pub value: Option<f64>,
    /// The count behind it, or a share's numerator.
    pub numerator: Option<i64>,
    /// What a share divides by.
    pub denominator: Option<i64>,
    /// Previous days the expectation looked at (watched metrics only).
    pub history_days: Option<i32>,
    /// What the previous days led to expect, and the flag.
    pub expected: Option<Expected>,
}

impl Figure {
    /// A figure about the whole hour, not yet judged.
    pub(crate) fn new(hour: Hour, table: TableId, metric: Metric, value: Option<f64>) -> Figure {
        Figure {
            hour,
            table,
            metric,
            dimension: WHOLE_HOUR.to_string(),
            value,
            numerator: None,
            denominator: None,
            history_days: None,
            expected: None,
        }
    }

    /// A count (value and numerator).
    pub(crate) fn count(hour: Hour, table: TableId, metric: Metric, n: i64) -> Figure {
        Figure {
            numerator: Some(n),
            ..Figure::new(hour, table, metric, Some(n as f64))
        }
    }

    /// A share `part / whole` (no value when `whole` is 0).
    pub(crate) fn share(
        hour: Hour,
        table: TableId,
        metric: Metric,
        part: i64,
        whole: i64,
    ) -> Figure {
        Figure {
            numerator: Some(part),
            denominator: Some(whole),
            ..Figure::new(
                hour,
                table,
                metric,
                (whole > 0).then(|| part as f64 / whole as f64),
            )
        }
    }

    /// The same figure about `dimension`.
    pub(crate) fn of(mut self, dimension: impl Into<String>) -> Figure {
        self.dimension = dimension.into();
        self
    }

    /// Which figure of its hour it is.
    pub fn key(&self) -> FigureKey {
        (self.table, self.metric, self.dimension.clone())
    }

    /// The flag, if the figure is outside its expected range.
    pub fn anomaly(&self) -> Option<Direction> {
        self.expected.as_ref().and_then(|e| e.anomaly)
    }
}

/// A flagged figure, as a pass reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Anomaly {
    /// The hour.
    pub hour: Hour,
    /// The table the figure is about.
    pub table: TableId,
    /// Its metric.
    pub metric: Metric,
    /// Its dimension.
    pub dimension: String,
    /// Above or below the expected range.
    pub direction: Direction,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} of {}", self.hour, self.metric, self.table)?;
        if self.dimension != WHOLE_HOUR {
            write!(f, " ({})", self.dimension)?;
        }
        write!(f, " {}", self.direction)
    }
}

/// What one quality step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QualityReport {
    /// The hours whose figures were computed.
    pub hours: Vec<Hour>,
    /// Rows written.
    pub rows: usize,
    /// The flagged figures among them.
    pub anomalies: Vec<Anomaly>,
}

/// Computes the figures of `hours` (closed hours whose rollups are current), judges
/// the watched ones against the history in `quality_hourly` (and among `hours`), and
/// replaces the hours' rows in one commit. Returns the figures written.
pub async fn recompute(
    lake: &Lake,
    factory: &SessionFactory,
    config: &CompactorConfig,
    hours: &[Hour],
) -> Result<Vec<Figure>, CompactorError> {
    if hours.is_empty() {
        return Ok(Vec::new());
    }
    let sources = figures::Sources::open(lake, factory).await?;
    let mut figures = figures::compute(&sources, config, hours).await?;
    let history = rows::history(&sources, &config.quality, hours).await?;
    expectation::judge(&mut figures, &history, &config.quality);
    rows::replace(lake, hours, &figures).await?;
    Ok(figures)
}

/// A compactor's quality work between passes: hours waiting for their figures, and the
/// flags of the hours it computed recently (what `/metrics` shows).
#[derive(Debug, Default)]
pub(crate) struct QualityState {
    /// Hours rolled up whose figures are not written yet.
    pub pending: BTreeSet<Hour>,
    /// Per hour computed lately (the newest day), the figures it flagged.
    recent: BTreeMap<Hour, BTreeSet<FigureKey>>,
    /// Every watched figure seen, so its gauge goes back to 0.
    watched: BTreeSet<FigureKey>,
}

/// Flags are counted over this many hours up to the newest hour computed.
pub const RECENT_HOURS: i64 = 24;

impl QualityState {
    /// Publishes `figures` (just written) in `metrics`: per watched figure, the hours
    /// among the last [`RECENT_HOURS`] computed (up to the newest) that flagged it, and
    /// per table the HLL error of the newest sampled hour.
    pub fn record(&mut self, figures: &[Figure], metrics: &CompactorMetrics) -> QualityReport {
        let mut report = QualityReport::default();
        let hours: BTreeSet<Hour> = figures.iter().map(|f| f.hour).collect();
        for hour in &hours {
            self.recent.insert(*hour, BTreeSet::new());
        }
        let mut newest_error: BTreeMap<TableId, (Hour, f64)> = BTreeMap::new();
        for f in figures {
            if f.metric.is_watched() {
                self.watched.insert(f.key());
            }
            if let Some(direction) = f.anomaly() {
                self.recent.entry(f.hour).or_default().insert(f.key());
                report.anomalies.push(Anomaly {
                    hour: f.hour,
                    table: f.table,
                    metric: f.metric,
                    dimension: f.dimension.clone(),
                    direction,
                });
            }
            if let (Metric::UsersHllError, Some(v)) = (f.metric, f.value) {
                let newer = newest_error.get(&f.table).is_none_or(|(h, _)| *h < f.hour);
                if newer {
                    newest_error.insert(f.table, (f.hour, v));
                }
            }
        }
        if let Some(newest) = self.recent.keys().next_back().copied() {
            let oldest = newest.start_micros() - (RECENT_HOURS - 1) * 3_600_000_000;
            self.recent.retain(|h, _| h.start_micros() >= oldest);
        }
        for key in &self.watched {
            let flagged = self.recent.values().filter(|k| k.contains(key)).count();
            metrics
                .quality_anomalies
                .get_or_create(&anomaly_label(key))
                .set(flagged as i64);
        }
        for (table, (_, error)) in newest_error {
            metrics
                .quality_hll_error
                .get_or_create(&vec![("table", table.name().to_string())])
                .set(error);
        }
        metrics.quality_hours.inc_by(hours.len() as u64);
        report.hours = hours.into_iter().collect();
        report.rows = figures.len();
        report.anomalies.sort();
        report
    }
}

/// The `table`, `metric`, `dimension` labels of a figure's gauge (bounded: the tables,
/// the metrics and the rollup dimensions; watched figures have no reason codes).
fn anomaly_label(key: &FigureKey) -> Vec<(&'static str, String)> {
    vec![
        ("table", key.0.name().to_string()),
        ("metric", key.1.name().to_string()),
        ("dimension", key.2.clone()),
    ]
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn metric_names_round_trip_and_only_headline_figures_and_null_shares_are_watched() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(*m));
        }
        assert_eq!(Metric::from_name("nope"), None);
        let watched: Vec<&str> = Metric::ALL
            .iter()
            .filter(|m| m.is_watched())
            .map(|m| m.name())
            .collect();
        assert_eq!(
            watched,
            [
                "events",
                "users",
                "app_session_starts",
                "sessions",
                "agreement_rate",
                "purchases",
                "revenue",
                "ctr",
                "null_share",
                "dead_letter_rate"
            ]
        );
        assert_eq!(Metric::Ctr.mad_floor(), 0.005);
        assert_eq!(Metric::Events.mad_floor(), 1.0);
    }

    #[test]
    fn exact_users_are_sampled_on_about_one_hour_in_n_and_always_the_same_ones() {
        let config = QualityConfig::default();
        let hours: Vec<Hour> = (0..24 * 100)
            .map(|i| Hour {
                date: 20_000 + i / 24,
                hour: i % 24,
            })
            .collect();
        let sampled = hours
            .iter()
            .filter(|h| config.samples_exact_users(**h))
            .count();
        assert!((60..=140).contains(&sampled), "{sampled} of 2400");
        // The same hours every time (no per-process hashing seed).
        let again = hours
            .iter()
            .filter(|h| config.samples_exact_users(**h))
            .count();
        assert_eq!(sampled, again);
        assert_eq!(
            stable_hash(Hour { date: 0, hour: 0 }),
            0xE220_A839_7B1D_CDAF
        );
        let every = QualityConfig {
            exact_users_every: 1,
            ..config.clone()
        };
        assert!(hours.iter().all(|h| every.samples_exact_users(*h)));
        let never = QualityConfig {
            exact_users_every: 0,
            ..config
        };
        assert!(!hours.iter().any(|h| never.samples_exact_users(*h)));
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        assert!(QualityConfig::default().validate().is_ok());
        let bad = [
            QualityConfig {
                anomaly_days: 0,
                ..QualityConfig::default()
            },
            QualityConfig {
                anomaly_min_days: 8,
                ..QualityConfig::default()
            },
            QualityConfig {
                anomaly_k: 0.0,
                ..QualityConfig::default()
            },
            QualityConfig {
                anomaly_min_mad_fraction: f64::NAN,
                ..QualityConfig::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}
