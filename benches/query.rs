//! Query-server benchmark (run it with `cargo bench --bench query`; results in
//! benches/RESULTS.md).
//!
//! 1. Builds a lake of generated events (default 20 000 000 engagement + 5 000 000
//!    recommendation events over 7 days) the way ingest does (many small appends), and
//!    runs one compactor pass so every closed hour is compacted and rolled up.
//! 2. Serves it with the real HTTP server (result cache off, so every request runs) and
//!    times each dashboard query over the last day and over all 7 days through HTTP:
//!    p50/p95/p99 of HOURLAKE_BENCH_RUNS runs (default 20).
//! 3. Writes `<lake>/duckdb-queries.json` for `benches/duckdb_views.py`, which runs the
//!    same questions in DuckDB over the same Delta tables (raw events; DuckDB has no
//!    rollups) — run it next with the lake path this prints.
//! 4. Prints the lake path and keeps the lake (`HOURLAKE_BENCH_LAKE` to choose it) so the
//!    recommendation-lookup load test (`oha`/`wrk` against `hourlake serve`) can use it.
//!
//! 5. With HOURLAKE_BENCH_WORKERS=N (N ≥ 1): starts N `hourlake worker` processes (the
//!    binary this build made) and a second server with `--workers`, checks both servers
//!    give the same rows for each dashboard query and two full-scan aggregates, and
//!    times them side by side (rounds alternate between the servers).
//!
//! Knobs: HOURLAKE_BENCH_EVENTS, HOURLAKE_BENCH_REC_EVENTS, HOURLAKE_BENCH_DAYS,
//! HOURLAKE_BENCH_COMMITS, HOURLAKE_BENCH_RUNS, HOURLAKE_BENCH_LAKE,
//! HOURLAKE_BENCH_WORKERS, HOURLAKE_BENCH_KB_PER_TASK (default 16384).

use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::protocol::SaveMode;
use hourlake_catalog::{Hour, Lake, TableId};
use hourlake_compactor::{Compactor, CompactorConfig};
use hourlake_query::{QueryExecutor, QueryServer, ServerConfig};
use hourlake_sql::{LiveLake, SessionFactory};

use hourlake_testkit::binary::{Daemon, Hourlake};
use hourlake_testkit::events;
use hourlake_testkit::knobs::env_or;
use hourlake_testkit::stats::percentile;

