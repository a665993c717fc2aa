use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    new_null_array, ArrayRef, AsArray, Date32Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{cast, col, lit, try_cast, Expr};
use datafusion::prelude::SessionContext;
use deltalake::protocol::SaveMode;
use hourlake_catalog::partition::date_and_hour;
use hourlake_catalog::schema::{
    EVENT_DATE, EVENT_HOUR, INGESTED_AT, KAFKA_OFFSET, KAFKA_PARTITION,
};
use hourlake_catalog::{Lake, TableId};

use super::{partition_filters, Step, EVENT_TIME};
use crate::plan_info::files_scanned;
use crate::SessionFactory;

const MICROS_PER_HOUR: i64 = 3_600_000_000;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

fn ts(v: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(v),
        Some("UTC".into()),
    ))
}

fn events() -> Arc<Schema> {
    TableId::EngagementEvents.schema()
}

/// 2026-11-22T13:45Z
const T: i64 = 1_795_355_100_000_000;

#[test]
fn event_time_bounds_become_partition_bounds() {
    let schema = events();
    let (d, h) = date_and_hour(T);
    let date = lit(ScalarValue::Date32(Some(d)));
    let ge = partition_filters(&col(EVENT_TIME).gt_eq(ts(T)), &schema);
    assert_eq!(
        ge,
        vec![col(EVENT_DATE)
            .gt(date.clone())
            .or(col(EVENT_DATE).eq(date).and(col(EVENT_HOUR).gt_eq(lit(h))))]
    );
    // literal on the left, BETWEEN, AND of both, and things it must leave alone
    assert_eq!(
        partition_filters(&ts(T).lt_eq(col(EVENT_TIME)), &schema),
        ge
    );
    assert_eq!(
        partition_filters(&col(EVENT_TIME).between(ts(T), ts(T + 1)), &schema).len(),
        2
    );
    assert_eq!(
        partition_filters(
            &col(EVENT_TIME).gt(ts(T)).and(col(EVENT_TIME).lt(ts(T + 1))),
            &schema
        )
        .len(),
        2
    );
    assert!(partition_filters(&col("user_id").eq(lit("u")), &schema).is_empty());
    assert!(partition_filters(&col(EVENT_TIME).not_eq(ts(T)), &schema).is_empty());
    assert!(partition_filters(&col(EVENT_TIME).gt(col("_ingested_at")), &schema).is_empty());
    assert!(partition_filters(
        &col(EVENT_TIME).lt(ts(T)).or(col(EVENT_TIME).gt(ts(T + 1))),
        &schema
    )
    .is_empty());
    assert!(partition_filters(&!col(EVENT_TIME).lt(ts(T)), &schema).is_empty());
}

#[test]
fn strict_bounds_are_tight_at_hour_boundaries() {
    let schema = events();
    let hour = T - T.rem_euclid(MICROS_PER_HOUR);
    // `< 14:00` cannot be in hour 14, `> 13:59:59.999999` cannot be in hour 13.
    assert_eq!(
        partition_filters(&col(EVENT_TIME).lt(ts(hour)), &schema),
        partition_filters(&col(EVENT_TIME).lt_eq(ts(hour - 1)), &schema)
    );
    assert_eq!(
        partition_filters(&col(EVENT_TIME).gt(ts(hour - 1)), &schema),
        partition_filters(&col(EVENT_TIME).gt_eq(ts(hour)), &schema)
    );
}

