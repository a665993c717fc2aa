//! `hourlake produce` → Kafka → a plain rdkafka consumer: counts match the report.

use std::collections::BTreeMap;
use std::time::Duration;

use hourlake_testkit::binary::num;
use hourlake_testkit::kafka::{self, consumer_from_start, high_watermarks};
use hourlake_testkit::unique;
use rdkafka::message::Message;

use crate::hourlake;

/// Reads every message of a topic from the beginning to its high watermark.
fn read_all(bootstrap: &str, topic: &str) -> Vec<Vec<u8>> {
    let marks = high_watermarks(bootstrap, topic);
    let consumer = consumer_from_start(bootstrap, marks.iter().map(|(p, _)| (topic, *p)));
    let total: i64 = marks.iter().map(|(_, h)| h).sum();
    let mut out = Vec::with_capacity(total as usize);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while (out.len() as i64) < total && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            out.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn produced_events_are_consumed_back_with_matching_counts() {
    let broker = kafka::shared();
    let (app, rec) = (unique("app"), unique("rec"));
    let report = hourlake()
        .produce(&broker.bootstrap, &app, &rec)
        .with("count", 100_000)
        .with("users", 5000)
        .with("late-fraction", "0.02")
        .with("duplicate-fraction", "0.01")
        .with("seed", 11)
        .run();
    assert_eq!(num(&report, "/sent"), 100_000);
    assert_eq!(num(&report, "/failed"), 0);
    assert!(num(&report, "/late") > 1000, "{report}");
    assert!(num(&report, "/duplicates") > 500, "{report}");

    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut ids = std::collections::HashSet::new();
    let mut total = 0;
    for (topic, rec_topic) in [(&app, false), (&rec, true)] {
        for payload in read_all(&broker.bootstrap, topic) {
            total += 1;
            let v: serde_json::Value =
                serde_json::from_slice(&payload).expect("valid JSON without --bad-fraction");
            let t = v["event_type"].as_str().expect("event_type").to_string();
            assert_eq!(t.starts_with("rec_"), rec_topic, "{t} on the wrong topic");
            ids.insert(v["event_id"].as_str().expect("event_id").to_string());
            *by_type.entry(t).or_default() += 1;
        }
    }
    assert_eq!(total, 100_000, "every delivered message is in Kafka");
    let reported = report["events_by_type"]
        .as_object()
        .expect("events_by_type");
    assert_eq!(
        by_type.len(),
        12,
        "all twelve event types are generated: {by_type:?}"
    );
    for (t, n) in &by_type {
        let expected = reported.get(t).and_then(|v| v.as_u64()).unwrap_or(0)
            + num(&report, &format!("/duplicates_by_type/{t}"));
        assert_eq!(*n, expected, "count of {t}");
    }
    let distinct: u64 = reported.values().filter_map(|v| v.as_u64()).sum();
    assert_eq!(
        ids.len() as u64,
        distinct,
        "duplicates reuse event ids; everything else is unique"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn same_seed_and_start_time_reproduce_the_same_messages() {
    let broker = kafka::shared();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (app, rec) = (unique("app"), unique("rec"));
        hourlake()
            .produce(&broker.bootstrap, &app, &rec)
            .with("count", 3000)
            .with("partitions", 1)
            .with("bad-fraction", "0.05")
            .with("duplicate-fraction", "0.05")
            .with("seed", 5)
            .with("start-time", "2026-11-20T10:00:00Z")
            .run();
        runs.push((
            read_all(&broker.bootstrap, &app),
            read_all(&broker.bootstrap, &rec),
        ));
    }
    assert_eq!(runs[0].0.len() + runs[0].1.len(), 3000);
    assert!(
        runs[0] == runs[1],
        "same seed must give the same bytes in the same order"
    );
}
