//! The compactor against real Delta tables on disk, filled the way ingest fills them
//! (many small appends, duplicates by resend, late events).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, UInt64Type};
use hourlake_catalog::rollup::{Merge, ALL_MEMBER};
use hourlake_catalog::{Hour, Lake, Rollup, TableId};
use hourlake_sql::SessionFactory;
use hourlake_testkit::events::mix;
use hourlake_testkit::lake::{append_rows, query, scalar as scalar_i64};
use serde_json::json;

use crate::{Compactor, CompactorConfig, CompactorError};

const TYPES: &[&str] = &[
    "install",
    "session_start",
    "session_end",
    "screen_view",
    "click",
    "search",
    "purchase",
    "notification_view",
    "notification_open",
];

/// One engagement event row as ingest writes it (JSON in the table's column names).
pub(crate) fn event(seed: u64, i: u64, hour: Hour, users: u64, offset: i64) -> serde_json::Value {
    let r = mix(seed, i);
    let event_type = TYPES[(r % TYPES.len() as u64) as usize];
    let micros = hour.start_micros() + (r % 3_600_000_000) as i64;
    let device = ["ios", "android", "web"][(r >> 8) as usize % 3];
    let version = if (r >> 12).is_multiple_of(5) {
        None
    } else {
        Some(["1.0", "1.1", "2.0"][(r >> 16) as usize % 3])
    };
    let country = ["US", "DE", "IN", "BR"][(r >> 20) as usize % 4];
    json!({
        "event_id": format!("ev-{seed}-{i}"),
        "event_type": event_type,
        "event_time": micros,
        "user_id": format!("user-{}", mix(seed + 1, i) % users),
        "session_id": format!("s-{}", r % 997),
        "device_type": device,
        "device_os": null,
        "app_version": version,
        "country": country,
        "session_length_ms": (event_type == "session_end").then_some((r >> 24) as i64 % 600_000),
        "amount": (event_type == "purchase").then_some(((r >> 28) % 10_000) as f64 / 100.0),
        "currency": (event_type == "purchase").then_some("USD"),
        "_kafka_topic": "app-events",
        "_kafka_partition": 0,
        "_kafka_offset": offset,
        "_ingested_at": offset * 1000,
        "event_date": hour.date,
        "event_hour": hour.hour,
    })
}

/// The value each of `dims` takes in the rows of grouping set `mask` (bit `i` set:
/// grouped by `dims[i]`, a missing value counting as `unknown`; else `ALL`), as SQL.
pub(crate) fn grouping_set_keys(dims: &[&str], mask: u32) -> Vec<String> {
    dims.iter()
        .enumerate()
        .map(|(i, d)| {
            if mask & (1 << i) != 0 {
                format!("coalesce({d}, 'unknown')")
            } else {
                "'ALL'".to_string()
            }
        })
        .collect()
}

pub(crate) async fn append(lake: &Lake, rows: &[serde_json::Value]) {
    append_rows(lake, TableId::EngagementEvents, rows).await;
}

pub(crate) fn config() -> CompactorConfig {
    CompactorConfig {
        closed_after: Duration::ZERO,
        interval: Duration::from_millis(50),
        maintenance_every: 0,
        memory_limit: 256 * 1024 * 1024,
        ..CompactorConfig::default()
    }
}

async fn event_ids(lake: &Lake) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for b in query(lake, "SELECT event_id FROM engagement_events").await {
        let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        for v in col.as_string::<i32>().iter().flatten() {
            ids.insert(v.to_string());
        }
    }
    ids
}

