//! The ingest stages without Kafka: the JSON parser's floor, then decoding and writing
//! through ingest's own window and flusher (`OfflineIngest`). `stages` reads its
//! messages from the broker; `offline` from a file `stages` dumped, with no broker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hourlake_catalog::Lake;
use hourlake_ingest::{FlushPolicy, IngestConfig, OfflineIngest, TopicPartition};
use hourlake_testkit::kafka::{consumer_from_start, EndOffsets};
use hourlake_testkit::knobs::env_or;
use hourlake_testkit::resources::cpu_seconds;

/// Messages per window in `offline`: ingest's default `max_rows`.
fn window_messages() -> usize {
    FlushPolicy::default().max_rows
}

/// The ingest stages alone, without Kafka: decoding up to 1 M messages (held in
/// memory) into Arrow through ingest's own window, then writing and committing them as
/// one flush.
pub fn stages(bootstrap: &str, marks: &EndOffsets) {
    use rdkafka::Message;

    let wanted: usize = env_or("HOURLAKE_BENCH_STAGE_EVENTS", 1_000_000);
    let c = consumer_from_start(bootstrap, marks.keys().map(|(t, p)| (t.as_str(), *p)));
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
pub fn offline() {
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
