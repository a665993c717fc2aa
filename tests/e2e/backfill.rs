//! `hourlake backfill` of NDJSON, gzip and Parquet files while ingest runs: killed with
//! `kill -9` mid-way and run again, then run a third time, it leaves every event exactly
//! once (bad lines as dead letters), and the offset audit accounts for every line.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use hourlake_testkit::kafka;
use hourlake_testkit::lake::scalar;
use hourlake_testkit::setup::Setup;
use serde_json::Value;

use crate::hourlake;

const NDJSON_EVENTS: usize = 30_000;
const GZIP_EVENTS: usize = 10_000;
const PARQUET_EVENTS: usize = 10_000;
/// Bad lines in the NDJSON file (every 1000th).
const BAD_LINES: usize = NDJSON_EVENTS / 1000;

fn event(prefix: &str, i: usize, base_ms: i64) -> String {
    format!(
        r#"{{"event_id":"{prefix}-{i}","event_type":"screen_view","event_time":{},"user_id":"u{}","screen":"home"}}"#,
        base_ms + (i as i64 * 397) % 7_200_000,
        i % 97
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_loads_every_file_exactly_once_through_a_kill_and_reruns() {
    let s = Setup::new(&kafka::shared().bootstrap, 1).await;
    let input = s.dir.path().join("history");
    std::fs::create_dir_all(input.join("part=2")).expect("dirs");
    let base_ms = chrono::Utc::now().timestamp_millis() - 4 * 3_600_000;
    let lines: Vec<String> = (0..NDJSON_EVENTS)
        .map(|i| {
            if i % 1000 == 999 {
                "{\"event_id\": broken".to_string()
            } else {
                event("nd", i, base_ms)
            }
        })
        .collect();
    std::fs::write(input.join("events.ndjson"), lines.join("\n")).expect("ndjson");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let gz_lines: Vec<String> = (0..GZIP_EVENTS).map(|i| event("gz", i, base_ms)).collect();
    gz.write_all(gz_lines.join("\n").as_bytes()).expect("gzip");
    std::fs::write(
        input.join("part=2").join("more.jsonl.gz"),
        gz.finish().expect("gzip"),
    )
    .expect("gz");
    // Parquet as another system writes it: the wire fields as columns
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("event_time", DataType::Int64, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("screen", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                (0..PARQUET_EVENTS).map(|i| format!("pq-{i}")),
            )),
            Arc::new(StringArray::from(vec!["click"; PARQUET_EVENTS])),
            Arc::new(Int64Array::from_iter_values(
                (0..PARQUET_EVENTS).map(|i| base_ms + (i as i64 * 131) % 7_200_000),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..PARQUET_EVENTS).map(|i| format!("u{}", i % 89)),
            )),
            Arc::new(StringArray::from(vec![Some("search"); PARQUET_EVENTS])),
        ],
    )
    .expect("batch");
    let file = std::fs::File::create(input.join("part=2").join("old.parquet")).expect("parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");

    // ingest runs on the same lake meanwhile
    let ingest = s.ingest(&hourlake(), &[]);
    s.produce(&hourlake())
        .with("count", 2_000)
        .with("seed", 5)
        .run_async()
        .await;
    let lake_arg = s.lake_arg();
    let input_arg = input.to_str().expect("utf-8").to_string();
    let backfill_cmd = || {
        let mut c = hourlake().command();
        c.args([
            "backfill",
            "--lake",
            &lake_arg,
            "--batch-events",
            "2000",
            &input_arg,
        ]);
        c
    };
    let backfilled = "SELECT count(*) FROM engagement_events WHERE _kafka_topic LIKE 'backfill-%'";

    // kill -9 once some windows are committed
    let mut first = backfill_cmd()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("backfill");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut killed_at = 0;
    loop {
        let n = scalar(&s.lake, backfilled).await;
        if n > 0 {
            let _ = first.kill();
            let _ = first.wait();
            killed_at = n;
            break;
        }
        if first.try_wait().expect("wait").is_some() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let valid = (NDJSON_EVENTS - BAD_LINES + GZIP_EVENTS + PARQUET_EVENTS) as i64;
    assert!(
        killed_at > 0 && killed_at < valid,
        "killed after {killed_at} of {valid} rows"
    );

    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().expect("backfill");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON totals")
    };
    let second = run(&mut backfill_cmd());
    assert_eq!(
        second["events"],
        (NDJSON_EVENTS + GZIP_EVENTS + PARQUET_EVENTS) as u64,
        "{second}"
    );
    assert!(
        second["already_loaded"].as_u64().unwrap_or(0) > 0,
        "{second}"
    );
    let third = run(&mut backfill_cmd());
    assert_eq!(third["rows_committed"], 0, "{third}");

    assert_eq!(scalar(&s.lake, backfilled).await, valid);
    assert_eq!(
        scalar(&s.lake, "SELECT count(DISTINCT event_id) FROM engagement_events WHERE _kafka_topic LIKE 'backfill-%'").await,
        valid
    );
    assert_eq!(
        scalar(
            &s.lake,
            "SELECT count(*) FROM dead_letters WHERE _kafka_topic LIKE 'backfill-%'"
        )
        .await,
        BAD_LINES as i64
    );
    // the events land in their own hours (event time, not load time)
    assert!(scalar(&s.lake, "SELECT count(DISTINCT event_hour) FROM engagement_events WHERE _kafka_topic LIKE 'backfill-%'").await >= 2);

    // ingest's own events arrived too, and every offset is in exactly one place
    let deadline = Instant::now() + Duration::from_secs(60);
    while scalar(&s.lake, "SELECT (SELECT count(*) FROM engagement_events WHERE _kafka_topic NOT LIKE 'backfill-%') + (SELECT count(*) FROM recommendation_events) + (SELECT count(*) FROM dead_letters WHERE _kafka_topic NOT LIKE 'backfill-%')").await < 2_000 {
        assert!(Instant::now() < deadline, "ingest's events never arrived:\n{}", ingest.log_text());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let audit = hourlake()
        .command()
        .args(["audit", "--lake", &lake_arg])
        .output()
        .expect("audit");
    assert!(
        audit.status.success(),
        "{}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );
    drop(ingest);
}
