//! Sessionization against a real lake: hand-built event sequences with the exact
//! sessions they must give, before and after late events, duplicates and the passing
//! of time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::DataType;
use hourlake_catalog::{Hour, Lake, TableId};
use hourlake_sql::SessionFactory;
use hourlake_testkit::lake::{append_rows, query, scalar};
use serde_json::json;

use super::{update, SessionsReport};
use crate::tests::{config, grouping_set_keys};
use crate::{Compactor, Lease};

/// 2024-01-10T10:00Z: the first hour of the sequences (long closed).
const T0: Hour = Hour {
    date: 19_732,
    hour: 10,
};
const SEC: i64 = 1_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;

static OFFSET: AtomicI64 = AtomicI64::new(1);

/// One engagement event of `user` at `at` microseconds after [`T0`]'s start, as ingest
/// writes it; `screen` for screen views, `length` for a `session_end`.
fn ev(id: &str, user: &str, at: i64, kind: &str) -> serde_json::Value {
    let micros = T0.start_micros() + at;
    let hour = Hour::of_micros(micros);
    let offset = OFFSET.fetch_add(1, Ordering::Relaxed);
    let screen = kind.strip_prefix("view:");
    let length = kind
        .strip_prefix("end:")
        .map(|ms| ms.parse::<i64>().unwrap());
    let event_type = match kind {
        _ if screen.is_some() => "screen_view",
        _ if length.is_some() => "session_end",
        other => other,
    };
    json!({
        "event_id": id,
        "event_type": event_type,
        "event_time": micros,
        "user_id": user,
        "session_id": format!("app-{user}"),
        "device_type": "ios",
        "device_os": "17.2",
        "app_version": "2.0",
        "country": "DE",
        "screen": screen,
        "session_length_ms": length,
        "_kafka_topic": "app-events",
        "_kafka_partition": 0,
        "_kafka_offset": offset,
        "_ingested_at": offset * 1000,
        "event_date": hour.date,
        "event_hour": hour.hour,
    })
}

async fn append(lake: &Lake, rows: &[serde_json::Value]) {
    append_rows(lake, TableId::EngagementEvents, rows).await;
}

/// One sessions pass over `lake` as seen at `now` (microseconds after [`T0`]).
async fn pass_at(lake: &Lake, now: i64) -> SessionsReport {
    update_at(lake, T0.start_micros() + now).await
}

/// One sessions pass over `lake` (under an `engagement_events` lease of its own) as seen
/// at `now_micros`.
pub(crate) async fn update_at(lake: &Lake, now_micros: i64) -> SessionsReport {
    let factory = SessionFactory::new(lake.clone());
    let events = lake.open(TableId::EngagementEvents).await.unwrap().unwrap();
    let upto = events.version().unwrap();
    let store = events.log_store().object_store(None);
    let mut lease = Lease::acquire(
        TableId::EngagementEvents,
        store,
        "sessions-test",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let report = update(
        lake,
        &factory,
        &config(),
        &events,
        upto,
        &mut lease,
        now_micros,
    )
    .await
    .unwrap();
    lease.release().await.unwrap();
    report
}

/// A pass long after every event: everything final.
async fn pass(lake: &Lake) -> SessionsReport {
    pass_at(lake, 30 * 24 * HOUR).await
}

/// Every stored session as `user start end events screen_views path bounce agrees
/// final` (times in seconds after [`T0`]), ordered by user and start; and checks what
/// every row must satisfy (key, duration, partition of the start).
async fn sessions(lake: &Lake) -> Vec<String> {
    let t0 = T0.start_micros();
    let broken = scalar(
        lake,
        "SELECT count(*) FROM sessions WHERE \
           session_key <> concat(user_id, '/', CAST(arrow_cast(session_start, 'Int64') AS VARCHAR)) \
           OR duration_ms <> (arrow_cast(session_end, 'Int64') - arrow_cast(session_start, 'Int64')) / 1000 \
           OR event_date <> CAST(session_start AS DATE) \
           OR event_hour <> CAST(date_part('hour', session_start) AS INT)",
    )
    .await;
    assert_eq!(broken, 0, "a row's key, duration or partition is off");
    let batches = query(
        lake,
        &format!(
            "SELECT user_id, (arrow_cast(session_start, 'Int64') - {t0}) / {SEC}, \
               (arrow_cast(session_end, 'Int64') - {t0}) / {SEC}, events, screen_views, \
               coalesce(screen_path, '-'), CASE WHEN bounce THEN 'bounce' ELSE 'stay' END, \
               CASE WHEN app_session_agrees THEN 'agrees' ELSE 'differs' END, \
               CASE WHEN is_final THEN 'final' ELSE 'provisional' END \
             FROM sessions ORDER BY 1, 2"
        ),
    )
    .await;
    let mut rows = Vec::new();
    for b in &batches {
        let columns: Vec<_> = b
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &DataType::Utf8).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            let cells: Vec<&str> = columns
                .iter()
                .map(|c| c.as_string::<i32>().value(i))
                .collect();
            rows.push(cells.join(" "));
        }
    }
    rows
}