pub(crate) fn files_in(lake: &Lake, hour: Hour) -> usize {
    let dir = lake
        .root()
        .to_file_path()
        .unwrap()
        .join("engagement_events")
        .join(format!("event_date={}", hour.date_string()))
        .join(format!("event_hour={}", hour.hour));
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

async fn active_files(lake: &Lake, hour: Hour) -> usize {
    let table = lake.open(TableId::EngagementEvents).await.unwrap().unwrap();
    crate::plan::files_by_hour(TableId::EngagementEvents, &table)
        .unwrap()
        .get(&hour)
        .map_or(0, Vec::len)
}

/// Two closed hours, filled by 12 small appends; 10 % of events resent in a later
/// append and 2 % twice in the same append.
async fn fill_with_duplicates(lake: &Lake) -> (Vec<Hour>, u64) {
    // two closed hours of one day (yesterday 10:00 and 12:00), so that daily views see
    // one day whatever the time of the run
    const HOUR: i64 = 3_600_000_000;
    let now = chrono::Utc::now().timestamp_micros();
    let yesterday = (now / (24 * HOUR) - 1) * 24 * HOUR;
    let h1 = Hour::of_micros(yesterday + 10 * HOUR);
    let h2 = Hour::of_micros(yesterday + 12 * HOUR);
    let mut offset = 0i64;
    let mut duplicates = 0u64;
    let mut resend = Vec::new();
    for append_no in 0..12u64 {
        let mut rows = Vec::new();
        for j in 0..400u64 {
            let i = append_no * 400 + j;
            let hour = if i % 2 == 0 { h1 } else { h2 };
            offset += 1;
            rows.push(event(7, i, hour, 500, offset));
            if mix(99, i).is_multiple_of(50) {
                offset += 1;
                rows.push(event(7, i, hour, 500, offset));
                duplicates += 1;
            }
            if mix(98, i).is_multiple_of(10) {
                resend.push((i, hour));
            }
        }
        // resends of earlier events arrive in later appends
        for (i, hour) in resend.drain(..) {
            offset += 1;
            rows.push(event(7, i, hour, 500, offset));
            duplicates += 1;
        }
        append(lake, &rows).await;
    }
    (vec![h1, h2], duplicates)
}

#[tokio::test]
async fn compaction_removes_duplicates_and_rollups_match_raw_counts() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let (hours, injected) = fill_with_duplicates(&lake).await;
    let ids_before = event_ids(&lake).await;
    let rows_before = scalar_i64(&lake, "SELECT count(*) FROM engagement_events").await;
    assert_eq!(rows_before as u64, ids_before.len() as u64 + injected);
    for h in &hours {
        assert_eq!(active_files(&lake, *h).await, 12);
    }

    let compactor = Compactor::new(lake.clone(), config(), "test");
    let report = compactor.run_pass().await.unwrap();
    let t = report.table(TableId::EngagementEvents).unwrap();
    assert_eq!(t.rewrites.len(), 2, "{report}");
    assert_eq!(t.duplicates_removed(), injected, "{report}");
    assert!(t
        .rewrites
        .iter()
        .all(|r| r.duplicates_found == r.duplicates_removed));
    assert_eq!(t.rolled_up, hours);

    // Same events, each once; one file per closed hour.
    assert_eq!(event_ids(&lake).await, ids_before);
    let rows_after = scalar_i64(&lake, "SELECT count(*) FROM engagement_events").await;
    assert_eq!(rows_after as u64, ids_before.len() as u64);
    for h in &hours {
        assert_eq!(active_files(&lake, *h).await, 1, "{h}");
        assert!(files_in(&lake, *h) > 1, "old files stay until vacuum");
    }
    // The first ingested copy was kept (smallest offset of each event).
    let kept_late_copy = scalar_i64(
        &lake,
        "SELECT count(*) FROM engagement_events e JOIN (SELECT event_id, min(_kafka_offset) AS first FROM engagement_events GROUP BY event_id) f \
         ON e.event_id = f.event_id WHERE e._kafka_offset <> f.first",
    )
    .await;
    assert_eq!(kept_late_copy, 0);

    // Every removed copy is in the ledger once, with the copy that stayed: its event's
    // surviving row.
    let ledger = scalar_i64(
        &lake,
        "SELECT count(DISTINCT _kafka_offset) FROM removed_duplicates",
    )
    .await;
    assert_eq!(ledger as u64, injected);
    let wrong_kept = scalar_i64(
        &lake,
        "SELECT count(*) FROM removed_duplicates d LEFT JOIN engagement_events e \
           ON e.event_id = d.event_id AND e._kafka_offset = d.kept_offset \
              AND e._kafka_partition = d.kept_partition AND e._kafka_topic = d.kept_topic \
         WHERE e.event_id IS NULL OR d.source_table <> 'engagement_events'",
    )
    .await;
    assert_eq!(
        wrong_kept, 0,
        "a ledger row names a kept copy that is not there"
    );
    let still_there = scalar_i64(
        &lake,
        "SELECT count(*) FROM removed_duplicates d JOIN engagement_events e \
           ON e._kafka_offset = d._kafka_offset AND e._kafka_partition = d._kafka_partition",
    )
    .await;
    assert_eq!(still_there, 0, "a removed copy is still in the table");
    // So every offset is accounted for: rows + removed duplicates, nothing missing or
    // doubled.
    let account = crate::audit::audit(&lake, &Default::default())
        .await
        .unwrap();
    assert_eq!(account.len(), 1, "{account:?}");
    let p0 = &account[0];
    assert!(p0.is_exact(), "{p0:?}");
    assert_eq!(p0.removed_duplicates as u64, injected, "{p0:?}");
    assert_eq!(p0.in_tables + p0.removed_duplicates, p0.expected, "{p0:?}");

    // Every detailed rollup row equals the exact count from the raw table, and so do
    // the ALL rows of each dimension.
    let dims = ["event_type", "device_type", "app_version", "country"];
    for mask in 0..16u32 {
        let keys = grouping_set_keys(&dims, mask);
        let raw = format!(
            "SELECT event_date, event_hour, {k0} AS d0, {k1} AS d1, {k2} AS d2, {k3} AS d3, \
               count(*) AS events, sum(CASE WHEN event_type = 'session_start' THEN 1 ELSE 0 END) AS sessions, \
               count(session_length_ms) AS slc, coalesce(sum(session_length_ms), 0) AS sls, \
               sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases, \
               round(coalesce(sum(amount), 0), 2) AS revenue \
             FROM engagement_events GROUP BY 1, 2, 3, 4, 5, 6",
            k0 = keys[0],
            k1 = keys[1],
            k2 = keys[2],
            k3 = keys[3]
        );
        let mismatches = scalar_i64(
            &lake,
            &format!(
                "WITH raw AS ({raw}), r AS (SELECT * FROM engagement_hourly WHERE \
                   (event_type = 'ALL') = {a0} AND (device_type = 'ALL') = {a1} AND (app_version = 'ALL') = {a2} AND (country = 'ALL') = {a3}) \
                 SELECT count(*) FROM raw FULL OUTER JOIN r ON raw.event_date = r.event_date AND raw.event_hour = r.event_hour \
                   AND raw.d0 = r.event_type AND raw.d1 = r.device_type AND raw.d2 = r.app_version AND raw.d3 = r.country \
                 WHERE (raw.events IS DISTINCT FROM r.events) OR (raw.sessions IS DISTINCT FROM r.sessions) \
                   OR (raw.slc IS DISTINCT FROM r.session_length_count) OR (raw.sls IS DISTINCT FROM r.session_length_ms_sum) \
                   OR (raw.purchases IS DISTINCT FROM r.purchases) OR (raw.revenue IS DISTINCT FROM round(r.revenue, 2))",
                a0 = mask & 1 == 0,
                a1 = mask & 2 == 0,
                a2 = mask & 4 == 0,
                a3 = mask & 8 == 0,
            ),
        )
        .await;
        assert_eq!(mismatches, 0, "grouping set {mask:04b}");
    }
    // Every rollup row records the source version it was computed from.
    let versions = query(
        &lake,
        "SELECT DISTINCT source_version FROM engagement_hourly",
    )
    .await;
    assert_eq!(versions[0].num_rows(), 1);

    // A second pass has nothing to do.
    let again = compactor.run_pass().await.unwrap();
    assert!(again.is_idle(), "{again}");
    compactor.release().await.unwrap();
}

#[tokio::test]
async fn a_late_event_recomputes_its_hour() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let (hours, _) = fill_with_duplicates(&lake).await;
    let compactor = Compactor::new(lake.clone(), config(), "test");
    compactor.run_pass().await.unwrap();
    let all_row = |h: Hour| {
        format!(
            "SELECT events FROM engagement_hourly WHERE {} AND event_type = 'ALL' AND device_type = 'ALL' \
             AND app_version = 'ALL' AND country = 'ALL'",
            h.sql_predicate()
        )
    };
    let before = scalar_i64(&lake, &all_row(hours[0])).await;
    let other_before = scalar_i64(&lake, &all_row(hours[1])).await;

    // A late event, and a late resend of an event the hour already holds.
    let late = vec![
        event(8, 1, hours[0], 500, 100_000),
        event(7, 0, hours[0], 500, 100_001),
    ];
    append(&lake, &late).await;
    let report = compactor.run_pass().await.unwrap();
    let t = report.table(TableId::EngagementEvents).unwrap();
    assert_eq!(t.rolled_up, vec![hours[0]], "{report}");
    assert_eq!(t.duplicates_removed(), 1, "{report}");
    assert_eq!(scalar_i64(&lake, &all_row(hours[0])).await, before + 1);
    assert_eq!(scalar_i64(&lake, &all_row(hours[1])).await, other_before);
    assert_eq!(active_files(&lake, hours[0]).await, 1);
    // One row per grouping set combination, never two versions of an hour.
    let dup_rows = scalar_i64(
        &lake,
        "SELECT count(*) FROM (SELECT event_date, event_hour, event_type, device_type, app_version, country, count(*) AS n \
         FROM engagement_hourly GROUP BY 1, 2, 3, 4, 5, 6) WHERE n > 1",
    )
    .await;
    assert_eq!(dup_rows, 0);
    compactor.release().await.unwrap();
}

/// Two closed hours of engagement and recommendation events, both with resends.
async fn fill_both_tables(lake: &Lake) -> Vec<Hour> {
    let (hours, _) = fill_with_duplicates(lake).await;
    let mut recs: Vec<_> = (0..600u64)
        .map(|i| rec_event(i, hours[(i % 2) as usize], i as i64))
        .collect();
    recs.extend((0..40u64).map(|i| rec_event(i, hours[(i % 2) as usize], 1000 + i as i64)));
    append_recs(lake, &recs).await;
    hours
}

/// One compactor pass over `lake`.
pub(crate) async fn compact(lake: &Lake) {
    let compactor = Compactor::new(lake.clone(), config(), "test");
    compactor.run_pass().await.unwrap();
    compactor.release().await.unwrap();
}

