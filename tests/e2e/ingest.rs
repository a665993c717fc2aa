//! Ingest against the real broker: crashes, rebalances, broker restarts, bad input
//! and late data — nothing lost, nothing twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use hourlake_testkit::binary::num;
use hourlake_testkit::http::{http_get, metric};
use hourlake_testkit::kafka::{self, end_offsets, send};
use hourlake_testkit::lake::{partition_stats, query, scalar, wait_exactly_once};
use hourlake_testkit::setup::Setup;
use rand::{Rng, SeedableRng};

use crate::hourlake;

const SETTLE: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread")]
async fn crash_anywhere_loses_nothing_and_duplicates_nothing() {
    let broker = kafka::shared();
    let s = Setup::new(&broker.bootstrap, 4).await;
    let producer = s
        .produce(&hourlake())
        .with("count", 200_000)
        .with("rate", 12_000)
        .with("duplicate-fraction", "0.02")
        .with("late-fraction", "0.02")
        .with("bad-fraction", "0.01")
        .with("seed", 3)
        .spawn();
    // Static membership: a restarted member takes its partitions back at once.
    let member = ["--instance-id", "crash-test-member"];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let mut ingest = s.ingest(&hourlake(), &member);
    let mut kills = 0;
    let mut rows_mid_crashes: i64 = 0;
    while kills < 12 {
        // Random moments: while joining, while buffering, mid-write, right after a commit.
        let pause = Duration::from_millis(rng.random_range(150..2_500));
        tokio::time::sleep(pause).await;
        assert!(
            ingest.is_running(),
            "ingest died by itself:\n{}",
            ingest.log_text()
        );
        ingest.kill9();
        kills += 1;
        if kills == 6 {
            rows_mid_crashes = partition_stats(&s.lake)
                .await
                .values()
                .map(|p| p.rows)
                .sum();
        }
        ingest = s.ingest(&hourlake(), &member);
    }
    let report = producer.wait_async().await;
    assert_eq!(num(&report, "/sent"), 200_000);
    let rows_after_crashes: i64 = partition_stats(&s.lake)
        .await
        .values()
        .map(|p| p.rows)
        .sum();
    assert!(
        rows_mid_crashes > 0 && rows_after_crashes > rows_mid_crashes,
        "commits must happen between the kills ({rows_mid_crashes} rows after 6 kills, {rows_after_crashes} after 12)"
    );
    wait_exactly_once(&s.lake, &broker.bootstrap, &s.topics(), SETTLE).await;

    let dead = scalar(&s.lake, "SELECT count(*) FROM dead_letters").await;
    assert_eq!(
        dead as u64,
        num(&report, "/malformed"),
        "every malformed message is a dead letter"
    );
    let resent = scalar(
        &s.lake,
        "SELECT count(*) - count(DISTINCT event_id) FROM (SELECT event_id FROM engagement_events \
         UNION ALL SELECT event_id FROM recommendation_events)",
    )
    .await;
    assert_eq!(
        resent as u64,
        num(&report, "/duplicates"),
        "producer resends are kept (the compactor removes them)"
    );
    let log = ingest.log_text();
    assert_eq!(ingest.terminate().code(), Some(0), "clean shutdown:\n{log}");
    wait_exactly_once(
        &s.lake,
        &broker.bootstrap,
        &s.topics(),
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn survivor_takes_over_when_a_group_member_dies() {
    let broker = kafka::shared();
    let s = Setup::new(&broker.bootstrap, 4).await;
    let producer = s
        .produce(&hourlake())
        .with("count", 60_000)
        .with("rate", 3000)
        .with("seed", 4)
        .spawn();
    let mut a = s.ingest(&hourlake(), &[]);
    let mut b = s.ingest(&hourlake(), &[]);
    // Let both join and commit, then kill one mid-stream.
    let start = Instant::now();
    while !(a.log_text().contains("assigned") && b.log_text().contains("assigned")) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "members never got partitions:\n{}\n{}",
            a.log_text(),
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let survivor_log_before = b.log_text().len();
    a.kill9();
    let report = producer.wait_async().await;
    assert_eq!(num(&report, "/sent"), 60_000);
    wait_exactly_once(&s.lake, &broker.bootstrap, &s.topics(), SETTLE).await;
    let survivor_log = b.log_text();
    let assigned_lines = survivor_log[survivor_log_before..]
        .matches("assigned")
        .count();
    assert!(
        assigned_lines >= 8,
        "the survivor must end up with all 8 partitions:\n{survivor_log}"
    );
    assert!(b.is_running());
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_recovers_by_itself_when_the_broker_restarts() {
    let broker = kafka::dedicated("restart");
    let s = Setup::new(&broker.bootstrap, 4).await;
    let producer = s
        .produce(&hourlake())
        .with("count", 60_000)
        .with("rate", 3000)
        .with("seed", 5)
        .spawn();
    let mut ingest = s.ingest(&hourlake(), &[]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    broker.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.restart_stopped();
    let report = producer.wait_async().await;
    assert_eq!(num(&report, "/sent"), 60_000);
    wait_exactly_once(&s.lake, &broker.bootstrap, &s.topics(), SETTLE).await;
    assert!(
        ingest.is_running(),
        "ingest must survive the broker restart:\n{}",
        ingest.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_bad_input_becomes_a_dead_letter_with_its_reason() {
    let broker = kafka::shared();
    let s = Setup::new(&broker.bootstrap, 2).await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let ok = |id: &str| {
        format!(
            r#"{{"event_id":"{id}","event_type":"click","event_time":{now_ms},"user_id":"u1","device":{{"type":"phone","os":"ios","app_version":"5.0"}}}}"#
        )
    };
    let corpus: Vec<(Option<Vec<u8>>, Option<&str>)> = vec![
        (Some(ok("good-1").into_bytes()), None),
        (Some(b"{\"event_id\": \"x\", ".to_vec()), Some("bad_json")),
        (Some(b"[1,2,3]".to_vec()), Some("bad_json")),
        (Some(b"\"just a string\"".to_vec()), Some("bad_json")),
        (Some(vec![0xff, 0xfe, b'{', b'}']), Some("bad_json")),
        (None, Some("bad_json")),
        (Some(format!(r#"{{"event_id":"m1","event_type":"click","event_time":{now_ms}}}"#).into_bytes()), Some("missing_field")),
        (Some(format!(r#"{{"event_type":"click","event_time":{now_ms},"user_id":"u"}}"#).into_bytes()), Some("missing_field")),
        (Some(r#"{"event_id":"m3","event_type":"click","user_id":"u"}"#.as_bytes().to_vec()), Some("missing_field")),
        (Some(format!(r#"{{"event_id":"w1","event_type":"click","event_time":{now_ms},"user_id":42}}"#).into_bytes()), Some("wrong_type")),
        (Some(format!(r#"{{"event_id":"w2","event_type":"session_end","event_time":{now_ms},"user_id":"u","session_length_ms":"long"}}"#).into_bytes()), Some("wrong_type")),
        (Some(format!(r#"{{"event_id":"w3","event_type":"click","event_time":{now_ms},"user_id":"u","device":"phone"}}"#).into_bytes()), Some("wrong_type")),
        (Some(format!(r#"{{"event_id":"w4","event_type":"rec_served","event_time":{now_ms},"user_id":"u","items":{{"a":1}}}}"#).into_bytes()), Some("wrong_type")),
        (Some(r#"{"event_id":"w5","event_type":"click","event_time":12.5,"user_id":"u"}"#.as_bytes().to_vec()), Some("wrong_type")),
        (Some(format!(r#"{{"event_id":"v1","event_type":"purchase","event_time":{now_ms},"user_id":"u","amount":-5}}"#).into_bytes()), Some("invalid_value")),
        (Some(r#"{"event_id":"v2","event_type":"click","event_time":"last tuesday","user_id":"u"}"#.as_bytes().to_vec()), Some("invalid_value")),
        (Some(format!(r#"{{"event_id":"u1","event_type":"app_exploded","event_time":{now_ms},"user_id":"u"}}"#).into_bytes()), Some("unknown_event_type")),
        (Some(format!(r#"{{"event_id":"f1","event_type":"click","event_time":{},"user_id":"u"}}"#, now_ms + 40 * 86_400_000).into_bytes()), Some("future_event_time")),
        (Some(format!(r#"{{"event_id":"e1","event_type":"click","event_time":{},"user_id":"u"}}"#, now_ms - 400 * 86_400_000).into_bytes()), Some("expired_event_time")),
        (Some(format!(r#"{{"event_id":"o1","event_type":"click","event_time":{now_ms},"user_id":"u","properties":{{"blob":"{}"}}}}"#, "x".repeat(2 * 1024 * 1024)).into_bytes()), Some("oversized")),
        (Some(ok("good-2").into_bytes()), None),
    ];
    let payloads: Vec<Option<Vec<u8>>> = corpus.iter().map(|(p, _)| p.clone()).collect();
    send(&broker.bootstrap, &s.app, &payloads).await;
    // And generated bad input of every kind, beside valid events, on both topics.
    let report = s
        .produce(&hourlake())
        .with("count", 6000)
        .with("bad-fraction", "0.25")
        .with("seed", 8)
        .run_async()
        .await;
    let mut ingest = s.ingest(&hourlake(), &["--metrics-addr", "127.0.0.1:0"]);
    wait_exactly_once(&s.lake, &broker.bootstrap, &s.topics(), SETTLE).await;
    assert!(
        ingest.is_running(),
        "bad input must not stop ingest:\n{}",
        ingest.log_text()
    );
    // The same story in the metrics.
    let dead_in_lake = scalar(&s.lake, "SELECT count(*) FROM dead_letters").await as f64;
    let (status, metrics) = http_get(&ingest.metrics_addr(), "/metrics");
    assert!(status.contains("200"), "{status}");
    assert_eq!(
        metric(&metrics, "hourlake_ingest_dead_letter_messages_total"),
        dead_in_lake
    );
    let total: f64 = end_offsets(&broker.bootstrap, &s.topics())
        .values()
        .sum::<i64>() as f64;
    assert_eq!(
        metric(&metrics, "hourlake_ingest_consumed_messages_total"),
        total
    );
    assert!(metric(&metrics, "hourlake_ingest_delta_commits_total") >= 3.0);
    assert!(metric(&metrics, "hourlake_ingest_event_time_lag_seconds_count") > 0.0);
    // Once caught up, every partition's consumer lag is reported, and it is zero
    // (librdkafka reports statistics every 5 s; Kafka offsets follow the Delta commit).
    let partitions = end_offsets(&broker.bootstrap, &s.topics()).len();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = http_get(&ingest.metrics_addr(), "/metrics");
        let lags: Vec<f64> = metrics
            .lines()
            .filter(|l| l.starts_with("hourlake_ingest_consumer_lag_messages{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if lags.len() == partitions && lags.iter().all(|lag| *lag == 0.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "consumer lag of {partitions} partitions not reported as 0: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The hand-made corpus: each message has the expected code, in offset order.
    let batches = query(
        &s.lake,
        &format!(
            "SELECT _kafka_offset, reason_code, reason, raw_size, raw FROM dead_letters \
                  WHERE _kafka_topic = '{}' AND _kafka_partition = 0 ORDER BY _kafka_offset",
            s.app
        ),
    )
    .await;
    let mut got: BTreeMap<i64, (String, String, i64, i32)> = BTreeMap::new();
    for b in &batches {
        let off = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        let code =
            arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8).expect("cast");
        let reason =
            arrow::compute::cast(b.column(2), &arrow::datatypes::DataType::Utf8).expect("cast");
        let size = b.column(3).as_primitive::<arrow::datatypes::Int64Type>();
        let kept =
            arrow::compute::cast(b.column(4), &arrow::datatypes::DataType::Binary).expect("cast");
        for r in 0..b.num_rows() {
            got.insert(
                off.value(r),
                (
                    code.as_string::<i32>().value(r).to_string(),
                    reason.as_string::<i32>().value(r).to_string(),
                    size.value(r),
                    kept.as_binary::<i32>().value(r).len() as i32,
                ),
            );
        }
    }
    // The corpus went first, in order, to partition 0 of the app topic.
    let first = 0;
    for (i, (payload, expected)) in corpus.iter().enumerate() {
        let offset = first + i as i64;
        match expected {
            Some(code) => {
                let (c, reason, size, kept) = got
                    .get(&offset)
                    .unwrap_or_else(|| panic!("message {i} ({code}) is not a dead letter"));
                assert_eq!(c, code, "message {i}: {reason}");
                assert!(reason.len() > 5, "message {i} has a reason");
                assert_eq!(
                    *size as usize,
                    payload.as_ref().map_or(0, Vec::len),
                    "raw_size of message {i}"
                );
                if *code == "oversized" {
                    assert_eq!(*kept, 64 * 1024, "oversized raw is cut to 64 KiB");
                } else {
                    assert_eq!(*kept as i64, *size, "raw bytes are kept whole");
                }
            }
            None => assert!(!got.contains_key(&offset), "message {i} is valid"),
        }
    }
    let good = scalar(
        &s.lake,
        "SELECT count(*) FROM engagement_events WHERE event_id IN ('good-1', 'good-2')",
    )
    .await;
    assert_eq!(good, 2, "the valid messages beside the bad ones all land");

    // The generated bad input: counts per reason code match what the generator sent.
    for (code, n) in report["malformed_by_reason_code"]
        .as_object()
        .expect("malformed_by_reason_code")
    {
        let in_lake = scalar(
            &s.lake,
            &format!("SELECT count(*) FROM dead_letters WHERE _kafka_topic IN ('{}', '{}') AND reason_code = '{code}' \
                      AND NOT (_kafka_topic = '{}' AND _kafka_partition = 0 AND _kafka_offset BETWEEN {} AND {})",
                s.app, s.rec, s.app, first, first + corpus.len() as i64 - 1),
        )
        .await;
        assert_eq!(
            in_lake as u64,
            n.as_u64().unwrap_or(0),
            "dead letters with reason {code}"
        );
    }
    assert!(num(&report, "/malformed") > 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn late_events_land_in_their_own_hour_partitions() {
    let broker = kafka::shared();
    let s = Setup::new(&broker.bootstrap, 2).await;
    // Ingest runs while events arrive, so it commits many times (and checkpoints).
    let ingest = s.ingest(&hourlake(), &["--checkpoint-interval", "5"]);
    ingest.wait_assigned();
    let report = s
        .produce(&hourlake())
        .with("count", 8000)
        .with("rate", 2000)
        .with("late-fraction", "0.3")
        .with("seed", 9)
        .run_async()
        .await;
    wait_exactly_once(&s.lake, &broker.bootstrap, &s.topics(), SETTLE).await;

    for table in ["engagement_events", "recommendation_events"] {
        let misplaced = scalar(
            &s.lake,
            &format!(
                "SELECT count(*) FROM {table} WHERE event_date <> CAST(event_time AS DATE) \
                      OR event_hour <> CAST(date_part('hour', event_time) AS INT)"
            ),
        )
        .await;
        assert_eq!(
            misplaced, 0,
            "{table}: every row sits in the hour of its event_time"
        );
    }
    let late = scalar(
        &s.lake,
        "SELECT count(*) FROM engagement_events WHERE event_time < _ingested_at - INTERVAL '1 hour'",
    )
    .await;
    let late_rec = scalar(
        &s.lake,
        "SELECT count(*) FROM recommendation_events WHERE event_time < _ingested_at - INTERVAL '1 hour'",
    )
    .await;
    assert_eq!(
        (late + late_rec) as u64,
        num(&report, "/late"),
        "every late event is stored with its own time"
    );
    let hours = scalar(
        &s.lake,
        "SELECT count(DISTINCT (event_date, event_hour)) FROM engagement_events",
    )
    .await;
    assert!(
        hours >= 10,
        "late events spread over many hour partitions, got {hours}"
    );
    // Every fifth commit of a table writes a checkpoint.
    let log_dir = s.lake_path().join("engagement_events/_delta_log");
    let checkpoints = std::fs::read_dir(&log_dir)
        .expect("delta log")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(".checkpoint.parquet")
        })
        .count();
    assert!(
        checkpoints >= 1 && log_dir.join("_last_checkpoint").exists(),
        "checkpoints are written"
    );
    // And on disk: one folder per hour, named by date and hour.
    let table_dir = s.lake_path().join("engagement_events");
    let dates: Vec<_> = std::fs::read_dir(&table_dir)
        .expect("table dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("event_date="))
        .collect();
    let hour_dirs: usize = dates
        .iter()
        .map(|d| std::fs::read_dir(d.path()).map(|r| r.count()).unwrap_or(0))
        .sum();
    assert_eq!(
        hour_dirs as i64, hours,
        "one folder per (event_date, event_hour)"
    );
}
