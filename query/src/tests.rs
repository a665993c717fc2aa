//! The HTTP API end to end: a real server on a port, real Delta tables on disk, a real
//! HTTP client.

use std::sync::Arc;
use std::time::Duration;

use hourlake_catalog::{Lake, TableId};
use hourlake_sql::{LiveLake, SessionFactory};
use hourlake_testkit::lake::append_rows;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{QueryServer, ServerConfig};

/// Event start of an hour: 2026-11-20T00:00Z plus `h` hours.
pub(crate) fn hour_micros(h: i64) -> i64 {
    1_795_132_800_000_000 + h * 3_600_000_000
}

pub(crate) fn rows(hour: i64, n: usize, first_offset: i64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let t = hour_micros(hour) + i as i64 * 1_000_000;
            let (date, h) = hourlake_catalog::partition::date_and_hour(t);
            json!({
                "event_id": format!("e-{hour}-{i}"),
                "event_type": if i % 2 == 0 { "click" } else { "purchase" },
                "event_time": t,
                "user_id": format!("u{}", i % 7),
                "amount": if i % 2 == 0 { Value::Null } else { json!(2.5) },
                "_kafka_topic": "app-events",
                "_kafka_partition": 0,
                "_kafka_offset": first_offset + i as i64,
                "_ingested_at": t,
                "event_date": date,
                "event_hour": h,
            })
        })
        .collect()
}

pub(crate) async fn append(lake: &Lake, rows: &[Value]) {
    append_rows(lake, TableId::EngagementEvents, rows).await;
}

/// A query server on a free port over [`sample_lake`], and a client for it.
pub(crate) struct Running {
    pub(crate) base: String,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) client: reqwest::Client,
    _dir: tempfile::TempDir,
    lake: Lake,
}

/// Three hours of ten events each in a fresh lake, and a live view of it.
pub(crate) async fn sample_lake() -> (tempfile::TempDir, Lake, LiveLake) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    for h in 0..3 {
        append(&lake, &rows(h, 10, h * 100)).await;
    }
    let live = LiveLake::new(
        SessionFactory::new(lake.clone()),
        Duration::from_millis(200),
    );
    (dir, lake, live)
}

/// The HTTP server over `live`, with an executor of its own.
pub(crate) fn server_over(live: LiveLake, config: ServerConfig) -> QueryServer {
    let executor = crate::QueryExecutor::new(Arc::new(live), &config).unwrap();
    QueryServer::new(Arc::new(executor), config, Default::default()).unwrap()
}

pub(crate) async fn start(config: ServerConfig) -> Running {
    let (dir, lake, live) = sample_lake().await;
    let server = server_over(live, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener, std::future::pending()));
    Running {
        base: format!("http://{addr}"),
        addr,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
        _dir: dir,
        lake,
    }
}