/// Every declared rollup keeps its contract: an hour's `ALL` row equals its most
/// detailed rows merged by each measure's merge rule (sketches within their error).
#[tokio::test]
async fn merging_detailed_rollup_rows_by_each_measures_rule_gives_the_all_row() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let hours = fill_both_tables(&lake).await;
    // A session whose app start and end agree (random events rarely make one), so that
    // every measure of sessions_hourly has something to merge.
    let agreeing: Vec<serde_json::Value> = [("session_start", None), ("session_end", Some(60_000))]
        .into_iter()
        .enumerate()
        .map(|(i, (kind, length))| {
            let mut row = event(5, i as u64, hours[0], 1, 900_000 + i as i64);
            row["event_type"] = json!(kind);
            row["user_id"] = json!("agreeing-user");
            row["session_id"] = json!("s-agreeing");
            row["event_time"] = json!(hours[0].start_micros() + i as i64 * 60_000_000);
            row["session_length_ms"] = json!(length);
            row
        })
        .collect();
    append(&lake, &agreeing).await;
    compact(&lake).await;
    for rollup in Rollup::ALL {
        if rollup.dimensions.is_empty() {
            continue; // the totals: compared with their full rollup's ALL row below
        }
        let rows = |op: &str| {
            let dims: Vec<String> = rollup
                .dimensions
                .iter()
                .map(|d| format!("{d} {op} '{ALL_MEMBER}'"))
                .collect();
            format!(
                "FROM {} WHERE {} AND {}",
                rollup.table,
                dims.join(" AND "),
                hours[0].sql_predicate()
            )
        };
        for m in rollup.measures {
            let (merged, all, tolerance) = match m.aggregate.merge() {
                Merge::Sum => (m.merge_sql(), m.name.to_string(), 1e-9),
                Merge::HllUnion => (
                    format!("hll_estimate({})", m.merge_sql()),
                    format!("hll_estimate({})", m.name),
                    0.03,
                ),
                Merge::QuantileUnion => (
                    format!("quantile_estimate({}, 0.5)", m.merge_sql()),
                    format!("quantile_estimate({}, 0.5)", m.name),
                    0.1,
                ),
            };
            let b = query(
                &lake,
                &format!(
                    "SELECT CAST(({}) AS DOUBLE), CAST(({}) AS DOUBLE)",
                    format_args!("SELECT {merged} {}", rows("<>")),
                    format_args!("SELECT {all} {}", rows("=")),
                ),
            )
            .await;
            let value = |c: usize| b[0].column(c).as_primitive::<Float64Type>().value(0);
            let (merged, all) = (value(0), value(1));
            assert!(all > 0.0, "{}.{} is empty", rollup.table, m.name);
            assert!(
                (merged - all).abs() <= tolerance * all,
                "{}.{}: merged {merged} vs ALL {all}",
                rollup.table,
                m.name
            );
        }
    }

    // Each totals rollup holds, for every hour, its full rollup's ALL row: the same
    // counts and sums exactly, the same sketch estimates within their error.
    let mut totals_checked = 0;
    for totals in Rollup::ALL.iter().filter(|r| r.dimensions.is_empty()) {
        let full = Rollup::of_source(totals.source)
            .find(|r| !r.dimensions.is_empty() && r.measures == totals.measures)
            .expect("a full rollup with the same measures");
        let all_row: Vec<String> = full
            .dimensions
            .iter()
            .map(|d| format!("f.{d} = '{ALL_MEMBER}'"))
            .collect();
        let count = |t: TableId| format!("SELECT count(*) FROM {t}");
        let hours_covered = scalar_i64(&lake, &count(totals.table)).await;
        assert!(hours_covered >= hours.len() as i64, "{}", totals.table);
        for m in totals.measures {
            let (a, b, tolerance) = match m.aggregate.merge() {
                Merge::Sum => (format!("t.{}", m.name), format!("f.{}", m.name), 0.0),
                Merge::HllUnion => (
                    format!("hll_estimate(t.{})", m.name),
                    format!("hll_estimate(f.{})", m.name),
                    0.03,
                ),
                Merge::QuantileUnion => (
                    format!("quantile_estimate(t.{}, 0.5)", m.name),
                    format!("quantile_estimate(f.{}, 0.5)", m.name),
                    0.1,
                ),
            };
            let sql = format!(
                "SELECT count(*) FROM {totals_table} t JOIN {full_table} f \
                   ON t.event_date = f.event_date AND t.event_hour = f.event_hour AND {all} \
                 WHERE abs(CAST({a} AS DOUBLE) - CAST({b} AS DOUBLE)) \
                   > {tolerance} * abs(CAST({b} AS DOUBLE)) \
                   OR ({a} IS NULL) <> ({b} IS NULL)",
                totals_table = totals.table,
                full_table = full.table,
                all = all_row.join(" AND "),
            );
            assert_eq!(
                scalar_i64(&lake, &sql).await,
                0,
                "{}.{}",
                totals.table,
                m.name
            );
        }
        let joined = scalar_i64(
            &lake,
            &format!(
                "SELECT count(*) FROM {} t JOIN {} f \
                   ON t.event_date = f.event_date AND t.event_hour = f.event_hour AND {}",
                totals.table,
                full.table,
                all_row.join(" AND ")
            ),
        )
        .await;
        assert_eq!(joined, hours_covered, "every totals row has its ALL row");
        assert!(
            scalar_i64(&lake, &count(full.table)).await > hours_covered,
            "the full rollup holds more rows than one per hour"
        );
        totals_checked += 1;
    }
    assert_eq!(totals_checked, 2);
}

