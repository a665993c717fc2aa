//! Freshness: with the generator at a steady rate and ingest running, each commit's
//! rows become queryable when the commit appears; how long after their event time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::AsArray;
use arrow::datatypes::TimestampMicrosecondType;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::arrow::ProjectionMask;
use hourlake_testkit::knobs::env_or;
use hourlake_testkit::resources::peak_rss_mib;
use hourlake_testkit::stats::percentile;
use hourlake_testkit::unique;

use crate::scale::Storage;
use crate::{create_topics, hourlake};

/// Parses new commit files of a table's `_delta_log`; returns the added file paths.
fn added_files(log_file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log_file).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v.get("add")
                .and_then(|a| a.get("path"))
                .and_then(|p| p.as_str())
                .map(str::to_string)
        })
        .map(|p| p.replace("%3A", ":").replace("%20", " "))
        .collect()
}

/// Ingests a steady stream and reports how fresh the committed rows are.
pub fn freshness(bootstrap: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    freshness_on(bootstrap, &Storage::local(dir.path()));
}

pub fn freshness_on(bootstrap: &str, storage: &Storage) {
    let rate: u64 = env_or("HOURLAKE_BENCH_RATE", 50_000);
    let seconds: u64 = env_or("HOURLAKE_BENCH_SECONDS", 60);
    let (app, rec) = (unique("fresh-app"), unique("fresh-rec"));
    let topics = [app.as_str(), rec.as_str()];
    create_topics(bootstrap, &topics, 4);
    let lake = storage.files.clone();
    let mut child = storage
        .ingest(bootstrap, &topics, &unique("fresh"))
        .env("RUST_LOG", "warn,deltalake_core::writer::stats=error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ingest");
    let log_dir = lake.join("engagement_events/_delta_log");
    while !log_dir.join("00000000000000000000.json").exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3)); // let the member join its group
    let count = rate * seconds;
    let t = Instant::now();
    let producer = hourlake()
        .produce(bootstrap, &app, &rec)
        .with("rate", rate)
        .with("count", count)
        .with("seed", 2)
        .spawn();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let mut lags: Vec<f64> = Vec::new();
    let mut producer = Some(producer);
    let mut achieved = f64::NAN;
    let mut idle_since: Option<Instant> = None;
    loop {
        let mut new = false;
        if let Ok(entries) = std::fs::read_dir(&log_dir) {
            let mut names: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json") && !seen.contains(p))
                .collect();
            names.sort();
            for path in names {
                let visible = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros() as i64;
                seen.insert(path.clone());
                new = true;
                for file in added_files(&path) {
                    let Ok(f) = std::fs::File::open(lake.join("engagement_events").join(&file))
                    else {
                        continue;
                    };
                    let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(f) else {
                        continue;
                    };
                    let idx = builder.schema().index_of("event_time").unwrap_or(2);
                    let mask = ProjectionMask::roots(builder.parquet_schema(), [idx]);
                    let Ok(reader) = builder.with_projection(mask).build() else {
                        continue;
                    };
                    for batch in reader.flatten() {
                        let times = batch.column(0).as_primitive::<TimestampMicrosecondType>();
                        for i in 0..times.len() {
                            lags.push((visible - times.value(i)) as f64 / 1e6);
                        }
                    }
                }
            }
        }
        if let Some(p) = producer.as_mut() {
            if p.has_exited() {
                let report = producer.take().expect("producer").wait();
                achieved = report["sent"].as_f64().unwrap_or(0.0) / t.elapsed().as_secs_f64();
            }
        }
        if producer.is_none() {
            if new {
                idle_since = None;
            } else if idle_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(5)
            {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss = peak_rss_mib(child.id()).unwrap_or(f64::NAN);
    let _ = child.kill();
    let _ = child.wait();
    lags.sort_by(|a, b| a.total_cmp(b));
    println!(
        "freshness ({} lake) at {rate} ev/s requested ({achieved:.0} achieved) for {seconds} s: {} engagement rows seen in {} commits; \
         visible − event_time p50 {:.3} s, p95 {:.3} s, p99 {:.3} s, max {:.3} s; ingest peak RSS {rss:.0} MiB",
        storage.name,
        lags.len(),
        seen.len(),
        percentile(&lags, 0.50),
        percentile(&lags, 0.95),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN),
    );
}
