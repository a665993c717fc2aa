//! Replay from a point in time into a fresh lake: `hourlake ingest --start-at TIME` with
//! a lake and a group of its own holds exactly the messages Kafka timestamped at or
//! after TIME, continues exactly once from its own lake after a crash, and leaves the
//! production group's committed offsets alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use hourlake_catalog::Lake;
use hourlake_testkit::binary::num;
use hourlake_testkit::kafka::{
    self, committed_offsets, consumer_from_start, end_offsets, wait_committed, EndOffsets,
};
use hourlake_testkit::lake::{partition_stats, try_partition_stats, wait_exactly_once};
use hourlake_testkit::setup::Setup;
use hourlake_testkit::unique;
use rdkafka::message::Message;

use crate::hourlake;

const SETTLE: Duration = Duration::from_secs(180);

/// Every message's Kafka timestamp (ms), per partition, by offset: read back from the
/// log start up to `ends`.
fn kafka_timestamps(bootstrap: &str, ends: &EndOffsets) -> BTreeMap<(String, i32), Vec<i64>> {
    let consumer = consumer_from_start(bootstrap, ends.keys().map(|(t, p)| (t.as_str(), *p)));
    let total: i64 = ends.values().sum();
    let mut seen: BTreeMap<(String, i32), BTreeMap<i64, i64>> = ends
        .keys()
        .map(|tp| (tp.clone(), BTreeMap::new()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.values().map(|m| m.len() as i64).sum::<i64>() < total {
        assert!(Instant::now() < deadline, "could not read the topics back");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let ts = m.timestamp().to_millis().expect("a Kafka timestamp");
            seen.entry((m.topic().to_string(), m.partition()))
                .or_default()
                .insert(m.offset(), ts);
        }
    }
    seen.into_iter()
        .map(|(tp, by_offset)| (tp, by_offset.into_values().collect()))
        .collect()
}

/// Per partition, the first offset whose Kafka timestamp is at or after `at_ms`, and
/// checks the timestamps split the log there (the produce runs of the test were apart).
fn first_at_or_after(
    stamps: &BTreeMap<(String, i32), Vec<i64>>,
    at_ms: i64,
) -> BTreeMap<(String, i32), i64> {
    stamps
        .iter()
        .map(|(tp, ts)| {
            let first = ts.iter().position(|t| *t >= at_ms).unwrap_or(ts.len()) as i64;
            assert!(
                ts[first as usize..].iter().all(|t| *t >= at_ms),
                "{tp:?}: a message before --start-at after the first one at or after it"
            );
            (tp.clone(), first)
        })
        .collect()
}

/// Waits until the lake at `path` holds `want` rows, then checks that each partition
/// holds exactly the offsets `first[tp]..ends[tp]`, each once, and nothing else.
async fn assert_holds_exactly(
    path: &Path,
    first: &BTreeMap<(String, i32), i64>,
    ends: &EndOffsets,
) {
    let lake = Lake::local(path).expect("lake");
    let want: i64 = ends.iter().map(|(tp, end)| end - first[tp]).sum();
    let start = Instant::now();
    loop {
        let have: i64 = match try_partition_stats(&lake).await {
            Ok(stats) => stats.values().map(|s| s.rows).sum(),
            Err(_) => 0,
        };
        if have >= want || start.elapsed() > SETTLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stats = partition_stats(&lake).await;
    for (tp, end) in ends {
        let from = first[tp];
        match stats.get(tp) {
            None => assert_eq!(from, *end, "{tp:?}: nothing in the replay lake"),
            Some(s) => {
                assert_eq!(s.rows, s.distinct, "{tp:?}: an offset twice: {s:?}");
                assert_eq!(
                    (s.min, s.max, s.rows),
                    (from, end - 1, end - from),
                    "{tp:?}: the replay lake must hold exactly {from}..{end}: {s:?}"
                );
            }
        }
    }
    assert!(
        stats.keys().all(|tp| ends.contains_key(tp)),
        "the replay lake holds partitions it should not: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_from_a_point_in_time_into_a_fresh_lake() {
    let broker = kafka::shared();
    let s = Setup::new(&broker.bootstrap, 3).await;
    // Event times from an hour ago (all accepted); Kafka timestamps are when produce
    // sent each message.
    let event_start = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let produce = |count: u64, seed: u64| {
        s.produce(&hourlake())
            .with("count", count)
            .with("seed", seed)
            .with("bad-fraction", 0.02)
            .with("start-time", &event_start)
            .run_async()
    };
    let before = produce(3_000, 61).await;
    assert_eq!(num(&before, "/sent"), 3_000);
    let after_before = end_offsets(&s.bootstrap, &s.topics());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let start_at = Utc::now();
    let start_at_arg = start_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = produce(3_000, 62).await;
    assert_eq!(num(&after, "/sent"), 3_000);

    // Production: its own lake and group, everything exactly once.
    let mut production = s.ingest(&hourlake(), &[]);
    let ends = end_offsets(&s.bootstrap, &s.topics());
    {
        let (bootstrap, group, ends) = (s.bootstrap.clone(), s.group.clone(), ends.clone());
        tokio::task::spawn_blocking(move || wait_committed(&bootstrap, &group, &ends, SETTLE))
            .await
            .expect("production ingest caught up");
    }
    wait_exactly_once(&s.lake, &s.bootstrap, &s.topics(), SETTLE).await;
    assert_eq!(production.terminate().code(), Some(0));
    let production_offsets = |s: &Setup| {
        s.topics()
            .map(|t| committed_offsets(&s.bootstrap, &s.group, t))
            .to_vec()
    };
    let production_committed = production_offsets(&s);

    // What the replay must hold: exactly the messages timestamped at or after
    // --start-at, which here are the second produce run's.
    let stamps = {
        let (bootstrap, ends) = (s.bootstrap.clone(), ends.clone());
        tokio::task::spawn_blocking(move || kafka_timestamps(&bootstrap, &ends))
            .await
            .expect("reading timestamps")
    };
    let first = first_at_or_after(&stamps, start_at.timestamp_millis());
    assert_eq!(
        first, after_before,
        "the split falls between the produce runs"
    );

    // The default group is refused: the replay would join the production ingest's.
    let refused_lake = s.dir.path().join("refused-lake");
    let mut refused = hourlake()
        .ingest(&s.bootstrap, &s.topics(), "hourlake", &refused_lake)
        .args(["--start-at", &start_at_arg])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("hourlake ingest");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = refused.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = refused.kill();
            panic!("ingest --start-at with the group `hourlake` did not refuse to start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(refused.stderr.as_mut().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(!status.success() && stderr.contains("--group"), "{stderr}");

    // The replay: a fresh lake, a group of its own, from --start-at.
    let replay_group = unique("replay");
    let replay_lake = s.dir.path().join("replay-lake");
    let args = ["--start-at", start_at_arg.as_str()];
    let replay = |s: &Setup| {
        hourlake().ingest_daemon(
            &s.bootstrap,
            &s.topics(),
            &replay_group,
            &replay_lake,
            &args,
        )
    };
    let mut replaying = replay(&s);
    assert_holds_exactly(&replay_lake, &first, &ends).await;
    assert!(
        replaying.log_text().contains("start-at offset"),
        "{}",
        replaying.log_text()
    );

    // A crash, more messages, a restart: it continues from its own lake, exactly once.
    replaying.kill9();
    let more = produce(2_000, 63).await;
    assert_eq!(num(&more, "/sent"), 2_000);
    let ends = end_offsets(&s.bootstrap, &s.topics());
    let mut replaying = replay(&s);
    assert_holds_exactly(&replay_lake, &first, &ends).await;
    {
        let (bootstrap, group, ends) = (s.bootstrap.clone(), replay_group.clone(), ends.clone());
        tokio::task::spawn_blocking(move || wait_committed(&bootstrap, &group, &ends, SETTLE))
            .await
            .expect("the replay commits its own group's offsets");
    }
    let log = replaying.log_text();
    assert_eq!(replaying.terminate().code(), Some(0), "{log}");

    // The production group's offsets in Kafka were not touched.
    assert_eq!(production_offsets(&s), production_committed);
}