/// The dashboard views answer the same for an hour whether they read its rollup rows
/// or its raw events (sketch estimates within their error), with the same columns.
#[tokio::test]
async fn views_answer_the_same_from_rollups_as_from_raw_events() {
    let exact = [
        "SELECT event_date, event_hour, events, sessions, avg_session_length_ms, installs, \
           notification_views, notification_opens, notification_open_rate, purchases, \
           round(revenue, 6) FROM hourly_engagement ORDER BY 1, 2",
        "SELECT * EXCEPT (source) FROM recommendation_ctr ORDER BY 1, 2, 3, 4",
    ];
    let estimated = "SELECT 0 AS k, event_hour, CAST(active_users AS DOUBLE), p95_session_length_ms \
                     FROM hourly_engagement UNION ALL \
                     SELECT 1, 0, CAST(active_users AS DOUBLE), 1.0 FROM daily_active_users ORDER BY 1, 2";
    let columns = |lake: Lake| async move {
        let ctx = SessionFactory::new(lake).session().await.unwrap();
        let mut all = Vec::new();
        for view in [
            "hourly_engagement",
            "recommendation_ctr",
            "daily_active_users",
        ] {
            let df = ctx.table(view).await.unwrap();
            all.extend(
                df.schema()
                    .fields()
                    .iter()
                    .map(|f| format!("{view}.{}: {}", f.name(), f.data_type())),
            );
        }
        all
    };
    let text = |b: &[RecordBatch]| {
        arrow::util::pretty::pretty_format_batches(b)
            .unwrap()
            .to_string()
    };
    let f64s = |b: &[RecordBatch], c: usize| -> Vec<f64> {
        b.iter()
            .flat_map(|b| b.column(c).as_primitive::<Float64Type>().values().to_vec())
            .collect()
    };

    let raw_dir = tempfile::tempdir().unwrap();
    let raw = Lake::local(raw_dir.path()).unwrap();
    fill_both_tables(&raw).await;
    let rolled_dir = tempfile::tempdir().unwrap();
    let rolled = Lake::local(rolled_dir.path()).unwrap();
    fill_both_tables(&rolled).await;
    compact(&rolled).await;

    let sources = "SELECT DISTINCT source FROM hourly_engagement \
                   UNION SELECT DISTINCT source FROM recommendation_ctr";
    assert!(text(&query(&raw, sources).await).contains("raw"));
    assert!(!text(&query(&rolled, sources).await).contains("raw"));
    let expected_columns = [
        "hourly_engagement.event_date: Date32",
        "hourly_engagement.event_hour: Int32",
        "hourly_engagement.events: Int64",
        "hourly_engagement.active_users: UInt64",
        "hourly_engagement.sessions: Int64",
        "hourly_engagement.avg_session_length_ms: Float64",
        "hourly_engagement.p95_session_length_ms: Float64",
        "hourly_engagement.installs: Int64",
        "hourly_engagement.notification_views: Int64",
        "hourly_engagement.notification_opens: Int64",
        "hourly_engagement.notification_open_rate: Float64",
        "hourly_engagement.purchases: Int64",
        "hourly_engagement.revenue: Float64",
        "hourly_engagement.users_sketch: Binary",
        "hourly_engagement.source: Utf8",
        "recommendation_ctr.event_date: Date32",
        "recommendation_ctr.event_hour: Int32",
        "recommendation_ctr.model_version: Utf8View",
        "recommendation_ctr.surface: Utf8View",
        "recommendation_ctr.served: Int64",
        "recommendation_ctr.impressions: Int64",
        "recommendation_ctr.clicks: Int64",
        "recommendation_ctr.ctr: Float64",
        "recommendation_ctr.source: Utf8",
        "daily_active_users.event_date: Date32",
        "daily_active_users.active_users: UInt64",
    ];
    assert_eq!(columns(raw.clone()).await, expected_columns);
    assert_eq!(columns(rolled.clone()).await, expected_columns);
    for sql in exact {
        let (from_raw, from_rollup) = (query(&raw, sql).await, query(&rolled, sql).await);
        assert_eq!(text(&from_raw), text(&from_rollup), "{sql}");
    }
    let (from_raw, from_rollup) = (
        query(&raw, estimated).await,
        query(&rolled, estimated).await,
    );
    for (c, tolerance) in [(2, 0.03), (3, 0.05)] {
        let (r, rolled) = (f64s(&from_raw, c), f64s(&from_rollup, c));
        assert_eq!(r.len(), 3);
        for (r, rolled) in r.iter().zip(&rolled) {
            assert!(
                (r - rolled).abs() <= tolerance * r,
                "column {c}: {r} vs {rolled}"
            );
        }
    }
}

#[tokio::test]
async fn daily_distinct_users_from_hourly_sketches_are_accurate_and_repeatable() {
    async fn day_lake(dir: &std::path::Path, day: i32) -> Lake {
        let lake = Lake::local(dir).unwrap();
        let mut offset = 0;
        for hour in 0..24 {
            let h = Hour { date: day, hour };
            let rows: Vec<_> = (0..1500u64)
                .map(|i| {
                    offset += 1;
                    event(11, hour as u64 * 1500 + i, h, 20_000, offset)
                })
                .collect();
            append(&lake, &rows).await;
        }
        let compactor = Compactor::new(lake.clone(), config(), "test");
        compactor.run_pass().await.unwrap();
        compactor.release().await.unwrap();
        lake
    }
    let day = Hour::of_micros(chrono::Utc::now().timestamp_micros()).date - 3;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut estimates = Vec::new();
    let mut exact = 0;
    for dir in &dirs {
        let lake = day_lake(dir.path(), day).await;
        exact = scalar_i64(
            &lake,
            "SELECT count(DISTINCT user_id) FROM engagement_events",
        )
        .await;
        let b = query(
            &lake,
            "SELECT hll_estimate(hll_union(users_sketch)), count(*) FROM engagement_hourly \
             WHERE event_type = 'ALL' AND device_type = 'ALL' AND app_version = 'ALL' AND country = 'ALL'",
        )
        .await;
        assert_eq!(b[0].column(1).as_primitive::<Int64Type>().value(0), 24);
        estimates.push(b[0].column(0).as_primitive::<UInt64Type>().value(0));
    }
    // Relative standard error after a union at lg_k 12 is 1.62 %.
    let error = (estimates[0] as f64 - exact as f64).abs() / exact as f64;
    assert!(
        error <= 3.0 * 0.0162,
        "estimate {} vs exact {exact}",
        estimates[0]
    );
    assert_eq!(
        estimates[0], estimates[1],
        "identical input, identical sketches"
    );
}

#[tokio::test]
async fn a_second_compactor_waits_for_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let (hours, _) = fill_with_duplicates(&lake).await;
    let first = Compactor::new(lake.clone(), config(), "first");
    let second = Compactor::new(lake.clone(), config(), "second");
    // The first holds the lease (as in watch mode) but has not acted yet...
    first.run_pass().await.unwrap();
    let late = vec![
        event(9, 1, hours[0], 500, 200_000),
        event(9, 2, hours[0], 500, 200_001),
    ];
    append(&lake, &late).await;
    // ...so the second must not touch the table.
    let report = second.run_pass().await.unwrap();
    let t = report.table(TableId::EngagementEvents).unwrap();
    assert_eq!(t.lease_held_by.as_deref(), Some("first"), "{report}");
    assert!(t.rewrites.is_empty() && t.rolled_up.is_empty());
    assert_eq!(active_files(&lake, hours[0]).await, 2);
    // Once released, the second takes over.
    first.release().await.unwrap();
    let report = second.run_pass().await.unwrap();
    let t = report.table(TableId::EngagementEvents).unwrap();
    assert_eq!(t.lease_held_by, None);
    assert_eq!(t.rolled_up, vec![hours[0]]);
    assert_eq!(active_files(&lake, hours[0]).await, 1);
    // And a lease error names its holder.
    let store = lake
        .open(TableId::EngagementEvents)
        .await
        .unwrap()
        .unwrap()
        .log_store()
        .object_store(None);
    let err = crate::Lease::acquire(
        TableId::EngagementEvents,
        store,
        "third",
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, CompactorError::LeaseHeld { ref holder, .. } if holder == "second"),
        "{err}"
    );
    second.release().await.unwrap();
}

