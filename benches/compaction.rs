//! Compaction and rollup benchmark (run it with `cargo bench --bench compaction`;
//! results in benches/RESULTS.md).
//!
//! 1. Writes one day of generated engagement events (default 20 000 000, plus 2 % resent
//!    duplicates) into a fresh lake the way ingest does: many small appends, each
//!    touching every hour (HOURLAKE_BENCH_COMMITS commits, default 400 → ~9 600 files).
//! 2. Times a typical dashboard query (hourly active users, sessions, purchases and
//!    revenue for the day) and a per-user lookup on the raw table **before** compaction.
//! 3. Runs one compactor pass (rewrite, dedup, rollups): reports MB/s read and the
//!    pass's peak memory (VmHWM, reset before the pass through /proc/self/clear_refs).
//! 4. Times the same queries on the raw table **after** compaction, and the dashboard
//!    query from `engagement_hourly` (the rollup) instead of raw events.
//!
//! Before step 3, copies of the written lake get the same pass with less to do, so the
//! pass's time and memory are compared on the same day: `plain` (rewrite, dedup,
//! rollups: no sessions, no quality figures) and `sessions` (plus sessionization and
//! `sessions_hourly`); step 3 itself runs everything (plus the quality figures).
//!
//! Knobs (environment): HOURLAKE_BENCH_EVENTS, HOURLAKE_BENCH_COMMITS, HOURLAKE_BENCH_RUNS,
//! HOURLAKE_BENCH_VARIANTS (default `plain,sessions`; empty: none).

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use deltalake::protocol::SaveMode;
use hourlake_catalog::{Hour, Lake, TableId};
use hourlake_compactor::{Compactor, CompactorConfig, QualityConfig};
use hourlake_sql::SessionFactory;

use hourlake_testkit::knobs::env_or;
use hourlake_testkit::{events, resources};

/// This process's peak memory so far, in MiB.
fn peak_rss_mib() -> f64 {
    resources::peak_rss_mib(std::process::id()).unwrap_or(f64::NAN)
}

