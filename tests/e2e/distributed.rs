//! Distributed SQL: `hourlake serve --workers A,B` runs plans that scan lake files on two
//! `hourlake worker` processes and gives exactly the single-server answers; `EXPLAIN`
//! shows the stages; a worker killed with `kill -9` during a query costs at most a clear
//! `503 worker_lost` (here: the query runs again on the server before its first row),
//! the server keeps serving, and it takes the worker back when it returns.

use std::time::{Duration, Instant};

use hourlake_testkit::binary::Daemon;
use hourlake_testkit::http::{http_get, metric};
use hourlake_testkit::kafka;
use hourlake_testkit::lake::wait_exactly_once;
use hourlake_testkit::setup::Setup;
use serde_json::{json, Value};

use crate::hourlake;
use crate::serve::served_addr;

/// Queries whose answers must not depend on where they ran: the dashboard views (rollup
/// rows for closed hours, raw events for the open one), sketch functions, a group-by
/// with one group per user and a join with a shuffle. Left out, as they differ between
/// any two runs, distributed or not: KLL quantiles over more than 200 values (the
/// sketch's compaction is randomized; quantiles are taken per user here, few values
/// each), sums of floating-point values (their order changes the last bits), and the
/// bytes of HLL sketches built from raw events (a small sketch lists its entries in the
/// order they came; its estimate does not depend on it).
const SAME_ANSWERS: &[&str] = &[
    "SELECT event_date, event_hour, events, active_users, sessions, installs, \
     notification_views, notification_opens, purchases, hll_estimate(users_sketch), source \
     FROM hourly_engagement",
    "SELECT * FROM daily_active_users",
    "SELECT * FROM recommendation_ctr",
    "SELECT event_type, hll_count_distinct(user_id) AS users, count(*) AS n \
     FROM engagement_events GROUP BY event_type",
    "SELECT user_id, count(*) AS n, sum(coalesce(session_length_ms, 0)) AS ms, \
     quantile_estimate(quantile_sketch(session_length_ms), 0.5) AS p50 \
     FROM engagement_events GROUP BY user_id HAVING count(session_length_ms) <= 150",
    "SELECT e.event_type, count(*) AS n, sum(r.served) AS served \
     FROM engagement_events e \
     JOIN (SELECT user_id, count(*) AS served FROM recommendation_events GROUP BY user_id) r \
     ON e.user_id = r.user_id GROUP BY e.event_type",
];