#[tokio::test]
async fn appends_during_compaction_are_never_lost_and_vacuum_keeps_the_table_whole() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let hour = Hour::of_micros(chrono::Utc::now().timestamp_micros() - 2 * 3_600_000_000);
    append(&lake, &[event(3, 0, hour, 100, 1)]).await;
    let writer_lake = lake.clone();
    let writer = tokio::spawn(async move {
        let mut offset = 1;
        for a in 0..40u64 {
            let rows: Vec<_> = (0..50u64)
                .map(|j| {
                    offset += 1;
                    event(3, 1 + a * 50 + j, hour, 100, offset)
                })
                .collect();
            append(&writer_lake, &rows).await;
        }
    });
    let compactor = Compactor::new(lake.clone(), config(), "test");
    let mut rewrites = 0;
    while !writer.is_finished() {
        let report = compactor.run_pass().await.unwrap();
        rewrites += report
            .table(TableId::EngagementEvents)
            .map_or(0, |t| t.rewrites.len());
    }
    writer.await.unwrap();
    compactor.run_pass().await.unwrap();
    assert!(rewrites > 0, "compaction ran while appends landed");
    assert_eq!(
        scalar_i64(&lake, "SELECT count(*) FROM engagement_events").await,
        2001
    );
    assert_eq!(
        scalar_i64(
            &lake,
            "SELECT count(DISTINCT event_id) FROM engagement_events"
        )
        .await,
        2001
    );
    assert_eq!(active_files(&lake, hour).await, 1);
    let exact_revenue = query(&lake, "SELECT sum(amount) FROM engagement_events").await;
    let rolled_revenue = query(
        &lake,
        "SELECT revenue FROM engagement_hourly WHERE event_type = 'ALL' AND device_type = 'ALL' AND app_version = 'ALL' AND country = 'ALL'",
    )
    .await;
    let exact = exact_revenue[0]
        .column(0)
        .as_primitive::<Float64Type>()
        .value(0);
    let rolled = rolled_revenue[0]
        .column(0)
        .as_primitive::<Float64Type>()
        .value(0);
    assert!((exact - rolled).abs() < 1e-6, "{exact} vs {rolled}");

    // Maintenance with no retention: the replaced files and an orphan (as a crashed
    // writer leaves) go, the table stays whole.
    let hour_dir = dir
        .path()
        .join("engagement_events")
        .join(format!("event_date={}", hour.date_string()))
        .join(format!("event_hour={}", hour.hour));
    let some_file = std::fs::read_dir(&hour_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(some_file, hour_dir.join("part-orphan-c000.zstd.parquet")).unwrap();
    let files_before = files_in(&lake, hour);
    let tidy = Compactor::new(
        lake.clone(),
        CompactorConfig {
            vacuum_retention: Duration::ZERO,
            ..config()
        },
        "test",
    );
    let report = tidy.run_pass_with_maintenance().await.unwrap();
    let m = report
        .table(TableId::EngagementEvents)
        .and_then(|t| t.maintenance.clone())
        .unwrap();
    assert!(
        m.files_vacuumed >= files_before - 1,
        "{m:?} of {files_before}"
    );
    assert_eq!(files_in(&lake, hour), 1);
    assert!(m.checkpoint_version.is_some());
    let log = dir.path().join("engagement_events/_delta_log");
    let checkpoints = std::fs::read_dir(log)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("checkpoint")
        })
        .count();
    assert!(checkpoints >= 1);
    assert_eq!(
        scalar_i64(&lake, "SELECT count(*) FROM engagement_events").await,
        2001
    );
    tidy.release().await.unwrap();
    compactor.release().await.unwrap();
}

fn rec_event(i: u64, hour: Hour, offset: i64) -> serde_json::Value {
    let r = mix(5, i);
    let kind = [
        "rec_served",
        "rec_impression",
        "rec_impression",
        "rec_click",
    ][(r % 4) as usize];
    let model = ["ranker-v1", "ranker-v2"][(r >> 8) as usize % 2];
    let surface = if (r >> 12).is_multiple_of(7) {
        None
    } else {
        Some(["home", "search"][(r >> 16) as usize % 2])
    };
    json!({
        "event_id": format!("rec-{i}"),
        "event_type": kind,
        "event_time": hour.start_micros() + (r % 3_600_000_000) as i64,
        "user_id": format!("user-{}", r % 50),
        "request_id": format!("req-{}", r % 100),
        "model_version": model,
        "surface": surface,
        "items": (kind == "rec_served").then(|| json!([{"item_id": "i1", "score": 0.5, "rank": 1}])),
        "item_id": (kind != "rec_served").then_some("i1"),
        "_kafka_topic": "rec-events",
        "_kafka_partition": 0,
        "_kafka_offset": offset,
        "_ingested_at": offset * 1000,
        "event_date": hour.date,
        "event_hour": hour.hour,
    })
}

async fn append_recs(lake: &Lake, rows: &[serde_json::Value]) {
    append_rows(lake, TableId::RecommendationEvents, rows).await;
}

#[tokio::test]
async fn dashboard_views_read_rollups_and_raw_hours_and_match_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let (closed, _) = fill_with_duplicates(&lake).await;
    // The current hour is still open: it stays raw, duplicates included.
    let open = Hour::of_micros(chrono::Utc::now().timestamp_micros());
    let mut rows: Vec<_> = (0..300u64)
        .map(|i| event(12, i, open, 40, 50_000 + i as i64))
        .collect();
    rows.extend((0..20u64).map(|i| event(12, i, open, 40, 60_000 + i as i64)));
    append(&lake, &rows).await;
    let mut recs: Vec<_> = (0..400u64)
        .map(|i| rec_event(i, closed[0], i as i64))
        .collect();
    recs.extend((400..600u64).map(|i| rec_event(i, open, i as i64)));
    recs.extend((0..30u64).map(|i| rec_event(i, closed[0], 1000 + i as i64))); // resends
    append_recs(&lake, &recs).await;
    // (Ten minutes of grace keep the current hour open even if it ends mid-test.)
    let open_config = CompactorConfig {
        closed_after: Duration::from_secs(600),
        ..config()
    };
    let compactor = Compactor::new(lake.clone(), open_config, "test");
    compactor.run_pass().await.unwrap();
    compactor.release().await.unwrap();

    let view = query(
        &lake,
        "SELECT event_date, event_hour, events, active_users, sessions, avg_session_length_ms, installs, \
           notification_views, notification_opens, purchases, revenue, source, p95_session_length_ms \
         FROM hourly_engagement ORDER BY event_date, event_hour",
    )
    .await;
    let exact = query(
        &lake,
        "SELECT event_date, event_hour, count(*) AS events, count(DISTINCT user_id) AS users, \
           sum(CASE WHEN event_type = 'session_start' THEN 1 ELSE 0 END) AS sessions, \
           avg(CAST(session_length_ms AS DOUBLE)) AS avg_len, \
           sum(CASE WHEN event_type = 'install' THEN 1 ELSE 0 END) AS installs, \
           sum(CASE WHEN event_type = 'notification_view' THEN 1 ELSE 0 END) AS nv, \
           sum(CASE WHEN event_type = 'notification_open' THEN 1 ELSE 0 END) AS no, \
           sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases, \
           coalesce(sum(amount), 0.0) AS revenue \
         FROM (SELECT DISTINCT event_id, event_type, user_id, session_length_ms, amount, event_date, event_hour \
               FROM engagement_events) GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
    let view = arrow::compute::concat_batches(&view[0].schema(), &view).unwrap();
    let exact = arrow::compute::concat_batches(&exact[0].schema(), &exact).unwrap();
    assert_eq!(view.num_rows(), 3);
    assert_eq!(exact.num_rows(), 3);
    let i64s = |b: &RecordBatch, c: usize| -> Vec<i64> {
        let col = arrow::compute::cast(b.column(c), &arrow::datatypes::DataType::Int64).unwrap();
        col.as_primitive::<Int64Type>().values().to_vec()
    };
    let f64s = |b: &RecordBatch, c: usize| -> Vec<f64> {
        let col = arrow::compute::cast(b.column(c), &arrow::datatypes::DataType::Float64).unwrap();
        col.as_primitive::<Float64Type>().values().to_vec()
    };
    assert_eq!(i64s(&view, 2), i64s(&exact, 2), "events");
    for (col_view, col_exact, what) in [
        (4, 4, "sessions"),
        (6, 6, "installs"),
        (7, 7, "notification views"),
        (8, 8, "notification opens"),
        (9, 9, "purchases"),
    ] {
        assert_eq!(i64s(&view, col_view), i64s(&exact, col_exact), "{what}");
    }
    for (v, e) in f64s(&view, 5).iter().zip(f64s(&exact, 5)) {
        assert!((v - e).abs() < 1e-6, "avg session length {v} vs {e}");
    }
    for (v, e) in f64s(&view, 10).iter().zip(f64s(&exact, 10)) {
        assert!((v - e).abs() < 1e-6, "revenue {v} vs {e}");
    }
    for (v, e) in i64s(&view, 3).iter().zip(i64s(&exact, 3)) {
        assert!(
            (v - e).abs() as f64 <= 0.02 * e as f64 + 1.0,
            "active users {v} vs {e}"
        );
    }
    let sources: Vec<String> = (0..3)
        .map(|i| {
            let col =
                arrow::compute::cast(view.column(11), &arrow::datatypes::DataType::Utf8).unwrap();
            col.as_string::<i32>().value(i).to_string()
        })
        .collect();
    assert_eq!(
        sources,
        ["rollup", "rollup", "raw"],
        "closed hours from rollups, the open one raw"
    );
    assert!(
        f64s(&view, 12).iter().all(|p| *p > 0.0),
        "p95 session length present"
    );

    // Daily active users from merged hourly sketches (rollup and raw hours together).
    let dau = query(
        &lake,
        "SELECT event_date, active_users FROM daily_active_users ORDER BY 1",
    )
    .await;
    let exact_dau = query(
        &lake,
        "SELECT event_date, count(DISTINCT user_id) FROM engagement_events GROUP BY 1 ORDER BY 1",
    )
    .await;
    let dau = arrow::compute::concat_batches(&dau[0].schema(), &dau).unwrap();
    let exact_dau = arrow::compute::concat_batches(&exact_dau[0].schema(), &exact_dau).unwrap();
    for (v, e) in i64s(&dau, 1).iter().zip(i64s(&exact_dau, 1)) {
        assert!(
            (v - e).abs() as f64 <= 3.0 * 0.0162 * e as f64 + 1.0,
            "DAU {v} vs {e}"
        );
    }

    // Recommendation CTR by model and surface, hour by hour.
    let mismatched = scalar_i64(
        &lake,
        "SELECT count(*) FROM recommendation_ctr v FULL OUTER JOIN ( \
           SELECT event_date, event_hour, coalesce(model_version, 'unknown') AS model_version, \
             coalesce(surface, 'unknown') AS surface, \
             sum(CASE WHEN event_type = 'rec_served' THEN 1 ELSE 0 END) AS served, \
             sum(CASE WHEN event_type = 'rec_impression' THEN 1 ELSE 0 END) AS impressions, \
             sum(CASE WHEN event_type = 'rec_click' THEN 1 ELSE 0 END) AS clicks \
           FROM (SELECT DISTINCT event_id, event_type, model_version, surface, event_date, event_hour FROM recommendation_events) \
           GROUP BY 1, 2, 3, 4) e \
         ON v.event_date = e.event_date AND v.event_hour = e.event_hour AND v.model_version = e.model_version \
           AND v.surface = e.surface \
         WHERE (v.served IS DISTINCT FROM e.served) OR (v.impressions IS DISTINCT FROM e.impressions) \
           OR (v.clicks IS DISTINCT FROM e.clicks)",
    )
    .await;
    assert_eq!(mismatched, 0);
    let ctr_sources = query(
        &lake,
        "SELECT DISTINCT source FROM recommendation_ctr ORDER BY 1",
    )
    .await;
    assert_eq!(ctr_sources[0].num_rows(), 2, "rollup and raw rows");
}

