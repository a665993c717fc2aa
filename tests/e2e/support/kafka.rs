//! A real Apache Kafka broker, started by `scripts/kafka` (KRaft, 127.0.0.1).
//!
//! One shared broker serves the whole test binary; each test uses its own topics.
//! Tests that stop the broker get a dedicated one. If the broker cannot be started
//! the test fails: it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka")
}

/// Runs `scripts/kafka ARGS` with an optional state dir; returns its stdout.
pub fn run_script(args: &[&str], state_dir: Option<&Path>) -> (bool, String, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(script()).args(args);
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
        let (ok, stdout, stderr) = run_script(&["start"], state_dir.as_deref());
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
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.state_dir.is_some() {
            let _ = run_script(&["clean"], self.state_dir.as_deref());
        }
    }
}

/// The broker shared by the whole test run (started, or found already running).
pub fn shared() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| Broker::start(None))
}

/// A broker of its own, for tests that stop or restart it; removed on drop.
pub fn dedicated(name: &str) -> Broker {
    let dir = std::env::temp_dir().join(super::unique(&format!("hourlake-kafka-{name}")));
    Broker::start(Some(dir))
}

/// Creates a topic with `partitions` partitions.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
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

/// The offsets `group` has committed to Kafka for every partition of `topic`
/// (-1 where it has committed nothing).
pub fn committed_offsets(bootstrap: &str, group: &str, topic: &str) -> Vec<(i32, i64)> {
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
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
