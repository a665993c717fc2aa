//! Views over the `sessions` table itself (the hourly session views are declared with
//! the other hourly views): the most common screen paths, and the consistency of the
//! sessionization with the app's own `session_start` / `session_end` events.

use datafusion::prelude::SessionContext;
use hourlake_catalog::schema::{EVENT_DATE, EVENT_HOUR, IS_FINAL};
use hourlake_catalog::{Hour, TableId};

use crate::SqlError;

/// `top_session_paths`: per start day and screen path (sessions with at least one
/// screen view), the sessions, their mean length and bounce rate, and the path's `rank`
/// within its day (1 = most sessions): `WHERE rank <= 10` gives the top ten.
fn top_session_paths() -> String {
    format!(
        "SELECT {EVENT_DATE}, screen_path, count(*) AS sessions, \
           avg(CAST(duration_ms AS DOUBLE)) AS avg_duration_ms, \
           avg(CASE WHEN bounce THEN 1.0 ELSE 0.0 END) AS bounce_rate, \
           rank() OVER (PARTITION BY {EVENT_DATE} ORDER BY count(*) DESC) AS rank \
         FROM {} WHERE screen_path IS NOT NULL GROUP BY {EVENT_DATE}, screen_path",
        TableId::Sessions.name()
    )
}

/// The consistency check of the sessionization against the app's own session events,
/// one row per start hour (of the `hours` given; every hour for `None`), over final
/// sessions:
///
/// - `sessions` (and `provisional_sessions`, not counted in the rest) against
///   `app_session_starts`, the app's `session_start` events inside them
///   (`starts_per_session` should stay near 1);
/// - `sessionized_duration_ms` (first to last event) against `app_session_length_ms`,
///   what the app's `session_end` events inside them report (`app_length_ratio`; below 1
///   where apps were killed without a `session_end`);
/// - `agreeing_sessions`: sessions holding exactly one app start and end of one app
///   session id (`agreement_rate`).
///
/// Every deduplicated event is in exactly one session, so the app's figures are its
/// whole counts, attributed to the hour the enclosing session started.
pub fn session_consistency_sql(hours: Option<&[Hour]>) -> String {
    let filter = hours.map_or_else(|| "true".to_string(), Hour::sql_predicate_any);
    let when_final = |value: &str| format!("sum(CASE WHEN {IS_FINAL} THEN {value} ELSE 0 END)");
    format!(
        "SELECT {EVENT_DATE}, {EVENT_HOUR}, sessions, provisional_sessions, app_session_starts, \
           CASE WHEN sessions > 0 THEN CAST(app_session_starts AS DOUBLE) / sessions END AS starts_per_session, \
           sessionized_duration_ms, app_session_length_ms, \
           CASE WHEN sessionized_duration_ms > 0 \
             THEN CAST(app_session_length_ms AS DOUBLE) / sessionized_duration_ms END AS app_length_ratio, \
           agreeing_sessions, \
           CASE WHEN sessions > 0 THEN CAST(agreeing_sessions AS DOUBLE) / sessions END AS agreement_rate \
         FROM (SELECT {EVENT_DATE}, {EVENT_HOUR}, \
             {sessions} AS sessions, \
             sum(CASE WHEN {IS_FINAL} THEN 0 ELSE 1 END) AS provisional_sessions, \
             {starts} AS app_session_starts, \
             {duration} AS sessionized_duration_ms, \
             {length} AS app_session_length_ms, \
             {agreeing} AS agreeing_sessions \
           FROM {table} WHERE {filter} GROUP BY {EVENT_DATE}, {EVENT_HOUR})",
        sessions = when_final("1"),
        starts = when_final("app_session_starts"),
        duration = when_final("duration_ms"),
        length = when_final("coalesce(app_session_length_ms, 0)"),
        agreeing = when_final("CASE WHEN app_session_agrees THEN 1 ELSE 0 END"),
        table = TableId::Sessions.name(),
    )
}

/// Registers `top_session_paths` and `session_consistency` (every hour).
pub(super) async fn register(ctx: &SessionContext) -> Result<(), SqlError> {
    ctx.sql(&format!(
        "CREATE VIEW top_session_paths AS {}",
        top_session_paths()
    ))
    .await?;
    ctx.sql(&format!(
        "CREATE VIEW session_consistency AS {}",
        session_consistency_sql(None)
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consistency_check_reads_only_the_hours_asked_for() {
        let hour = Hour {
            date: 20_000,
            hour: 7,
        };
        let some = session_consistency_sql(Some(&[hour]));
        assert!(some.contains(&format!(
            "FROM sessions WHERE {} GROUP BY",
            hour.sql_predicate()
        )));
        assert!(session_consistency_sql(None).contains("FROM sessions WHERE true GROUP BY"));
        assert!(session_consistency_sql(Some(&[])).contains("FROM sessions WHERE false GROUP BY"));
    }
}