/// The audit finds a missing offset, a doubled one, and counts a ledger row only when
/// its copy is gone; with Kafka's range it also counts what was never ingested.
#[tokio::test]
async fn the_audit_finds_missing_and_doubled_offsets() {
    use crate::audit::{audit, KafkaRange};
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let hour = Hour::of_micros(1_700_000_000_000_000);
    // Offsets 0..10 of partition 0, without 4 (lost) and with 7 twice (doubled).
    let mut rows: Vec<serde_json::Value> = (0..10)
        .filter(|o| *o != 4)
        .map(|o| event(3, o as u64, hour, 50, o))
        .collect();
    rows.push(event(3, 100, hour, 50, 7));
    append(&lake, &rows).await;
    let exact = |a: &crate::audit::PartitionAudit| (a.expected, a.missing, a.doubled);
    let account = audit(&lake, &Default::default()).await.unwrap();
    assert_eq!(account.len(), 1);
    assert_eq!(exact(&account[0]), (10, 1, 1), "{account:?}");
    assert!(!account[0].is_exact());

    // A ledger row for offset 4 (its copy gone) accounts for it; one for offset 2 (its
    // copy still in the table: a rewrite that did not commit) changes nothing.
    let copy = |removed: i64| crate::dedup::RemovedCopy {
        removed: ("app-events".into(), 0, removed),
        event_id: format!("ev-{removed}"),
        kept: ("app-events".into(), 0, 0),
    };
    crate::ledger::record_removed(&lake, TableId::EngagementEvents, hour, &[copy(4), copy(2)])
        .await
        .unwrap();
    let account = audit(&lake, &Default::default()).await.unwrap();
    assert_eq!(exact(&account[0]), (10, 0, 1), "{account:?}");
    assert_eq!(account[0].removed_duplicates, 1);

    // Kafka says the partition holds 0..12 and a second partition 0..5 that never
    // arrived: 2 + 5 missing.
    let kafka = [
        (
            ("app-events".to_string(), 0),
            KafkaRange { start: 0, end: 12 },
        ),
        (
            ("app-events".to_string(), 1),
            KafkaRange { start: 0, end: 5 },
        ),
    ]
    .into_iter()
    .collect();
    let account = audit(&lake, &kafka).await.unwrap();
    assert_eq!(account.len(), 2);
    assert_eq!(exact(&account[0]), (12, 2, 1), "{account:?}");
    assert_eq!(exact(&account[1]), (5, 5, 0), "{account:?}");
}

/// The compactor's continuous audit leaves out what was ingested in the last two
/// minutes (another table's commit of the same flush may not have landed yet), still
/// finds a missing and a doubled offset below that, and publishes them per partition.
#[tokio::test]
async fn the_maintenance_audit_publishes_missing_offsets_of_settled_rows() {
    use crate::audit::audit_settled;
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let hour = Hour::of_micros(1_700_000_000_000_000);
    let now = chrono::Utc::now().timestamp_micros();
    // settled: offsets 0..10 without 4, with 7 twice (ingested in 1970)
    let mut rows: Vec<serde_json::Value> = (0..10)
        .filter(|o| *o != 4)
        .map(|o| event(5, o as u64, hour, 50, o))
        .collect();
    rows.push(event(5, 100, hour, 50, 7));
    // just ingested: offsets 20 and 21 (10..19 may be in a commit still landing)
    for o in [20, 21] {
        let mut fresh = event(5, 200 + o as u64, hour, 50, o);
        fresh["_ingested_at"] = json!(now);
        rows.push(fresh);
    }
    append(&lake, &rows).await;
    let removed = crate::dedup::RemovedCopy {
        removed: ("app-events".into(), 0, 30),
        event_id: "ev-30".into(),
        kept: ("app-events".into(), 0, 0),
    };
    crate::ledger::record_removed(&lake, TableId::EngagementEvents, hour, &[removed])
        .await
        .unwrap();

    let full = crate::audit::audit(&lake, &Default::default())
        .await
        .unwrap();
    assert_eq!((full[0].expected, full[0].missing), (31, 19), "{full:?}");
    let settled = audit_settled(&lake, now - 120_000_000).await.unwrap();
    assert_eq!(settled.len(), 1);
    let p = &settled[0];
    assert_eq!(
        (p.expected, p.missing, p.doubled),
        (10, 1, 1),
        "{settled:?}"
    );

    let compactor = Compactor::new(lake.clone(), config(), "audit-test");
    compactor.run_pass_with_maintenance().await.unwrap();
    compactor.release().await.unwrap();
    let label = vec![
        ("topic", "app-events".to_string()),
        ("partition", "0".to_string()),
    ];
    let metrics = compactor.metrics();
    assert_eq!(metrics.audits.get(), 1);
    assert_eq!(metrics.audit_missing.get_or_create(&label).get(), 1);
    assert_eq!(metrics.audit_doubled.get_or_create(&label).get(), 1);
}