/// Median and minimum of `runs` timed executions (after one warm-up).
async fn time_query(lake: &Lake, sql: &str, runs: usize) -> (Duration, Duration, usize) {
    // A server keeps its session; only the query is timed.
    let ctx = SessionFactory::new(lake.clone())
        .session()
        .await
        .expect("session");
    let mut times = Vec::new();
    let mut rows = 0;
    for run in 0..=runs {
        let started = Instant::now();
        let batches = ctx
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        rows = batches.iter().map(RecordBatch::num_rows).sum();
        if run > 0 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    (times[times.len() / 2], times[0], rows)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let events: u64 = env_or("HOURLAKE_BENCH_EVENTS", 20_000_000);
    let commits: u64 = env_or("HOURLAKE_BENCH_COMMITS", 400);
    let runs: usize = env_or("HOURLAKE_BENCH_RUNS", 5);
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    let day = Hour::of_micros(chrono_now_micros()).date - 2;

    let started = Instant::now();
    let table = lake
        .open_or_create(TableId::EngagementEvents)
        .await
        .expect("create");
    let mut table = table;
    let per_commit = events.div_ceil(commits);
    let mut from = 0;
    while from < events {
        let to = (from + per_commit).min(events);
        table = table
            .write(vec![events::engagement_batch(day, 1, from, to, events)])
            .with_save_mode(SaveMode::Append)
            .await
            .expect("append");
        from = to;
    }
    let files_before = table.snapshot().expect("snapshot").log_data().num_files();
    println!(
        "generated {events} events of one day in {commits} commits ({files_before} files) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let date = Hour { date: day, hour: 0 }.date_string();
    let dashboard_raw = format!(
        "SELECT event_hour, hll_count_distinct(user_id) AS users, \
           sum(CASE WHEN event_type = 'session_start' THEN 1 ELSE 0 END) AS sessions, \
           sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases, \
           sum(CASE WHEN event_type = 'purchase' THEN amount END) AS revenue \
         FROM engagement_events WHERE event_date = DATE '{date}' GROUP BY event_hour ORDER BY event_hour"
    );
    let dashboard_rollup = format!(
        "SELECT event_hour, hll_estimate(users_sketch) AS users, sessions, purchases, revenue \
         FROM engagement_hourly WHERE event_date = DATE '{date}' AND event_type = 'ALL' \
           AND device_type = 'ALL' AND app_version = 'ALL' AND country = 'ALL' ORDER BY event_hour"
    );
    let lookup = format!(
        "SELECT count(*) FROM engagement_events WHERE event_date = DATE '{date}' AND user_id = 'user-4242'"
    );

    let variants = std::env::var("HOURLAKE_BENCH_VARIANTS").unwrap_or("plain,sessions".into());
    let mut variant_lines = Vec::new();
    for variant in variants.split(',').filter(|v| !v.is_empty()) {
        let (sessionize, quality) = match variant {
            "plain" => (false, false),
            "sessions" => (true, false),
            other => panic!("unknown variant {other} (plain, sessions)"),
        };
        let copy = tempfile::tempdir().expect("tempdir");
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", dir.path().display()))
            .arg(copy.path())
            .status()
            .expect("cp");
        assert!(status.success(), "copying the lake");
        let config = CompactorConfig {
            closed_after: Duration::ZERO,
            maintenance_every: 0,
            sessionize,
            quality: QualityConfig {
                enabled: quality,
                ..QualityConfig::default()
            },
            ..CompactorConfig::default()
        };
        let compactor = Compactor::new(Lake::local(copy.path()).expect("lake"), config, "bench");
        resources::reset_own_peak_rss();
        let started = Instant::now();
        let report = compactor.run_pass().await.expect("compaction pass");
        let elapsed = started.elapsed();
        let peak = peak_rss_mib();
        compactor.release().await.expect("release");
        println!("compaction pass ({variant}): {report}");
        variant_lines.push(format!(
            "| {variant} | {:.1} s | {:.0} MiB |",
            elapsed.as_secs_f64(),
            peak
        ));
    }

    let (raw_before, raw_before_min, _) = time_query(&lake, &dashboard_raw, runs).await;
    let (lookup_before, lookup_before_min, _) = time_query(&lake, &lookup, runs).await;

    let config = CompactorConfig {
        closed_after: Duration::ZERO,
        maintenance_every: 0,
        ..CompactorConfig::default()
    };
    let compactor = Compactor::new(lake.clone(), config, "bench");
    resources::reset_own_peak_rss();
    let rss_before = peak_rss_mib();
    assert!(compactor_config_computes_everything());
    let started = Instant::now();
    let report = compactor.run_pass().await.expect("compaction pass");
    let elapsed = started.elapsed();
    let peak = peak_rss_mib();
    compactor.release().await.expect("release");
    let t = report
        .table(TableId::EngagementEvents)
        .expect("engagement report");
    let bytes_in: u64 = t.rewrites.iter().map(|r| r.bytes_in).sum();
    let rows_in: u64 = t.rewrites.iter().map(|r| r.rows_in).sum();
    let rewrite_ms: u64 = t.rewrites.iter().map(|r| r.millis).sum();
    println!("compaction pass: {report}");

    let (raw_after, raw_after_min, _) = time_query(&lake, &dashboard_raw, runs).await;
    let (lookup_after, lookup_after_min, _) = time_query(&lake, &lookup, runs).await;
    let (rollup, rollup_min, rollup_rows) = time_query(&lake, &dashboard_rollup, runs).await;
    assert_eq!(rollup_rows, 24, "one rollup row per hour");

    println!();
    println!("| measurement | median | min |");
    println!("|---|---|---|");
    println!(
        "| dashboard query, raw, before compaction ({files_before} files) | {:.0} ms | {:.0} ms |",
        ms(raw_before),
        ms(raw_before_min)
    );
    println!(
        "| dashboard query, raw, after compaction | {:.0} ms | {:.0} ms |",
        ms(raw_after),
        ms(raw_after_min)
    );
    println!(
        "| dashboard query from `engagement_hourly` | {:.1} ms | {:.1} ms |",
        ms(rollup),
        ms(rollup_min)
    );
    println!(
        "| one user's events, raw, before compaction | {:.0} ms | {:.0} ms |",
        ms(lookup_before),
        ms(lookup_before_min)
    );
    println!(
        "| one user's events, raw, after compaction | {:.0} ms | {:.0} ms |",
        ms(lookup_after),
        ms(lookup_after_min)
    );
    println!();
    println!("| pass | wall | peak RSS |");
    println!("|---|---|---|");
    for line in &variant_lines {
        println!("{line}");
    }
    println!(
        "| all (sessions and quality figures) | {:.1} s | {:.0} MiB |",
        elapsed.as_secs_f64(),
        peak
    );
    println!();
    println!(
        "compaction: {} hours, {} → {} files, {:.0} MiB read ({rows_in} rows) in {:.1} s of rewrites ({:.1} s with rollups) = {:.1} MB/s, {:.2} M rows/s; peak RSS during the pass {:.0} MiB (before it {:.0} MiB)",
        t.rewrites.len(),
        t.rewrites.iter().map(|r| r.files_in).sum::<usize>(),
        t.rewrites.iter().map(|r| r.files_out).sum::<usize>(),
        bytes_in as f64 / 1048576.0,
        rewrite_ms as f64 / 1000.0,
        elapsed.as_secs_f64(),
        bytes_in as f64 / 1e6 / elapsed.as_secs_f64(),
        rows_in as f64 / 1e6 / elapsed.as_secs_f64(),
        peak,
        rss_before,
    );
}

/// The default compactor config derives sessions and quality figures (what the last
/// pass measures).
fn compactor_config_computes_everything() -> bool {
    let d = CompactorConfig::default();
    d.sessionize && d.quality.enabled
}

fn chrono_now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
