//! The snapshot scan against deltalake's provider over real Delta tables on disk: the
//! same answers, files outside the log never read, plans that serialize, refusals.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Date32Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::protocol::SaveMode;
use deltalake::TableProperty;
use hourlake_catalog::partition::hour_start_micros;
use hourlake_catalog::rollup::{
    dimension_value_sql, Rollup, ALL_MEMBER, COMPUTED_AT, ENGAGEMENT_HOURLY,
    ENGAGEMENT_HOURLY_TOTALS, RECOMMENDATION_HOURLY, SOURCE_VERSION,
};
use hourlake_catalog::schema::{EVENT_DATE, EVENT_HOUR};
use hourlake_catalog::{Hour, Lake, TableId};
use hourlake_testkit::events::{engagement_batch, recommendation_batch};

use super::FileIndex;
use crate::plan_info::files_scanned;
use crate::{ScanKind, SessionFactory, SqlError};

/// The first of the two days the events happen in.
const DAY: i32 = 20_400;

async fn append(lake: &Lake, table: TableId, batch: RecordBatch) {
    lake.open_or_create(table)
        .await
        .unwrap()
        .write(vec![batch])
        .with_save_mode(SaveMode::Append)
        .await
        .unwrap();
}

/// Dead letters: a few rows on two ingest dates, with and without a key.
fn dead_letters() -> RecordBatch {
    let n = 4;
    let at = |i: i64| hour_start_micros(DAY, 0) + i * 40_000_000_000;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["app-events"; n])),
        Arc::new(Int32Array::from(vec![0, 1, 0, 1])),
        Arc::new(Int64Array::from(vec![7, 8, 9, 10])),
        Arc::new(BinaryArray::from(vec![
            Some(&b"k"[..]),
            None,
            Some(b"key"),
            None,
        ])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![Some(at(0)), None, None, Some(at(3))])
                .with_timezone("UTC"),
        ),
        Arc::new(BinaryArray::from(vec![&b"{"[..], b"[]", b"\xff", b"{}"])),
        Arc::new(Int64Array::from(vec![1, 2, 1, 2])),
        Arc::new(StringArray::from(vec![
            "malformed_json",
            "not_an_object",
            "not_utf8",
            "missing_field",
        ])),
        Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
        Arc::new(
            TimestampMicrosecondArray::from((0..4).map(at).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        Arc::new(Date32Array::from(vec![DAY, DAY, DAY + 1, DAY + 1])),
    ];
    RecordBatch::try_new(TableId::DeadLetters.schema(), columns).unwrap()
}

/// The rows of `rollup` for the hours of `day`, grouped by the dimensions `by` (`ALL`
/// for the others), computed from its source in `ctx` and written as one commit.
async fn write_rollup(lake: &Lake, ctx: &SessionContext, rollup: &Rollup, by: &[&str], day: i32) {
    let dims: Vec<String> = rollup
        .dimensions
        .iter()
        .map(|d| {
            if by.contains(d) {
                format!("{} AS {d}", dimension_value_sql(d))
            } else {
                format!("'{ALL_MEMBER}' AS {d}")
            }
        })
        .collect();
    let group_by: Vec<String> = [EVENT_DATE.to_string(), EVENT_HOUR.to_string()]
        .into_iter()
        .chain(by.iter().map(|d| dimension_value_sql(d)))
        .collect();
    let date = Hour { date: day, hour: 0 }.date_string();
    let sql = format!(
        "SELECT {EVENT_HOUR}, {}{}, CAST(1 AS BIGINT) AS {SOURCE_VERSION}, \
         now() AS {COMPUTED_AT}, {EVENT_DATE} FROM {} WHERE {EVENT_DATE} = DATE '{date}' \
         GROUP BY {}",
        dims.iter().map(|d| format!("{d}, ")).collect::<String>(),
        rollup.measures_sql(),
        rollup.source,
        group_by.join(", "),
    );
    let schema = rollup.schema();
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let batches = batches
        .into_iter()
        .map(|b| {
            let columns = schema
                .fields()
                .iter()
                .zip(b.columns())
                .map(|(f, c)| arrow::compute::cast(c, f.data_type()).unwrap())
                .collect();
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        })
        .collect::<Vec<_>>();
    lake.open_or_create(rollup.table)
        .await
        .unwrap()
        .write(batches)
        .with_save_mode(SaveMode::Append)
        .await
        .unwrap();
}

