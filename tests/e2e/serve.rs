//! `hourlake serve` as a process beside `hourlake ingest`: events produced to Kafka are
//! answered over HTTP within seconds (SQL and recommendation lookups), and bad
//! requests get clear errors.

use std::time::{Duration, Instant};

use hourlake_testkit::binary::{num, Daemon};
use hourlake_testkit::kafka::{self, send};
use hourlake_testkit::setup::Setup;
use hourlake_testkit::unique;
use serde_json::{json, Value};

use crate::hourlake;

/// The address `hourlake serve` logged it listens on.
pub(crate) fn served_addr(server: &Daemon) -> String {
    server.logged_addr("serving SQL over HTTP on http://")
}

#[tokio::test(flavor = "multi_thread")]
async fn served_sql_sees_ingested_events_within_seconds() {
    let broker = kafka::shared();
    let s = Setup::new(&broker.bootstrap, 2).await;
    let lake_arg = s.lake_arg();
    let _ingest = s.ingest(&hourlake(), &[]);
    let server = hourlake().daemon(
        "serve",
        &s.lake_path(),
        &[
            "serve",
            "--lake",
            &lake_arg,
            "--http",
            "127.0.0.1:0",
            "--token",
            "t0ken",
        ],
    );
    let base = format!("http://{}", served_addr(&server));
    let client = reqwest::Client::new();

    let report = s
        .produce(&hourlake())
        .with("count", 3000)
        .with("seed", 5)
        .run_async()
        .await;
    let sent = num(&report, "/sent");
    let produced_at = Instant::now();
    let count_sql = json!({"sql": "SELECT (SELECT count(*) FROM engagement_events) + (SELECT count(*) FROM recommendation_events) AS n"});
    let seen = loop {
        let r = client
            .post(format!("{base}/v1/sql"))
            .bearer_auth("t0ken")
            .json(&count_sql)
            .send()
            .await
            .expect("request");
        if r.status().is_success() {
            let body: Value = r.json().await.expect("json");
            let n = body["rows"][0][0].as_u64().unwrap_or(0);
            if n == sent {
                break n;
            }
        }
        assert!(
            produced_at.elapsed() < Duration::from_secs(30),
            "events not visible over HTTP in 30 s:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(seen, sent);

    // A new recommendation is returned by the lookup endpoint within seconds.
    let user = unique("user");
    let served = json!({
        "event_id": unique("ev"), "event_type": "rec_served",
        "event_time": chrono::Utc::now().timestamp_millis(), "user_id": user,
        "request_id": "req-e2e", "model_version": "ranker-v9", "surface": "home",
        "items": [{"item_id": "i-1", "score": 0.9, "rank": 1}, {"item_id": "i-2", "score": 0.4, "rank": 2}],
    });
    send(
        &broker.bootstrap,
        &s.rec,
        &[Some(served.to_string().into_bytes())],
    )
    .await;
    let sent_at = Instant::now();
    loop {
        let r = client
            .get(format!("{base}/v1/users/{user}/recommendations"))
            .bearer_auth("t0ken")
            .send()
            .await
            .expect("request");
        let body: Value = r.json().await.expect("json");
        if let Some(first) = body["recommendations"].get(0) {
            assert_eq!(first["model_version"], "ranker-v9");
            assert_eq!(first["items"][0]["item_id"], "i-1");
            assert_eq!(first["items"][0]["clicked"], false);
            break;
        }
        assert!(
            sent_at.elapsed() < Duration::from_secs(10),
            "recommendation not returned in 10 s: {body}\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Without the token: 401; a write: 403; garbage: 400; health needs no token.
    let r = client
        .post(format!("{base}/v1/sql"))
        .json(&count_sql)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    let r = client
        .post(format!("{base}/v1/sql"))
        .bearer_auth("t0ken")
        .json(&json!({"sql": "DELETE FROM engagement_events"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    let r = client
        .post(format!("{base}/v1/sql"))
        .bearer_auth("t0ken")
        .body("{{{")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    let r = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let mut server = server;
    assert_eq!(server.terminate().code(), Some(0), "{}", server.log_text());
}
