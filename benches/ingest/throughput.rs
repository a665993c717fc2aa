//! Throughput: the same prefilled topics read by a plain rdkafka consumer that
//! discards every message (the physical limit of this path) and ingested by
//! `hourlake ingest` into a fresh lake, round after round; rates, ratio, CPU and memory.

use std::time::{Duration, Instant};

use hourlake_testkit::kafka::{
    consumer_from_start, end_offsets, wait_committed, Broker, EndOffsets,
};
use hourlake_testkit::knobs::env_or;
use hourlake_testkit::resources::{cpu_seconds, peak_rss_mib, threads_cpu_seconds};
use hourlake_testkit::stats::percentile;
use hourlake_testkit::unique;
use std::process::Stdio;

use crate::{create_topics, hourlake};

/// What one raw read took.
struct RawRead {
    messages: u64,
    bytes: u64,
    took: Duration,
    /// CPU seconds of librdkafka's own threads (fetching, decompressing).
    rdkafka_threads_cpu: f64,
}

/// Reads every message once and discards it: the physical limit of this path.
fn raw_consume(bootstrap: &str, marks: &EndOffsets) -> RawRead {
    let c = consumer_from_start(bootstrap, marks.keys().map(|(t, p)| (t.as_str(), *p)));
    let total: i64 = marks.values().sum();
    let (mut n, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    while (n as i64) < total {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            n += 1;
            bytes += m.payload_len() as u64;
        }
    }
    RawRead {
        messages: n,
        bytes,
        took: start.elapsed(),
        // Read while the consumer (and so its threads) still exists.
        rdkafka_threads_cpu: threads_cpu_seconds(std::process::id(), "rdk:"),
    }
}

/// Fills the two topics with `events` generated events (duplicates, late and bad ones too).
pub(crate) fn prefill(bootstrap: &str, app: &str, rec: &str, events: u64) {
    hourlake()
        .produce(bootstrap, app, rec)
        .with("count", events)
        .with("users", 1_000_000)
        .with("items", 100_000)
        .with("seed", 1)
        .with("duplicate-fraction", "0.01")
        .with("late-fraction", "0.01")
        .with("bad-fraction", "0.001")
        .run();
}

/// Prefills (or reuses) two topics, runs the stages, then the rounds; prints medians.
pub fn throughput(broker: &Broker) {
    let bootstrap = broker.bootstrap.as_str();
    let events: u64 = env_or("HOURLAKE_BENCH_EVENTS", 5_000_000);
    // HOURLAKE_BENCH_TOPICS=app,rec reuses topics a previous run filled (saves the prefill).
    let reuse: Option<Vec<String>> = std::env::var("HOURLAKE_BENCH_TOPICS")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    let (app, rec) = match reuse.as_deref() {
        Some([app, rec]) => (app.clone(), rec.clone()),
        Some(_) => panic!("HOURLAKE_BENCH_TOPICS must be two topics: APP,REC"),
        None => (unique("bench-app"), unique("bench-rec")),
    };
    let topics = [app.as_str(), rec.as_str()];
    let t = Instant::now();
    if reuse.is_none() {
        create_topics(bootstrap, &topics, 4);
        prefill(bootstrap, &app, &rec, events);
        println!("prefilled topics {app},{rec} (HOURLAKE_BENCH_TOPICS={app},{rec} reuses them)");
    }
    let fill = t.elapsed();
    let marks = end_offsets(bootstrap, &topics);
    let total: i64 = marks.values().sum();
    if reuse.is_none() {
        println!(
            "prefill: {total} messages in {:.1} s ({:.0} msg/s produced)",
            fill.as_secs_f64(),
            total as f64 / fill.as_secs_f64()
        );
    }

    // This VM's speed swings by a third between runs, so the raw consumer and ingest
    // alternate for HOURLAKE_BENCH_ROUNDS rounds and the medians are reported.
    let rounds: usize = env_or("HOURLAKE_BENCH_ROUNDS", 3).max(1);
    crate::stages::stages(bootstrap, &marks);
    let broker = broker.pid();
    let mut results: Vec<Round> = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let r = measure_round(bootstrap, &topics, &marks, broker);
        println!(
            "round {round}/{rounds}: raw rdkafka consumer {:.0} msg/s ({:.1} MiB/s, CPU {:.1} s, of which librdkafka's threads {:.1} s; broker {:.1} s); \
             hourlake ingest {:.0} ev/s in {:.2} s (CPU {:.1} s, of which librdkafka's threads {:.1} s; broker {:.1} s; peak RSS {:.0} MiB); ratio {:.2}",
            r.raw_rate,
            r.raw_mib_per_s,
            r.raw_cpu,
            r.raw_rdkafka_cpu,
            r.raw_broker_cpu,
            r.ingest_rate,
            r.ingest_secs,
            r.ingest_cpu,
            r.ingest_rdkafka_cpu,
            r.ingest_broker_cpu,
            r.peak_rss_mib,
            r.ingest_rate / r.raw_rate
        );
        results.push(r);
    }
    let median = |f: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = results.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (percentile(&v, 0.5), v[0], v[v.len() - 1])
    };
    let (raw_rate, raw_lo, raw_hi) = median(&|r| r.raw_rate);
    println!(
        "raw rdkafka consumer: {total} messages, median {raw_rate:.0} msg/s (range {raw_lo:.0}–{raw_hi:.0})"
    );
    // What the goal leaves to spend: at 0.7 of the raw rate, ingest and the broker
    // together get the machine's cores for 0.7 × raw_rate events a second.
    let (raw_cpu, _, _) = median(&|r| (r.raw_cpu + r.raw_broker_cpu) * 1e6 / total as f64);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "raw rdkafka consumer CPU (consumer + broker): median {raw_cpu:.2} µs/message; \
         budget at 0.7 of the median raw rate: {:.2} CPU-µs/event for ingest and the broker together on {cores} cores",
        cores * 1e6 / (0.7 * raw_rate)
    );
    let (rate, lo, hi) = median(&|r| r.ingest_rate);
    let (ratio, ratio_lo, ratio_hi) = median(&|r| r.ingest_rate / r.raw_rate);
    let (cpu, _, _) = median(&|r| r.ingest_cpu);
    let (rss, _, rss_hi) = median(&|r| r.peak_rss_mib);
    println!(
        "hourlake ingest: {total} messages committed to Delta, median {rate:.0} ev/s (range {lo:.0}–{hi:.0}); \
         {ratio:.2} of the raw consumer (per-round range {ratio_lo:.2}–{ratio_hi:.2}); \
         CPU {:.2} µs/event; peak RSS median {rss:.0} MiB, max {rss_hi:.0} MiB",
        cpu * 1e6 / total as f64
    );
}