/// A lake of two days of events (engagement in three commits, so most hours have
/// several files; recommendations in two), dead letters, and rollups of the first day:
/// the views read rollup rows for it and raw events for the second.
async fn lake(dir: &std::path::Path) -> Lake {
    let lake = Lake::local(dir).unwrap();
    for (from, to) in [(0, 1_500), (1_500, 3_000), (3_000, 4_000)] {
        append(
            &lake,
            TableId::EngagementEvents,
            engagement_batch(DAY, 2, from, to, 1_000_000),
        )
        .await;
    }
    for (from, to) in [(0, 1_000), (1_000, 1_600)] {
        append(
            &lake,
            TableId::RecommendationEvents,
            recommendation_batch(DAY, 2, from, to),
        )
        .await;
    }
    append(&lake, TableId::DeadLetters, dead_letters()).await;
    let ctx = SessionFactory::new(lake.clone()).session().await.unwrap();
    write_rollup(&lake, &ctx, &ENGAGEMENT_HOURLY, &[], DAY).await;
    write_rollup(&lake, &ctx, &ENGAGEMENT_HOURLY_TOTALS, &[], DAY).await;
    write_rollup(
        &lake,
        &ctx,
        &RECOMMENDATION_HOURLY,
        &["model_version", "surface"],
        DAY,
    )
    .await;
    lake
}

/// A session over the lake's newest versions, read with `scan`.
async fn session(lake: &Lake, scan: ScanKind) -> SessionContext {
    SessionFactory::new(lake.clone())
        .with_scan(scan)
        .session()
        .await
        .unwrap()
}

/// The rows `sql` answers, each as text, sorted; floating-point values to 9 digits
/// (sums may add in another order when the files are split otherwise).
async fn answer(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows(&batches)
}

fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<Box<dyn Fn(usize) -> String>> = batch
            .columns()
            .iter()
            .map(|c| -> Box<dyn Fn(usize) -> String> {
                if matches!(c.data_type(), DataType::Float32 | DataType::Float64) {
                    let c = arrow::compute::cast(c, &DataType::Float64).unwrap();
                    Box::new(move |i| {
                        let values = c.as_primitive::<Float64Type>();
                        if values.is_valid(i) {
                            format!("{:.9e}", values.value(i))
                        } else {
                            "NULL".to_string()
                        }
                    })
                } else {
                    let c = c.clone();
                    Box::new(move |i| {
                        let options = FormatOptions::default().with_null("NULL");
                        ArrayFormatter::try_new(c.as_ref(), &options)
                            .unwrap()
                            .value(i)
                            .to_string()
                    })
                }
            })
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c(i)).collect::<Vec<_>>().join(" | "));
        }
    }
    rows.sort();
    rows
}

/// The files a physical plan reads, by path.
fn scanned_paths(plan: &dyn ExecutionPlan) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    if let Some(source) = plan.downcast_ref::<DataSourceExec>() {
        if let Some(config) = source.data_source().downcast_ref::<FileScanConfig>() {
            for group in &config.file_groups {
                paths.extend(group.iter().map(|f| f.path().to_string()));
            }
        }
    }
    for child in plan.children() {
        paths.extend(scanned_paths(child.as_ref()));
    }
    paths
}

