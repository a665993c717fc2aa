//! Ingest from a replicated three-broker Kafka cluster while one broker crashes
//! (`kill -9`) mid-stream and comes back later: nothing lost, nothing doubled, and
//! ingest goes on meanwhile.

use std::time::{Duration, Instant};

use hourlake_testkit::binary::num;
use hourlake_testkit::kafka;
use hourlake_testkit::lake::{try_partition_stats, wait_exactly_once};
use hourlake_testkit::setup::Setup;

use crate::hourlake;

/// Rows (and dead letters) in the lake so far.
async fn rows(s: &Setup) -> i64 {
    try_partition_stats(&s.lake)
        .await
        .map(|stats| stats.values().map(|p| p.rows).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_broker_loses_and_doubles_nothing_and_ingest_goes_on() {
    let cluster = kafka::dedicated_cluster("cluster");
    let s = Setup::new(&cluster.bootstrap, 6).await;
    let mut ingest = s.ingest(&hourlake(), &[]);
    let producer = s
        .produce(&hourlake())
        .with("count", 30_000)
        .with("rate", 1_500)
        .with("bad-fraction", 0.01)
        .with("seed", 33)
        .spawn();

    tokio::time::sleep(Duration::from_secs(5)).await;
    // The first node of the bootstrap list crashes.
    cluster.kill_node(1);
    let killed_at = Instant::now();
    let before = rows(&s).await;
    // Ingest goes on without it: new rows land while the node is down.
    loop {
        if rows(&s).await > before {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "ingest made no progress in 60 s after a broker crashed:\n{}",
            ingest.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.start_node(1);

    let report = producer.wait_async().await;
    assert_eq!(num(&report, "/sent"), 30_000, "{report}");
    wait_exactly_once(&s.lake, &s.bootstrap, &s.topics(), Duration::from_secs(180)).await;
    let log = ingest.log_text();
    assert_eq!(ingest.terminate().code(), Some(0), "{log}");
}
