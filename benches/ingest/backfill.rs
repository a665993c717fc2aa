//! Backfill against Kafka ingest on the same events (issue 18): the generator fills two
//! topics; their messages are dumped to an NDJSON file; then, in alternating rounds,
//! `hourlake ingest` catches up on the topics into a fresh lake and `hourlake backfill`
//! loads the file into another fresh lake. Events/s of both, medians.

use std::io::Write;
use std::time::{Duration, Instant};

use hourlake_testkit::kafka::{consumer_from_start, end_offsets, Broker};
use hourlake_testkit::knobs::env_or;
use hourlake_testkit::stats::percentile;
use hourlake_testkit::unique;

use crate::scale::{catch_up_rate, Storage};
use crate::throughput::prefill;
use crate::{create_topics, hourlake};

pub fn backfill(broker: &Broker) {
    use rdkafka::Message;

    let bootstrap = broker.bootstrap.as_str();
    let events: u64 = env_or("HOURLAKE_BENCH_SCALE_EVENTS", 2_000_000);
    let rounds: usize = env_or("HOURLAKE_BENCH_ROUNDS", 3).max(1);
    let (app, rec) = (unique("bf-app"), unique("bf-rec"));
    let topics = [app.as_str(), rec.as_str()];
    create_topics(bootstrap, &topics, 6);
    prefill(bootstrap, &app, &rec, events);
    let marks = end_offsets(bootstrap, &topics);
    let total: i64 = marks.values().sum();
    let dir = tempfile::tempdir().expect("tempdir");
    let dump = dir.path().join("events.ndjson");
    {
        let consumer = consumer_from_start(bootstrap, marks.keys().map(|(t, p)| (t.as_str(), *p)));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&dump).expect("dump"));
        let mut written = 0i64;
        while written < total {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
                let payload = m.payload().unwrap_or_default();
                // one message per line: a payload with a newline would split (none here)
                out.write_all(payload).expect("write");
                out.write_all(b"\n").expect("write");
                written += 1;
            }
        }
    }
    let bytes = std::fs::metadata(&dump).map(|m| m.len()).unwrap_or(0);
    println!(
        "backfill vs ingest: {total} messages ({:.0} MiB as NDJSON), {rounds} alternating rounds",
        bytes as f64 / 1048576.0
    );
    let (mut ingest_rates, mut backfill_rates) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let storage = Storage::local(dir.path());
        let ingest = catch_up_rate(bootstrap, &topics, &marks, &storage);
        let _ = std::fs::remove_dir_all(&storage.files);
        let lake = dir.path().join(unique("backfill-lake"));
        let started = Instant::now();
        let out = hourlake()
            .command()
            .args(["backfill", "--lake"])
            .arg(&lake)
            .arg(&dump)
            .output()
            .expect("hourlake backfill");
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("totals");
        assert_eq!(report["rows_committed"], total, "{report}");
        let backfill = total as f64 / took.as_secs_f64();
        let _ = std::fs::remove_dir_all(&lake);
        println!("round {round}: ingest from Kafka {ingest:.0} ev/s; backfill from the file {backfill:.0} ev/s (process start to exit)");
        ingest_rates.push(ingest);
        backfill_rates.push(backfill);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(v, 0.5)
    };
    let (i, b) = (median(&mut ingest_rates), median(&mut backfill_rates));
    println!("\n| path | events/s (median) |\n|---|---|\n| `hourlake ingest` (Kafka backlog) | {i:.0} |\n| `hourlake backfill` (NDJSON file) | {b:.0} |\nbackfill ÷ ingest: {:.2}", b / i);
}
