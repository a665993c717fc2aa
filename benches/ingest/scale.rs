//! Scale-out: ingest into a lake on S3 (versitygw, the server `scripts/s3` runs on this
//! machine) against a local folder, and 1, 2 and 3 ingest processes in one consumer
//! group. Each run catches up on the same pre-filled backlog (6 partitions per topic);
//! it reports events/s and the Delta commit latency (p50/p99, interpolated within the
//! buckets of `hourlake_ingest_commit_latency_seconds`, summed over processes). Rounds
//! alternate between the set-ups; medians are reported.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hourlake_testkit::binary::Daemon;
use hourlake_testkit::http::http_get;
use hourlake_testkit::kafka::{end_offsets, wait_committed, Broker, EndOffsets};
use hourlake_testkit::knobs::env_or;
use hourlake_testkit::s3;
use hourlake_testkit::stats::percentile;
use hourlake_testkit::unique;

use crate::throughput::prefill;
use crate::{create_topics, hourlake};

/// Where a bench's lake lives: a local folder, or a fresh `s3://` location on the
/// `scripts/s3` server, whose posix backend keeps every object as a file, so commits can
/// be watched on disk in both cases.
pub struct Storage {
    /// `local` or `s3`.
    pub name: &'static str,
    /// The `--lake` argument.
    location: String,
    /// The lake's folder on this machine.
    pub files: PathBuf,
    /// The child's environment (the S3 client settings).
    env: Vec<(String, String)>,
    /// Where process logs go.
    logs: PathBuf,
}

impl Storage {
    /// A fresh lake in `dir`.
    pub fn local(dir: &Path) -> Storage {
        let lake = dir.join(unique("lake"));
        Storage {
            name: "local",
            location: lake.display().to_string(),
            files: lake,
            env: Vec::new(),
            logs: dir.to_path_buf(),
        }
    }

    /// A fresh lake on the S3 server (started if it is not running); logs in `dir`.
    pub fn s3(dir: &Path) -> Storage {
        let server = s3::shared();
        let location = server.new_location("bench");
        Storage {
            name: "s3",
            files: server.local_path(&location),
            location,
            env: server.env().to_vec(),
            logs: dir.to_path_buf(),
        }
    }

    /// `hourlake ingest` of `topics` into this lake as a member of `group`.
    pub fn ingest(&self, bootstrap: &str, topics: &[&str], group: &str) -> Command {
        let mut command = hourlake().command();
        command
            .args(["ingest", "--brokers", bootstrap])
            .args(["--topics", &topics.join(","), "--group", group])
            .args(["--lake", &self.location])
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// [`Storage::ingest`] as a daemon serving its metrics.
    fn ingest_daemon(&self, name: &str, bootstrap: &str, topics: &[&str], group: &str) -> Daemon {
        let topics = topics.join(",");
        hourlake().daemon_with_env(
            name,
            &self.logs.join(name),
            &[
                "ingest",
                "--brokers",
                bootstrap,
                "--topics",
                &topics,
                "--group",
                group,
                "--lake",
                &self.location,
                "--metrics-addr",
                "127.0.0.1:0",
            ],
            &self.env,
        )
    }
}

/// The `(upper bound, cumulative count)` buckets of histogram `name` in metrics `text`.
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// Quantile `q` of cumulative `buckets`, interpolated linearly within its bucket (as
/// Prometheus' `histogram_quantile` does).
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    if total == 0.0 {
        return f64::NAN;
    }
    let target = q * total;
    let mut below = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= target {
            if le.is_infinite() {
                return below.0;
            }
            let share = (target - below.1) / (count - below.1).max(f64::MIN_POSITIVE);
            return below.0 + (le - below.0) * share;
        }
        below = (le, count);
    }
    below.0
}

struct Run {
    rate: f64,
    commit_p50: f64,
    commit_p99: f64,
}

/// `processes` ingest processes catch up on `marks` into a fresh lake of `storage`.
fn catch_up(
    bootstrap: &str,
    topics: &[&str],
    marks: &EndOffsets,
    storage: &Storage,
    processes: usize,
) -> Run {
    let group = unique("scale");
    let members: Vec<Daemon> = (0..processes)
        .map(|i| storage.ingest_daemon(&unique(&format!("ingest-{i}")), bootstrap, topics, &group))
        .collect();
    let took = wait_committed(bootstrap, &group, marks, Duration::from_secs(3600));
    // Summed over the members: one distribution of every commit.
    let mut summed: Vec<(f64, f64)> = Vec::new();
    for member in &members {
        let (_, text) = http_get(&member.metrics_addr(), "/metrics");
        let these = buckets(&text, "hourlake_ingest_commit_latency_seconds");
        if summed.is_empty() {
            summed = these;
        } else {
            for (sum, (_, count)) in summed.iter_mut().zip(these) {
                sum.1 += count;
            }
        }
    }
    drop(members);
    let total: i64 = marks.values().sum();
    Run {
        rate: total as f64 / took.as_secs_f64(),
        commit_p50: quantile(&summed, 0.5) * 1000.0,
        commit_p99: quantile(&summed, 0.99) * 1000.0,
    }
}

/// Events/s of one `hourlake ingest` catching up on `marks` into `storage`.
pub fn catch_up_rate(
    bootstrap: &str,
    topics: &[&str],
    marks: &EndOffsets,
    storage: &Storage,
) -> f64 {
    catch_up(bootstrap, topics, marks, storage, 1).rate
}

pub fn scale(broker: &Broker) {
    let bootstrap = broker.bootstrap.as_str();
    let events: u64 = env_or("HOURLAKE_BENCH_SCALE_EVENTS", 2_000_000);
    let rounds: usize = env_or("HOURLAKE_BENCH_ROUNDS", 3).max(1);
    let (app, rec) = (unique("scale-app"), unique("scale-rec"));
    let topics = [app.as_str(), rec.as_str()];
    create_topics(bootstrap, &topics, 6);
    prefill(bootstrap, &app, &rec, events);
    let marks = end_offsets(bootstrap, &topics);
    let total: i64 = marks.values().sum();
    let dir = tempfile::tempdir().expect("tempdir");
    println!("scale-out: {total} messages on 2 topics × 6 partitions, {rounds} alternating rounds");

    let setups: [(&str, usize); 4] = [("local", 1), ("s3", 1), ("local", 2), ("local", 3)];
    let mut runs: Vec<Vec<Run>> = setups.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (i, &(name, processes)) in setups.iter().enumerate() {
            let storage = match name {
                "s3" => Storage::s3(dir.path()),
                _ => Storage::local(dir.path()),
            };
            let run = catch_up(bootstrap, &topics, &marks, &storage, processes);
            println!(
                "round {round}: {name} lake, {processes} process(es): {:.0} ev/s; commit latency p50 {:.0} ms, p99 {:.0} ms",
                run.rate, run.commit_p50, run.commit_p99
            );
            runs[i].push(run);
            if name == "local" {
                let _ = std::fs::remove_dir_all(&storage.files);
            }
        }
    }
    println!();
    println!("| lake | ingest processes | events/s (median) | commit p50 | commit p99 |");
    println!("|---|---|---|---|---|");
    for (&(name, processes), runs) in setups.iter().zip(&runs) {
        let median = |f: &dyn Fn(&Run) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            percentile(&v, 0.5)
        };
        println!(
            "| {name} | {processes} | {:.0} | {:.0} ms | {:.0} ms |",
            median(&|r| r.rate),
            median(&|r| r.commit_p50),
            median(&|r| r.commit_p99)
        );
    }
}