/// A rewrite planned on a snapshot that a concurrent DELETE then changed (an erasure
/// rewrote the same files): deltalake refuses the rewrite's commit as a conflict, so the
/// deleted rows cannot come back; the retrying rewrite re-plans the hour on a fresh
/// snapshot and commits. Nothing deleted returns, nothing else is lost or doubled.
#[tokio::test]
async fn a_rewrite_that_loses_a_real_commit_race_is_replanned_and_commits() {
    use crate::plan::{files_by_hour, RewriteReason};
    use crate::rewrite::{is_commit_conflict, rewrite_hour, rewrite_hour_retrying};
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let hour = Hour::of_micros(chrono::Utc::now().timestamp_micros() - 3 * 3_600_000_000);
    for append_no in 0..4u64 {
        let rows: Vec<_> = (append_no * 50..append_no * 50 + 50)
            .map(|i| event(9, i, hour, 20, i as i64))
            .collect();
        append(&lake, &rows).await;
    }
    let count = |sql: &'static str| {
        let lake = lake.clone();
        async move { scalar_i64(&lake, sql).await }
    };
    let erased = count("SELECT count(*) FROM engagement_events WHERE user_id = 'user-3'").await;
    assert!(erased > 0);
    let id = TableId::EngagementEvents;
    let (config, factory) = (config(), SessionFactory::new(lake.clone()));
    // The compactor plans the hour now...
    let mut table = lake.open(id).await.unwrap().unwrap();
    let planned = files_by_hour(id, &table).unwrap().remove(&hour).unwrap();
    assert_eq!(planned.len(), 4);
    let store = table.log_store().object_store(None);
    let mut lease = crate::Lease::acquire(id, store, "race", Duration::from_secs(60))
        .await
        .unwrap();
    // ...and a DELETE of one user rewrites those files before the compactor commits.
    let other = lake.open(id).await.unwrap().unwrap();
    let (_, deleted) = other
        .delete()
        .with_predicate("user_id = 'user-3'")
        .await
        .unwrap();
    assert_eq!(deleted.num_deleted_rows, Some(erased as usize));
    let before = lake.open(id).await.unwrap().unwrap().version();

    // Committed as planned, the rewrite is refused: it would bring the rows back.
    let mut plain = table.clone();
    let lost = rewrite_hour(
        id,
        &mut plain,
        &factory,
        &config,
        &mut lease,
        hour,
        &planned,
        RewriteReason::ClosedHourFragmented,
    )
    .await
    .expect_err("a rewrite of files a DELETE replaced must not commit");
    assert!(is_commit_conflict(&lost), "{lost}");
    assert_eq!(lake.open(id).await.unwrap().unwrap().version(), before);

    // The retrying rewrite re-plans on the fresh snapshot and commits.
    let done = rewrite_hour_retrying(
        id,
        &mut table,
        &factory,
        &config,
        &mut lease,
        hour,
        &planned,
        RewriteReason::ClosedHourFragmented,
    )
    .await
    .unwrap();
    assert_eq!(done.rows_out, 200 - erased as u64);
    assert!(lake.open(id).await.unwrap().unwrap().version() > before);
    assert_eq!(active_files(&lake, hour).await, 1);
    assert_eq!(
        count("SELECT count(*) FROM engagement_events WHERE user_id = 'user-3'").await,
        0
    );
    let all = count("SELECT count(*) FROM engagement_events").await;
    let distinct = count("SELECT count(DISTINCT event_id) FROM engagement_events").await;
    assert_eq!((all, distinct), (200 - erased, 200 - erased));
    lease.release().await.unwrap();
}

