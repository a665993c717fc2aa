//! `hourlake forget-user` while ingest, a compactor and a query server run: the running
//! compactor (which holds the leases) carries the request out, the user is gone from
//! every table and from the lookup endpoint, other users keep their rows, and events of
//! the user that arrive later are ingested as usual.

use std::time::{Duration, Instant};

use hourlake_testkit::kafka::{self, send};
use hourlake_testkit::lake::{scalar, wait_exactly_once};
use hourlake_testkit::setup::Setup;
use hourlake_testkit::unique;
use serde_json::{json, Value};

use crate::compaction::start_watcher;
use crate::hourlake;
use crate::serve::served_addr;

#[tokio::test(flavor = "multi_thread")]
async fn forget_user_erases_a_user_while_ingest_compactor_and_server_run() {
    let broker = kafka::shared();
    let s = Setup::new(&broker.bootstrap, 2).await;
    let start = (chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc3339();
    s.produce(&hourlake())
        .with("count", 6_000)
        .with("seed", 23)
        .with("users", 40)
        .with("start-time", &start)
        .run_async()
        .await;
    let _ingest = s.ingest(&hourlake(), &[]);
    let lake_arg = s.lake_arg();
    let compactor = start_watcher(&s, &lake_arg, &[]);
    let server = hourlake().daemon(
        "serve",
        &s.lake_path(),
        &["serve", "--lake", &lake_arg, "--http", "127.0.0.1:0"],
    );
    wait_exactly_once(&s.lake, &s.bootstrap, &s.topics(), Duration::from_secs(120)).await;
    // the compactor has rolled up the closed hours
    let deadline = Instant::now() + Duration::from_secs(120);
    while !compactor.log_text().contains("rolled up") {
        assert!(Instant::now() < deadline, "{}", compactor.log_text());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // the victim: the most active user, who is also served a recommendation list now
    let victim_sql =
        "SELECT user_id FROM engagement_events GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1";
    let victim = {
        let batches = hourlake_testkit::lake::query(&s.lake, victim_sql).await;
        let col = arrow::compute::cast(batches[0].column(0), &arrow::datatypes::DataType::Utf8)
            .expect("text");
        arrow::array::AsArray::as_string::<i32>(&col)
            .value(0)
            .to_string()
    };
    let served = json!({"event_id": unique("served"), "event_type": "rec_served",
        "event_time": chrono::Utc::now().timestamp_millis(), "user_id": victim,
        "request_id": "req-forget", "model_version": "ranker-v1", "surface": "home",
        "items": [{"item_id": "i-1", "score": 0.9, "rank": 1}]});
    send(
        &s.bootstrap,
        &s.rec,
        &[Some(served.to_string().into_bytes())],
    )
    .await;
    let count = |table: &str| format!("SELECT count(*) FROM {table} WHERE user_id = '{victim}'");
    let victim_events = scalar(&s.lake, &count("engagement_events")).await;
    assert!(victim_events > 0);
    let others = "SELECT count(*) FROM engagement_events WHERE user_id <> '{victim}'"
        .replace("{victim}", &victim);
    let others_before = scalar(&s.lake, &others).await;
    let base = format!("http://{}", served_addr(&server));
    let client = reqwest::Client::new();
    let lists = |body: &Value| body["recommendations"].as_array().map_or(0, Vec::len);
    let lookup = || {
        let (client, url) = (
            client.clone(),
            format!("{base}/v1/users/{victim}/recommendations"),
        );
        async move {
            client
                .get(url)
                .send()
                .await
                .expect("lookup")
                .json::<Value>()
                .await
                .expect("JSON")
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while lists(&lookup().await) == 0 {
        assert!(
            Instant::now() < deadline,
            "the index never served the victim"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // erase while everything runs: the watcher holds the leases and carries it out
    let forgotten = hourlake()
        .command()
        .args([
            "forget-user",
            "--lake",
            &lake_arg,
            "--wait-secs",
            "120",
            &victim,
        ])
        .output()
        .expect("forget-user");
    let stdout = String::from_utf8_lossy(&forgotten.stdout);
    let stderr = String::from_utf8_lossy(&forgotten.stderr);
    assert!(forgotten.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("carried_out_by"), "{stdout}\n{stderr}");
    assert!(
        compactor.log_text().contains("users erased"),
        "{}",
        compactor.log_text()
    );

    for table in ["engagement_events", "recommendation_events"] {
        assert_eq!(scalar(&s.lake, &count(table)).await, 0, "{table}");
    }
    assert_eq!(scalar(&s.lake, &others).await, others_before);
    let logged = scalar(&s.lake, "SELECT sum(rows_removed) FROM erasure_log").await;
    assert!(logged >= victim_events, "{logged} < {victim_events}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = lookup().await;
        if lists(&body) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lookup still serves the erased user: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // a later event of the user is ingested as usual
    let later = json!({"event_id": unique("later"), "event_type": "click",
        "event_time": chrono::Utc::now().timestamp_millis(), "user_id": victim});
    send(
        &s.bootstrap,
        &s.app,
        &[Some(later.to_string().into_bytes())],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(&s.lake, &count("engagement_events")).await != 1 {
        assert!(Instant::now() < deadline, "the later event never arrived");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
