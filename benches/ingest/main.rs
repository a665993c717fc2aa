//! Ingest benchmark (run it with `cargo bench --bench ingest`; see benches/RESULTS.md).
//!
//! Against a real broker started by `scripts/kafka`, with the release `hourlake` binary:
//! 1. **throughput** (`throughput.rs`): pre-fill two topics with N generated events
//!    (default 5 000 000); then, for a few rounds, read them all with a plain rdkafka
//!    consumer that discards them (the physical limit of this path) and ingest them into
//!    a fresh lake; report both rates, their ratio and the ingest process's peak memory
//!    (VmHWM), per round and as medians (this VM's speed swings between runs, so one
//!    round proves little);
//! 2. **stages** (`stages.rs`, also part of throughput): the JSON parser's floor, then
//!    decode and write without Kafka through ingest's own window and flusher;
//!    `offline` does the same over dumped messages, without a broker;
//! 3. **freshness** (`freshness.rs`): with the generator at a steady rate (default
//!    50 000 ev/s for 60 s) and ingest running, watch the table's `_delta_log`; when a
//!    commit appears, every row it adds becomes queryable: record (that moment − the
//!    row's event_time). Report p50/p95/p99.
//!
//! 4. **scale** (`scale.rs`, only when named): a lake on S3 (versitygw via `scripts/s3`)
//!    against a local folder, and 1, 2, 3 ingest processes in one group, each catching
//!    up on the same backlog: events/s and commit latency p50/p99;
//!    **freshness-s3**: the freshness run with the lake on S3.
//! 5. **backfill** (`backfill.rs`, only when named): the same backlog ingested from Kafka
//!    and loaded by `hourlake backfill` from an NDJSON dump of it, events/s side by side.
//!
//! Knobs (environment): HOURLAKE_BENCH_EVENTS, HOURLAKE_BENCH_ROUNDS (default 3),
//! HOURLAKE_BENCH_RATE, HOURLAKE_BENCH_SECONDS,
//! HOURLAKE_BENCH_TOPICS=APP,REC (reuse filled topics; `stages` alone needs it),
//! HOURLAKE_BENCH_STAGE_EVENTS (messages for the stages, default 1 M), HOURLAKE_BIN,
//! HOURLAKE_BENCH_DUMP=FILE (write the stages' payloads, one per line, for
//! `benches/json-parsers`; `offline` reads them), HOURLAKE_BENCH_SCALE_EVENTS (default
//! 2 000 000).

mod backfill;
mod freshness;
mod scale;
mod stages;
mod throughput;

use hourlake_testkit::binary::Hourlake;
use hourlake_testkit::kafka;

/// The `hourlake` binary: this build's, or `HOURLAKE_BIN` (to compare two builds).
fn hourlake() -> Hourlake {
    Hourlake::from_env_or(env!("CARGO_BIN_EXE_hourlake"))
}

/// Creates `topics` with `partitions` partitions each.
fn create_topics(bootstrap: &str, topics: &[&str], partitions: i32) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        for topic in topics {
            kafka::create_topic(bootstrap, topic, partitions).await;
        }
    });
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
        stages::offline();
        return;
    }
    let broker = kafka::shared();
    let bootstrap = &broker.bootstrap;
    println!(
        "broker {bootstrap}; machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if wants("throughput") {
        throughput::throughput(broker);
    }
    if wants("freshness") {
        freshness::freshness(bootstrap);
    }
    // Long, and they need the S3 server: only when named.
    if filter.iter().any(|f| f == "scale") {
        scale::scale(broker);
    }
    if filter.iter().any(|f| f == "backfill") {
        backfill::backfill(broker);
    }
    if filter.iter().any(|f| f == "freshness-s3") {
        let dir = tempfile::tempdir().expect("tempdir");
        freshness::freshness_on(bootstrap, &scale::Storage::s3(dir.path()));
    }
    // The stages alone (also part of `throughput`), on topics a previous run filled.
    if filter.iter().any(|f| f == "stages") {
        let topics = std::env::var("HOURLAKE_BENCH_TOPICS")
            .expect("`stages` alone reads HOURLAKE_BENCH_TOPICS=APP,REC");
        let topics: Vec<&str> = topics.split(',').collect();
        stages::stages(bootstrap, &kafka::end_offsets(bootstrap, &topics));
    }
}