#[tokio::main]
async fn main() {
    let events: u64 = env_or("HOURLAKE_BENCH_EVENTS", 20_000_000);
    let rec_events: u64 = env_or("HOURLAKE_BENCH_REC_EVENTS", 5_000_000);
    let days: u32 = env_or("HOURLAKE_BENCH_DAYS", 7);
    let commits: u64 = env_or("HOURLAKE_BENCH_COMMITS", 300);
    let runs: usize = env_or("HOURLAKE_BENCH_RUNS", 20);
    let dir = std::env::var("HOURLAKE_BENCH_LAKE").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join(format!("hourlake-bench-lake-{}", std::process::id()))
            .display()
            .to_string()
    });
    let lake = Lake::local(&dir).expect("lake");
    let today = Hour::of_micros(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64),
    )
    .date;
    let first_day = today - days as i32;

    let started = Instant::now();
    if lake
        .open(TableId::EngagementEvents)
        .await
        .expect("open")
        .is_none()
    {
        let mut table = lake
            .open_or_create(TableId::EngagementEvents)
            .await
            .expect("create");
        let mut recs = lake
            .open_or_create(TableId::RecommendationEvents)
            .await
            .expect("create");
        let (per, rec_per) = (events.div_ceil(commits), rec_events.div_ceil(commits));
        for c in 0..commits {
            let (from, to) = (c * per, ((c + 1) * per).min(events));
            if from < to {
                table = table
                    .write(vec![events::engagement_batch(
                        first_day, days, from, to, events,
                    )])
                    .with_save_mode(SaveMode::Append)
                    .await
                    .expect("append");
            }
            let (from, to) = (c * rec_per, ((c + 1) * rec_per).min(rec_events));
            if from < to {
                recs = recs
                    .write(vec![events::recommendation_batch(
                        first_day, days, from, to,
                    )])
                    .with_save_mode(SaveMode::Append)
                    .await
                    .expect("append");
            }
        }
        println!(
            "generated {events} engagement + {rec_events} recommendation events over {days} days in {commits} commits each, {:.0} s",
            started.elapsed().as_secs_f64()
        );
        let started = Instant::now();
        let compactor = Compactor::new(
            lake.clone(),
            CompactorConfig {
                closed_after: Duration::ZERO,
                maintenance_every: 0,
                ..CompactorConfig::default()
            },
            "bench",
        );
        let report = compactor.run_pass().await.expect("compaction");
        compactor.release().await.expect("release");
        println!(
            "compacted and rolled up in {:.0} s: {report}",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("reusing the lake at {dir}");
    }

    let live = LiveLake::new(
        SessionFactory::new(lake.clone()),
        Duration::from_millis(500),
    );
    let config = ServerConfig {
        cache_bytes: 0,
        ..ServerConfig::default()
    };
    let executor = QueryExecutor::new(Arc::new(live), &config).expect("query runtime");
    let server =
        QueryServer::new(Arc::new(executor), config, Default::default()).expect("server settings");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(server.serve(listener, std::future::pending()));
    let client = reqwest::Client::new();

    let last_day = Hour {
        date: today - 1,
        hour: 0,
    }
    .date_string();
    let first = Hour {
        date: first_day,
        hour: 0,
    }
    .date_string();
    let queries = [
        ("hourly active users", "SELECT event_date, event_hour, active_users, sessions FROM hourly_engagement WHERE event_date >= DATE '{from}' ORDER BY 1, 2"),
        ("daily active users", "SELECT event_date, active_users FROM daily_active_users WHERE event_date >= DATE '{from}' ORDER BY 1"),
        ("session length avg/p95", "SELECT event_date, sum(sessions) AS sessions, avg(avg_session_length_ms) AS avg_ms, max(p95_session_length_ms) AS p95_ms FROM hourly_engagement WHERE event_date >= DATE '{from}' GROUP BY 1 ORDER BY 1"),
        ("installs, purchases, revenue", "SELECT event_date, sum(installs) AS installs, sum(purchases) AS purchases, sum(revenue) AS revenue FROM hourly_engagement WHERE event_date >= DATE '{from}' GROUP BY 1 ORDER BY 1"),
        ("notification open rate", "SELECT event_date, sum(notification_opens) * 1.0 / sum(notification_views) AS open_rate FROM hourly_engagement WHERE event_date >= DATE '{from}' GROUP BY 1 ORDER BY 1"),
        ("CTR by model and surface", "SELECT model_version, surface, sum(clicks) * 1.0 / sum(impressions) AS ctr FROM recommendation_ctr WHERE event_date >= DATE '{from}' GROUP BY 1, 2 ORDER BY 1, 2"),
    ];
    println!();
    println!("| query | range | p50 | p95 | p99 |");
    println!("|---|---|---|---|---|");
    for (name, sql) in queries {
        for (range, from) in [("1 day", &last_day), (&format!("{days} days")[..], &first)] {
            let sql = sql.replace("{from}", from);
            let mut times = Vec::new();
            for run in 0..=runs {
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/v1/sql"))
                    .json(&serde_json::json!({"sql": sql}))
                    .send()
                    .await
                    .expect("request");
                assert!(
                    r.status().is_success(),
                    "{sql}: {}",
                    r.text().await.unwrap_or_default()
                );
                let _ = r.bytes().await.expect("body");
                if run > 0 {
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            times.sort_by(f64::total_cmp);
            println!(
                "| {name} | {range} | {:.1} ms | {:.1} ms | {:.1} ms |",
                percentile(&times, 0.5),
                percentile(&times, 0.95),
                percentile(&times, 0.99)
            );
        }
    }
    let workers: usize = env_or("HOURLAKE_BENCH_WORKERS", 0);
    if workers > 0 {
        let kb_per_task: usize = env_or("HOURLAKE_BENCH_KB_PER_TASK", 16 * 1024);
        single_vs_distributed(&client, &base, &dir, workers, kb_per_task, runs, &first).await;
    }
    println!();
    println!("lake kept at {dir}");
    println!("next: python3 benches/duckdb_views.py {dir} {first} {last_day} {runs}");
}

/// Times each query on the single server at `single` and on a server with `workers`
/// worker processes, alternating, after checking both give the same rows.
async fn single_vs_distributed(
    client: &reqwest::Client,
    single: &str,
    dir: &str,
    workers: usize,
    kb_per_task: usize,
    runs: usize,
    from: &str,
) {
    let hourlake = Hourlake::at(env!("CARGO_BIN_EXE_hourlake"));
    let logs = std::path::Path::new(dir);
    let processes: Vec<Daemon> = (0..workers)
        .map(|i| {
            hourlake.daemon(
                &format!("bench-worker-{i}"),
                logs,
                &["worker", "--lake", dir, "--listen", "127.0.0.1:0"],
            )
        })
        .collect();
    let addresses: Vec<String> = processes
        .iter()
        .map(|w| w.logged_addr("serving query tasks on http://"))
        .collect();
    let kb = kb_per_task.to_string();
    // Like the single server: no result cache, so every request runs.
    let config = logs.join("bench-serve-distributed.toml");
    std::fs::write(&config, "[server]\ncache_mb = 0\n").expect("config");
    let config = config.display().to_string();
    let server = hourlake.daemon(
        "bench-serve-distributed",
        logs,
        &[
            "serve",
            "--config",
            &config,
            "--lake",
            dir,
            "--http",
            "127.0.0.1:0",
            "--workers",
            &addresses.join(","),
            "--distributed-kb-per-task",
            &kb,
        ],
    );
    let distributed = format!(
        "http://{}",
        server.logged_addr("serving SQL over HTTP on http://")
    );
    let queries = [
        ("daily active users (view)", format!("SELECT event_date, active_users FROM daily_active_users WHERE event_date >= DATE '{from}' ORDER BY 1")),
        ("full scan: events and users by type", "SELECT event_type, count(*) AS n, hll_count_distinct(user_id) AS users FROM engagement_events GROUP BY 1 ORDER BY 1".to_string()),
        ("full scan: top users", "SELECT user_id, count(*) AS n FROM engagement_events GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10".to_string()),
    ];
    let ask = |base: String, sql: String| async move {
        let t = Instant::now();
        let r = client
            .post(format!("{base}/v1/sql"))
            .json(&serde_json::json!({"sql": sql}))
            .send()
            .await
            .expect("request");
        let ok = r.status().is_success();
        let body: serde_json::Value = r.json().await.expect("json");
        assert!(ok, "{sql}: {body}");
        (t.elapsed().as_secs_f64() * 1000.0, body["rows"].clone())
    };
    println!();
    println!("single server vs {workers} workers ({kb_per_task} KiB per scan task), {runs} alternating rounds:");
    println!();
    println!("| query | single p50 | single p95 | distributed p50 | distributed p95 |");
    println!("|---|---|---|---|---|");
    for (name, sql) in queries {
        let (_, here) = ask(single.to_string(), sql.clone()).await;
        let (_, there) = ask(distributed.clone(), sql.clone()).await;
        assert_eq!(here, there, "different answers to {sql}");
        let (mut one, mut many) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            one.push(ask(single.to_string(), sql.clone()).await.0);
            many.push(ask(distributed.clone(), sql.clone()).await.0);
        }
        one.sort_by(f64::total_cmp);
        many.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            percentile(&one, 0.5),
            percentile(&one, 0.95),
            percentile(&many, 0.5),
            percentile(&many, 0.95)
        );
    }
    drop(server);
    drop(processes);
}
