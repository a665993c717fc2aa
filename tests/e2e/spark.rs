//! Another engine reads the lake: PySpark 4.0.1 with delta-spark 4.0.0 reads every
//! hourlake table with the row counts hourlake gives, and Spark's own HLL functions
//! over the rollups' `users_sketch` give hourlake's estimates (portable DataSketches
//! HLL), per hour and merged over all hours.

use std::process::Command;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use hourlake_catalog::rollup::ALL_MEMBER;
use hourlake_catalog::{Rollup, TableId};
use hourlake_testkit::kafka::{self, end_offsets, wait_committed};
use hourlake_testkit::lake::{query, scalar};
use hourlake_testkit::setup::Setup;
use serde_json::{json, Value};

use crate::hourlake;

/// The rows of `sql` as JSON values (integers, strings, dates as text).
async fn rows(lake: &hourlake_catalog::Lake, sql: &str) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for batch in query(lake, sql).await {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| {
                if matches!(
                    c.data_type(),
                    DataType::Utf8 | DataType::Utf8View | DataType::Date32
                ) {
                    arrow::compute::cast(c, &DataType::Utf8).expect("as text")
                } else {
                    arrow::compute::cast(c, &DataType::Int64).expect("as integer")
                }
            })
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|c| match c.data_type() {
                        _ if c.is_null(row) => Value::Null,
                        DataType::Utf8 => json!(c.as_string::<i32>().value(row)),
                        _ => json!(c.as_primitive::<Int64Type>().value(row)),
                    })
                    .collect(),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn spark_reads_every_table_with_hourlakes_counts_and_sketch_estimates() {
    let broker = kafka::shared();
    let s = Setup::new(&broker.bootstrap, 2).await;
    // Closed hours (compacted and rolled up), late events, dead letters, resends.
    let start = (chrono::Utc::now() - chrono::Duration::hours(5)).to_rfc3339();
    let mut ingest = s.ingest(&hourlake(), &[]);
    s.produce(&hourlake())
        .with("count", 6_000)
        .with("late-fraction", 0.1)
        .with("bad-fraction", 0.01)
        .with("duplicate-fraction", 0.02)
        .with("seed", 44)
        .with("start-time", &start)
        .run_async()
        .await;
    let ends = end_offsets(&s.bootstrap, &s.topics());
    let (bootstrap, group) = (s.bootstrap.clone(), s.group.clone());
    tokio::task::spawn_blocking(move || {
        wait_committed(&bootstrap, &group, &ends, Duration::from_secs(120))
    })
    .await
    .expect("ingest caught up");
    let log = ingest.log_text();
    assert_eq!(ingest.terminate().code(), Some(0), "{log}");
    let compacted = hourlake()
        .command()
        .args([
            "compact",
            "--lake",
            &s.lake_arg(),
            "--closed-after-secs",
            "0",
        ])
        .output()
        .expect("hourlake compact");
    assert!(
        compacted.status.success(),
        "{}",
        String::from_utf8_lossy(&compacted.stderr)
    );

    // hourlake's answers.
    let mut row_counts = serde_json::Map::new();
    let mut tables = Vec::new();
    for table in TableId::ALL {
        // A ledger nothing wrote to (no erasure here) is not in the lake; quality
        // figures exist once an hour was rolled up.
        if s.lake.open(*table).await.expect("open").is_none() {
            assert!(
                TableId::LEDGERS.contains(table) || TableId::QUALITY.contains(table),
                "{table} missing"
            );
            continue;
        }
        tables.push(*table);
        let n = scalar(&s.lake, &format!("SELECT count(*) FROM {table}")).await;
        row_counts.insert(table.name().to_string(), json!(n));
    }
    let mut hll = Vec::new();
    for rollup in Rollup::ALL {
        let table = rollup.table.name();
        let all_rows = std::iter::once("true".to_string())
            .chain(
                rollup
                    .dimensions
                    .iter()
                    .map(|d| format!("{d} = '{ALL_MEMBER}'")),
            )
            .collect::<Vec<_>>()
            .join(" AND ");
        let hours: Vec<Value> = rows(
            &s.lake,
            &format!(
                "SELECT event_date, event_hour, hll_estimate(users_sketch) FROM {table} \
                 WHERE {all_rows} ORDER BY 1, 2"
            ),
        )
        .await
        .into_iter()
        .map(|r| json!({"event_date": r[0], "event_hour": r[1], "estimate": r[2]}))
        .collect();
        assert!(!hours.is_empty(), "{table} has no ALL rows");
        let union = scalar(
            &s.lake,
            &format!("SELECT hll_estimate(hll_union(users_sketch)) FROM {table} WHERE {all_rows}"),
        )
        .await;
        let filter: serde_json::Map<String, Value> = rollup
            .dimensions
            .iter()
            .map(|d| (d.to_string(), json!(ALL_MEMBER)))
            .collect();
        hll.push(json!({
            "table": table, "column": "users_sketch", "where": filter,
            "hours": hours, "union_estimate": union,
        }));
    }
    let engagement_hours = hll[0]["hours"].as_array().map_or(0, Vec::len);
    assert!(engagement_hours > 10, "late events spread over many hours");
    let expected = json!({"format": 1, "row_counts": row_counts, "hll": hll.clone()});
    let expected_path = s.dir.path().join("expected.json");
    std::fs::write(&expected_path, expected.to_string()).expect("expected.json");

    // Spark's answers must be the same.
    let script = format!(
        "{}/tests/clients/spark_reads_lake.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(s.lake_path())
        .arg(&expected_path)
        .output()
        .expect("running PySpark (scripts/bi-clients spark installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Spark disagrees with hourlake:\n{stderr}\nexpected: {expected}"
    );
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("no JSON summary from the Spark check ({e}):\n{stdout}\n{stderr}")
    });
    assert_eq!(summary["ok"], json!(true), "{summary}");
    let read = summary["row_counts"].as_object().map_or(0, |m| m.len());
    assert_eq!(read, tables.len(), "Spark read every table: {summary}");
    let hours_checked: u64 = summary["hll"]
        .as_array()
        .map(|h| h.iter().filter_map(|x| x["hours_checked"].as_u64()).sum())
        .unwrap_or(0);
    // Every hour of every rollup (engagement, recommendation, sessions, the totals).
    assert_eq!(hll.len(), Rollup::ALL.len());
    assert_eq!(
        hours_checked as usize,
        hll.iter()
            .map(|h| h["hours"].as_array().map_or(0, Vec::len))
            .sum::<usize>(),
        "{summary}"
    );
}