#[test]
fn only_value_preserving_casts_are_seen_through() {
    let schema = events();
    let c = |data_type: DataType| cast(col(EVENT_TIME), data_type);
    let ts_ns = |v: i64, tz: Option<&str>| {
        lit(ScalarValue::TimestampNanosecond(
            Some(v),
            tz.map(Into::into),
        ))
    };
    // UTC timestamps of any unit, with or without a zone, and dates: seen through.
    for tz in [None, Some("UTC"), Some("+00:00")] {
        let to_ns = c(DataType::Timestamp(
            TimeUnit::Nanosecond,
            tz.map(Into::into),
        ));
        assert_eq!(
            partition_filters(&to_ns.gt_eq(ts_ns(T * 1000, tz)), &schema).len(),
            1,
            "{tz:?}"
        );
    }
    let day = i32::try_from(T.div_euclid(MICROS_PER_DAY)).unwrap();
    let on_day = c(DataType::Date32).eq(lit(ScalarValue::Date32(Some(day))));
    assert_eq!(partition_filters(&on_day, &schema).len(), 2);
    let try_day =
        try_cast(col(EVENT_TIME), DataType::Date32).eq(lit(ScalarValue::Date32(Some(day))));
    assert_eq!(partition_filters(&try_day, &schema).len(), 2);
    // Another zone, strings, integers, Date64 and functions: not seen through.
    let plus5 = c(DataType::Timestamp(
        TimeUnit::Microsecond,
        Some("+05:00".into()),
    ));
    let plus5_lit = lit(ScalarValue::TimestampMicrosecond(
        Some(T),
        Some("+05:00".into()),
    ));
    assert!(partition_filters(&plus5.gt_eq(plus5_lit), &schema).is_empty());
    assert!(partition_filters(&c(DataType::Utf8).gt_eq(lit("2026-11-22")), &schema).is_empty());
    assert!(partition_filters(&c(DataType::Int64).gt_eq(lit(T)), &schema).is_empty());
    let date64 = lit(ScalarValue::Date64(Some(T / 1000)));
    assert!(partition_filters(&c(DataType::Date64).eq(date64), &schema).is_empty());
    // A literal of another scale than the compared expression: not understood.
    assert!(partition_filters(&col(EVENT_TIME).eq(ts_ns(T * 1000, None)), &schema).is_empty());
    // A table whose event_time is not a UTC microsecond timestamp: nothing.
    let other = Schema::new(vec![Field::new(
        EVENT_TIME,
        DataType::Timestamp(TimeUnit::Microsecond, Some("+05:00".into())),
        false,
    )]);
    assert!(partition_filters(&col(EVENT_TIME).gt_eq(ts(T)), &other).is_empty());
}

/// The inverse of each cast step agrees with the cast's definition, checked exhaustively
/// on small numbers around zero (where truncation and flooring differ).
#[test]
fn cast_steps_invert_exactly() {
    // What Arrow computes (see `cast_with_options`): `*`, `/` (toward zero), and the
    // date of a timestamp (chrono, toward minus infinity).
    let apply = |step: Step, x: i128| match step {
        Step::Multiply(m) => x * m,
        Step::Truncate(d) => x / d,
        Step::Floor(d) => x.div_euclid(d),
    };
    for step in [Step::Multiply(7), Step::Truncate(7), Step::Floor(7)] {
        for c in -30..=30 {
            let reaching = (-300..=300).filter(|&x| apply(step, x) >= c);
            let within = (-300..=300).filter(|&x| apply(step, x) <= c);
            assert_eq!(step.least_reaching(c), reaching.min(), "{step:?} >= {c}");
            assert_eq!(step.greatest_within(c), within.max(), "{step:?} <= {c}");
        }
    }
}

