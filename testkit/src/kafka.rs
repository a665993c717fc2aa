//! A real Apache Kafka broker, started by `scripts/kafka` (KRaft, 127.0.0.1), and what
//! tests and benches ask of it: topics, end offsets, a group's committed offsets, a
//! plain consumer, raw messages sent.
//!
//! One shared broker serves a whole test binary; each test uses its own topics. Tests
//! that stop the broker get a dedicated one. If the broker cannot be started the test
//! fails: it never skips.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The end offset (high watermark) of each `(topic, partition)`.
pub type EndOffsets = BTreeMap<(String, i32), i64>;

/// Runs `scripts/kafka ARGS` with an optional state dir; returns (success, stdout, stderr).
pub fn run_script(args: &[&str], state_dir: Option<&Path>) -> (bool, String, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(crate::repo_root().join("scripts/kafka")).args(args);
    if let Some(dir) = state_dir {
        cmd.env("HOURLAKE_KAFKA_DIR", dir);
    }
    let out = cmd.output().expect("running scripts/kafka");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running broker.
pub struct Broker {
    pub bootstrap: String,
    state_dir: Option<PathBuf>,
}

impl Broker {
    fn start(state_dir: Option<PathBuf>) -> Broker {
        Broker::start_with(state_dir, &["start"])
    }

    fn start_with(state_dir: Option<PathBuf>, args: &[&str]) -> Broker {
        let (ok, stdout, stderr) = run_script(args, state_dir.as_deref());
        assert!(ok, "scripts/kafka start failed:\n{stderr}");
        let bootstrap = stdout.lines().last().unwrap_or_default().trim().to_string();
        assert!(
            bootstrap.starts_with("127.0.0.1:"),
            "unexpected bootstrap {bootstrap:?}\n{stderr}"
        );
        Broker {
            bootstrap,
            state_dir,
        }
    }

    /// Stops the broker (a clean shutdown).
    pub fn stop(&self) {
        let (ok, _, stderr) = run_script(&["stop"], self.state_dir.as_deref());
        assert!(ok, "scripts/kafka stop failed:\n{stderr}");
    }

    /// Starts it again on the same address.
    pub fn restart_stopped(&self) {
        let (ok, stdout, stderr) = run_script(&["start"], self.state_dir.as_deref());
        assert!(ok, "scripts/kafka start failed:\n{stderr}");
        assert_eq!(
            stdout.lines().last().unwrap_or_default().trim(),
            self.bootstrap,
            "address changed"
        );
    }

    /// `kill -9` of node `n` (1–3) of a cluster; the others keep serving.
    pub fn kill_node(&self, n: u32) {
        let (ok, _, stderr) = run_script(&["stop-node", &n.to_string()], self.state_dir.as_deref());
        assert!(ok, "scripts/kafka stop-node {n} failed:\n{stderr}");
    }

    /// Starts node `n` of a cluster again and waits until it is up.
    pub fn start_node(&self, n: u32) {
        let (ok, _, stderr) =
            run_script(&["start-node", &n.to_string()], self.state_dir.as_deref());
        assert!(ok, "scripts/kafka start-node {n} failed:\n{stderr}");
    }

    /// The broker's process id (from `scripts/kafka`'s state dir), if found.
    pub fn pid(&self) -> Option<u32> {
        let dir = self.state_dir.clone().unwrap_or_else(default_state_dir);
        std::fs::read_to_string(dir.join("kafka.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.state_dir.is_some() {
            let _ = run_script(&["clean"], self.state_dir.as_deref());
        }
    }
}

/// `scripts/kafka`'s state dir when none is given: `$HOURLAKE_KAFKA_DIR`, or
/// `$TMPDIR/hourlake-kafka-<uid>`.
fn default_state_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("HOURLAKE_KAFKA_DIR") {
        return dir.into();
    }
    let tmp = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into());
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    PathBuf::from(tmp).join(format!("hourlake-kafka-{uid}"))
}

/// The broker shared by the whole run (started, or found already running).
pub fn shared() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| Broker::start(None))
}