/// `forget-user` end to end in the lake: the user's events, recommendation events,
/// dead letters and sessions are gone, the rollups of their hours are recomputed (the HLL count of
/// an hour drops by exactly one), every older version of the tables that time travel
/// still reaches returns nothing of the user, `erasure_log` holds a hash and counts,
/// and other users' rows are untouched.
#[tokio::test]
async fn erasing_a_user_removes_them_everywhere_including_sketches_and_old_versions() {
    use arrow::array::{
        BinaryArray, Date32Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use hourlake_catalog::rollup::ENGAGEMENT_HOURLY;
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let (a, b) = (
        Hour::of_micros(now - 5 * 3_600_000_000),
        Hour::of_micros(now - 3 * 3_600_000_000),
    );
    let ev = |id: String, user: &str, hour: Hour, offset: i64| {
        json!({"event_id": id, "event_type": "screen_view", "event_time": hour.start_micros() + offset,
               "user_id": user, "screen": "home", "country": "DE",
               "_kafka_topic": "app-events", "_kafka_partition": 0, "_kafka_offset": offset,
               "_ingested_at": offset, "event_date": hour.date, "event_hour": hour.hour})
    };
    // hour a: the victim and 9 others; hour b: the victim and 4 others; two commits each
    let mut offset = 0;
    for round in 0..2 {
        let mut rows = Vec::new();
        for (hour, others) in [(a, 9), (b, 4)] {
            for u in 0..=others {
                offset += 1;
                let user = if u == 0 {
                    "victim".to_string()
                } else {
                    format!("user-{u}")
                };
                rows.push(ev(format!("e-{round}-{offset}"), &user, hour, offset));
            }
        }
        append(&lake, &rows).await;
    }
    // hour c: only the victim (its rollup rows must go entirely)
    let c = Hour::of_micros(now - 7 * 3_600_000_000);
    append(&lake, &[ev("e-c".into(), "victim", c, 31)]).await;
    let mut rec = rec_event(1, a, 1000);
    rec["user_id"] = json!("victim");
    let mut other_rec = rec_event(2, a, 1001);
    other_rec["user_id"] = json!("user-1");
    append_recs(&lake, &[rec, other_rec]).await;
    // dead letters: by key, by a readable user_id in broken JSON, and someone else's
    let dead = RecordBatch::try_new(
        TableId::DeadLetters.schema(),
        vec![
            Arc::new(StringArray::from(vec!["app-events"; 3])),
            Arc::new(Int32Array::from(vec![0; 3])),
            Arc::new(Int64Array::from(vec![32, 33, 34])),
            Arc::new(BinaryArray::from(vec![
                Some(&b"victim"[..]),
                None,
                Some(&b"user-2"[..]),
            ])),
            Arc::new(TimestampMicrosecondArray::from(vec![None::<i64>; 3]).with_timezone("UTC")),
            Arc::new(BinaryArray::from(vec![
                &b"\xff not json"[..],
                &br#"{"user_id": "victim", "amount": }"#[..],
                &b"{broken"[..],
            ])),
            Arc::new(Int64Array::from(vec![10, 32, 7])),
            Arc::new(StringArray::from(vec!["bad_json"; 3])),
            Arc::new(StringArray::from(vec!["not JSON"; 3])),
            Arc::new(TimestampMicrosecondArray::from(vec![now; 3]).with_timezone("UTC")),
            Arc::new(Date32Array::from(vec![a.date; 3])),
        ],
    )
    .unwrap();
    lake.open_or_create(TableId::DeadLetters)
        .await
        .unwrap()
        .write(vec![dead])
        .with_save_mode(deltalake::protocol::SaveMode::Append)
        .await
        .unwrap();
    compact(&lake).await;

    let all_rows = ENGAGEMENT_HOURLY
        .dimensions
        .iter()
        .map(|d| format!("{d} = '{ALL_MEMBER}'"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let users_of = |hour: Hour| {
        format!(
            "SELECT CAST(hll_estimate(users_sketch) AS BIGINT) FROM engagement_hourly WHERE {all_rows} AND {}",
            hour.sql_predicate()
        )
    };
    assert_eq!(scalar_i64(&lake, &users_of(a)).await, 10);
    assert_eq!(scalar_i64(&lake, &users_of(c)).await, 1);
    assert_eq!(scalar_i64(&lake, &users_of(b)).await, 5);
    let per_user = "SELECT user_id, count(*) FROM engagement_events GROUP BY 1 ORDER BY 1";
    let before_rows = |batches: Vec<RecordBatch>| {
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    };
    let others_before = before_rows(
        query(
            &lake,
            &per_user.replace("GROUP BY", "WHERE user_id <> 'victim' GROUP BY"),
        )
        .await,
    );
    let versions_before = |id: TableId| {
        let lake = lake.clone();
        async move { lake.open(id).await.unwrap().unwrap().version().unwrap() }
    };
    let event_versions = versions_before(TableId::EngagementEvents).await;
    let rollup_versions = versions_before(TableId::EngagementHourly).await;
    let session_versions = versions_before(TableId::Sessions).await;
    let victim_sessions = "SELECT count(*) FROM sessions WHERE user_id = 'victim'";
    assert_eq!(scalar_i64(&lake, victim_sessions).await, 3, "hours c, a, b");

    let checks = [
        (
            TableId::EngagementEvents,
            event_versions,
            "SELECT count(*) FROM t WHERE user_id = 'victim'".to_string(),
        ),
        (
            TableId::Sessions,
            session_versions,
            "SELECT count(*) FROM t WHERE user_id = 'victim'".to_string(),
        ),
        (
            TableId::EngagementHourly,
            rollup_versions,
            format!(
                "SELECT CAST(hll_estimate(users_sketch) AS BIGINT) - 9 FROM t WHERE {all_rows} AND {}",
                a.sql_predicate()
            ),
        ),
    ];
    for (id, upto, sql) in &checks {
        assert!(versions_returning(&lake, *id, *upto, sql).await > 0, "{id}");
    }

    let request = crate::erasure::enqueue(&lake, &["victim".to_string()])
        .await
        .unwrap();
    assert!(crate::erasure::is_pending(&lake, &request.id)
        .await
        .unwrap());
    let compactor = Compactor::new(lake.clone(), config(), "eraser");
    let reports = compactor.process_erasures().await.unwrap();
    compactor.release().await.unwrap();
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(report.rows_removed.get("engagement_events"), Some(&5));
    assert_eq!(report.rows_removed.get("recommendation_events"), Some(&1));
    assert_eq!(report.rows_removed.get("dead_letters"), Some(&2));
    assert_eq!(report.rows_removed.get("sessions"), Some(&3));
    assert_eq!(
        report.hours_recomputed, 4,
        "engagement a, b and c, recommendation a"
    );
    assert!(report.files_purged > 0);
    assert!(!crate::erasure::is_pending(&lake, &request.id)
        .await
        .unwrap());

    // gone from every table, rollups recomputed, others untouched
    for sql in [
        "SELECT count(*) FROM engagement_events WHERE user_id = 'victim'",
        "SELECT count(*) FROM recommendation_events WHERE user_id = 'victim'",
        "SELECT count(*) FROM dead_letters WHERE kafka_key = X'76696374696d' OR _kafka_offset = 33",
    ] {
        assert_eq!(scalar_i64(&lake, sql).await, 0, "{sql}");
    }
    assert_eq!(
        scalar_i64(&lake, "SELECT count(*) FROM dead_letters").await,
        1
    );
    assert_eq!(
        scalar_i64(&lake, "SELECT count(*) FROM recommendation_events").await,
        1
    );
    let rollup_rows_of_c = format!(
        "SELECT count(*) FROM engagement_hourly WHERE {}",
        c.sql_predicate()
    );
    assert_eq!(scalar_i64(&lake, &rollup_rows_of_c).await, 0);
    assert_eq!(scalar_i64(&lake, victim_sessions).await, 0);
    assert_eq!(
        scalar_i64(
            &lake,
            &rollup_rows_of_c.replace("engagement_hourly", "sessions_hourly")
        )
        .await,
        0,
        "the victim's session was the only one starting in hour c"
    );
    assert_eq!(scalar_i64(&lake, &users_of(a)).await, 9);
    assert_eq!(scalar_i64(&lake, &users_of(b)).await, 4);
    let others_after = before_rows(query(&lake, per_user).await);
    assert_eq!(others_before, others_after);

    // no older version still reachable returns the user: its files are gone (an error)
    // or it never held them (the same check found them in every version before)
    for (id, upto, sql) in &checks {
        assert_eq!(
            versions_returning(&lake, *id, *upto, sql).await,
            0,
            "{id}: an older version still returns the user"
        );
    }

    // every offset still in exactly one place: the erased ones count as expired
    let account = crate::audit::audit(&lake, &Default::default())
        .await
        .unwrap();
    assert!(account.iter().all(|p| p.is_exact()), "{account:?}");
    let expired: i64 = account.iter().map(|p| p.expired).sum();
    assert_eq!(expired, 8, "5 + 1 events and 2 dead letters: {account:?}");

    // the log: one row, a salted hash, never the id
    let logged = query(
        &lake,
        "SELECT request_id, user_hash, rows_removed, tables FROM erasure_log",
    )
    .await;
    let text = arrow::util::pretty::pretty_format_batches(&logged)
        .unwrap()
        .to_string();
    assert_eq!(logged.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    assert!(
        text.contains(&request.id) && text.contains("| 8 "),
        "{text}"
    );
    assert!(
        text.contains("engagement_events,recommendation_events,dead_letters,sessions"),
        "{text}"
    );
    assert!(!text.contains("victim"), "{text}");
}

/// How many versions `0..=upto` of `id` answer `sql` (over the version registered as
/// `t`) with a positive number; a version that cannot be read counts as none.
async fn versions_returning(lake: &Lake, id: TableId, upto: u64, sql: &str) -> usize {
    let factory = SessionFactory::new(lake.clone());
    let mut returning = 0;
    for version in 0..=upto {
        let mut table = lake.open(id).await.unwrap().unwrap();
        if table.load_version(version).await.is_err() {
            continue;
        }
        let ctx = factory.context().unwrap();
        if hourlake_sql::register_table(&ctx, "t", &table)
            .await
            .is_err()
        {
            continue;
        }
        let Ok(df) = ctx.sql(sql).await else { continue };
        let Ok(batches) = df.collect().await else {
            continue;
        };
        let positive = batches.iter().any(|b| {
            let col =
                arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64).unwrap();
            col.as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .any(|n| n > 0)
        });
        returning += usize::from(positive);
    }
    returning
}
