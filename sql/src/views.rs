//! Dashboard views (documented in `docs/queries.md`), generated from the rollup
//! declarations (`hourlake_catalog::rollup`). Each reads the hourly rollup for the
//! hours it covers and the raw events (deduplicated) for the rest — the newest, still
//! open hours, or hours whose late data the compactor has not rolled up yet — so
//! answers are fast and up to the second.
//!
//! `quality_anomalies` lists the flagged figures of `quality_hourly` (written by the
//! compactor, see `hourlake_compactor::quality`): one row per closed hour and figure
//! outside the range the same hour of previous days led to expect.
//! The session views read `sessions_hourly` the same way, with the `sessions` table as
//! the raw side (provisional sessions count there until their hour is rolled up), and
//! [`sessions`] adds the top paths and the consistency check over `sessions` itself.
//!
//! Which hours are covered is decided per snapshot: the rollup's hours against the hours
//! the event table holds. The raw part then filters on exactly the uncovered hour
//! partitions, so Delta reads nothing else.

mod sessions;

use datafusion::prelude::SessionContext;
use hourlake_catalog::rollup::{self, dimension_value_sql, Rollup, ALL_MEMBER, COMPUTED_AT};
use hourlake_catalog::schema::{
    ANOMALY, DIMENSION, EXPECTED_HIGH, EXPECTED_LOW, EXPECTED_MEDIAN, HISTORY_DAYS, METRIC,
    SOURCE_TABLE, VALUE,
};
use hourlake_catalog::schema::{EVENT_DATE, EVENT_HOUR};
use hourlake_catalog::{dedup, Hour, TableId};

pub use self::sessions::session_consistency_sql;

use crate::live::LakeSnapshot;
use crate::SqlError;

/// A view with one row per hour (and per value of each of its dimensions) over a
/// rollup: its rows where the rollup covers the hour, the same measures computed
/// from the raw events elsewhere. A `source` column says which (`rollup` or `raw`).
struct HourlyView {
    /// The view's name.
    name: &'static str,
    /// The rollup it reads.
    rollup: &'static Rollup,
    /// The dimensions it keeps, one row per value (the others are read at `ALL`).
    by: &'static [&'static str],
    /// The columns after the hour and the dimensions: name, and SQL over the rollup's
    /// measure columns.
    columns: &'static [(&'static str, &'static str)],
}

/// `hourly_engagement`: one row per hour, from the totals rollup (a row per hour,
/// where `engagement_hourly` holds every combination of dimensions).
const HOURLY_ENGAGEMENT: HourlyView = HourlyView {
    name: "hourly_engagement",
    rollup: &rollup::ENGAGEMENT_HOURLY_TOTALS,
    by: &[],
    columns: &[
        ("events", "events"),
        ("active_users", "hll_estimate(users_sketch)"),
        ("sessions", "sessions"),
        (
            "avg_session_length_ms",
            "CASE WHEN session_length_count > 0 \
               THEN CAST(session_length_ms_sum AS DOUBLE) / session_length_count END",
        ),
        (
            "p95_session_length_ms",
            "quantile_estimate(session_length_sketch, 0.95)",
        ),
        ("installs", "installs"),
        ("notification_views", "notification_views"),
        ("notification_opens", "notification_opens"),
        (
            "notification_open_rate",
            "CASE WHEN notification_views > 0 \
               THEN CAST(notification_opens AS DOUBLE) / notification_views END",
        ),
        ("purchases", "purchases"),
        ("revenue", "revenue"),
        ("users_sketch", "CAST(users_sketch AS BYTEA)"),
    ],
};

/// `recommendation_ctr`: one row per hour, model version and surface.
const RECOMMENDATION_CTR: HourlyView = HourlyView {
    name: "recommendation_ctr",
    rollup: &rollup::RECOMMENDATION_HOURLY,
    by: &["model_version", "surface"],
    columns: &[
        ("served", "served"),
        ("impressions", "impressions"),
        ("clicks", "clicks"),
        (
            "ctr",
            "CASE WHEN impressions > 0 THEN CAST(clicks AS DOUBLE) / impressions END",
        ),
    ],
};