fn micros(y: i32, mo: u32, d: u32, h: u32) -> i64 {
    NaiveDate::from_ymd_opt(y, mo, d)
        .and_then(|d| d.and_hms_opt(h, 0, 0))
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` (UTC)
fn text(t: i64) -> String {
    DateTime::from_timestamp_micros(t)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// Engagement rows at `times`, the i-th with Kafka offset `first_offset + i`.
fn batch(times: &[i64], first_offset: i64) -> RecordBatch {
    let schema = events();
    let n = times.len();
    let offsets = (0..n as i64).map(|i| first_offset + i);
    let columns = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                EVENT_TIME | INGESTED_AT => Arc::new(
                    TimestampMicrosecondArray::from_iter_values(times.iter().copied())
                        .with_timezone("UTC"),
                ),
                KAFKA_OFFSET => Arc::new(Int64Array::from_iter_values(offsets.clone())),
                KAFKA_PARTITION => Arc::new(Int32Array::from(vec![0; n])),
                EVENT_DATE => Arc::new(Date32Array::from_iter_values(
                    times.iter().map(|&t| date_and_hour(t).0),
                )),
                EVENT_HOUR => Arc::new(Int32Array::from_iter_values(
                    times.iter().map(|&t| date_and_hour(t).1),
                )),
                name if !f.is_nullable() && f.data_type() == &DataType::Utf8 => Arc::new(
                    StringArray::from_iter_values(offsets.clone().map(|o| format!("{name}-{o}"))),
                ),
                _ => new_null_array(f.data_type(), n),
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

/// The offsets `SELECT ... FROM table WHERE predicate` returns, sorted, and the number
/// of files its plan reads.
async fn select(ctx: &SessionContext, table: &str, predicate: &str) -> (Vec<i64>, usize) {
    let sql =
        format!("SELECT {KAFKA_OFFSET} FROM {table} WHERE {predicate} ORDER BY {KAFKA_OFFSET}");
    let df = ctx.sql(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let plan = df.create_physical_plan().await.unwrap();
    let files = files_scanned(plan.as_ref());
    let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let offsets = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    (offsets, files)
}

/// Hour boundaries (midnights, a day's first and last hours, the epoch) and instants
/// just around them.
fn sample_times() -> Vec<i64> {
    let boundaries = [
        micros(1969, 12, 31, 23),
        micros(1970, 1, 1, 0),
        micros(1970, 1, 1, 1),
        micros(2026, 11, 29, 23),
        micros(2026, 11, 30, 0),
        micros(2026, 11, 30, 1),
        micros(2026, 11, 30, 10),
        micros(2026, 11, 30, 11),
        micros(2026, 11, 30, 23),
        micros(2026, 12, 1, 0),
        micros(2026, 12, 1, 1),
    ];
    let around = [
        -1_000_000,
        -1_000,
        -1,
        0,
        1,
        999,
        1_000,
        999_999,
        1_000_000,
        30 * 60 * 1_000_000,
    ];
    let mut times: Vec<i64> = boundaries
        .iter()
        .flat_map(|b| around.iter().map(move |d| b + d))
        .collect();
    times.sort_unstable();
    times.dedup();
    times
}

/// Every predicate shape runs through the session's hidden-partitioning provider and
/// through the bare Delta provider of the same table version: the rows must be the same.
#[tokio::test(flavor = "multi_thread")]
async fn pruned_scans_return_what_unpruned_scans_return() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let times = sample_times();
    // Two commits, so most hours have two files.
    let (odd, even): (Vec<_>, Vec<_>) = times.iter().enumerate().partition(|(i, _)| i % 2 == 1);
    for (part, first) in [(odd, 0), (even, 10_000)] {
        let times: Vec<i64> = part.into_iter().map(|(_, &t)| t).collect();
        lake.open_or_create(TableId::EngagementEvents)
            .await
            .unwrap()
            .write(vec![batch(&times, first)])
            .with_save_mode(SaveMode::Append)
            .await
            .unwrap();
    }
    let ctx = SessionFactory::new(lake.clone()).session().await.unwrap();
    let table = lake.open(TableId::EngagementEvents).await.unwrap().unwrap();
    crate::register_table(&ctx, "unpruned", &table)
        .await
        .unwrap();

    let mut predicates = Vec::new();
    let probes = [
        micros(1970, 1, 1, 0),
        micros(2026, 11, 30, 0),
        micros(2026, 11, 30, 10),
    ];
    let columns = [
        "event_time",
        "CAST(event_time AS TIMESTAMP(0))",
        "CAST(event_time AS TIMESTAMP(3))",
        "CAST(event_time AS TIMESTAMP(6))",
        "CAST(event_time AS TIMESTAMP(9))",
        "CAST(event_time AS TIMESTAMP)",
        "CAST(event_time AS TIMESTAMP WITH TIME ZONE)",
        "arrow_cast(event_time, 'Timestamp(Second, Some(\"UTC\"))')",
        "arrow_cast(event_time, 'Timestamp(Millisecond, Some(\"+00:00\"))')",
        "TRY_CAST(event_time AS TIMESTAMP(0))",
    ];
    for probe in probes {
        for delta in [-1_000_000, -1_000, -1, 0, 1, 1_000] {
            let t = text(probe + delta);
            for column in columns {
                for op in ["=", "<", "<=", ">", ">="] {
                    predicates.push(format!("{column} {op} TIMESTAMP '{t}'"));
                }
            }
            // The literal on the left.
            for op in ["=", "<", "<=", ">", ">="] {
                predicates.push(format!("TIMESTAMP '{t}' {op} event_time"));
                predicates.push(format!(
                    "TIMESTAMP '{t}' {op} CAST(event_time AS TIMESTAMP(0))"
                ));
            }
        }
    }
    let supported = [
        "event_time BETWEEN TIMESTAMP '2026-11-30 00:00:00' AND TIMESTAMP '2026-11-30 10:00:00'",
        "event_time BETWEEN TIMESTAMP '2026-11-29 23:59:59.999999' AND TIMESTAMP '2026-11-30 00:00:00.000001'",
        "CAST(event_time AS TIMESTAMP(0)) BETWEEN TIMESTAMP '1969-12-31 23:59:59' AND TIMESTAMP '1970-01-01 00:00:00'",
        "event_time > TIMESTAMP '2026-11-30 00:59:59.999999' AND event_time < TIMESTAMP '2026-11-30 11:00:00'",
        "event_time >= TIMESTAMP '2026-11-30 11:00:00' - INTERVAL '1 hour'",
        "event_time < TIMESTAMP '2026-11-30 00:00:00' + INTERVAL '1 microsecond'",
        "event_time >= now() - INTERVAL '20000 days'",
        "event_time < now() - INTERVAL '20000 days'",
        "event_time >= '2026-11-30T10:00:00Z'",
        "event_time >= TIMESTAMP '2026-11-30T15:00:00+05:00'",
        "event_time > to_timestamp_micros(1796032800000000)",
        "event_time <= CAST('2026-11-30 10:00:00' AS TIMESTAMP)",
        "CAST(event_time AS DATE) = DATE '2026-11-30'",
        "CAST(event_time AS DATE) = DATE '1969-12-31'",
        "CAST(event_time AS DATE) = DATE '1970-01-01'",
        "CAST(event_time AS DATE) < DATE '2026-11-30'",
        "CAST(event_time AS DATE) >= DATE '2026-12-01'",
        "DATE '2026-11-30' > CAST(event_time AS DATE)",
        "CAST(event_time AS DATE) BETWEEN DATE '2026-11-30' AND DATE '2026-12-01'",
        // The reported query: the cast to DATE is compared as a timestamp (midnight).
        "CAST(event_time AS DATE) = TIMESTAMP '2026-11-30 00:00:00'",
        "CAST(event_time AS DATE) > TIMESTAMP '2026-11-29 23:59:59'",
        "CAST(event_time AS DATE) <= TIMESTAMP '2026-11-30 00:00:00.000001'",
        "CAST(event_time AS DATE) = TIMESTAMP '2026-11-30 10:00:00'",
        "CAST(CAST(event_time AS TIMESTAMP(0)) AS TIMESTAMP(9)) = TIMESTAMP '1970-01-01 00:00:00'",
    ];
    let near_misses = [
        "CAST(event_time AS VARCHAR) > '2026-11-30 10'",
        "CAST(event_time AS VARCHAR) = '2026-11-30T10:00:00Z'",
        "CAST(event_time AS BIGINT) >= 1796032800000000",
        "date_trunc('day', event_time) = TIMESTAMP '2026-11-30 00:00:00'",
        "date_trunc('hour', event_time) = TIMESTAMP '2026-11-30 10:00:00'",
        "date_trunc('hour', event_time) < TIMESTAMP '2026-11-30 10:00:00'",
        "event_time <> TIMESTAMP '2026-11-30 10:00:00'",
        "NOT (event_time < TIMESTAMP '2026-11-30 10:00:00')",
        "NOT (event_time >= TIMESTAMP '2026-11-30 10:00:00')",
        "event_time < TIMESTAMP '2026-11-30 00:00:00' OR event_time > TIMESTAMP '2026-11-30 10:00:00'",
        "event_time IN (TIMESTAMP '2026-11-30 10:00:00', TIMESTAMP '1970-01-01 00:00:00')",
        "event_time NOT BETWEEN TIMESTAMP '2026-11-30 00:00:00' AND TIMESTAMP '2026-11-30 10:00:00'",
        "event_time + INTERVAL '1 hour' > TIMESTAMP '2026-11-30 10:00:00'",
        "event_time IS NOT DISTINCT FROM TIMESTAMP '2026-11-30 10:00:00'",
        "arrow_cast(event_time, 'Timestamp(Microsecond, Some(\"+05:00\"))') >= TIMESTAMP '2026-11-30 05:00:00'",
        "arrow_cast(event_time, 'Timestamp(Microsecond, Some(\"+05:00\"))') = TIMESTAMP '2026-11-30 15:00:00'",
        "CAST(arrow_cast(event_time, 'Timestamp(Microsecond, Some(\"+05:00\"))') AS DATE) = DATE '2026-12-01'",
        "arrow_cast(event_time, 'Date64') = arrow_cast(DATE '2026-11-30', 'Date64')",
        "event_time > _ingested_at - INTERVAL '1 second'",
    ];
    predicates.extend(supported.iter().map(|p| p.to_string()));
    predicates.extend(near_misses.iter().map(|p| p.to_string()));

    // Two queries at a time (the scans themselves are single files, mostly waiting).
    let mut results = Vec::with_capacity(predicates.len());
    for chunk in predicates.chunks(2) {
        let mut running = tokio::task::JoinSet::new();
        for (i, predicate) in chunk.iter().enumerate() {
            let (ctx, predicate) = (ctx.clone(), predicate.clone());
            running.spawn(async move {
                let pruned = select(&ctx, "engagement_events", &predicate).await;
                let all = select(&ctx, "unpruned", &predicate).await;
                (i, pruned, all)
            });
        }
        let mut done = running.join_all().await;
        done.sort_by_key(|(i, _, _)| *i);
        results.extend(done.into_iter().map(|(_, pruned, all)| (pruned, all)));
    }
    let mut fewer_files = 0;
    let mut nonempty = 0;
    for (predicate, ((pruned, pruned_files), (all, all_files))) in predicates.iter().zip(results) {
        assert_eq!(pruned, all, "{predicate}");
        assert!(pruned_files <= all_files, "{predicate}");
        fewer_files += usize::from(pruned_files < all_files);
        nonempty += usize::from(!pruned.is_empty() && pruned.len() < times.len());
    }
    // The samples do tell the shapes apart, and pruning does happen.
    assert!(
        nonempty > predicates.len() / 2,
        "{nonempty} of {}",
        predicates.len()
    );
    assert!(
        fewer_files > predicates.len() / 4,
        "{fewer_files} of {}",
        predicates.len()
    );

    // The reported query, checked against the samples themselves: the whole day, read
    // from that day's files only (one per hour and commit).
    let day = micros(2026, 11, 30, 0).div_euclid(MICROS_PER_DAY);
    let on_day: Vec<(usize, i64)> = times
        .iter()
        .enumerate()
        .filter(|(_, &t)| t.div_euclid(MICROS_PER_DAY) == day)
        .map(|(i, &t)| (i, t))
        .collect();
    let day_files: BTreeSet<_> = on_day
        .iter()
        .map(|&(i, t)| (i % 2, t.div_euclid(MICROS_PER_HOUR)))
        .collect();
    let (rows, files) = select(
        &ctx,
        "engagement_events",
        "CAST(event_time AS DATE) = TIMESTAMP '2026-11-30 00:00:00'",
    )
    .await;
    assert_eq!(rows.len(), on_day.len());
    assert_eq!(files, day_files.len());
    let (_, all_files) = select(&ctx, "unpruned", "true").await;
    assert!(files < all_files, "{files} of {all_files}");
    // Truncation to seconds rounds toward zero, so before 1970 it rounds up: this
    // matches 1969-12-31T23:59:59.999999 (hour 23 of the day before) too.
    let (rows, _) = select(
        &ctx,
        "engagement_events",
        "CAST(event_time AS TIMESTAMP(0)) = TIMESTAMP '1970-01-01 00:00:00'",
    )
    .await;
    let epoch_second = times.iter().filter(|&&t| t.abs() < 1_000_000).count();
    assert_eq!(rows.len(), epoch_second);
    assert!(times.iter().any(|&t| t < 0 && t > -1_000_000));
}
