//! The query server against hostile and careless clients: statements built to overflow
//! the planner, clients that stop reading, queries that outlive their deadline, answers
//! that must not be cached, odd result shapes, odd requests. Each class of defect has a
//! test here; the process staying up is part of every assertion (a stack overflow
//! would abort this test binary).

use std::io::{Read, Write};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::tests::{sample_lake, start as serve, Running};
use crate::ServerConfig;

impl Running {
    async fn sql(&self, sql: &str) -> (StatusCode, Value) {
        self.post(json!({ "sql": sql })).await
    }

    async fn healthy(&self) {
        let r = self
            .client
            .get(format!("{}/health", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    /// Retries a small query until it is admitted (the slots of earlier queries are
    /// free), failing after `patience`.
    async fn wait_admitted(&self, patience: Duration) {
        let until = std::time::Instant::now() + patience;
        loop {
            let (status, body) = self.sql("SELECT 1 AS one").await;
            if status == StatusCode::OK {
                return;
            }
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
            assert!(
                std::time::Instant::now() < until,
                "queries were still refused after {patience:?}: a stalled or cancelled \
                 query kept its slot"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn chain(item: &str, separator: &str, n: usize) -> String {
    vec![item; n].join(separator)
}

/// Statements of every shape that nests one level per link, at three sizes: within the
/// limits (answered), past the depth or part limits (400), and as big as a request may
/// be (413).
fn shapes(n: usize) -> Vec<(&'static str, String)> {
    let mut all = flat_shapes(n);
    all.extend(nesting_shapes(n));
    all
}

/// Shapes whose size does not nest: long lists, many branches of one CASE.
fn flat_shapes(n: usize) -> Vec<(&'static str, String)> {
    vec![
        (
            "IN list on a table",
            format!(
                "SELECT count(*) FROM engagement_events WHERE _kafka_offset IN ({})",
                (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
            ),
        ),
        (
            "CASE branches",
            format!(
                "SELECT CASE {} ELSE 0 END",
                (0..n)
                    .map(|i| format!("WHEN {i} = 1 THEN {i}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ),
    ]
}

/// Shapes that nest one level per link.
fn nesting_shapes(n: usize) -> Vec<(&'static str, String)> {
    vec![
        ("plus chain", format!("SELECT {}", chain("1", "+", n))),
        (
            "string concat",
            format!("SELECT {}", chain("'a'", " || ", n)),
        ),
        (
            "OR chain on a table",
            format!(
                "SELECT count(*) FROM engagement_events WHERE {}",
                (0..n)
                    .map(|i| format!("_kafka_offset = {i}"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
        ),
        (
            "AND chain",
            format!(
                "SELECT count(*) FROM engagement_events WHERE {}",
                chain("amount IS NULL OR true", " AND ", n)
            ),
        ),
        ("UNION ALL chain", chain("SELECT 1 AS x", " UNION ALL ", n)),
        (
            "comma joins",
            format!(
                "SELECT count(*) FROM {}",
                (0..n)
                    .map(|i| format!("(SELECT {i} AS c) s{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (
            "nested parentheses",
            format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
        ),
        (
            "nested subqueries",
            format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n)),
        ),
        ("unary minus", format!("SELECT {}1", "- ".repeat(n))),
        ("NOT chain", format!("SELECT {}true", "NOT ".repeat(n))),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn statements_that_nest_deeply_get_clear_errors_and_never_crash() {
    let s = serve(ServerConfig::default()).await;
    // Small: every shape is planned normally (the nesting ones hit the parser's own
    // recursion bound only when deeper).
    for (shape, sql) in shapes(8) {
        let (status, body) = s.sql(&sql).await;
        assert_eq!(status, StatusCode::OK, "{shape}: {body}");
    }
    // Deep but within the limits: answered, on the query runtime's big stacks.
    for (shape, sql) in [
        ("plus chain", format!("SELECT {}", chain("1", "+", 900))),
        (
            "OR chain on a table",
            format!(
                "SELECT count(*) FROM engagement_events WHERE {}",
                (0..400)
                    .map(|i| format!("_kafka_offset = {i}"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
        ),
        (
            "IN list on a table",
            format!(
                "SELECT count(*) FROM engagement_events WHERE _kafka_offset IN ({})",
                (0..40_000)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
        (
            "UNION ALL chain",
            chain("SELECT 1 AS x", " UNION ALL ", 300),
        ),
    ] {
        let (status, body) = s.sql(&sql).await;
        assert_eq!(status, StatusCode::OK, "{shape}: {body}");
    }
    let (_, body) = s
        .sql(&format!(
            "SELECT count(*) AS n FROM engagement_events WHERE _kafka_offset IN ({})",
            (0..40_000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ))
        .await;
    assert_eq!(
        body["rows"],
        json!([[30]]),
        "the big IN list gives the right count"
    );
    // Long but flat: answered.
    for (shape, sql) in flat_shapes(3_000) {
        let (status, body) = s.sql(&sql).await;
        assert_eq!(status, StatusCode::OK, "{shape}: {body}");
    }
    // Past the depth or part limits: 400 with a reason, whatever the shape.
    for (shape, sql) in nesting_shapes(3_000) {
        let (status, body) = s.sql(&sql).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{shape}: {body}");
        let code = body["error"]["code"].as_str().unwrap_or_default();
        assert!(
            ["statement_too_complex", "sql_parse"].contains(&code),
            "{shape}: {body}"
        );
        s.healthy().await;
    }
    // As big as a request may be: refused for its size before it is parsed.
    for (shape, sql) in shapes(140_000) {
        let sql: String = sql.chars().take(1_000_000).collect();
        let (status, body) = s.sql(&sql).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{shape}: {body}");
        assert_eq!(body["error"]["code"], "statement_too_large", "{shape}");
    }
    // A body over the request limit: 413 before it is read. The server closes the
    // connection without reading the rest, so a client still uploading may see the
    // connection reset before it reads the answer; either way the server stays up.
    let huge = format!("SELECT {}", chain("1", "+", 600_000));
    match s
        .client
        .post(format!("{}/v1/sql", s.base))
        .json(&json!({ "sql": huge }))
        .send()
        .await
    {
        Ok(r) => {
            assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(body["error"]["code"], "request_too_large", "{body}");
        }
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    s.healthy().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn placeholders_are_bounded_and_planning_counts_against_the_timeout() {
    let s = serve(ServerConfig::default()).await;
    // More bind parameters than PostgreSQL allows: refused before planning.
    let too_many = format!("SELECT 1 WHERE 1 IN ({})", chain("?", ",", 70_000));
    let (status, body) = s.sql(&too_many).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("65535"),
        "{body}"
    );
    // Many placeholders, bound, with a timeout planning cannot meet: a 504, not a
    // late answer.
    let n = 40_000;
    let sql = format!(
        "SELECT count(*) FROM engagement_events WHERE _kafka_offset IN ({})",
        chain("?", ",", n)
    );
    let params: Vec<i64> = (0..n as i64).collect();
    let (status, body) = s
        .post(json!({"sql": sql, "params": params, "timeout_ms": 1}))
        .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    // The same with time to plan: the right answer.
    let (status, body) = s.post(json!({"sql": sql, "params": params})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"], json!([[30]]));
    s.wait_admitted(Duration::from_secs(30)).await;
}

/// The expensive query of the issue: a cross join evaluating a costly regular
/// expression on every pair.
const EXPENSIVE: &str =
    "SELECT count(*) FROM generate_series(1, 20000) a, generate_series(1, 20000) b \
     WHERE regexp_like(CAST(a.value * b.value AS VARCHAR), '^(1|2|3)+(4|5)*7$')";

#[tokio::test(flavor = "multi_thread")]
async fn a_query_past_its_deadline_is_answered_and_stops() {
    let s = serve(ServerConfig {
        max_concurrent_queries: 1,
        ..ServerConfig::default()
    })
    .await;
    let heavy = {
        let client = s.client.clone();
        let url = format!("{}/v1/sql", s.base);
        tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({"sql": EXPENSIVE, "timeout_ms": 1500}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    // While it runs, the server keeps answering.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.healthy().await;
    }
    let (status, body) = heavy.await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    // The cancelled work stops and gives its (only) slot back.
    s.wait_admitted(Duration::from_secs(30)).await;
}

/// Starts a request on a raw connection, reads `read` bytes of the answer and then
/// stops reading (the socket stays open).
fn stalled_reader(addr: std::net::SocketAddr, path: &str, read: usize) -> std::net::TcpStream {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    // A small receive window so the server's writes block soon.
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut buf = vec![0u8; read];
    tcp.read_exact(&mut buf).unwrap();
    tcp
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_stop_reading_do_not_keep_their_slots() {
    let s = serve(ServerConfig {
        max_concurrent_queries: 4,
        query_timeout: Duration::from_millis(1500),
        max_result_rows: 1_000_000_000,
        ..ServerConfig::default()
    })
    .await;
    let mut stalled = Vec::new();
    for format in ["csv", "arrow", "ndjson", "json"] {
        let path = format!(
            "/v1/sql?sql=SELECT%20value,%20value%20*%202%20AS%20twice%20FROM%20generate_series(1,%2050000000)&format={format}"
        );
        let addr = s.addr;
        stalled.push(
            tokio::task::spawn_blocking(move || stalled_reader(addr, &path, 512))
                .await
                .unwrap(),
        );
    }
    // All four slots were taken; the stalled answers end at their deadline and free
    // them, though the clients never read again nor close.
    s.wait_admitted(Duration::from_secs(30)).await;
    s.healthy().await;
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_that_depend_on_the_clock_or_chance_are_never_reused() {
    let s = serve(ServerConfig::default()).await;
    for sql in [
        "SELECT now() AS t",
        "SELECT random() AS r",
        "SELECT uuid() AS u",
        "SELECT count(*) AS n FROM engagement_events WHERE event_time < now() - INTERVAL '1 hour'",
        "SELECT current_time() AS t",
    ] {
        let get = || {
            s.client
                .get(format!("{}/v1/sql", s.base))
                .query(&[("sql", sql)])
                .header("if-none-match", "*")
                .send()
        };
        let first = get().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK, "{sql}");
        assert!(first.headers().get("etag").is_none(), "{sql} got an ETag");
        assert_eq!(first.headers()["cache-control"], "no-store", "{sql}");
        let a: Value = first.json().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = get().await.unwrap();
        assert_eq!(
            second.status(),
            StatusCode::OK,
            "{sql}: 304 for a volatile answer"
        );
        let b: Value = second.json().await.unwrap();
        if !sql.contains("count(*)") {
            assert_ne!(a["rows"], b["rows"], "{sql} answered from a cache");
        }
    }
    // A stable answer keeps its ETag and 304.
    let r = s
        .client
        .get(format!("{}/v1/sql", s.base))
        .query(&[("sql", "SELECT count(*) FROM engagement_events")])
        .send()
        .await
        .unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let r = s
        .client
        .get(format!("{}/v1/sql", s.base))
        .query(&[("sql", "SELECT count(*) FROM engagement_events")])
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_result_shape_is_answered_in_every_format() {
    let s = serve(ServerConfig::default()).await;
    // Duplicate column names: every column is in the answer, qualified.
    let (status, body) = s
        .sql("SELECT * FROM (SELECT 1 AS a) t1 CROSS JOIN (SELECT 2 AS a) t2")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"], json!([[1, 2]]), "{body}");
    assert_eq!(body["columns"][0]["name"], "t1.a");
    assert_eq!(body["columns"][1]["name"], "t2.a");
    let (_, body) = s
        .sql("SELECT * FROM engagement_events a JOIN engagement_events b ON a.event_id = b.event_id LIMIT 1")
        .await;
    let row = body["rows"][0].as_array().unwrap();
    let half = row.len() / 2;
    assert_eq!(
        row[..half],
        row[half..],
        "the right side of a self-join is all there"
    );
    // Exact decimals and 64-bit integers.
    let (status, body) = s
        .sql(
            "SELECT CAST('12345678901234567890123456789012345.678' AS DECIMAL(38,3)) AS d, \
              CAST(9007199254740993 AS BIGINT) AS big, CAST(42 AS BIGINT) AS small",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"],
        json!([[
            "12345678901234567890123456789012345.678",
            "9007199254740993",
            42
        ]])
    );
    // Nested types in every format.
    let nested = "SELECT [named_struct('item', 'i1', 'score', 0.5)] AS items, \
                  named_struct('a', 1, 'b', [1, 2]) AS s, map(['k'], [1]) AS m, \
                  arrow_cast('ab', 'Binary') AS bin, INTERVAL '1 day' AS iv";
    for format in ["json", "ndjson", "csv", "arrow"] {
        let r = s
            .client
            .get(format!("{}/v1/sql", s.base))
            .query(&[("sql", nested), ("format", format)])
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::OK, "{format}: {text}");
        if format == "csv" {
            let cell = text.lines().nth(1).unwrap_or_default();
            assert!(cell.contains("i1"), "{cell}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_requests_get_json_errors() {
    let s = serve(ServerConfig {
        tokens: vec!["s3cret".into()],
        client_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    })
    .await;
    let get = |path: &str, auth: &str| {
        s.client
            .get(format!("{}{path}", s.base))
            .header("authorization", auth)
            .send()
    };
    // The bearer scheme is case-insensitive; empty and wrong tokens are refused.
    for auth in ["Bearer s3cret", "BEARER s3cret", "bearer s3cret"] {
        let r = get("/v1/sql?sql=SELECT%201", auth).await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::OK, "{auth}: {body}");
    }
    for auth in ["Bearer ", "Bearer", "Basic s3cret", "Bearer s3cre"] {
        let r = get("/v1/sql?sql=SELECT%201", auth).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth}");
    }
    // Bytes that do not decode to UTF-8: a JSON 400, never a replaced-and-run query.
    for path in [
        "/v1/sql?sql=SELECT%20%27%FF%27",
        "/v1/sql?sql=SELECT%201&format=%C3",
        "/v1/users/%FF/recommendations",
    ] {
        let r = get(path, "Bearer s3cret").await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }
    // A request whose headers never end is cut off.
    let addr = s.addr;
    let closed = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        tcp.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ")
            .unwrap();
        let mut buf = [0u8; 1024];
        // The server closes the connection (possibly after a 408): reading ends.
        loop {
            match tcp.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap();
    assert!(closed, "a half-sent request kept its connection open");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_limit_is_one_pool_for_all_queries() {
    let (_dir, lake, _live) = sample_lake().await;
    let factory = hourlake_sql::SessionFactory::new(lake).with_memory_limit(64 * 1024 * 1024);
    let a = factory.context().unwrap();
    let b = factory.clone().context().unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &a.runtime_env().memory_pool,
        &b.runtime_env().memory_pool
    ));
    // What one query holds, the next sees.
    let reservation = datafusion::execution::memory_pool::MemoryConsumer::new("test")
        .register(&a.runtime_env().memory_pool);
    reservation.try_grow(60 * 1024 * 1024).unwrap();
    assert_eq!(b.runtime_env().memory_pool.reserved(), 60 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread")]
async fn values_sized_by_an_argument_are_bounded_before_they_are_made() {
    let s = serve(ServerConfig::default()).await;
    for sql in [
        // One value too big to make at all.
        "SELECT length(repeat('x', 2000000000))",
        "SELECT array_length(range(1, 2000000000))",
        "SELECT lpad('a', 2000000000)",
        // A value small enough to make once, but copied into every row of a table.
        "SELECT repeat('x', 60000000) AS big FROM engagement_events",
    ] {
        let (status, body) = s.sql(sql).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{sql}: {body}");
        assert_eq!(
            body["error"]["code"], "resources_exhausted",
            "{sql}: {body}"
        );
    }
    let (status, body) = s
        .sql("SELECT length(repeat('ab', 1000)) AS n, count(*) AS c FROM engagement_events")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"], json!([[2000, 30]]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_holds_over_a_scan_that_reads_no_column() {
    let s = serve(ServerConfig::default()).await;
    for (sql, rows) in [
        (
            "SELECT 2000 AS n FROM engagement_events LIMIT 1",
            json!([[2000]]),
        ),
        (
            "SELECT 1 AS n FROM engagement_events LIMIT 2",
            json!([[1], [1]]),
        ),
        (
            "SELECT 1 AS n FROM engagement_events LIMIT 1 OFFSET 29",
            json!([[1]]),
        ),
        ("SELECT count(*) AS n FROM engagement_events", json!([[30]])),
        (
            "SELECT count(*) AS n FROM (SELECT 1 FROM engagement_events LIMIT 7)",
            json!([[7]]),
        ),
    ] {
        let (status, body) = s.sql(sql).await;
        assert_eq!(status, StatusCode::OK, "{sql}: {body}");
        assert_eq!(body["rows"], rows, "{sql}");
    }
}
