//! The real Prometheus (Debian package `prometheus`, installed by `scripts/monitoring
//! install`): `promtool check metrics` accepts every process's `/metrics`, and a
//! `prometheus` server scraping `hourlake up` under load stores its `hourlake_` series
//! and fires `HourlakeTargetDown` (docs/monitoring/alerts.yml) while the process is
//! stopped, and resolves it once it runs again — with nothing lost or doubled.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hourlake_testkit::binary::Daemon;
use hourlake_testkit::kafka;
use hourlake_testkit::lake::wait_exactly_once;
use hourlake_testkit::setup::Setup;
use serde_json::Value;

use crate::hourlake;
use crate::serve::served_addr;

/// `scripts/monitoring check-metrics URL…`: promtool's lint of each `/metrics`.
fn promtool_accepts(urls: &[String]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/monitoring");
    let out = Command::new(script)
        .arg("check-metrics")
        .args(urls)
        .output()
        .expect("scripts/monitoring (run `scripts/monitoring install` for promtool)");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free port on 127.0.0.1 for a process that cannot be told port 0.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The alert rules with every `for:` at zero, so an alert fires at the first evaluation
/// whose expression holds (the expressions themselves are unchanged).
fn rules_without_delays(dir: &Path) -> std::path::PathBuf {
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/monitoring/alerts.yml"
    ))
    .expect("docs/monitoring/alerts.yml");
    let quick: String = rules
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 0s", &line[..line.len() - line.trim_start().len()]),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(quick.contains("for: 0s"), "no `for:` in the rules?");
    let path = dir.join("alerts.yml");
    std::fs::write(&path, quick).expect("rules copy");
    path
}