#[tokio::test]
async fn gaps_up_to_the_session_gap_continue_a_session_and_longer_ones_split() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    append(
        &lake,
        &[
            // a: 29:59 apart, then exactly 30:00 apart (same session), then 30:00.000001
            ev("a1", "a", 0, "session_start"),
            ev("a2", "a", 29 * MIN + 59 * SEC, "view:home"),
            ev("a3", "a", 59 * MIN + 59 * SEC, "view:feed"),
            ev("a4", "a", 89 * MIN + 59 * SEC + 1, "view:item"),
            // b, interleaved with a: its own sessions; the app's pair agrees
            ev("b1", "b", 10 * MIN, "session_start"),
            ev("b2", "b", 11 * MIN, "view:home"),
            ev("b3", "b", 12 * MIN, "view:search"),
            ev("b4", "b", 13 * MIN, "view:item"),
            ev("b5", "b", 14 * MIN, "end:240000"),
        ],
    )
    .await;
    let report = pass(&lake).await;
    assert_eq!(report.sessions, 3, "{report:?}");
    assert_eq!(report.provisional, 0);
    assert_eq!(
        sessions(&lake).await,
        [
            "a 0 3599 3 2 home > feed stay differs final",
            "a 5399 5399 1 1 item bounce differs final",
            "b 600 840 5 3 home > search > item stay agrees final",
        ]
    );
    let details = |user: &str, first: &str, last: &str, starts: i64, ends: i64, length: &str| {
        format!(
            "SELECT count(*) FROM sessions WHERE user_id = '{user}' AND first_screen = '{first}' \
               AND last_screen = '{last}' AND app_session_starts = {starts} \
               AND app_session_ends = {ends} AND app_session_length_ms IS NOT DISTINCT FROM {length}"
        )
    };
    assert_eq!(
        scalar(&lake, &details("b", "home", "item", 1, 1, "240000")).await,
        1
    );
    assert_eq!(
        scalar(&lake, &details("a", "home", "feed", 1, 0, "NULL")).await,
        1
    );

    // Nothing changed, nothing provisional: the next pass writes nothing.
    let version = lake
        .open(TableId::Sessions)
        .await
        .unwrap()
        .unwrap()
        .version();
    let again = pass(&lake).await;
    assert!(again.is_idle(), "{again:?}");
    assert_eq!(
        lake.open(TableId::Sessions)
            .await
            .unwrap()
            .unwrap()
            .version(),
        version
    );
}

#[tokio::test]
async fn sessions_span_hour_ends_and_midnight_in_the_partition_of_their_start() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    // T0 is 10:00; 13 h 50 min later is 23:50, and the session runs past midnight.
    let before_midnight = 13 * HOUR + 50 * MIN;
    append(
        &lake,
        &[
            ev("c1", "c", 59 * MIN + 59 * SEC, "view:home"),
            ev("c2", "c", HOUR + 20 * MIN, "view:feed"),
            ev("c3", "c", HOUR + 45 * MIN, "view:cart"),
            ev("d1", "d", before_midnight, "view:home"),
            ev("d2", "d", before_midnight + 20 * MIN, "view:profile"),
            ev("d3", "d", before_midnight + 45 * MIN, "view:settings"),
        ],
    )
    .await;
    pass(&lake).await;
    assert_eq!(
        sessions(&lake).await,
        [
            "c 3599 6300 3 3 home > feed > cart stay differs final",
            "d 49800 52500 3 3 home > profile > settings stay differs final",
        ]
    );
    for (user, hour) in [("c", 10), ("d", 23)] {
        let sql = format!(
            "SELECT count(*) FROM sessions WHERE user_id = '{user}' \
               AND event_date = DATE '2024-01-10' AND event_hour = {hour}"
        );
        assert_eq!(scalar(&lake, &sql).await, 1, "{sql}");
    }
}