/// A broker of its own, for tests that stop or restart it; removed on drop.
pub fn dedicated(name: &str) -> Broker {
    let dir = std::env::temp_dir().join(crate::unique(&format!("hourlake-kafka-{name}")));
    Broker::start(Some(dir))
}

/// A replicated three-node cluster of its own (`scripts/kafka start --brokers 3`: every
/// new topic has 3 replicas, 2 in sync required), for tests that crash a node; removed
/// on drop.
pub fn dedicated_cluster(name: &str) -> Broker {
    let dir = std::env::temp_dir().join(crate::unique(&format!("hourlake-kafka-{name}")));
    Broker::start_with(Some(dir), &["start", "--brokers", "3"])
}

/// Creates a topic with `partitions` partitions, replicated as the cluster's default
/// says (1 on a single broker, 3 on a cluster).
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            // -1: the broker's default.replication.factor (KIP-464).
            &[NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(-1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create_topics");
    for r in results {
        r.unwrap_or_else(|(t, code)| panic!("creating topic {t}: {code}"));
    }
}

/// The high watermark (next offset) of every partition of a topic.
pub fn high_watermarks(bootstrap: &str, topic: &str) -> Vec<(i32, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut marks: Vec<(i32, i64)> = partitions
        .into_iter()
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, high)
        })
        .collect();
    marks.sort_unstable();
    marks
}

/// The end offset of every partition of `topics` (the topics start at 0, so also how
/// many messages each holds).
pub fn end_offsets(bootstrap: &str, topics: &[&str]) -> EndOffsets {
    let mut out = EndOffsets::new();
    for t in topics {
        for (p, high) in high_watermarks(bootstrap, t) {
            out.insert((t.to_string(), p), high);
        }
    }
    out
}

/// The offsets `group` has committed to Kafka for every partition of `topic`
/// (-1 where it has committed nothing).
pub fn committed_offsets(bootstrap: &str, group: &str, topic: &str) -> Vec<(i32, i64)> {
    let consumer = group_consumer(bootstrap, group);
    let mut list = TopicPartitionList::new();
    for (p, _) in high_watermarks(bootstrap, topic) {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    let mut out: Vec<(i32, i64)> = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => (e.partition(), o),
            _ => (e.partition(), -1),
        })
        .collect();
    out.sort_unstable();
    out
}

/// Waits until `group` has committed every partition of `ends` up to its end offset
/// (ingest commits to Kafka only after the Delta commits holding those messages);
/// returns how long that took. Fails after `timeout`.
pub fn wait_committed(
    bootstrap: &str,
    group: &str,
    ends: &EndOffsets,
    timeout: Duration,
) -> Duration {
    let consumer = group_consumer(bootstrap, group);
    let mut list = TopicPartitionList::new();
    for (t, p) in ends.keys() {
        list.add_partition(t, *p);
    }
    let start = Instant::now();
    loop {
        if let Ok(committed) = consumer.committed_offsets(list.clone(), Duration::from_secs(5)) {
            let done = committed.elements().iter().all(|e| {
                let end = ends
                    .get(&(e.topic().to_string(), e.partition()))
                    .copied()
                    .unwrap_or(0);
                end == 0 || matches!(e.offset(), Offset::Offset(o) if o >= end)
            });
            if done {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < timeout,
            "group {group} did not commit everything in {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer")
}

/// A plain consumer (a group of its own, no offset commits) assigned every partition
/// of `partitions` from the beginning.
pub fn consumer_from_start<'a>(
    bootstrap: &str,
    partitions: impl IntoIterator<Item = (&'a str, i32)>,
) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition_offset(topic, partition, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Sends payloads (key `k`; `None` is a message without a payload) to partition 0 of
/// `topic`, in order, waiting for each. Messages up to 8 MiB.
pub async fn send(bootstrap: &str, topic: &str, payloads: &[Option<Vec<u8>>]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.max.bytes", "8388608")
        .create()
        .expect("producer");
    for p in payloads {
        let mut record = FutureRecord::<str, [u8]>::to(topic).key("k").partition(0);
        if let Some(bytes) = p {
            record = record.payload(bytes.as_slice());
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("send");
    }
}
