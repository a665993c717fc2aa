//! Ingest benchmark (run it with `cargo bench --bench ingest`; see benches/RESULTS.md).
//!
//! Against a real broker started by `scripts/kafka`, with the release `hourlake` binary:
//! 1. **throughput**: pre-fill two topics with N generated events (default 5 000 000);
//!    then, for a few rounds, read them all with a plain rdkafka consumer that discards
//!    them (the physical limit of this path) and ingest them into a fresh lake; report
//!    both rates, their ratio and the ingest process's peak memory (VmHWM), per round and
//!    as medians (this VM's speed swings between runs, so one round proves little);
//! 2. **freshness**: with the generator at a steady rate (default 50 000 ev/s for 60 s) and
//!    ingest running, watch the table's `_delta_log`; when a commit appears, every row it
//!    adds becomes queryable: record (that moment − the row's event_time). Report p50/p95/p99.
//!
//! Knobs (environment): HOURLAKE_BENCH_EVENTS, HOURLAKE_BENCH_ROUNDS (default 3),
//! HOURLAKE_BENCH_RATE, HOURLAKE_BENCH_SECONDS,
//! HOURLAKE_BENCH_TOPICS=APP,REC (reuse filled topics; `stages` alone needs it),
//! HOURLAKE_BENCH_STAGE_EVENTS (messages for the stages, default 1 M), HOURLAKE_BIN,
//! HOURLAKE_BENCH_DUMP=FILE (write the stages' payloads, one per line, for
//! `benches/json-parsers`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::AsArray;
use arrow::datatypes::TimestampMicrosecondType;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::arrow::ProjectionMask;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `hourlake` binary: this build's, or `HOURLAKE_BIN` (to compare two builds).
fn hourlake() -> Command {
    Command::new(
        std::env::var("HOURLAKE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hourlake").into()),
    )
}

fn start_broker() -> String {
    let out = Command::new("bash")
        .arg(repo().join("scripts/kafka"))
        .arg("start")
        .output()
        .expect("scripts/kafka");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn create_topics(bootstrap: &str, topics: &[&str], partitions: i32) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("admin");
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        for r in admin
            .create_topics(&new, &AdminOptions::new())
            .await
            .expect("create")
        {
            r.expect("topic created");
        }
    });
}

fn high_watermarks(bootstrap: &str, topics: &[&str]) -> BTreeMap<(String, i32), i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let mut out = BTreeMap::new();
    for t in topics {
        let md = c
            .fetch_metadata(Some(t), Duration::from_secs(10))
            .expect("metadata");
        for p in md.topics()[0].partitions() {
            let (_, high) = c
                .fetch_watermarks(t, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            out.insert((t.to_string(), p.id()), high);
        }
    }
    out
}