#[tokio::test]
async fn late_events_merge_extend_and_start_sessions_and_duplicates_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    append(
        &lake,
        &[
            // e: two sessions 50 minutes apart, the second in the next hour
            ev("e1", "e", 5 * MIN, "view:home"),
            ev("e2", "e", 25 * MIN, "view:feed"),
            ev("e3", "e", HOUR + 15 * MIN, "view:item"),
            ev("e4", "e", HOUR + 20 * MIN, "view:cart"),
            // f: one session
            ev("f1", "f", 0, "view:home"),
            ev("f2", "f", 10 * MIN, "view:feed"),
            // g: two lone events 2 hours apart
            ev("g1", "g", 0, "view:home"),
            ev("g2", "g", 2 * HOUR, "view:home"),
            // h: an event resent in the same append
            ev("h1", "h", 0, "view:home"),
            ev("h1", "h", 0, "view:home"),
        ],
    )
    .await;
    pass(&lake).await;
    assert_eq!(
        sessions(&lake).await,
        [
            "e 300 1500 2 2 home > feed stay differs final",
            "e 4500 4800 2 2 item > cart stay differs final",
            "f 0 600 2 2 home > feed stay differs final",
            "g 0 0 1 1 home bounce differs final",
            "g 7200 7200 1 1 home bounce differs final",
            "h 0 0 1 1 home bounce differs final",
        ]
    );

    append(
        &lake,
        &[
            // joins e's two sessions, across the hour end (25 minutes from each side)
            ev("e5", "e", 50 * MIN, "view:search"),
            // extends f's session by 25 minutes
            ev("f3", "f", 35 * MIN, "view:cart"),
            // a session of its own between g's two
            ev("g3", "g", HOUR, "view:feed"),
            // resends of events already counted (later Kafka offsets)
            ev("h1", "h", 0, "view:home"),
            ev("e2", "e", 25 * MIN, "view:feed"),
        ],
    )
    .await;
    let report = pass(&lake).await;
    assert!(!report.windows.is_empty(), "{report:?}");
    assert_eq!(
        sessions(&lake).await,
        [
            "e 300 4800 5 5 home > feed > search > item > cart stay differs final",
            "f 0 2100 3 3 home > feed > cart stay differs final",
            "g 0 0 1 1 home bounce differs final",
            "g 3600 3600 1 1 feed bounce differs final",
            "g 7200 7200 1 1 home bounce differs final",
            "h 0 0 1 1 home bounce differs final",
        ]
    );
    // Keys follow the start: e's session kept the key of its first part.
    assert_eq!(
        scalar(
            &lake,
            &format!(
                "SELECT count(*) FROM sessions WHERE session_key = 'e/{}'",
                T0.start_micros() + 5 * MIN
            )
        )
        .await,
        1
    );

    // A late event before e's session moves its start (and key) back.
    append(&lake, &[ev("e0", "e", 0, "session_start")]).await;
    pass(&lake).await;
    let e_sessions = sessions(&lake).await;
    assert_eq!(
        e_sessions[0],
        "e 0 4800 6 5 home > feed > search > item > cart stay differs final"
    );
    assert_eq!(e_sessions.len(), 6);
}

