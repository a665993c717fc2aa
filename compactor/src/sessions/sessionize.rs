//! The SQL that turns deduplicated engagement events into `sessions` rows, in
//! DataFusion (sorts and aggregates spill beyond the memory limit; nothing is collected
//! per event in Rust): per user in event-time order, `lag` finds the gap to the previous
//! event, a running sum of "gap longer than the session gap" numbers the sessions, and a
//! `GROUP BY user, session number` makes one row each.

use hourlake_catalog::rollup::{COMPUTED_AT, SOURCE_VERSION};
use hourlake_catalog::schema::{
    EVENT_DATE, EVENT_HOUR, EVENT_ID, EVENT_TIME, IS_FINAL, SCREEN_PATH_LIMIT,
    SCREEN_PATH_SEPARATOR, SESSION_END, SESSION_KEY, SESSION_START, USER_ID,
};
use hourlake_catalog::{EventType, TableId};

use super::windows::{hours_sql, times_sql, Window};
use crate::dedup::not_a_duplicate;

const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// What to sessionize and how.
#[derive(Debug, Clone, Copy)]
pub struct Sessionize<'a> {
    /// The spans of event time whose events are sessionized (each far enough from any
    /// event outside it: see [`super::windows`]).
    pub windows: &'a [Window],
    /// Longest gap inside a session, in microseconds.
    pub gap: i64,
    /// Sessions whose last event plus the gap is before this (the start of the first
    /// hour not closed yet) are final.
    pub final_before: i64,
    /// The `engagement_events` version read, recorded in each row.
    pub source_version: u64,
    /// The table of duplicate copies to leave out (see [`crate::dedup`]), if any.
    pub duplicates: Option<&'a str>,
}

impl Sessionize<'_> {
    /// The query: one row per session, with the columns of `sessions` (by name).
    pub fn sql(&self) -> String {
        let events = TableId::EngagementEvents.name();
        let of = |t: EventType| format!("event_type = '{}'", t.as_str());
        let (screen_view, start, end) = (
            of(EventType::ScreenView),
            of(EventType::SessionStart),
            of(EventType::SessionEnd),
        );
        let mut rows = format!(
            "{} AND {}",
            hours_sql(self.windows),
            times_sql(self.windows, &format!("s.{EVENT_TIME}"))
        );
        if let Some(duplicates) = self.duplicates {
            rows = format!("{rows} AND {}", not_a_duplicate("s", duplicates));
        }
        let order = format!("t, {EVENT_ID}");
        let first = |column: &str| format!("first_value({column} ORDER BY {order}) AS {column}");
        format!(
            "WITH ev AS ( \
               SELECT s.{USER_ID}, s.{EVENT_ID}, s.event_type, s.{EVENT_TIME}, \
                 arrow_cast(s.{EVENT_TIME}, 'Int64') AS t, s.session_id, s.screen, \
                 s.session_length_ms, s.device_type, s.device_os, s.app_version, s.country \
               FROM {events} s WHERE {rows}), \
             marked AS ( \
               SELECT *, CASE WHEN t - lag(t) OVER (PARTITION BY {USER_ID} ORDER BY {order}) <= {gap} \
                 THEN 0 ELSE 1 END AS opens \
               FROM ev), \
             numbered AS ( \
               SELECT *, sum(opens) OVER (PARTITION BY {USER_ID} ORDER BY {order} \
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_no \
               FROM marked), \
             grouped AS ( \
               SELECT {USER_ID}, min(t) AS start_us, max(t) AS end_us, \
                 min({EVENT_TIME}) AS {SESSION_START}, max({EVENT_TIME}) AS {SESSION_END}, \
                 count(*) AS events, \
                 sum(CASE WHEN {screen_view} THEN 1 ELSE 0 END) AS screen_views, \
                 array_agg(screen ORDER BY {order}) FILTER (WHERE {screen_view} AND screen IS NOT NULL) AS screens, \
                 {device_type}, {device_os}, {app_version}, {country}, \
                 sum(CASE WHEN {start} THEN 1 ELSE 0 END) AS app_session_starts, \
                 sum(CASE WHEN {end} THEN 1 ELSE 0 END) AS app_session_ends, \
                 sum(CASE WHEN {end} THEN session_length_ms END) AS app_session_length_ms, \
                 min(CASE WHEN {start} OR {end} THEN session_id END) AS app_id_min, \
                 max(CASE WHEN {start} OR {end} THEN session_id END) AS app_id_max \
               FROM numbered GROUP BY {USER_ID}, session_no) \
             SELECT concat({USER_ID}, '/', CAST(start_us AS VARCHAR)) AS {SESSION_KEY}, {USER_ID}, \
               {SESSION_START}, {SESSION_END}, (end_us - start_us) / 1000 AS duration_ms, \
               events, screen_views, \
               array_element(screens, 1) AS first_screen, \
               array_element(screens, CAST(array_length(screens) AS BIGINT)) AS last_screen, \
               nullif(array_to_string(array_slice(screens, 1, {SCREEN_PATH_LIMIT}), '{SCREEN_PATH_SEPARATOR}'), '') AS screen_path, \
               screen_views <= 1 AS bounce, \
               device_type, device_os, app_version, country, \
               app_session_starts, app_session_ends, app_session_length_ms, \
               app_session_starts = 1 AND app_session_ends = 1 AND coalesce(app_id_min = app_id_max, false) AS app_session_agrees, \
               end_us + {gap} < {final_before} AS {IS_FINAL}, \
               CAST({version} AS BIGINT) AS {SOURCE_VERSION}, now() AS {COMPUTED_AT}, \
               arrow_cast(CAST(start_us / {day} AS INT), 'Date32') AS {EVENT_DATE}, \
               CAST((start_us / {hour}) % 24 AS INT) AS {EVENT_HOUR} \
             FROM grouped",
            gap = self.gap,
            final_before = self.final_before,
            version = self.source_version,
            device_type = first("device_type"),
            device_os = first("device_os"),
            app_version = first("app_version"),
            country = first("country"),
            hour = MICROS_PER_HOUR,
            day = 24 * MICROS_PER_HOUR,
        )
    }
}