/// One raw-consumer read and one ingest run of the same topics.
struct Round {
    raw_rate: f64,
    raw_mib_per_s: f64,
    raw_broker_cpu: f64,
    /// CPU seconds of the raw consumer itself (librdkafka's threads and the poll loop).
    raw_cpu: f64,
    /// Of which librdkafka's own threads.
    raw_rdkafka_cpu: f64,
    ingest_rate: f64,
    ingest_secs: f64,
    ingest_cpu: f64,
    /// Of which librdkafka's own threads (fetching, decompressing); its work inside
    /// `poll` runs on ingest's poll thread and is not included.
    ingest_rdkafka_cpu: f64,
    ingest_broker_cpu: f64,
    peak_rss_mib: f64,
}

fn measure_round(
    bootstrap: &str,
    topics: &[&str],
    marks: &EndOffsets,
    broker: Option<u32>,
) -> Round {
    let broker_cpu = || broker.map_or(f64::NAN, cpu_seconds);
    let (before, own_before) = (broker_cpu(), cpu_seconds(std::process::id()));
    let read = raw_consume(bootstrap, marks);
    let raw_broker_cpu = broker_cpu() - before;
    let raw_cpu = cpu_seconds(std::process::id()) - own_before;

    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let group = unique("bench");
    let before = broker_cpu();
    let mut child = hourlake()
        .ingest(bootstrap, topics, &group, &lake)
        .env("RUST_LOG", "warn,deltalake_core::writer::stats=error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ingest");
    // Ingest commits to Kafka only after the Delta commits succeeded.
    let took = wait_committed(bootstrap, &group, marks, Duration::from_secs(3600));
    let peak_rss_mib = peak_rss_mib(child.id()).unwrap_or(f64::NAN);
    let ingest_cpu = cpu_seconds(child.id());
    let ingest_rdkafka_cpu = threads_cpu_seconds(child.id(), "rdk:");
    let ingest_broker_cpu = broker_cpu() - before;
    let _ = child.kill();
    let _ = child.wait();
    let total: i64 = marks.values().sum();
    Round {
        raw_rate: read.messages as f64 / read.took.as_secs_f64(),
        raw_mib_per_s: read.bytes as f64 / 1048576.0 / read.took.as_secs_f64(),
        raw_broker_cpu,
        raw_cpu,
        raw_rdkafka_cpu: read.rdkafka_threads_cpu,
        ingest_rate: total as f64 / took.as_secs_f64(),
        ingest_secs: took.as_secs_f64(),
        ingest_cpu,
        ingest_rdkafka_cpu,
        ingest_broker_cpu,
        peak_rss_mib,
    }
}