/// `session_length`: one row per start hour — sessions, mean, p50 and p95 length (from
/// the totals rollup).
const SESSION_LENGTH: HourlyView = HourlyView {
    name: "session_length",
    rollup: &rollup::SESSIONS_HOURLY_TOTALS,
    by: &[],
    columns: &[
        ("sessions", "sessions"),
        (
            "avg_duration_ms",
            "CASE WHEN sessions > 0 THEN CAST(duration_ms_sum AS DOUBLE) / sessions END",
        ),
        ("p50_duration_ms", "quantile_estimate(duration_sketch, 0.5)"),
        (
            "p95_duration_ms",
            "quantile_estimate(duration_sketch, 0.95)",
        ),
    ],
};

/// `bounce_rate`: one row per start hour and device type — sessions, bounces (at most
/// one screen view), their rate, and screens per session.
const BOUNCE_RATE: HourlyView = HourlyView {
    name: "bounce_rate",
    rollup: &rollup::SESSIONS_HOURLY,
    by: &["device_type"],
    columns: &[
        ("sessions", "sessions"),
        ("bounces", "bounces"),
        (
            "bounce_rate",
            "CASE WHEN sessions > 0 THEN CAST(bounces AS DOUBLE) / sessions END",
        ),
        (
            "screens_per_session",
            "CASE WHEN sessions > 0 THEN CAST(screen_views AS DOUBLE) / sessions END",
        ),
    ],
};

/// The hourly views, in registration order.
const HOURLY_VIEWS: &[HourlyView] = &[
    HOURLY_ENGAGEMENT,
    RECOMMENDATION_CTR,
    SESSION_LENGTH,
    BOUNCE_RATE,
];

/// `daily_active_users`: per day, the hourly user sketches of `hourly_engagement`
/// merged (rollup and raw hours alike), so a user active in several hours counts once.
fn daily_active_users() -> String {
    format!(
        "SELECT {EVENT_DATE}, hll_estimate({}) AS active_users \
         FROM {} GROUP BY {EVENT_DATE}",
        rollup::USERS_SKETCH.merge_sql(),
        HOURLY_ENGAGEMENT.name
    )
}

/// `quality_anomalies`: the flagged rows of `quality_hourly`: hour,
/// figure, what was observed and expected, and whether it was above or below.
fn quality_anomalies() -> String {
    format!(
        "SELECT {EVENT_DATE}, {EVENT_HOUR}, {SOURCE_TABLE}, {METRIC}, {DIMENSION}, \
           {VALUE} AS observed, {EXPECTED_LOW}, {EXPECTED_HIGH}, {EXPECTED_MEDIAN}, \
           {HISTORY_DAYS}, {ANOMALY} AS direction, {COMPUTED_AT} \
         FROM {} WHERE {ANOMALY} IS NOT NULL",
        TableId::QualityHourly
    )
}

impl HourlyView {
    /// The view's SQL: `rolled_up` when the rollup table exists, with `raw_hours` the
    /// source's hours it does not cover.
    fn sql(&self, rolled_up: bool, raw_hours: &[Hour]) -> String {
        let by = self.by.iter().map(|d| format!("{d}, ")).collect::<String>();
        let columns = self
            .columns
            .iter()
            .map(|(name, sql)| format!("{sql} AS {name}, "))
            .collect::<String>();
        let raw = self.raw_sql(rolled_up, raw_hours);
        let inner = if rolled_up {
            format!("{} UNION ALL {raw}", self.rollup_sql())
        } else {
            raw
        };
        format!("SELECT {EVENT_DATE}, {EVENT_HOUR}, {by}{columns}source FROM ({inner})")
    }

    /// The rollup's rows at the view's grouping: its dimensions' values, `ALL` for
    /// every other dimension.
    fn rollup_sql(&self) -> String {
        let rollup = self.rollup;
        let grouping: Vec<String> = rollup
            .dimensions
            .iter()
            .map(|d| {
                let op = if self.by.contains(d) { "<>" } else { "=" };
                format!("{d} {op} '{ALL_MEMBER}'")
            })
            .collect();
        let grouping = if grouping.is_empty() {
            "true".to_string()
        } else {
            grouping.join(" AND ")
        };
        let by = self
            .by
            .iter()
            .map(|d| format!("CAST({d} AS VARCHAR) AS {d}, "))
            .collect::<String>();
        let measures = rollup
            .measures
            .iter()
            .map(|m| format!("{}, ", m.name))
            .collect::<String>();
        format!(
            "SELECT {EVENT_DATE}, {EVENT_HOUR}, {by}{measures}'rollup' AS source \
             FROM {} WHERE {grouping}",
            rollup.table
        )
    }

