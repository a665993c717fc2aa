//! The lake on a real S3-compatible server (versitygw, started by `scripts/s3`): several
//! ingest processes killed at random while a compactor works lose and double nothing;
//! a second compactor keeps off; two query servers over one lake give the same answers
//! with the same ETag, and both answer recommendation lookups.

use std::time::{Duration, Instant};

use hourlake_testkit::binary::{num, Daemon};
use hourlake_testkit::kafka::{self, send};
use hourlake_testkit::lake::wait_exactly_once;
use hourlake_testkit::s3;
use hourlake_testkit::setup::Setup;
use hourlake_testkit::unique;
use serde_json::{json, Value};

use crate::compaction::{second_compactor_keeps_off, start_watcher};
use crate::hourlake;
use crate::serve::served_addr;

/// `hourlake ingest` of both topics into the S3 lake at `location`, as the static member
/// `instance` of the group (a restarted member gets its partitions back at once).
fn ingest(s: &Setup, server: &s3::S3Server, location: &str, instance: &str) -> Daemon {
    ingest_with(s, server, location, instance, &[])
}

/// [`ingest`] with `extra` flags.
fn ingest_with(
    s: &Setup,
    server: &s3::S3Server,
    location: &str,
    instance: &str,
    extra: &[&str],
) -> Daemon {
    let topics = s.topics().join(",");
    let mut args = vec![
        "ingest",
        "--brokers",
        &s.bootstrap,
        "--topics",
        &topics,
        "--group",
        &s.group,
        "--lake",
        location,
        "--max-latency-ms",
        "300",
        "--instance-id",
        instance,
    ];
    args.extend_from_slice(extra);
    hourlake().daemon_with_env(instance, &s.lake_path(), &args, server.env())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_lake_keeps_every_event_once_through_killed_ingest_processes_and_compaction() {
    let broker = kafka::shared();
    let server = s3::shared();
    let location = server.new_location("lake");
    let lake = server.lake(&location);
    let s = Setup::new(&broker.bootstrap, 6).await;

    // Event times start three hours ago, so the compactor has closed hours to rewrite
    // and roll up while ingest commits.
    let start = (chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc3339();
    let producer = s
        .produce(&hourlake())
        .with("count", 24_000)
        .with("rate", 1_200)
        .with("late-fraction", 0.1)
        .with("bad-fraction", 0.01)
        .with("seed", 16)
        .with("start-time", &start)
        .spawn();
    let instances = ["m0", "m1", "m2"];
    let mut members: Vec<Daemon> = instances
        .iter()
        .map(|id| ingest(&s, server, &location, id))
        .collect();
    let compactor = start_watcher(&s, &location, server.env());

    // kill -9 a member five times while events flow, each time restarting it.
    let mut kills = Vec::new();
    for round in 0..5u32 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        // A member picked by the clock's nanoseconds: random enough, no extra crate.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(round);
        let victim = (nanos as usize + round as usize) % members.len();
        members[victim].kill9();
        members[victim] = ingest(&s, server, &location, instances[victim]);
        kills.push(instances[victim]);
    }
    assert_eq!(kills.len(), 5);

    let report = producer.wait_async().await;
    assert!(num(&report, "/sent") >= 24_000, "{report}");
    // Every offset of every partition exactly once (rows + dead letters), contiguous.
    wait_exactly_once(&lake, &s.bootstrap, &s.topics(), Duration::from_secs(240)).await;

    // A second compactor keeps off the tables the first one holds.
    second_compactor_keeps_off(&location, server.env());

    // Wait for a pass of the watcher that rewrote hours (a pass over many late hours on
    // S3 takes a while on a busy machine), then check once more after its rewrites.
    let deadline = Instant::now() + Duration::from_secs(180);
    while !compactor.log_text().contains("hours rewritten") {
        assert!(
            Instant::now() < deadline,
            "the compactor rewrote nothing in 180 s:\n{}",
            compactor.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut compactor = compactor;
    let compactor_log = compactor.log_text();
    assert_eq!(compactor.terminate().code(), Some(0), "{compactor_log}");
    assert!(!compactor_log.contains("pass failed"), "{compactor_log}");
    wait_exactly_once(&lake, &s.bootstrap, &s.topics(), Duration::from_secs(30)).await;
    for member in &mut members {
        let log = member.log_text();
        assert_eq!(member.terminate().code(), Some(0), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_over_one_s3_lake_answer_alike_with_the_same_etag() {
    let broker = kafka::shared();
    let server = s3::shared();
    let location = server.new_location("served");
    let lake = server.lake(&location);
    let s = Setup::new(&broker.bootstrap, 2).await;
    let mut member = ingest(&s, server, &location, "only");
    s.produce(&hourlake())
        .with("count", 3000)
        .with("seed", 8)
        .run_async()
        .await;
    let user = unique("user");
    let served = json!({
        "event_id": unique("ev"), "event_type": "rec_served",
        "event_time": chrono::Utc::now().timestamp_millis(), "user_id": user,
        "request_id": "req-s3", "model_version": "ranker-v9", "surface": "home",
        "items": [{"item_id": "i-1", "score": 0.9, "rank": 1}],
    });
    send(
        &s.bootstrap,
        &s.rec,
        &[Some(served.to_string().into_bytes())],
    )
    .await;
    wait_exactly_once(&lake, &s.bootstrap, &s.topics(), Duration::from_secs(120)).await;
    // Nothing commits from here on: both servers see the same table versions.
    assert_eq!(member.terminate().code(), Some(0), "{}", member.log_text());

    let servers: Vec<Daemon> = (0..2)
        .map(|i| {
            hourlake().daemon_with_env(
                &format!("serve{i}"),
                &s.lake_path(),
                &["serve", "--lake", &location, "--http", "127.0.0.1:0"],
                server.env(),
            )
        })
        .collect();
    let client = reqwest::Client::new();
    let sql = "SELECT event_type, count(*) AS n FROM engagement_events GROUP BY 1 ORDER BY 1";
    let mut answers = Vec::new();
    for daemon in &servers {
        let base = format!("http://{}", served_addr(daemon));
        let r = client
            .get(format!("{base}/v1/sql"))
            .query(&[("sql", sql)])
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{}", daemon.log_text());
        let etag = r
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .expect("an ETag");
        let body: Value = r.json().await.expect("json");
        assert!(
            body["rows"].as_array().is_some_and(|rows| !rows.is_empty()),
            "{body}"
        );
        // The lookup endpoint answers on every server.
        let deadline = Instant::now() + Duration::from_secs(30);
        let lookup = loop {
            let r = client
                .get(format!("{base}/v1/users/{user}/recommendations"))
                .send()
                .await
                .expect("request");
            let found: Value = r.json().await.expect("json");
            if found["recommendations"].get(0).is_some() {
                break found;
            }
            assert!(Instant::now() < deadline, "no lookup answer: {found}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(lookup["recommendations"][0]["items"][0]["item_id"], "i-1");
        answers.push((
            etag,
            body["rows"].clone(),
            lookup["recommendations"].clone(),
        ));
    }
    assert_eq!(answers[0], answers[1], "the two servers disagree");
}

/// The object store goes away under a running ingest: commits fail (the client is told
/// to give up after one retry within 2 s), ingest drops the window and reads it again
/// from Kafka once the store is back. Nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread")]
async fn ingest_rereads_what_it_could_not_commit_while_the_store_was_down() {
    let broker = kafka::shared();
    let server = s3::dedicated("outage");
    let location = server.new_location("lake");
    let lake = server.lake(&location);
    let s = Setup::new(&broker.bootstrap, 2).await;
    let ingest = ingest_with(
        &s,
        &server,
        &location,
        "ingest-outage",
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--storage-option",
            "max_retries=1",
            "--storage-option",
            "retry_timeout=2s",
        ],
    );
    ingest.wait_assigned();
    let producer = s
        .produce(&hourlake())
        .with("count", 8_000)
        .with("rate", 800)
        .with("bad-fraction", 0.01)
        .with("seed", 41)
        .spawn();
    // Let some windows commit, then take the store away for 8 s mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows: i64 = match hourlake_testkit::lake::try_partition_stats(&lake).await {
            Ok(stats) => stats.values().map(|p| p.rows).sum(),
            Err(_) => 0,
        };
        if rows > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing committed:\n{}",
            ingest.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.stop();
    tokio::time::sleep(Duration::from_secs(8)).await;
    server.start_again();

    let report = producer.wait_async().await;
    assert!(num(&report, "/sent") >= 8_000, "{report}");
    wait_exactly_once(&lake, &s.bootstrap, &s.topics(), Duration::from_secs(180)).await;
    let (_, metrics) = hourlake_testkit::http::http_get(&ingest.metrics_addr(), "/metrics");
    assert!(
        hourlake_testkit::http::metric(&metrics, "hourlake_ingest_commit_errors_total") > 0.0,
        "no commit failed during the outage: the failure path was not exercised\n{}",
        ingest.log_text()
    );
    assert!(
        ingest
            .log_text()
            .contains("re-reading the window from Kafka"),
        "{}",
        ingest.log_text()
    );
}