impl Running {
    pub(crate) async fn post(&self, body: Value) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}/v1/sql", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_over_http_in_every_format() {
    let s = start(ServerConfig::default()).await;
    let (status, body) = s
        .post(json!({"sql": "SELECT event_type, count(*) AS n, sum(amount) AS revenue FROM engagement_events GROUP BY 1 ORDER BY 1"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["columns"][0]["name"], "event_type");
    assert_eq!(body["columns"][1]["type"], "Int64");
    assert_eq!(
        body["rows"],
        json!([["click", 15, null], ["purchase", 15, 37.5]])
    );
    assert_eq!(body["stats"]["rows"], 2);
    assert_eq!(body["stats"]["files_scanned"], 3);
    assert!(body["stats"]["bytes_scanned"].as_u64().unwrap() > 0);

    let get = |format: &'static str| {
        let client = s.client.clone();
        let url = format!("{}/v1/sql", s.base);
        async move {
            client
                .get(url)
                .query(&[("sql", "SELECT user_id, count(*) AS n FROM engagement_events WHERE user_id IN ('u1', 'u2') GROUP BY 1 ORDER BY 1"), ("format", format)])
                .send()
                .await
                .unwrap()
        }
    };
    let ndjson = get("ndjson").await;
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    assert!(ndjson.headers().contains_key("x-query-id"));
    assert!(ndjson.headers().contains_key("x-elapsed-ms"));
    assert_eq!(
        ndjson.text().await.unwrap(),
        "{\"user_id\":\"u1\",\"n\":6}\n{\"user_id\":\"u2\",\"n\":6}\n"
    );
    let csv = get("csv").await.text().await.unwrap();
    assert_eq!(csv, "user_id,n\nu1,6\nu2,6\n");
    let arrow = get("arrow").await;
    assert_eq!(
        arrow.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = arrow.bytes().await.unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);

    // Before any rollup exists, the dashboard views read raw events.
    let (_, body) = s
        .post(json!({"sql": "SELECT event_hour, events, purchases, revenue, source FROM hourly_engagement ORDER BY 1"}))
        .await;
    assert_eq!(
        body["rows"],
        json!([
            [0, 10, 5, 12.5, "raw"],
            [1, 10, 5, 12.5, "raw"],
            [2, 10, 5, 12.5, "raw"]
        ])
    );

    // Empty results keep their columns.
    let (status, body) = s
        .post(json!({"sql": "SELECT user_id FROM engagement_events WHERE false"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["columns"][0]["name"], "user_id");
    assert_eq!(body["rows"], json!([]));

    // Parameters, positional and named.
    let (_, body) = s
        .post(json!({"sql": "SELECT count(*) AS n FROM engagement_events WHERE user_id = $1 AND event_type = $2", "params": ["u0", "click"]}))
        .await;
    assert_eq!(body["rows"], json!([[3]]));
    let (_, body) = s
        .post(json!({"sql": "SELECT count(*) AS n FROM engagement_events WHERE user_id = $user", "params": {"user": "u0"}}))
        .await;
    assert_eq!(body["rows"], json!([[6]]));
}

#[tokio::test(flavor = "multi_thread")]
async fn etags_answer_304_until_a_table_changes_and_repeats_hit_the_cache() {
    let s = start(ServerConfig::default()).await;
    let url = format!("{}/v1/sql", s.base);
    let sql = [("sql", "SELECT count(*) AS n FROM engagement_events")];
    let first = s.client.get(&url).query(&sql).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(first.json::<Value>().await.unwrap()["rows"], json!([[30]]));

    let again = s
        .client
        .get(&url)
        .query(&sql)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.bytes().await.unwrap().is_empty());

    // Another query, or another table version, is another ETag.
    let other = s
        .client
        .get(&url)
        .query(&[("sql", "SELECT count(*) AS m FROM engagement_events")])
        .send()
        .await
        .unwrap();
    assert_ne!(other.headers()["etag"].to_str().unwrap(), etag);

    append(&s.lake, &rows(5, 4, 1000)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // past the staleness bound
    let changed = s
        .client
        .get(&url)
        .query(&sql)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(
        changed.json::<Value>().await.unwrap()["rows"],
        json!([[34]])
    );

    // The catalog's answers follow the tables: a table that appears is listed at once,
    // not served from the cache.
    let tables = [(
        "sql",
        "SELECT table_name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )];
    let listed = s.client.get(&url).query(&tables).send().await.unwrap();
    let listed_etag = listed.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(
        listed.json::<Value>().await.unwrap()["rows"],
        json!([["engagement_events"]])
    );
    append_rows(
        &s.lake,
        TableId::RecommendationEvents,
        &[rec_row("r-new", "rec_served", "u", 1, "req-new", 1)],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let relisted = s.client.get(&url).query(&tables).send().await.unwrap();
    assert_ne!(relisted.headers()["etag"].to_str().unwrap(), listed_etag);
    assert_eq!(
        relisted.json::<Value>().await.unwrap()["rows"],
        json!([["engagement_events"], ["recommendation_events"]])
    );

    // A repeat of the same query is served from the cache.
    let body = json!({"sql": "SELECT max(event_time) FROM engagement_events"});
    assert_eq!(s.post(body.clone()).await.0, StatusCode::OK);
    assert_eq!(s.post(body).await.0, StatusCode::OK);
    let metrics = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hourlake_query_cache_hits_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hourlake_query_not_modified_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hourlake_query_requests_total{status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hourlake_query_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn event_time_filters_prune_hour_partitions() {
    let s = start(ServerConfig::default()).await;
    let t1 = "2026-11-20T01:00:00Z";
    let (_, all) = s
        .post(json!({"sql": "SELECT count(*) FROM engagement_events WHERE user_id <> ''"}))
        .await;
    assert_eq!(all["stats"]["files_scanned"], 3);
    let (_, pruned) = s
        .post(json!({"sql": format!("SELECT count(*) AS n FROM engagement_events WHERE event_time >= TIMESTAMP '{t1}'")}))
        .await;
    assert_eq!(pruned["rows"], json!([[20]]));
    assert_eq!(pruned["stats"]["files_scanned"], 2, "{pruned}");
    let (_, between) = s
        .post(json!({"sql": format!("SELECT count(*) AS n FROM engagement_events WHERE event_time BETWEEN TIMESTAMP '{t1}' AND TIMESTAMP '{t1}' + INTERVAL '30 minutes'")}))
        .await;
    assert_eq!(between["rows"], json!([[10]]));
    assert_eq!(between["stats"]["files_scanned"], 1, "{between}");
    // `now() - interval` is folded to a constant and prunes too (these events are old).
    let (_, recent) = s
        .post(json!({"sql": "SELECT count(*) AS n FROM engagement_events WHERE event_time >= now() - INTERVAL '1 hour'"}))
        .await;
    assert_eq!(recent["rows"], json!([[0]]));
    assert_eq!(recent["stats"]["files_scanned"], 0, "{recent}");
    // EXPLAIN shows the partition filter derived from event_time.
    let (_, explain) = s
        .post(json!({"sql": format!("EXPLAIN SELECT count(*) FROM engagement_events WHERE event_time >= TIMESTAMP '{t1}'")}))
        .await;
    let text = explain["rows"].to_string();
    assert!(text.contains("event_hour"), "{text}");
}

/// Queries share one session's catalog while no table moves: a refused statement that
/// would change it (drop or replace a table or view, create one, change a setting)
/// leaves every later query's tables, views and answers as they were.
#[tokio::test(flavor = "multi_thread")]
async fn refused_statements_leave_the_shared_session_as_it_was() {
    let s = start(ServerConfig {
        cache_bytes: 0,
        ..ServerConfig::default()
    })
    .await;
    let reads = [
        "SELECT count(*) AS n FROM engagement_events",
        "SELECT count(*) AS n FROM hourly_engagement",
        "SELECT count(*) AS n FROM information_schema.tables",
    ];
    let mut before = Vec::new();
    for sql in reads {
        let (status, answer) = s.post(json!({ "sql": sql })).await;
        assert_eq!(status, StatusCode::OK, "{sql} → {answer}");
        before.push(answer["rows"].clone());
    }
    for sql in [
        "DROP TABLE engagement_events",
        "DROP VIEW hourly_engagement",
        "CREATE OR REPLACE VIEW hourly_engagement AS SELECT 1 AS x",
        "CREATE VIEW intruder AS SELECT 1 AS x",
        "CREATE TABLE intruder AS SELECT 1 AS x",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let (status, answer) = s.post(json!({ "sql": sql })).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{sql} → {answer}");
    }
    for (sql, rows) in reads.iter().zip(&before) {
        let (status, answer) = s.post(json!({ "sql": sql })).await;
        assert_eq!(status, StatusCode::OK, "{sql} → {answer}");
        assert_eq!(&answer["rows"], rows, "{sql}");
    }
    let (status, answer) = s.post(json!({"sql": "SELECT * FROM intruder"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = s
        .post(json!({"sql": "SELECT value FROM information_schema.df_settings WHERE name = 'datafusion.execution.batch_size'"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["rows"], json!([["8192"]]), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_request_gets_a_clear_error_and_never_a_500() {
    let s = start(ServerConfig {
        max_result_rows: 20,
        max_request_bytes: 4096,
        ..ServerConfig::default()
    })
    .await;
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"sql": "SELEC 1"}),
            StatusCode::BAD_REQUEST,
            "sql_parse",
        ),
        (
            json!({"sql": "SELECT nope FROM engagement_events"}),
            StatusCode::BAD_REQUEST,
            "sql_plan",
        ),
        (
            json!({"sql": "SELECT * FROM no_such_table"}),
            StatusCode::BAD_REQUEST,
            "sql_plan",
        ),
        (json!({"sql": ""}), StatusCode::BAD_REQUEST, "bad_request"),
        (
            json!({"sql": "SELECT 1", "format": "xml"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"sql": "SELECT $1", "params": [[1]]}),
            StatusCode::BAD_REQUEST,
            "bad_parameter",
        ),
        (
            json!({"sql": "SELECT 1", "surprise": true}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"sql": "SELECT * FROM engagement_events"}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "result_too_large",
        ),
        (
            json!({"sql": "CREATE TABLE t AS SELECT 1"}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            json!({"sql": "DROP TABLE engagement_events"}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            json!({"sql": "INSERT INTO engagement_events SELECT * FROM engagement_events"}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            json!({"sql": "COPY engagement_events TO '/tmp/x.parquet'"}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            json!({"sql": "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'"}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            json!({"sql": "SET datafusion.execution.batch_size = 1"}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            json!({"sql": "SELECT count(*) FROM generate_series(1, 10000000000)", "timeout_ms": 200}),
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = s.post(body.clone()).await;
        assert_eq!(got, status, "{body} → {answer}");
        assert_eq!(answer["error"]["code"], code, "{body} → {answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // Parse errors say where.
    let (_, answer) = s
        .post(json!({"sql": "SELECT 1 FROM t WHERE x = = 1"}))
        .await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Line: 1"),
        "{answer}"
    );

    let raw = |body: &'static str| {
        s.client
            .post(format!("{}/v1/sql", s.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in ["{", "not json", "[]", "{\"sql\": 5}", "\u{0}"] {
        let r = raw(body).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "bad_request");
    }
    let big = format!("{{\"sql\": \"SELECT '{}'\"}}", "x".repeat(10_000));
    let r = s
        .client
        .post(format!("{}/v1/sql", s.base))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = s
        .client
        .get(format!("{}/v1/sql", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "GET without sql");
    let r = s
        .client
        .get(format!("{}/v1/sql?sql=SELECT%201&params=%7B", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "params not JSON");
    let r = s
        .client
        .get(format!("{}/nowhere", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let r = s
        .client
        .delete(format!("{}/v1/sql", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The server is still fine.
    assert_eq!(
        s.post(json!({"sql": "SELECT 1 AS one"})).await.1["rows"],
        json!([[1]])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_limit_answers_429() {
    let s = start(ServerConfig {
        max_concurrent_queries: 1,
        ..ServerConfig::default()
    })
    .await;
    let slow =
        json!({"sql": "SELECT count(*) FROM generate_series(1, 10000000000)", "timeout_ms": 3000});
    let client = s.client.clone();
    let url = format!("{}/v1/sql", s.base);
    let running =
        tokio::spawn(async move { client.post(url).json(&slow).send().await.unwrap().status() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = s.post(json!({"sql": "SELECT 1"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_queries");
    assert_eq!(running.await.unwrap(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(s.post(json!({"sql": "SELECT 1"})).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_guard_everything_but_health_and_cors_is_configurable() {
    let s = start(ServerConfig {
        tokens: vec!["s3cret".into()],
        cors_origins: vec!["https://dash.example".into()],
        ..ServerConfig::default()
    })
    .await;
    let url = format!("{}/v1/sql", s.base);
    let body = json!({"sql": "SELECT 1 AS one"});
    let r = s.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    let r = s
        .client
        .post(&url)
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .client
        .post(&url)
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .client
        .get(format!("{}/health", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let preflight = s
        .client
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://dash.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://dash.example"
    );
    let r = s
        .client
        .post(&url)
        .header("origin", "https://evil.example")
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

fn rec_row(
    event_id: &str,
    kind: &str,
    user: &str,
    minute: i64,
    request: &str,
    offset: i64,
) -> Value {
    let t = hour_micros(1) + minute * 60_000_000;
    let (date, h) = hourlake_catalog::partition::date_and_hour(t);
    let items = (kind == "rec_served").then(|| {
        json!([{"item_id": "i1", "score": 0.9, "rank": 1}, {"item_id": "i2", "score": 0.5, "rank": 2}])
    });
    json!({
        "event_id": event_id,
        "event_type": kind,
        "event_time": t,
        "user_id": user,
        "request_id": request,
        "model_version": "ranker-v7",
        "surface": "home",
        "items": items,
        "item_id": (kind == "rec_click").then_some("i2"),
        "_kafka_topic": "rec-events",
        "_kafka_partition": 0,
        "_kafka_offset": offset,
        "_ingested_at": t,
        "event_date": date,
        "event_hour": h,
    })
}

async fn append_recs(lake: &Lake, rows: &[Value]) {
    append_rows(lake, TableId::RecommendationEvents, rows).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recommendation_lookups_follow_new_commits() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    append_recs(
        &lake,
        &[
            rec_row("r1", "rec_served", "alice", 1, "req-1", 1),
            rec_row("r1", "rec_served", "alice", 1, "req-1", 2), // a resend
            rec_row("r2", "rec_served", "bob", 2, "req-2", 3),
        ],
    )
    .await;
    let index = Arc::new(
        crate::RecommendationIndex::new(crate::LookupConfig {
            lists_per_user: 5,
            ..Default::default()
        })
        .unwrap(),
    );
    tokio::spawn(index.clone().follow(
        lake.clone(),
        Duration::from_millis(100),
        std::future::pending(),
    ));
    let live = LiveLake::new(
        SessionFactory::new(lake.clone()),
        Duration::from_millis(100),
    );
    let server = server_over(live, ServerConfig::default()).with_recommendations(index.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server.serve(listener, std::future::pending()));
    let client = reqwest::Client::new();
    let get = |user: &'static str| {
        let client = client.clone();
        let url = format!("{base}/v1/users/{user}/recommendations");
        async move { client.get(url).send().await.unwrap() }
    };
    let mut first = get("alice").await;
    for _ in 0..50 {
        if first.status() == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        first = get("alice").await;
    }
    let body: Value = first.json().await.unwrap();
    let recs = body["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "the resend is not a second list: {body}");
    assert_eq!(recs[0]["model_version"], "ranker-v7");
    assert_eq!(recs[0]["request_id"], "req-1");
    assert_eq!(
        recs[0]["items"][1],
        json!({"item_id": "i2", "score": 0.5, "rank": 2, "clicked": false})
    );
    let nobody: Value = get("nobody").await.json().await.unwrap();
    assert_eq!(nobody["recommendations"], json!([]));
    // Lookups are counted and timed in /metrics.
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hourlake_query_lookups_total{status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hourlake_query_lookup_duration_seconds_count"),
        "{metrics}"
    );

    // A newer list and a click on the old one show up within a few seconds.
    append_recs(
        &lake,
        &[
            rec_row("r3", "rec_served", "alice", 30, "req-3", 4),
            rec_row("c1", "rec_click", "alice", 31, "req-1", 5),
        ],
    )
    .await;
    let started = std::time::Instant::now();
    let body = loop {
        let body: Value = get("alice").await.json().await.unwrap();
        if body["recommendations"]
            .as_array()
            .is_some_and(|r| r.len() == 2)
        {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        body["recommendations"][0]["request_id"], "req-3",
        "newest first"
    );
    assert_eq!(body["recommendations"][1]["items"][1]["clicked"], true);
    assert_eq!(body["recommendations"][0]["items"][1]["clicked"], false);

    // The same through SQL.
    let r = client
        .post(format!("{base}/v1/sql"))
        .json(&json!({"sql": "SELECT request_id, item_id, clicked FROM user_recommendations('alice') ORDER BY request_id, item_id"}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["rows"],
        json!([
            ["req-1", "i1", false],
            ["req-1", "i2", true],
            ["req-3", "i1", false],
            ["req-3", "i2", false]
        ])
    );
    // The user as a bound parameter, positional and named.
    for (sql, params) in [
        (
            "SELECT item_id FROM user_recommendations($1) WHERE request_id = $2 ORDER BY item_id",
            json!(["alice", "req-3"]),
        ),
        (
            "SELECT item_id FROM user_recommendations($user) WHERE request_id = $req ORDER BY item_id",
            json!({"user": "alice", "req": "req-3"}),
        ),
    ] {
        let r = client
            .post(format!("{base}/v1/sql"))
            .json(&json!({"sql": sql, "params": params}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["rows"], json!([["i1"], ["i2"]]), "{sql}");
    }
    // Without a value: an error, not an empty answer.
    let r = client
        .post(format!("{base}/v1/sql"))
        .json(&json!({"sql": "SELECT * FROM user_recommendations($1)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let bad = get("alice").await;
    assert_eq!(bad.status(), StatusCode::OK);
    let r = client
        .get(format!("{base}/v1/users/alice/recommendations?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn big_results_stream_in_csv_ndjson_and_arrow() {
    let s = start(ServerConfig {
        max_result_rows: 5_000_000,
        ..ServerConfig::default()
    })
    .await;
    let sql = "SELECT value AS n, value * 2 AS twice FROM generate_series(1, 2000000)";
    let post = |format: &'static str| {
        s.client
            .post(format!("{}/v1/sql", s.base))
            .json(&json!({"sql": sql, "format": format}))
            .send()
    };
    let csv = post("csv").await.unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(
        csv.headers().get("content-length").is_none(),
        "streamed, not buffered"
    );
    assert!(
        csv.headers().get("etag").is_none(),
        "streamed results are not cached"
    );
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2_000_001);
    assert_eq!(lines[0], "n,twice");
    assert_eq!(
        lines.iter().filter(|l| **l == "n,twice").count(),
        1,
        "one header"
    );
    let ndjson = post("ndjson").await.unwrap().text().await.unwrap();
    assert_eq!(ndjson.lines().count(), 2_000_000);
    let arrow = post("arrow").await.unwrap().bytes().await.unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow), None).unwrap();
    let mut total = 0;
    let mut sum: i64 = 0;
    for batch in reader {
        let batch = batch.unwrap();
        total += batch.num_rows();
        sum += arrow::compute::sum(
            batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap(),
        )
        .unwrap_or(0);
    }
    assert_eq!(total, 2_000_000);
    assert_eq!(sum, 2_000_000 * 2_000_001 / 2);
    // JSON documents stream too: past the row limit the transfer is cut, so the
    // document never closes.
    let limited = start(ServerConfig {
        max_result_rows: 1_000_000,
        ..ServerConfig::default()
    })
    .await;
    let r = limited
        .client
        .post(format!("{}/v1/sql", limited.base))
        .json(&json!({"sql": sql}))
        .send()
        .await
        .unwrap();
    let text = r.text().await;
    assert!(
        text.is_err() || text.is_ok_and(|t| serde_json::from_str::<Value>(&t).is_err()),
        "a JSON answer past the row limit must not look complete"
    );
    // A streamed result past the row limit ends early instead of completing.
    let r = limited
        .client
        .post(format!("{}/v1/sql", limited.base))
        .json(&json!({"sql": sql, "format": "csv"}))
        .send()
        .await
        .unwrap();
    assert!(
        r.text().await.is_err(),
        "the transfer is cut, not completed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_over_the_memory_limit_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let factory = SessionFactory::new(lake).with_memory_limit(4 * 1024 * 1024);
    let live = LiveLake::new(factory, Duration::from_millis(200));
    let server = server_over(live, ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server.serve(listener, std::future::pending()));
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/v1/sql"))
        .json(&json!({"sql": "SELECT array_length(array_agg(value)) FROM generate_series(1, 5000000)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resources_exhausted", "{body}");
    // Smaller queries still run.
    let r = client
        .post(format!("{base}/v1/sql"))
        .json(&json!({"sql": "SELECT count(*) FROM generate_series(1, 1000)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_draining_server_answers_503_to_new_queries_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    append(&lake, &rows(0, 5, 0)).await;
    let live = LiveLake::new(SessionFactory::new(lake), Duration::from_millis(200));
    let server = server_over(live, ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = server.router();
    server.drain();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/v1/sql"))
        .json(&json!({"sql": "SELECT count(*) FROM engagement_events"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "shutting_down");
    let r = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}