    /// The same rows computed from the deduplicated raw events of `raw_hours` (of every
    /// hour when there is no rollup table); for a derived source (`sessions`) from its
    /// rows as they are, provisional ones included.
    fn raw_sql(&self, rolled_up: bool, raw_hours: &[Hour]) -> String {
        let filter = if rolled_up {
            Hour::sql_predicate_any(raw_hours)
        } else {
            "true".to_string()
        };
        let by = self
            .by
            .iter()
            .map(|d| format!("CAST({} AS VARCHAR) AS {d}, ", dimension_value_sql(d)))
            .collect::<String>();
        let group_by = (1..=2 + self.by.len())
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let source = self.rollup.source;
        let rows = if TableId::EVENTS.contains(&source) {
            format!(
                "SELECT * FROM (SELECT *, {} AS _copy FROM {source} WHERE {filter}) WHERE _copy = 1",
                dedup::copy_number_sql(None),
            )
        } else {
            format!("SELECT * FROM {source} WHERE {filter}")
        };
        format!(
            "SELECT {EVENT_DATE}, {EVENT_HOUR}, {by}{}, 'raw' AS source \
             FROM ({rows}) \
             GROUP BY {group_by}",
            self.rollup.measures_sql(),
        )
    }
}

/// Registers the dashboard views over the tables of `snapshot`: each hourly view whose
/// rollup's source table exists, `daily_active_users` over `hourly_engagement`, and
/// `quality_anomalies` once `quality_hourly` exists; `top_session_paths` and
/// `session_consistency` when `sessions` exists.
pub async fn register(ctx: &SessionContext, snapshot: &LakeSnapshot) -> Result<(), SqlError> {
    let mut registered = Vec::new();
    for view in HOURLY_VIEWS {
        let rollup = view.rollup;
        if snapshot.table(rollup.source).is_none() {
            continue;
        }
        let rolled_up = snapshot.table(rollup.table).is_some();
        let sql = view.sql(rolled_up, snapshot.uncovered(rollup.table));
        ctx.sql(&format!("CREATE VIEW {} AS {sql}", view.name))
            .await?;
        registered.push(view.name);
    }
    if registered.contains(&HOURLY_ENGAGEMENT.name) {
        ctx.sql(&format!(
            "CREATE VIEW daily_active_users AS {}",
            daily_active_users()
        ))
        .await?;
    }
    if snapshot.table(TableId::QualityHourly).is_some() {
        ctx.sql(&format!(
            "CREATE VIEW quality_anomalies AS {}",
            quality_anomalies()
        ))
        .await?;
    }
    if snapshot.table(TableId::Sessions).is_some() {
        sessions::register(ctx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_read_raw_only_the_hours_their_rollup_does_not_cover() {
        let hour = Hour {
            date: 20_000,
            hour: 7,
        };
        let rolled = RECOMMENDATION_CTR.sql(true, &[hour]);
        assert!(rolled.contains(
            "FROM recommendation_hourly WHERE model_version <> 'ALL' AND surface <> 'ALL' UNION ALL"
        ));
        assert!(rolled.contains(&format!(
            "FROM recommendation_events WHERE {}) WHERE _copy = 1",
            hour.sql_predicate()
        )));
        // Views without dimensions read the totals: a row per hour, nothing to filter.
        let engagement = HOURLY_ENGAGEMENT.sql(true, &[]);
        assert!(engagement.contains("FROM engagement_hourly_totals WHERE true UNION ALL"));
        assert!(engagement.contains("FROM engagement_events WHERE false)"));
        // Before the rollup table exists every hour is raw, and nothing reads it.
        let raw_only = RECOMMENDATION_CTR.sql(false, &[]);
        assert!(!raw_only.contains("recommendation_hourly"));
        assert!(raw_only.contains("FROM recommendation_events WHERE true)"));
        for view in HOURLY_VIEWS {
            assert!(view.by.iter().all(|d| view.rollup.dimensions.contains(d)));
        }
        // Sessions are made of deduplicated events: their raw side reads them as they are.
        let sessions = SESSION_LENGTH.sql(true, &[hour]);
        assert!(sessions.contains(&format!(
            "FROM (SELECT * FROM sessions WHERE {}) GROUP BY",
            hour.sql_predicate()
        )));
        assert!(sessions.contains("FROM sessions_hourly_totals WHERE true UNION ALL"));
        let bounces = BOUNCE_RATE.sql(true, &[hour]);
        assert!(bounces
            .contains("FROM sessions_hourly WHERE device_type <> 'ALL' AND device_os = 'ALL'"));
    }
}
