//! Large-result throughput: the same ≥ 10 million rows fetched over Flight SQL, HTTP
//! JSON, HTTP NDJSON and HTTP Arrow IPC, rows/s side by side (run it with
//! `cargo bench --bench transfer`; results in benches/RESULTS.md).
//!
//! The servers and the clients run in this one process on the same 2 cores, as a BI
//! tool beside the server would: the Flight SQL client is arrow-flight's (it decodes
//! every batch), the HTTP client is reqwest reading the whole body (the Arrow body is
//! decoded too, to count its rows).
//!
//! Knobs: HOURLAKE_BENCH_ROWS (default 10 000 000), HOURLAKE_BENCH_RUNS (default 3),
//! HOURLAKE_BENCH_LAKE (reuse a lake, e.g. the one `cargo bench --bench query` kept).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use deltalake::protocol::SaveMode;
use futures::TryStreamExt;
use hourlake_catalog::{Lake, TableId};
use hourlake_query::{FlightSqlServer, QueryExecutor, QueryServer, ServerConfig};
use hourlake_sql::{LiveLake, SessionFactory};

use hourlake_testkit::events;
use hourlake_testkit::knobs::env_or;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let rows: u64 = env_or("HOURLAKE_BENCH_ROWS", 10_000_000);
    let runs: usize = env_or("HOURLAKE_BENCH_RUNS", 3);
    let dir = std::env::var("HOURLAKE_BENCH_LAKE").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join(format!("hourlake-bench-transfer-{}", std::process::id()))
            .display()
            .to_string()
    });
    let lake = Lake::local(&dir).expect("lake");
    if lake
        .open(TableId::EngagementEvents)
        .await
        .expect("open")
        .is_none()
    {
        let started = Instant::now();
        let mut table = lake
            .open_or_create(TableId::EngagementEvents)
            .await
            .expect("create");
        let commits = 20;
        let per = rows.div_ceil(commits);
        for c in 0..commits {
            let (from, to) = (c * per, ((c + 1) * per).min(rows));
            table = table
                .write(vec![events::engagement_batch(20_400, 1, from, to, rows)])
                .with_save_mode(SaveMode::Append)
                .await
                .expect("append");
        }
        println!(
            "generated {rows} events in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("reusing the lake at {dir}");
    }

    let config = ServerConfig {
        cache_bytes: 0,
        max_result_rows: usize::MAX,
        max_result_bytes: usize::MAX,
        query_timeout: Duration::from_secs(3600),
        ..ServerConfig::default()
    };
    let live = Arc::new(LiveLake::new(
        SessionFactory::new(lake.clone()),
        Duration::from_millis(500),
    ));
    let mut registry = Default::default();
    let executor = Arc::new(QueryExecutor::new(live, &config).expect("query runtime"));
    let flight = FlightSqlServer::new(executor.clone(), config.clone(), &mut registry)
        .expect("server settings");
    let flight_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let flight_addr = flight_listener.local_addr().expect("addr");
    tokio::spawn(flight.serve(flight_listener, std::future::pending()));
    let http = QueryServer::new(executor, config, registry).expect("server settings");
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", http_listener.local_addr().expect("addr"));
    tokio::spawn(http.serve(http_listener, std::future::pending()));

    let sql = format!(
        "SELECT event_id, event_type, event_time, user_id, session_id, device_type, app_version, \
         country, amount, event_date, event_hour FROM engagement_events LIMIT {rows}"
    );
    println!("query: {sql}");
    println!("| transport | rows | runs | median s | rows/s | MB/s on the wire |");
    println!("|---|---:|---:|---:|---:|---:|");

    let channel = tonic::transport::Channel::from_shared(format!("http://{flight_addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut client = FlightSqlServiceClient::new(channel);
    let (mut times, mut bytes) = (Vec::new(), 0usize);
    for _ in 0..runs {
        let started = Instant::now();
        let info = client.execute(sql.clone(), None).await.expect("execute");
        let mut got = 0usize;
        let wire = Arc::new(AtomicUsize::new(0));
        for endpoint in info.endpoint {
            let messages = client
                .inner()
                .clone()
                .do_get(endpoint.ticket.expect("ticket"))
                .await
                .expect("do_get")
                .into_inner();
            let counted = {
                let wire = wire.clone();
                messages
                    .map_ok(move |data| {
                        wire.fetch_add(
                            data.data_header.len() + data.data_body.len(),
                            Ordering::Relaxed,
                        );
                        data
                    })
                    .map_err(FlightError::from)
            };
            let mut batches = FlightRecordBatchStream::new_from_flight_data(counted);
            while let Some(batch) = batches.try_next().await.expect("batch") {
                got += batch.num_rows();
            }
        }
        assert_eq!(got as u64, rows, "Flight SQL returned {got} rows");
        times.push(started.elapsed().as_secs_f64());
        bytes = wire.load(Ordering::Relaxed);
    }
    report("Flight SQL (arrow-flight client)", rows, &times, bytes);

    let http_client = reqwest::Client::new();
    for format in ["arrow", "ndjson", "json"] {
        let mut times = Vec::new();
        let mut wire = 0usize;
        for _ in 0..runs {
            let started = Instant::now();
            let mut response = http_client
                .post(format!("{base}/v1/sql"))
                .json(&serde_json::json!({"sql": sql, "format": format}))
                .send()
                .await
                .expect("request");
            assert!(
                response.status().is_success(),
                "{format}: {}",
                response.status()
            );
            let mut body = Vec::new();
            let mut size = 0usize;
            while let Some(chunk) = response.chunk().await.expect("body") {
                size += chunk.len();
                if format == "arrow" {
                    body.extend_from_slice(&chunk);
                } else if format == "json" && size > chunk.len() {
                    // Only the tail (with "stats") is kept.
                    body.clear();
                    body.extend_from_slice(&chunk);
                } else {
                    body.extend_from_slice(&chunk[chunk.len().saturating_sub(256)..]);
                }
            }
            let got = if format == "arrow" {
                let reader =
                    arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
                        .expect("arrow stream");
                reader
                    .map(|b| b.expect("batch").num_rows() as u64)
                    .sum::<u64>()
            } else {
                rows
            };
            assert_eq!(got, rows, "{format} returned {got} rows");
            times.push(started.elapsed().as_secs_f64());
            wire = size;
        }
        report(&format!("HTTP {format}"), rows, &times, wire);
    }
}

fn report(name: &str, rows: u64, times: &[f64], bytes: usize) {
    let m = median(times.to_vec());
    println!(
        "| {name} | {rows} | {} | {m:.2} | {:.0} | {:.0} |",
        times.len(),
        rows as f64 / m,
        bytes as f64 / m / 1e6
    );
}