struct Prometheus {
    child: Child,
    base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` scraping `target` (as job `hourlake-up`) every second.
    fn start(dir: &Path, target: &str) -> Prometheus {
        let rules = rules_without_delays(dir);
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: hourlake-up\n    static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .expect("prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (run `scripts/monitoring install`)");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn get(&self, client: &reqwest::Client, path: &str, query: &[(&str, &str)]) -> Value {
        match client
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null, // still starting
        }
    }

    /// The number of series `selector` matches now.
    async fn series(&self, client: &reqwest::Client, selector: &str) -> usize {
        let body = self
            .get(client, "/api/v1/query", &[("query", selector)])
            .await;
        body["data"]["result"].as_array().map_or(0, Vec::len)
    }

    /// The state (`pending`, `firing`) of the alert `name`, if it is active.
    async fn alert(&self, client: &reqwest::Client, name: &str) -> Option<String> {
        let body = self.get(client, "/api/v1/alerts", &[]).await;
        body["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .and_then(|a| a["state"].as_str())
            .map(str::to_string)
    }
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn signal(daemon: &Daemon, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &daemon.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_every_process_and_fires_an_alert_when_ingest_stops() {
    let broker = kafka::shared();
    let s = Setup::new(&broker.bootstrap, 2).await;
    let lake_arg = s.lake_arg();
    let topics = format!("{},{}", s.app, s.rec);
    let up = hourlake().daemon(
        "up",
        &s.lake_path(),
        &[
            "up",
            "--brokers",
            &s.bootstrap,
            "--topics",
            &topics,
            "--group",
            &s.group,
            "--lake",
            &lake_arg,
            "--http",
            "127.0.0.1:0",
            "--collect-http",
            "127.0.0.1:0",
            "--closed-after-secs",
            "0",
            "--compact-interval-secs",
            "2",
        ],
    );
    let up_addr = served_addr(&up);
    let collect_addr = up.logged_addr("collecting events on http://");
    s.produce(&hourlake())
        .with("count", 5000)
        .with("seed", 17)
        .run_async()
        .await;
    wait_exactly_once(&s.lake, &s.bootstrap, &s.topics(), Duration::from_secs(120)).await;

    // promtool lints every kind of process's /metrics: up (ingest, compactor and query
    // together), and each of ingest, compact --watch, serve and worker alone.
    let ingest = s.ingest(&hourlake(), &["--metrics-addr", "127.0.0.1:0"]);
    let compactor = hourlake().daemon(
        "compact",
        &s.lake_path(),
        &[
            "compact",
            "--watch",
            "--lake",
            &lake_arg,
            "--compactor-id",
            "standby",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let server = hourlake().daemon(
        "serve",
        &s.lake_path(),
        &["serve", "--lake", &lake_arg, "--http", "127.0.0.1:0"],
    );
    let worker = hourlake().daemon(
        "worker",
        &s.lake_path(),
        &[
            "worker",
            "--lake",
            &lake_arg,
            "--listen",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let client = reqwest::Client::new();
    // A query and a lookup, so the query server's histograms have samples.
    client
        .get(format!("http://{up_addr}/v1/sql"))
        .query(&[("sql", "SELECT count(*) FROM engagement_events")])
        .send()
        .await
        .expect("query");
    client
        .get(format!("http://{up_addr}/v1/users/nobody/recommendations"))
        .send()
        .await
        .expect("lookup");
    // `up` runs the collector too: a batch through it, so its metrics have samples.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let events: Vec<serde_json::Value> = (0..3)
        .map(|i| {
            serde_json::json!({"event_id": format!("via-up-{i}"), "event_type": "click",
                "event_time": now_ms, "user_id": "u1"})
        })
        .collect();
    let answer: serde_json::Value = client
        .post(format!("http://{collect_addr}/v1/events"))
        .json(&events)
        .send()
        .await
        .expect("collect")
        .json()
        .await
        .expect("collector answer");
    assert_eq!(answer["accepted"], 3, "{answer}");
    promtool_accepts(&[
        format!("http://{up_addr}"),
        format!("http://{}", ingest.metrics_addr()),
        format!("http://{}", compactor.metrics_addr()),
        format!("http://{}", served_addr(&server)),
        format!("http://{}", worker.metrics_addr()),
    ]);
    drop((ingest, compactor, server, worker));

    // A real Prometheus scrapes `up` under load.
    let dir = tempfile::tempdir().expect("tempdir");
    let prometheus = Prometheus::start(dir.path(), &up_addr);
    let load = s
        .produce(&hourlake())
        .with("count", 40_000)
        .with("rate", 2000)
        .with("seed", 18)
        .spawn();
    let log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    wait_for(
        "hourlake_ series in Prometheus",
        Duration::from_secs(60),
        || async {
            prometheus
                .series(&client, "hourlake_ingest_consumed_messages_total")
                .await
                > 0
                && prometheus
                    .series(&client, "hourlake_query_requests_total")
                    .await
                    > 0
                && prometheus
                    .series(&client, "hourlake_compactor_passes_total")
                    .await
                    > 0
        },
    )
    .await;
    assert!(
        prometheus
            .alert(&client, "HourlakeTargetDown")
            .await
            .is_none(),
        "fired while everything runs:\n{}",
        log()
    );

    // Ingest stopped under load (the whole `up` process frozen): the alert fires.
    signal(&up, "-STOP");
    wait_for(
        "HourlakeTargetDown firing",
        Duration::from_secs(30),
        || async {
            prometheus
                .alert(&client, "HourlakeTargetDown")
                .await
                .as_deref()
                == Some("firing")
        },
    )
    .await;
    signal(&up, "-CONT");
    wait_for(
        "HourlakeTargetDown resolved",
        Duration::from_secs(30),
        || async {
            prometheus
                .alert(&client, "HourlakeTargetDown")
                .await
                .is_none()
        },
    )
    .await;

    // Stopping it lost nothing and doubled nothing.
    let report = load.wait_async().await;
    assert!(
        hourlake_testkit::binary::num(&report, "/sent") > 0,
        "{report}"
    );
    wait_exactly_once(&s.lake, &s.bootstrap, &s.topics(), Duration::from_secs(180)).await;
    drop(up);
}