async fn physical_plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .create_physical_plan()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `SELECT count(*), sum(_kafka_offset)` of the engagement events (a sum, so that the
/// files are read rather than answered from their statistics).
const COUNT_AND_SUM: &str =
    "SELECT count(*), sum(_kafka_offset) FROM engagement_events WHERE _kafka_offset >= 0";

/// `hourly_engagement`, its users' sketch as its estimate.
const HOURLY_ENGAGEMENT: &str =
    "SELECT event_date, event_hour, events, active_users, sessions, avg_session_length_ms, \
     p95_session_length_ms, installs, notification_views, notification_opens, \
     notification_open_rate, purchases, revenue, source, hll_estimate(users_sketch) \
     FROM hourly_engagement";

/// Text of an hour's start, for SQL timestamps.
fn at(day: i32, hour: i32) -> String {
    let t = hour_start_micros(day, hour);
    chrono::DateTime::from_timestamp_micros(t)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_what_the_delta_provider_answers() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    let delta = session(&lake, ScanKind::Delta).await;
    let snapshot = session(&lake, ScanKind::Snapshot).await;

    // Every table the lake holds has the schema deltalake's provider gives it (this
    // lake has no removed duplicates, expired offsets or erasures, so no ledgers, and
    // was not filled by ingest, so no loss accounting, and no compactor closed an hour,
    // so no quality figures and no sessions).
    let optional = |t: &TableId| {
        TableId::LEDGERS.contains(t)
            || TableId::ACCOUNTING.contains(t)
            || TableId::QUALITY.contains(t)
            || [
                TableId::Sessions,
                TableId::SessionsHourly,
                TableId::SessionsHourlyTotals,
            ]
            .contains(t)
    };
    let mut compared = 0;
    for table in TableId::ALL {
        if !delta.table_exist(table.name()).unwrap() {
            assert!(optional(table), "{table}");
            continue;
        }
        compared += 1;
        let sql = format!("SELECT * FROM {table}");
        let of = |ctx: &SessionContext| {
            let sql = sql.clone();
            let ctx = ctx.clone();
            async move { ctx.sql(&sql).await.unwrap().schema().clone() }
        };
        assert_eq!(of(&delta).await, of(&snapshot).await, "{table}");
    }
    assert_eq!(
        compared,
        TableId::ALL.iter().filter(|t| !optional(t)).count()
    );

    let (from, to) = (at(DAY, 5), at(DAY + 1, 2));
    let day2 = Hour {
        date: DAY + 1,
        hour: 0,
    }
    .date_string();
    let queries = [
        // Dashboard views: rollup rows (first day) and raw events (second day).
        HOURLY_ENGAGEMENT.to_string(),
        "SELECT * FROM daily_active_users".to_string(),
        "SELECT * FROM recommendation_ctr".to_string(),
        // Counts, group-bys, sketches.
        "SELECT count(*) FROM engagement_events".to_string(),
        COUNT_AND_SUM.to_string(),
        "SELECT count(*), count(DISTINCT user_id), sum(session_length_ms), min(event_time), \
         max(event_time), min(_kafka_offset), max(_kafka_offset) FROM engagement_events".to_string(),
        "SELECT event_type, device_type, count(*), sum(session_length_ms), sum(amount) \
         FROM engagement_events GROUP BY 1, 2".to_string(),
        "SELECT event_type, hll_count_distinct(user_id), count(DISTINCT user_id) \
         FROM engagement_events GROUP BY 1".to_string(),
        // Fewer than 200 session lengths per hour: the KLL sketch does not compact.
        "SELECT event_date, event_hour, count(session_length_ms), \
         quantile_estimate(quantile_sketch(session_length_ms), 0.5), \
         quantile_estimate(quantile_sketch(session_length_ms), 0.95) \
         FROM engagement_events GROUP BY 1, 2".to_string(),
        // event_time ranges (hidden partitioning), partition filters, other filters.
        format!("SELECT event_date, event_hour, count(*) FROM engagement_events \
                 WHERE event_time >= TIMESTAMP '{from}' AND event_time < TIMESTAMP '{to}' GROUP BY 1, 2"),
        format!("SELECT count(*) FROM engagement_events WHERE event_time BETWEEN TIMESTAMP '{from}' AND TIMESTAMP '{to}'"),
        format!("SELECT count(*) FROM engagement_events WHERE CAST(event_time AS DATE) = DATE '{day2}'"),
        format!("SELECT count(*), sum(_kafka_offset) FROM engagement_events \
                 WHERE {EVENT_DATE} = DATE '{day2}' AND {EVENT_HOUR} IN (3, 4)"),
        "SELECT count(*) FROM engagement_events WHERE _kafka_offset > 3500".to_string(),
        "SELECT count(*) FROM engagement_events WHERE event_hour = 99".to_string(),
        // Every column, and a limit (with and without an order).
        "SELECT * FROM engagement_events ORDER BY _kafka_offset LIMIT 5".to_string(),
        "SELECT count(*) FROM (SELECT * FROM engagement_events LIMIT 7)".to_string(),
        "SELECT count(*) FROM (SELECT 1 FROM engagement_events LIMIT 2)".to_string(),
        // Nested columns, a join, the other tables.
        "SELECT * FROM recommendation_events ORDER BY _kafka_offset LIMIT 3".to_string(),
        "SELECT model_version, surface, count(*), sum(array_length(items)) \
         FROM recommendation_events GROUP BY 1, 2".to_string(),
        "SELECT r.surface, count(*) FROM recommendation_events r JOIN engagement_events e \
         ON r.user_id = e.user_id AND e.event_type = 'purchase' GROUP BY 1".to_string(),
        "SELECT * FROM dead_letters".to_string(),
        "SELECT count(*) FROM dead_letters WHERE ingest_date > DATE '2025-01-01'".to_string(),
        "SELECT event_date, event_hour, event_type, events, hll_estimate(users_sketch), \
         quantile_estimate(session_length_sketch, 0.9) FROM engagement_hourly".to_string(),
        "SELECT * FROM recommendation_hourly".to_string(),
    ];
    for sql in &queries {
        let expected = answer(&delta, sql).await;
        assert!(!expected.is_empty(), "{sql}");
        assert_eq!(answer(&snapshot, sql).await, expected, "{sql}");
    }
    // The views did read both rollup and raw rows.
    let sources = answer(&snapshot, "SELECT DISTINCT source FROM hourly_engagement").await;
    assert_eq!(sources, ["raw", "rollup"]);

    // An event_time range reads only its hours' files, as deltalake's scan does, and
    // every file of the table without it.
    let ranged = format!(
        "SELECT count(*), sum(_kafka_offset) FROM engagement_events \
         WHERE event_time >= TIMESTAMP '{from}' AND event_time < TIMESTAMP '{to}'"
    );
    let pruned = files_scanned(physical_plan(&snapshot, &ranged).await.as_ref());
    let plan = physical_plan(&snapshot, COUNT_AND_SUM).await;
    let shown = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    assert!(
        shown.contains("DataSourceExec") && !shown.contains("DeltaScan"),
        "{shown}"
    );
    let all = files_scanned(plan.as_ref());
    assert_eq!(
        pruned,
        files_scanned(physical_plan(&delta, &ranged).await.as_ref())
    );
    assert_eq!(
        all,
        files_scanned(physical_plan(&delta, COUNT_AND_SUM).await.as_ref())
    );
    assert!(0 < pruned && pruned < all, "{pruned} of {all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn never_reads_files_the_log_does_not_list() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    for (from, to) in [(0, 600), (600, 1_200)] {
        append(
            &lake,
            TableId::EngagementEvents,
            engagement_batch(DAY, 1, from, to, 1_000_000),
        )
        .await;
    }
    let before = answer(&session(&lake, ScanKind::Snapshot).await, COUNT_AND_SUM).await;
    assert_eq!(
        before,
        answer(&session(&lake, ScanKind::Delta).await, COUNT_AND_SUM).await
    );

    // An orphan: a copy of a data file in an hour folder, in no commit.
    let table = lake.open(TableId::EngagementEvents).await.unwrap().unwrap();
    let file = table
        .snapshot()
        .unwrap()
        .log_data()
        .iter()
        .next()
        .unwrap()
        .path()
        .to_string();
    let folder = dir.path().join(TableId::EngagementEvents.name());
    let orphan = folder.join(std::path::Path::new(&file).with_file_name("part-orphan.parquet"));
    std::fs::copy(folder.join(&file), &orphan).unwrap();
    let snapshot = session(&lake, ScanKind::Snapshot).await;
    assert_eq!(answer(&snapshot, COUNT_AND_SUM).await, before);
    let plan = physical_plan(&snapshot, COUNT_AND_SUM).await;
    assert!(scanned_paths(plan.as_ref())
        .iter()
        .all(|p| !p.ends_with("part-orphan.parquet")));

    // A compaction-like rewrite (remove + add in one commit): the old files stay on
    // disk until vacuum, and are not read.
    let old = scanned_paths(plan.as_ref());
    let (compacted, metrics) = table.optimize().await.unwrap();
    assert!(metrics.num_files_removed > 0);
    assert_eq!(compacted.version(), Some(3));
    for path in &old {
        assert!(std::path::Path::new(&format!("/{path}")).exists(), "{path}");
    }
    let snapshot = session(&lake, ScanKind::Snapshot).await;
    assert_eq!(answer(&snapshot, COUNT_AND_SUM).await, before);
    let new = scanned_paths(physical_plan(&snapshot, COUNT_AND_SUM).await.as_ref());
    assert!(
        !new.is_empty() && new.len() < old.len(),
        "{} of {}",
        new.len(),
        old.len()
    );
    assert!(new.is_disjoint(&old));
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_round_trip_through_datafusion_proto() {
    use datafusion_proto::bytes::{physical_plan_from_bytes, physical_plan_to_bytes};

    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    let snapshot = session(&lake, ScanKind::Snapshot).await;
    let (from, to) = (at(DAY, 20), at(DAY + 1, 4));
    let queries = [
        format!(
            "SELECT event_type, count(*), sum(session_length_ms), hll_count_distinct(user_id) \
                 FROM engagement_events WHERE event_time >= TIMESTAMP '{from}' \
                 AND event_time < TIMESTAMP '{to}' AND device_type <> 'web' GROUP BY 1"
        ),
        // Ordered: which rows an unordered LIMIT keeps depends on which scan
        // partition answers first.
        "SELECT event_id, user_id, event_date, event_hour FROM engagement_events \
         WHERE event_hour = 3 ORDER BY event_id LIMIT 4"
            .to_string(),
        // (Not the sketch's bytes: a union's bytes depend on the order partial sketches
        // merge in, which differs from run to run; its estimate does not.)
        HOURLY_ENGAGEMENT.to_string(),
    ];
    for sql in &queries {
        let plan = physical_plan(&snapshot, sql).await;
        let bytes = physical_plan_to_bytes(plan.clone()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let decoded = physical_plan_from_bytes(&bytes, &snapshot.task_ctx())
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(
            scanned_paths(decoded.as_ref()),
            scanned_paths(plan.as_ref()),
            "{sql}"
        );
        let run = |plan| datafusion::physical_plan::collect(plan, snapshot.task_ctx());
        let (expected, got) = (run(plan).await.unwrap(), run(decoded).await.unwrap());
        assert!(!expected.is_empty(), "{sql}");
        assert_eq!(rows(&got), rows(&expected), "{sql}");
    }
    // deltalake's own scan is what cannot travel.
    let delta = session(&lake, ScanKind::Delta).await;
    let plan = physical_plan(&delta, &queries[0]).await;
    assert!(physical_plan_to_bytes(plan).is_err());
}

/// The typed refusal inside a DataFusion error.
fn refusal(error: &DataFusionError) -> Option<(&str, &str)> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(SqlError::UnsupportedTable { table, feature }) = e.downcast_ref::<SqlError>() {
            return Some((table, feature));
        }
        source = e.source();
    }
    None
}

/// Creates the lake's table `id` as another writer might: with `property` set. Returns
/// its protocol action.
async fn create_with(
    lake: &Lake,
    id: TableId,
    property: TableProperty,
    value: &str,
) -> serde_json::Value {
    let url = lake.table_url(id).unwrap();
    std::fs::create_dir_all(url.to_file_path().unwrap()).unwrap();
    let schema: deltalake::kernel::StructType =
        TryFromArrow::try_from_arrow(id.schema().as_ref()).unwrap();
    let table = deltalake::DeltaTableBuilder::from_url(url)
        .unwrap()
        .build()
        .unwrap()
        .create()
        .with_columns(schema.fields().cloned())
        .with_partition_columns(id.partition_columns().iter().copied())
        .with_configuration_property(property, Some(value))
        .await
        .unwrap();
    serde_json::to_value(table.snapshot().unwrap().protocol()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_tables_with_deletion_vectors_or_column_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let batch = recommendation_batch(DAY, 1, 0, 100);
    append(&lake, TableId::RecommendationEvents, batch).await;
    // Other writers' tables: engagement events with deletion vectors enabled (and rows),
    // dead letters with column mapping.
    let dv = TableId::EngagementEvents;
    let protocol = create_with(&lake, dv, TableProperty::EnableDeletionVectors, "true").await;
    assert_eq!(
        protocol["readerFeatures"],
        serde_json::json!(["deletionVectors"])
    );
    append(&lake, dv, engagement_batch(DAY, 1, 0, 100, 1_000)).await;
    // (A legacy protocol, reader version 2: no feature list, only the table property.)
    let mapped = TableId::DeadLetters;
    let protocol = create_with(&lake, mapped, TableProperty::ColumnMappingMode, "name").await;
    assert_eq!(protocol["minReaderVersion"], 2, "{protocol}");

    // deltalake reads them; the snapshot scan refuses each by name, and reads the rest.
    let delta = session(&lake, ScanKind::Delta).await;
    let count = "SELECT count(*) FROM engagement_events";
    assert_ne!(answer(&delta, count).await, ["0"]);
    assert_eq!(
        answer(&delta, "SELECT count(*) FROM dead_letters").await,
        ["0"]
    );
    let snapshot = session(&lake, ScanKind::Snapshot).await;
    for (id, feature) in [(dv, "deletionVectors"), (mapped, "columnMapping")] {
        let sql = format!("SELECT count(*) FROM {id}");
        let error = snapshot
            .sql(&sql)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert_eq!(refusal(&error), Some((id.name(), feature)), "{error}");
        // The same refusal straight from the file listing.
        let table = lake.open(id).await.unwrap().unwrap();
        let listed = FileIndex::from_snapshot(&lake, id, &table, &id.schema());
        assert!(
            matches!(&listed, Err(SqlError::UnsupportedTable { feature: f, .. }) if f == feature),
            "{listed:?}"
        );
    }
    let rows = answer(&snapshot, "SELECT count(*) FROM recommendation_events").await;
    assert_eq!(rows, ["100"]);
}