/// A plain consumer assigned every partition of `marks` from the beginning.
fn consumer_from_start(bootstrap: &str, marks: &BTreeMap<(String, i32), i64>) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("raw"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (t, p) in marks.keys() {
        tpl.add_partition_offset(t, *p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    c
}

/// What one raw read took.
struct RawRead {
    messages: u64,
    bytes: u64,
    took: Duration,
    /// CPU seconds of librdkafka's own threads (fetching, decompressing).
    rdkafka_threads_cpu: f64,
}

/// Reads every message once and discards it: the physical limit of this path.
fn raw_consume(bootstrap: &str, marks: &BTreeMap<(String, i32), i64>) -> RawRead {
    let c = consumer_from_start(bootstrap, marks);
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

fn ingest(bootstrap: &str, topics: &[&str], group: &str, lake: &Path) -> Child {
    hourlake()
        .args([
            "ingest",
            "--brokers",
            bootstrap,
            "--topics",
            &topics.join(","),
            "--group",
            group,
        ])
        .arg("--lake")
        .arg(lake)
        .env("RUST_LOG", "warn,deltalake_core::writer::stats=error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ingest")
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// User + system CPU seconds a process has used so far (NaN when unreadable).
fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU seconds of a process's threads whose name starts with `prefix` (librdkafka names
/// its threads `rdk:…`).
fn threads_cpu_seconds(pid: u32, prefix: &str) -> f64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten();
    tasks
        .map(|task| task.path())
        .filter(|dir| {
            std::fs::read_to_string(dir.join("comm")).is_ok_and(|name| name.starts_with(prefix))
        })
        .map(|dir| stat_cpu_seconds(&dir.join("stat").to_string_lossy()))
        .sum()
}

/// User + system CPU seconds in a `/proc/…/stat` file.
fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / clock_ticks_per_second(),
        _ => f64::NAN,
    }
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The pid of the broker `scripts/kafka` runs (from its state dir), if found.
fn broker_pid() -> Option<u32> {
    let dir = std::env::var("HOURLAKE_KAFKA_DIR").unwrap_or_else(|_| {
        let tmp = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into());
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        format!("{tmp}/hourlake-kafka-{uid}")
    });
    std::fs::read_to_string(format!("{dir}/kafka.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
}

/// Waits until the group's committed Kafka offsets reach the high watermarks (ingest
/// commits them only after the Delta commits succeeded).
fn wait_committed(
    bootstrap: &str,
    group: &str,
    marks: &BTreeMap<(String, i32), i64>,
    timeout: Duration,
) -> Duration {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (t, p) in marks.keys() {
        tpl.add_partition(t, *p);
    }
    let start = Instant::now();
    loop {
        if let Ok(committed) = c.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
            let done = committed.elements().iter().all(|e| {
                let want = marks
                    .get(&(e.topic().to_string(), e.partition()))
                    .copied()
                    .unwrap_or(0);
                matches!(e.offset(), Offset::Offset(o) if o >= want)
            });
            if done {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < timeout,
            "ingest did not finish in {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Fills the two topics with `events` generated events (duplicates, late and bad ones too).
fn prefill(bootstrap: &str, app: &str, rec: &str, events: u64) {
    let out = hourlake()
        .args([
            "produce",
            "--brokers",
            bootstrap,
            "--topic",
            app,
            "--rec-topic",
            rec,
        ])
        .args([
            "--count",
            &events.to_string(),
            "--users",
            "1000000",
            "--items",
            "100000",
            "--seed",
            "1",
        ])
        .args([
            "--duplicate-fraction",
            "0.01",
            "--late-fraction",
            "0.01",
            "--bad-fraction",
            "0.001",
        ])
        .env("RUST_LOG", "warn,deltalake_core::writer::stats=error")
        .output()
        .expect("produce");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn throughput(bootstrap: &str) {
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
    let marks = high_watermarks(bootstrap, &topics);
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
    stages(bootstrap, &marks);
    let broker = broker_pid();
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
    marks: &BTreeMap<(String, i32), i64>,
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
    let mut child = ingest(bootstrap, topics, &group, &lake);
    let took = wait_committed(bootstrap, &group, marks, Duration::from_secs(3600));
    let peak_rss_mib = peak_rss_mib(child.id());
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

/// Messages per window in the stages and `offline`: ingest's default `max_rows`.
fn window_messages() -> usize {
    hourlake_ingest::FlushPolicy::default().max_rows
}

/// The ingest stages alone, without Kafka: decoding up to 1 M messages (held in
/// memory) into Arrow through ingest's own window, then writing and committing them as
/// one flush.
fn stages(bootstrap: &str, marks: &BTreeMap<(String, i32), i64>) {
    use hourlake_catalog::Lake;
    use hourlake_ingest::{IngestConfig, OfflineIngest, TopicPartition};
    use rdkafka::Message;

    let wanted: usize = env_or("HOURLAKE_BENCH_STAGE_EVENTS", 1_000_000);
    let c = consumer_from_start(bootstrap, marks);
    let mut messages: Vec<(String, i32, i64, Vec<u8>)> = Vec::with_capacity(wanted);
    let total: i64 = marks.values().sum();
    while messages.len() < wanted.min(total as usize) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            let payload = m.payload().unwrap_or_default().to_vec();
            messages.push((m.topic().to_string(), m.partition(), m.offset(), payload));
        }
    }
    // HOURLAKE_BENCH_DUMP=FILE writes the payloads, one per line, for benches/json-parsers.
    if let Ok(path) = std::env::var("HOURLAKE_BENCH_DUMP") {
        let mut out = Vec::with_capacity(messages.len() * 300);
        for (_, _, _, payload) in messages.iter().filter(|m| !m.3.contains(&b'\n')) {
            out.extend_from_slice(payload);
            out.push(b'\n');
        }
        std::fs::write(&path, out).expect("HOURLAKE_BENCH_DUMP");
        println!("stages: payloads written to {path}");
    }
    // The floor of the JSON parser ingest uses: serde_json checking and skipping every
    // message without building anything.
    let start = Instant::now();
    let parsed = messages
        .iter()
        .filter(|m| serde_json::from_slice::<serde::de::IgnoredAny>(&m.3).is_ok())
        .count();
    let parse = start.elapsed();
    println!(
        "stages, one thread: serde_json parse only (IgnoredAny), {parsed} of {} messages valid: {:.2} µs/message",
        messages.len(),
        parse.as_secs_f64() * 1e6 / messages.len().max(1) as f64
    );
    let partitions: BTreeMap<(String, i32), TopicPartition> = marks
        .keys()
        .map(|(t, p)| ((t.clone(), *p), TopicPartition::new(t, *p)))
        .collect();
    let topics: Vec<String> = marks.keys().map(|(t, _)| t.clone()).collect();
    let config = IngestConfig::new("unused", topics, "bench");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = rt
        .block_on(async { Lake::local(dir.path()) })
        .expect("lake");
    let assigned: Vec<TopicPartition> = partitions.values().cloned().collect();
    let mut ingest = OfflineIngest::open(rt.handle(), &lake, &config, &assigned).expect("open");
    let n = messages.len() as f64;
    let cpu = || cpu_seconds(std::process::id());
    let (start, cpu_start) = (Instant::now(), cpu());
    for (topic, partition, offset, payload) in &messages {
        ingest.add(&partitions[&(topic.clone(), *partition)], *offset, payload);
    }
    let decoded = ingest.decode().expect("decode");
    let (decode, decode_cpu) = (start.elapsed(), cpu() - cpu_start);
    println!(
        "stages, {} messages in memory, ingest's window (chunks decoded on {} cores): decode into Arrow {:.2} s = {:.2} µs/message, {:.2} CPU-µs/message",
        messages.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        decode.as_secs_f64(),
        decode.as_secs_f64() * 1e6 / n,
        decode_cpu * 1e6 / n
    );
    let (start, cpu_start) = (Instant::now(), cpu());
    ingest.commit(decoded).expect("commit");
    let (write, write_cpu) = (start.elapsed(), cpu() - cpu_start);
    println!(
        "  write Parquet + commit (all tables): {:.2} s = {:.2} µs/message, {:.2} CPU-µs/message",
        write.as_secs_f64(),
        write.as_secs_f64() * 1e6 / n,
        write_cpu * 1e6 / n
    );
}

/// Decode and write through ingest's own window and flusher (2 048-message chunks,
/// windows of `max_rows` messages) over payloads a `stages` run dumped, several times;
/// CPU seconds per stage.
fn offline() {
    use hourlake_catalog::Lake;
    use hourlake_ingest::{IngestConfig, OfflineIngest, TopicPartition};

    let path =
        std::env::var("HOURLAKE_BENCH_DUMP").expect("`offline` reads HOURLAKE_BENCH_DUMP=FILE");
    let text = std::fs::read(&path).expect("dump");
    let messages: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let reps: usize = env_or("HOURLAKE_BENCH_ROUNDS", 5);
    let tp = TopicPartition::new("bench", 0);
    let config = IngestConfig::new("unused", vec!["bench".into()], "bench");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cpu = || cpu_seconds(std::process::id());
    let n = messages.len() as f64;
    let per_window = window_messages();
    for rep in 1..=reps {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = rt
            .block_on(async { Lake::local(dir.path()) })
            .expect("lake");
        let mut ingest =
            OfflineIngest::open(rt.handle(), &lake, &config, std::slice::from_ref(&tp))
                .expect("open");
        let (mut decode, mut write) = (0.0, 0.0);
        for (w, window) in messages.chunks(per_window).enumerate() {
            let start = cpu();
            for (j, payload) in window.iter().enumerate() {
                ingest.add(&tp, (w * per_window + j) as i64, payload);
            }
            let decoded = ingest.decode().expect("decode");
            decode += cpu() - start;
            let start = cpu();
            ingest.commit(decoded).expect("commit");
            write += cpu() - start;
        }
        let parquet_bytes: u64 = walk_files(dir.path())
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        println!(
            "offline {rep}/{reps}, {} messages: decode {:.2} CPU-µs/message, write {:.2} CPU-µs/message, \
             {:.1} MiB of Parquet",
            messages.len(),
            decode * 1e6 / n,
            write * 1e6 / n,
            parquet_bytes as f64 / 1048576.0
        );
    }
}

/// Every file under `dir`, recursively.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

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

fn freshness(bootstrap: &str) {
    let rate: u64 = env_or("HOURLAKE_BENCH_RATE", 50_000);
    let seconds: u64 = env_or("HOURLAKE_BENCH_SECONDS", 60);
    let (app, rec) = (unique("fresh-app"), unique("fresh-rec"));
    let topics = [app.as_str(), rec.as_str()];
    create_topics(bootstrap, &topics, 4);
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let mut child = ingest(bootstrap, &topics, &unique("fresh"), &lake);
    let log_dir = lake.join("engagement_events/_delta_log");
    while !log_dir.join("00000000000000000000.json").exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3)); // let the member join its group
    let count = rate * seconds;
    let t = Instant::now();
    let producer = hourlake()
        .args([
            "produce",
            "--brokers",
            bootstrap,
            "--topic",
            &app,
            "--rec-topic",
            &rec,
        ])
        .args([
            "--rate",
            &rate.to_string(),
            "--count",
            &count.to_string(),
            "--seed",
            "2",
        ])
        .env("RUST_LOG", "warn,deltalake_core::writer::stats=error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("produce");
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
            if let Ok(Some(_)) = p.try_wait() {
                let p = producer.take().expect("producer");
                let out = p.wait_with_output().expect("producer output");
                let report: serde_json::Value =
                    serde_json::from_slice(&out.stdout).unwrap_or_default();
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
    let rss = peak_rss_mib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    lags.sort_by(|a, b| a.total_cmp(b));
    println!(
        "freshness at {rate} ev/s requested ({achieved:.0} achieved) for {seconds} s: {} engagement rows seen in {} commits; \
         visible − event_time p50 {:.3} s, p95 {:.3} s, p99 {:.3} s, max {:.3} s; ingest peak RSS {rss:.0} MiB",
        lags.len(),
        seen.len(),
        percentile(&lags, 0.50),
        percentile(&lags, 0.95),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter may follow.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    // `offline` needs no broker: decode and write the payloads of HOURLAKE_BENCH_DUMP.
    if filter.iter().any(|f| f == "offline") {
        offline();
        return;
    }
    let bootstrap = start_broker();
    println!(
        "broker {bootstrap}; machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if wants("throughput") {
        throughput(&bootstrap);
    }
    if wants("freshness") {
        freshness(&bootstrap);
    }
    // The stages alone (also part of `throughput`), on topics a previous run filled.
    if filter.iter().any(|f| f == "stages") {
        let topics = std::env::var("HOURLAKE_BENCH_TOPICS")
            .expect("`stages` alone reads HOURLAKE_BENCH_TOPICS=APP,REC");
        let topics: Vec<&str> = topics.split(',').collect();
        stages(&bootstrap, &high_watermarks(&bootstrap, &topics));
    }
}