#[tokio::test]
async fn provisional_sessions_become_final_once_their_gap_passed_in_closed_hours() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    append(
        &lake,
        &[
            // final long before: p's session in T0
            ev("p1", "p", 0, "view:home"),
            // q's session at 11:50, 10 minutes before the horizon of 12:05
            ev("q1", "q", HOUR + 50 * MIN, "view:home"),
        ],
    )
    .await;
    // At 12:05 (closed_after 0: hours up to 12:00 are closed), q's last event plus the
    // gap (12:20) is beyond the horizon: provisional.
    let first = pass_at(&lake, 2 * HOUR + 5 * MIN).await;
    assert_eq!(first.provisional, 1, "{first:?}");
    assert_eq!(
        sessions(&lake).await,
        [
            "p 0 0 1 1 home bounce differs final",
            "q 6600 6600 1 1 home bounce differs provisional",
        ]
    );
    // sessions_hourly covers T0 (final) but not q's hour yet.
    let hourly = |h: Hour| {
        format!(
            "SELECT coalesce(sum(sessions), -1) FROM sessions_hourly WHERE {} AND device_type = 'ALL' \
             AND device_os = 'ALL' AND app_version = 'ALL' AND country = 'ALL'",
            h.sql_predicate()
        )
    };
    let q_hour = Hour::of_micros(T0.start_micros() + HOUR);
    assert_eq!(scalar(&lake, &hourly(T0)).await, 1);
    assert_eq!(scalar(&lake, &hourly(q_hour)).await, -1);
    // `hourlake status` counts the hour as not due yet, rather than behind.
    assert_eq!(sessions_hourly_coverage(&lake).await, (1, 1));
    // The dashboard view shows it meanwhile, from the raw sessions.
    assert_eq!(
        scalar(
            &lake,
            &format!(
                "SELECT sessions FROM session_length WHERE {} AND source = 'raw'",
                q_hour.sql_predicate()
            )
        )
        .await,
        1
    );

    // The provisional session is recomputed every pass: an event 15 minutes later in
    // the open hour extends it (still provisional at 12:30).
    append(&lake, &[ev("q2", "q", 2 * HOUR + 5 * MIN, "view:feed")]).await;
    let second = pass_at(&lake, 2 * HOUR + 30 * MIN).await;
    assert_eq!((second.provisional, second.carried), (1, 0), "{second:?}");
    assert_eq!(
        sessions(&lake).await[1],
        "q 6600 7500 2 2 home > feed stay differs provisional"
    );
    // At 13:00 its gap ended (12:35) in a closed hour: final, and rolled up.
    let third = pass_at(&lake, 3 * HOUR).await;
    assert_eq!(third.provisional, 0, "{third:?}");
    assert!(third.rolled_up.contains(&q_hour), "{third:?}");
    assert_eq!(
        sessions(&lake).await,
        [
            "p 0 0 1 1 home bounce differs final",
            "q 6600 7500 2 2 home > feed stay differs final",
        ]
    );
    assert_eq!(scalar(&lake, &hourly(q_hour)).await, 1);
    assert_eq!(sessions_hourly_coverage(&lake).await, (2, 2));
    // Nothing provisional is left: the next pass is idle.
    assert!(pass_at(&lake, 3 * HOUR).await.is_idle());
}

/// `sessions_hourly`'s line in `hourlake status`: hours due, hours rolled up.
async fn sessions_hourly_coverage(lake: &Lake) -> (usize, usize) {
    let status = crate::status::status(lake, &config(), 1).await.unwrap();
    let coverage = status
        .rollups
        .iter()
        .find(|r| r.rollup == "sessions_hourly")
        .unwrap();
    (coverage.closed_hours, coverage.rolled_up)
}