fn worker(name: &str, lake: &std::path::Path, lake_arg: &str, listen: &str) -> Daemon {
    hourlake().daemon(
        name,
        lake,
        &[
            "worker",
            "--lake",
            lake_arg,
            "--listen",
            listen,
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    )
}

fn worker_addr(worker: &Daemon) -> String {
    worker.logged_addr("serving query tasks on http://")
}

fn tasks_started(worker: &Daemon) -> f64 {
    let (_, text) = http_get(&worker.metrics_addr(), "/metrics");
    metric(&text, "hourlake_worker_tasks_total")
}

/// Status, ETag and rows (each as JSON text, sorted: row order is not part of the answer).
async fn ask(client: &reqwest::Client, server: &Daemon, sql: &str) -> (u16, String, Value) {
    let r = client
        .post(format!("http://{}/v1/sql", served_addr(server)))
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut body: Value = r.json().await.expect("json");
    if let Some(rows) = body["rows"].as_array_mut() {
        rows.sort_by_key(|row| row.to_string());
    }
    (status, etag, body)
}

async fn explain(client: &reqwest::Client, server: &Daemon, sql: &str) -> String {
    let (status, _, body) = ask(client, server, &format!("EXPLAIN {sql}")).await;
    assert_eq!(status, 200, "{body}");
    body["rows"].to_string().replace("\\n", "\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_give_single_server_answers_and_survive_a_kill() {
    let broker = kafka::shared();
    let s = Setup::new(&broker.bootstrap, 2).await;
    let lake_arg = s.lake_arg();
    let mut ingest = s.ingest(&hourlake(), &["--max-rows", "2000"]);
    // Event times over the last ~70 minutes: at least one closed hour to roll up.
    s.produce(&hourlake())
        .with("count", 40_000)
        .with("sim-rate", 10)
        .with("seed", 16)
        .run_async()
        .await;
    wait_exactly_once(&s.lake, &s.bootstrap, &s.topics(), Duration::from_secs(180)).await;
    // Nothing commits from here on: every server sees the same table versions.
    assert_eq!(ingest.terminate().code(), Some(0), "{}", ingest.log_text());
    // One compactor pass: closed hours rewritten and rolled up, so the views read rollup
    // rows (a Delta table the server probes for covered hours) and raw events.
    let compacted = hourlake()
        .command()
        .args(["compact", "--lake", &lake_arg, "--closed-after-secs", "0"])
        .output()
        .expect("hourlake compact");
    assert!(
        compacted.status.success(),
        "{}",
        String::from_utf8_lossy(&compacted.stderr)
    );
    assert!(
        hourlake_testkit::lake::scalar(&s.lake, "SELECT count(*) FROM engagement_hourly").await > 0,
        "no rollup rows"
    );

    let a = worker("worker-a", &s.lake_path(), &lake_arg, "127.0.0.1:0");
    let b = worker("worker-b", &s.lake_path(), &lake_arg, "127.0.0.1:0");
    let (addr_a, addr_b) = (worker_addr(&a), worker_addr(&b));
    let workers = format!("{addr_a},{addr_b}");
    // No result cache: every request runs, on the workers.
    let config = s.dir.path().join("no-cache.toml");
    std::fs::write(&config, "[server]\ncache_mb = 0\n").expect("config");
    let config = config.display().to_string();
    let distributed = hourlake().daemon(
        "serve-distributed",
        &s.lake_path(),
        &[
            "serve",
            "--config",
            &config,
            "--lake",
            &lake_arg,
            "--http",
            "127.0.0.1:0",
            "--workers",
            &workers,
            "--distributed-kb-per-task",
            "64",
        ],
    );
    let single = hourlake().daemon(
        "serve-single",
        &s.lake_path(),
        &["serve", "--lake", &lake_arg, "--http", "127.0.0.1:0"],
    );
    let client = reqwest::Client::new();

    // EXPLAIN shows the stages and the tasks of both workers.
    let scan = "SELECT user_id, count(*) FROM engagement_events GROUP BY user_id";
    let plan = explain(&client, &distributed, scan).await;
    assert!(plan.contains("DistributedExec"), "{plan}");
    assert!(plan.contains("NetworkShuffleExec"), "{plan}");
    assert!(plan.contains("tasks=2"), "{plan}");
    let local_plan = explain(&client, &single, scan).await;
    assert!(!local_plan.contains("DistributedExec"), "{local_plan}");

    // The same answers (and the same ETag: where a query ran is not part of its answer).
    for sql in SAME_ANSWERS {
        // recommendation_events is smaller than one task here: that view stays local.
        if !sql.contains("recommendation_ctr") {
            let plan = explain(&client, &distributed, sql).await;
            assert!(plan.contains("DistributedExec"), "{sql}: {plan}");
        }
        let (status, etag, there) = ask(&client, &distributed, sql).await;
        assert_eq!(status, 200, "{sql}: {there}\n{}", distributed.log_text());
        let (_, single_etag, here) = ask(&client, &single, sql).await;
        assert!(
            there["rows"]
                .as_array()
                .is_some_and(|rows| !rows.is_empty()),
            "{sql}: {there}"
        );
        assert_eq!(there["rows"], here["rows"], "{sql}");
        assert_eq!(etag, single_etag, "{sql}");
    }
    let (tasks_a, tasks_b) = (tasks_started(&a), tasks_started(&b));
    assert!(tasks_a > 0.0 && tasks_b > 0.0, "a: {tasks_a}, b: {tasks_b}");
    // Tables and constants that are not lake files stay on the server.
    let (status, _, body) = ask(&client, &distributed, "SELECT 1 AS one").await;
    assert_eq!((status, body["rows"].clone()), (200, json!([[1]])));
    let (status, _, body) = ask(
        &client,
        &distributed,
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'engagement_events'",
    )
    .await;
    assert_eq!((status, body["rows"].clone()), (200, json!([[1]])));

    // A worker killed while a query runs on it: the answer is still right (the query
    // ran again on the server before its first row) or a clear 503; never wrong.
    let heavy = "SELECT x.event_type, count(*) AS n FROM engagement_events x \
                 JOIN engagement_events y ON x.user_id = y.user_id \
                 WHERE x.event_time < y.event_time GROUP BY x.event_type";
    let (_, _, expected) = ask(&client, &single, heavy).await;
    let mut b = b;
    let before = tasks_started(&b);
    let running = {
        let client = client.clone();
        let addr = served_addr(&distributed);
        tokio::spawn(async move {
            let started = Instant::now();
            let r = client
                .post(format!("http://{addr}/v1/sql"))
                .json(&json!({ "sql": heavy }))
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            let mut body: Value = r.json().await.expect("json");
            if let Some(rows) = body["rows"].as_array_mut() {
                rows.sort_by_key(|row| row.to_string());
            }
            (status, body, started.elapsed())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tasks_started(&b) <= before && !running.is_finished() {
        assert!(Instant::now() < deadline, "worker b never got a task");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.kill9();
    let (status, body, took) = running.await.expect("query task");
    match status {
        200 => assert_eq!(body["rows"], expected["rows"], "{heavy}"),
        503 => assert_eq!(body["error"]["code"], "worker_lost", "{body}"),
        other => panic!("worker killed mid-query answered {other}: {body}"),
    }
    assert!(
        took < Duration::from_secs(30),
        "the query hung for {took:?}"
    );

    let (_, text) = http_get(&served_addr(&distributed), "/metrics");
    let outcomes: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("hourlake_distributed_queries_total{"))
        .collect();
    eprintln!("after the kill ({status} in {took:?}): {outcomes:?}");
    // The query was running on the killed worker: it either ran again on the server
    // (before its first row) or answered 503.
    let expected_outcome = if status == 200 {
        "retried_locally"
    } else {
        "worker_lost"
    };
    assert!(
        outcomes.iter().any(|l| l.contains(expected_outcome)),
        "{outcomes:?}"
    );

    // The server keeps serving, with the right answers.
    for sql in SAME_ANSWERS {
        let (status, _, there) = ask(&client, &distributed, sql).await;
        let (_, _, here) = ask(&client, &single, sql).await;
        assert_eq!(status, 200, "{sql}: {there}\n{}", distributed.log_text());
        assert_eq!(there["rows"], here["rows"], "{sql}");
    }
    let (status, _) = http_get(&served_addr(&distributed), "/health");
    assert!(status.contains("200"), "{status}");
    // With one worker left every stage would have one task, which datafusion-distributed
    // runs on the server itself: nothing left to split.
    let plan = explain(&client, &distributed, scan).await;
    assert!(!plan.contains("DistributedExec"), "{plan}");

    // The worker comes back on its address and is used again within seconds.
    let back = worker("worker-b2", &s.lake_path(), &lake_arg, &addr_b);
    assert_eq!(worker_addr(&back), addr_b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tasks_started(&back) == 0.0 {
        let (status, _, there) = ask(&client, &distributed, scan).await;
        assert_eq!(status, 200, "{there}");
        assert!(
            Instant::now() < deadline,
            "the returned worker got no task:\n{}",
            distributed.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, _, there) = ask(&client, &distributed, scan).await;
    let (_, _, here) = ask(&client, &single, scan).await;
    assert_eq!(there["rows"], here["rows"]);
    let (_, text) = http_get(&served_addr(&distributed), "/metrics");
    assert!(
        metric(&text, "hourlake_distributed_queries_total") > 0.0,
        "{text}"
    );
    assert!(tasks_started(&a) > tasks_a, "worker a ran no more tasks");
}
