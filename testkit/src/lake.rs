//! The lake in tests: JSON rows appended to a table, queries over its newest versions,
//! and the exactly-once check of a lake against the topics it was ingested from.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use deltalake::protocol::SaveMode;
use hourlake_catalog::{Lake, TableId};
use hourlake_sql::SessionFactory;
use serde_json::Value;

/// Rows given as JSON objects with the table's column names, as a batch of its schema
/// (absent fields are null; timestamps in microseconds, dates in days).
pub fn json_batch(table: TableId, rows: &[Value]) -> RecordBatch {
    let mut decoder = arrow::json::ReaderBuilder::new(table.schema())
        .build_decoder()
        .expect("decoder");
    decoder
        .serialize(rows)
        .unwrap_or_else(|e| panic!("rows of {table}: {e}"));
    decoder
        .flush()
        .expect("flush")
        .unwrap_or_else(|| RecordBatch::new_empty(table.schema()))
}

/// Appends JSON rows (see [`json_batch`]) to `table` as one commit, creating it if needed.
pub async fn append_rows(lake: &Lake, table: TableId, rows: &[Value]) {
    lake.open_or_create(table)
        .await
        .expect("table")
        .write(vec![json_batch(table, rows)])
        .with_save_mode(SaveMode::Append)
        .await
        .expect("append");
}

/// Runs a query over the lake's newest versions.
pub async fn query(lake: &Lake, sql: &str) -> Vec<RecordBatch> {
    let ctx = SessionFactory::new(lake.clone())
        .session()
        .await
        .expect("session");
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A single integer result.
pub async fn scalar(lake: &Lake, sql: &str) -> i64 {
    let batches = query(lake, sql).await;
    let b = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .unwrap_or_else(|| panic!("{sql}: no rows"));
    let col = arrow::compute::cast(b.column(0), &DataType::Int64).expect("cast");
    col.as_primitive::<Int64Type>().value(0)
}

/// Per (topic, partition): rows, distinct offsets, lowest and highest offset,
/// over all three ingested tables together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStats {
    pub rows: i64,
    pub distinct: i64,
    pub min: i64,
    pub max: i64,
}

/// [`PartitionStats`] of every partition in the lake.
pub async fn partition_stats(lake: &Lake) -> BTreeMap<(String, i32), PartitionStats> {
    try_partition_stats(lake)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`partition_stats`], but an error (e.g. a table not created yet) is returned.
pub async fn try_partition_stats(
    lake: &Lake,
) -> Result<BTreeMap<(String, i32), PartitionStats>, String> {
    let sql = "SELECT _kafka_topic, _kafka_partition, count(*), count(DISTINCT _kafka_offset), \
               min(_kafka_offset), max(_kafka_offset) FROM ( \
               SELECT _kafka_topic, _kafka_partition, _kafka_offset FROM engagement_events UNION ALL \
               SELECT _kafka_topic, _kafka_partition, _kafka_offset FROM recommendation_events UNION ALL \
               SELECT _kafka_topic, _kafka_partition, _kafka_offset FROM dead_letters) GROUP BY 1, 2";
    let ctx = SessionFactory::new(lake.clone())
        .session()
        .await
        .map_err(|e| e.to_string())?;
    let batches = ctx
        .sql(sql)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for b in batches {
        let topic = arrow::compute::cast(b.column(0), &DataType::Utf8).expect("cast");
        let topic = topic.as_string::<i32>();
        let part = b.column(1).as_primitive::<Int32Type>();
        let n = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
        let (rows, distinct, min, max) = (n(2), n(3), n(4), n(5));
        for r in 0..b.num_rows() {
            out.insert(
                (topic.value(r).to_string(), part.value(r)),
                PartitionStats {
                    rows: rows.value(r),
                    distinct: distinct.value(r),
                    min: min.value(r),
                    max: max.value(r),
                },
            );
        }
    }
    Ok(out)
}

/// Waits until the lake holds as many rows as the topics hold messages, then checks
/// exactly-once: every offset of every partition exactly once, contiguous from 0.
pub async fn wait_exactly_once(lake: &Lake, bootstrap: &str, topics: &[&str], timeout: Duration) {
    let expected: BTreeMap<(String, i32), i64> = crate::kafka::end_offsets(bootstrap, topics)
        .into_iter()
        .filter(|(_, high)| *high > 0)
        .collect();
    let want: i64 = expected.values().sum();
    assert!(want > 0, "the topics are empty");
    let start = Instant::now();
    loop {
        // Tables appear when ingest starts; until then there is nothing to count.
        let have: i64 = match try_partition_stats(lake).await {
            Ok(stats) => stats.values().map(|s| s.rows).sum(),
            Err(_) => 0,
        };
        if have >= want || start.elapsed() > timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stats = partition_stats(lake).await;
    for ((topic, partition), high) in &expected {
        let s = stats.get(&(topic.clone(), *partition)).unwrap_or_else(|| {
            panic!("{topic}-{partition}: nothing in the lake, {high} messages in Kafka")
        });
        assert_eq!(
            s.distinct, s.rows,
            "{topic}-{partition}: an offset is in the lake twice: {s:?}"
        );
        assert_eq!(
            s.rows, *high,
            "{topic}-{partition}: lake has {} rows, Kafka has {high} messages: {s:?}",
            s.rows
        );
        assert_eq!(
            (s.min, s.max),
            (0, high - 1),
            "{topic}-{partition}: offsets not contiguous: {s:?}"
        );
    }
    assert_eq!(
        stats.len(),
        expected.len(),
        "the lake has rows of partitions Kafka does not: {stats:?}"
    );
}