/// The rollup of many generated sessions: each hour's `ALL` rows and detailed rows
/// equal what the final sessions give, and the views read them.
#[tokio::test]
async fn sessions_hourly_rows_match_the_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let hours = [T0, Hour::of_micros(T0.start_micros() + 3 * HOUR)];
    let mut rows = Vec::new();
    for i in 0..3000u64 {
        rows.push(crate::tests::event(
            11,
            i,
            hours[(i % 2) as usize],
            300,
            i as i64,
        ));
    }
    append(&lake, &rows).await;
    let compactor = Compactor::new(lake.clone(), config(), "test");
    let report = compactor.run_pass().await.unwrap();
    compactor.release().await.unwrap();
    let t = report.table(TableId::EngagementEvents).unwrap();
    let done = t.sessions.as_ref().unwrap();
    assert!(done.sessions > 300, "{report}");
    assert_eq!(done.provisional, 0);
    assert!(!done.rolled_up.is_empty());

    let dims = ["device_type", "device_os", "app_version", "country"];
    for mask in 0..16u32 {
        let keys = grouping_set_keys(&dims, mask);
        let mismatches = scalar(
            &lake,
            &format!(
                "WITH raw AS (SELECT event_date, event_hour, {k0} AS d0, {k1} AS d1, {k2} AS d2, {k3} AS d3, \
                   count(*) AS sessions, sum(duration_ms) AS duration, sum(CASE WHEN bounce THEN 1 ELSE 0 END) AS bounces, \
                   sum(screen_views) AS screen_views, sum(events) AS events, \
                   sum(app_session_starts) AS starts, coalesce(sum(app_session_length_ms), 0) AS app_length \
                   FROM sessions WHERE is_final GROUP BY 1, 2, 3, 4, 5, 6), \
                 r AS (SELECT * FROM sessions_hourly WHERE (device_type = 'ALL') = {a0} \
                   AND (device_os = 'ALL') = {a1} AND (app_version = 'ALL') = {a2} AND (country = 'ALL') = {a3}) \
                 SELECT count(*) FROM raw FULL OUTER JOIN r ON raw.event_date = r.event_date \
                   AND raw.event_hour = r.event_hour AND raw.d0 = r.device_type AND raw.d1 = r.device_os \
                   AND raw.d2 = r.app_version AND raw.d3 = r.country \
                 WHERE (raw.sessions IS DISTINCT FROM r.sessions) OR (raw.duration IS DISTINCT FROM r.duration_ms_sum) \
                   OR (raw.bounces IS DISTINCT FROM r.bounces) OR (raw.screen_views IS DISTINCT FROM r.screen_views) \
                   OR (raw.events IS DISTINCT FROM r.events) OR (raw.starts IS DISTINCT FROM r.app_session_starts) \
                   OR (raw.app_length IS DISTINCT FROM r.app_session_length_ms_sum)",
                k0 = keys[0],
                k1 = keys[1],
                k2 = keys[2],
                k3 = keys[3],
                a0 = mask & 1 == 0,
                a1 = mask & 2 == 0,
                a2 = mask & 4 == 0,
                a3 = mask & 8 == 0,
            ),
        )
        .await;
        assert_eq!(mismatches, 0, "grouping set {mask:04b}");
    }
    // Every session is counted once: the ALL rows add up to the table.
    let all_rows =
        "device_type = 'ALL' AND device_os = 'ALL' AND app_version = 'ALL' AND country = 'ALL'";
    let total = scalar(&lake, "SELECT count(*) FROM sessions").await;
    assert_eq!(
        scalar(
            &lake,
            &format!("SELECT sum(sessions) FROM sessions_hourly WHERE {all_rows}")
        )
        .await,
        total
    );
    // (as the compaction e2e test counts the sessions of covered hours)
    assert_eq!(
        scalar(
            &lake,
            "SELECT count(*) FROM sessions s WHERE is_final AND EXISTS (SELECT 1 FROM sessions_hourly h \
               WHERE h.event_date = s.event_date AND h.event_hour = s.event_hour)"
        )
        .await,
        total
    );
    // Distinct users within the sketch's error, p50 within the data.
    let users = scalar(&lake, "SELECT count(DISTINCT user_id) FROM sessions").await as f64;
    let estimate = scalar(
        &lake,
        &format!(
            "SELECT CAST(hll_estimate(hll_union(users_sketch)) AS BIGINT) FROM sessions_hourly WHERE {all_rows}"
        ),
    )
    .await as f64;
    assert!(
        (estimate - users).abs() <= 0.03 * users,
        "{estimate} vs {users}"
    );

    // The views read the rollup for these hours and agree with the table.
    assert_eq!(
        scalar(
            &lake,
            "SELECT sum(sessions) FROM session_length WHERE source = 'rollup'"
        )
        .await,
        total
    );
    let bounces = scalar(
        &lake,
        "SELECT sum(CASE WHEN bounce THEN 1 ELSE 0 END) FROM sessions",
    )
    .await;
    assert_eq!(
        scalar(&lake, "SELECT sum(bounces) FROM bounce_rate").await,
        bounces
    );
    assert_eq!(
        scalar(&lake, "SELECT sum(sessions) FROM top_session_paths").await,
        scalar(&lake, "SELECT count(screen_path) FROM sessions").await
    );
    assert_eq!(
        scalar(&lake, "SELECT sum(sessions) FROM session_consistency").await,
        total
    );
}
