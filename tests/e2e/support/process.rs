//! The `hourlake` binary as a child process.

use std::process::{Child, Command, Output, Stdio};

/// The path of the built `hourlake` binary.
pub fn hourlake() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hourlake"))
}

/// Runs `hourlake produce ARGS` to the end and returns its JSON report.
pub fn produce(bootstrap: &str, args: &[&str]) -> serde_json::Value {
    let out: Output = hourlake()
        .args(["produce", "--brokers", bootstrap])
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .expect("running hourlake produce");
    assert!(
        out.status.success(),
        "hourlake produce failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "produce printed no JSON report ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Where a background producer's log goes (a file: a pipe nobody reads until the
/// end could fill up and stall it).
fn produce_log(pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("hourlake-produce-{pid}.log"))
}

/// Starts `hourlake produce ARGS` in the background.
pub fn spawn_produce(bootstrap: &str, args: &[&str]) -> Child {
    let starting = std::env::temp_dir().join(super::unique("hourlake-produce"));
    let log = std::fs::File::create(&starting).expect("producer log");
    let child = hourlake()
        .args(["produce", "--brokers", bootstrap])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawning hourlake produce");
    std::fs::rename(&starting, produce_log(child.id())).expect("naming the producer log");
    child
}

/// Waits for a background producer and returns its report.
pub fn wait_report(child: Child) -> serde_json::Value {
    let child_id = child.id();
    let out = child
        .wait_with_output()
        .expect("waiting for hourlake produce");
    let log_path = produce_log(child_id);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    if !out.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "hourlake produce failed ({}); the end of its log:\n{}",
            out.status,
            tail.join("\n")
        );
    }
    serde_json::from_slice(&out.stdout).expect("produce report")
}

/// A report field as a number (0 when absent).
pub fn num(report: &serde_json::Value, pointer: &str) -> u64 {
    report
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

/// A long-running `hourlake` child process (ingest, compactor), killed on drop.
pub struct Daemon {
    pub child: Child,
    pub log: std::path::PathBuf,
}

/// A running `hourlake ingest`.
pub type IngestProcess = Daemon;

impl Daemon {
    /// Starts `hourlake ARGS`; stderr goes to a log file beside `lake`.
    pub fn spawn(name: &str, lake: &std::path::Path, args: &[&str]) -> Daemon {
        let log = lake.with_extension(format!("{}.log", super::unique(name)));
        let file = std::fs::File::create(&log).expect("log file");
        let child = hourlake()
            .args(args)
            .env("RUST_LOG", "info,deltalake=warn,buoyant_kernel=warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning hourlake {args:?}: {e}"));
        Daemon { child, log }
    }

    /// Starts `hourlake ingest` over `lake` for `topics` in `group`; stderr goes to `log`.
    pub fn start(
        bootstrap: &str,
        topics: &[&str],
        group: &str,
        lake: &std::path::Path,
        extra: &[&str],
    ) -> IngestProcess {
        let log = lake.with_extension(format!("{}.log", super::unique("ingest")));
        let file = std::fs::File::create(&log).expect("ingest log file");
        let child = hourlake()
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
            .args(["--max-latency-ms", "300"])
            .args(extra)
            .env("RUST_LOG", "info,hourlake_ingest=debug,deltalake=warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawning hourlake ingest");
        IngestProcess { child, log }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("waiting for ingest")
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The metrics address it logged (`--metrics-addr`), waiting up to 30 s for it.
    pub fn metrics_addr(&self) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let log = self.log_text();
            if let Some(rest) = log.split("serving metrics on http://").nth(1) {
                return rest.split('/').next().unwrap_or_default().to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no metrics address in the log:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Waits (up to 60 s) until it has been assigned partitions.
    pub fn wait_assigned(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self.log_text().contains("assigned") {
            assert!(
                std::time::Instant::now() < deadline,
                "never assigned:\n{}",
                self.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A plain HTTP/1.0 GET; returns (status line, body).
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The sum of a metric's samples over all its label sets, in Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
        .collect();
    assert!(!values.is_empty(), "metric {name} not found in:\n{text}");
    values.iter().sum()
}
