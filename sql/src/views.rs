//! Dashboard views (documented in `docs/queries.md`). Each reads the hourly rollups for
//! the hours they cover and the raw events (deduplicated) for the rest — the newest,
//! still-open hours, or hours whose late data the compactor has not rolled up yet — so
//! answers are fast and up to the second.
//!
//! Which hours are covered is decided per snapshot: the rollup's hours against the hours
//! the event table holds. The raw part then filters on exactly the uncovered hour
//! partitions, so Delta reads nothing else.

use datafusion::prelude::SessionContext;
use hourlake_catalog::TableId;

use crate::live::LakeSnapshot;
use crate::SqlError;

/// A predicate selecting the given `(event_date, event_hour)` partitions.
fn hours_predicate(hours: &[(i32, i32)]) -> String {
    if hours.is_empty() {
        return "false".to_string();
    }
    hours
        .iter()
        .map(|(d, h)| format!("(event_date = CAST({d} AS DATE) AND event_hour = {h})"))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Without a rollup table every hour is raw: no need to list them.
fn raw_hours(rolled_up: bool, uncovered: &[(i32, i32)]) -> String {
    if rolled_up {
        hours_predicate(uncovered)
    } else {
        "true".to_string()
    }
}

fn deduplicated(table: &str, filter: &str) -> String {
    format!(
        "(SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY event_id \
           ORDER BY _ingested_at, _kafka_topic, _kafka_partition, _kafka_offset) AS _copy \
         FROM {table} WHERE {filter}) WHERE _copy = 1)"
    )
}

fn engagement_view(rolled_up: bool, raw_hours: &str) -> String {
    let raw = format!(
        "SELECT event_date, event_hour, count(*) AS events, \
           hll_estimate(hll_sketch(user_id)) AS active_users, \
           sum(CASE WHEN event_type = 'session_start' THEN 1 ELSE 0 END) AS sessions, \
           avg(CAST(session_length_ms AS DOUBLE)) AS avg_session_length_ms, \
           quantile_estimate(quantile_sketch(CAST(session_length_ms AS DOUBLE)), 0.95) AS p95_session_length_ms, \
           sum(CASE WHEN event_type = 'install' THEN 1 ELSE 0 END) AS installs, \
           sum(CASE WHEN event_type = 'notification_view' THEN 1 ELSE 0 END) AS notification_views, \
           sum(CASE WHEN event_type = 'notification_open' THEN 1 ELSE 0 END) AS notification_opens, \
           sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases, \
           coalesce(sum(CASE WHEN event_type = 'purchase' THEN amount END), 0.0) AS revenue, \
           CAST(hll_sketch(user_id) AS BYTEA) AS users_sketch, 'raw' AS source \
         FROM {} GROUP BY event_date, event_hour",
        deduplicated("engagement_events", raw_hours)
    );
    let inner = if rolled_up {
        format!(
            "SELECT event_date, event_hour, events, hll_estimate(users_sketch) AS active_users, sessions, \
               CASE WHEN session_length_count > 0 THEN CAST(session_length_ms_sum AS DOUBLE) / session_length_count END AS avg_session_length_ms, \
               quantile_estimate(session_length_sketch, 0.95) AS p95_session_length_ms, \
               installs, notification_views, notification_opens, purchases, revenue, \
               CAST(users_sketch AS BYTEA) AS users_sketch, 'rollup' AS source \
             FROM engagement_hourly WHERE event_type = 'ALL' AND device_type = 'ALL' \
               AND app_version = 'ALL' AND country = 'ALL' \
             UNION ALL {raw}"
        )
    } else {
        raw
    };
    format!(
        "SELECT event_date, event_hour, events, active_users, sessions, avg_session_length_ms, \
           p95_session_length_ms, installs, notification_views, notification_opens, \
           CASE WHEN notification_views > 0 THEN CAST(notification_opens AS DOUBLE) / notification_views END AS notification_open_rate, \
           purchases, revenue, users_sketch, source \
         FROM ({inner})"
    )
}

fn recommendation_view(rolled_up: bool, raw_hours: &str) -> String {
    let raw = format!(
        "SELECT event_date, event_hour, CAST(coalesce(model_version, 'unknown') AS VARCHAR) AS model_version, \
           CAST(coalesce(surface, 'unknown') AS VARCHAR) AS surface, \
           sum(CASE WHEN event_type = 'rec_served' THEN 1 ELSE 0 END) AS served, \
           sum(CASE WHEN event_type = 'rec_impression' THEN 1 ELSE 0 END) AS impressions, \
           sum(CASE WHEN event_type = 'rec_click' THEN 1 ELSE 0 END) AS clicks, 'raw' AS source \
         FROM {} GROUP BY 1, 2, 3, 4",
        deduplicated("recommendation_events", raw_hours)
    );
    let inner = if rolled_up {
        format!(
            "SELECT event_date, event_hour, CAST(model_version AS VARCHAR) AS model_version, \
               CAST(surface AS VARCHAR) AS surface, served, impressions, clicks, 'rollup' AS source \
             FROM recommendation_hourly WHERE model_version <> 'ALL' AND surface <> 'ALL' \
             UNION ALL {raw}"
        )
    } else {
        raw
    };
    format!(
        "SELECT event_date, event_hour, model_version, surface, served, impressions, clicks, \
           CASE WHEN impressions > 0 THEN CAST(clicks AS DOUBLE) / impressions END AS ctr, source \
         FROM ({inner})"
    )
}

/// Registers the dashboard views over the tables of `snapshot`.
pub async fn register(ctx: &SessionContext, snapshot: &LakeSnapshot) -> Result<(), SqlError> {
    if snapshot.table(TableId::EngagementEvents).is_some() {
        let rolled = snapshot.table(TableId::EngagementHourly).is_some();
        let raw = raw_hours(rolled, snapshot.uncovered(TableId::EngagementEvents));
        let view = engagement_view(rolled, &raw);
        ctx.sql(&format!("CREATE VIEW hourly_engagement AS {view}"))
            .await?;
        ctx.sql(
            "CREATE VIEW daily_active_users AS SELECT event_date, \
               hll_estimate(hll_union(users_sketch)) AS active_users \
             FROM hourly_engagement GROUP BY event_date",
        )
        .await?;
    }
    if snapshot.table(TableId::RecommendationEvents).is_some() {
        let rolled = snapshot.table(TableId::RecommendationHourly).is_some();
        let raw = raw_hours(rolled, snapshot.uncovered(TableId::RecommendationEvents));
        let view = recommendation_view(rolled, &raw);
        ctx.sql(&format!("CREATE VIEW recommendation_ctr AS {view}"))
            .await?;
    }
    Ok(())
}
