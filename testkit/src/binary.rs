//! The `hourlake` binary as a child process: `hourlake produce` runs ([`Produce`]), and
//! long-running commands — ingest, the compactor, the server — with their logs
//! ([`Daemon`]).

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `hourlake` binary to run.
#[derive(Debug, Clone)]
pub struct Hourlake {
    path: PathBuf,
}

impl Hourlake {
    /// The binary at `path`; tests and benches pass `env!("CARGO_BIN_EXE_hourlake")`.
    pub fn at(path: impl Into<PathBuf>) -> Hourlake {
        Hourlake { path: path.into() }
    }

    /// `HOURLAKE_BIN` when set (to compare two builds), else the binary at `path`.
    pub fn from_env_or(path: impl Into<PathBuf>) -> Hourlake {
        match std::env::var_os("HOURLAKE_BIN") {
            Some(bin) => Hourlake::at(bin),
            None => Hourlake::at(path),
        }
    }

    /// A command running the binary.
    pub fn command(&self) -> Command {
        Command::new(&self.path)
    }

    /// `hourlake ingest` of `topics` as a member of `group` into `lake` (more flags,
    /// the environment and the output are the caller's).
    pub fn ingest(&self, bootstrap: &str, topics: &[&str], group: &str, lake: &Path) -> Command {
        let mut command = self.command();
        command
            .args(["ingest", "--brokers", bootstrap])
            .args(["--topics", &topics.join(","), "--group", group])
            .arg("--lake")
            .arg(lake);
        command
    }

    /// `hourlake produce` of engagement events to `app` and recommendation events to
    /// `rec`; set more flags with [`Produce::with`].
    pub fn produce(&self, bootstrap: &str, app: &str, rec: &str) -> Produce {
        Produce {
            hourlake: self.clone(),
            args: ["--brokers", bootstrap, "--topic", app, "--rec-topic", rec]
                .map(String::from)
                .to_vec(),
        }
    }

    /// Starts `hourlake ARGS` in the background; its stderr goes to a log file beside
    /// `lake`, named after `name`.
    pub fn daemon(&self, name: &str, lake: &Path, args: &[&str]) -> Daemon {
        self.daemon_with_env(name, lake, args, &[])
    }

    /// [`Hourlake::daemon`] with `env` added to its environment (e.g. the settings of an
    /// S3 server); the log goes beside `log_beside`.
    pub fn daemon_with_env(
        &self,
        name: &str,
        log_beside: &Path,
        args: &[&str],
        env: &[(String, String)],
    ) -> Daemon {
        let mut command = self.command();
        command
            .args(args)
            .env("RUST_LOG", "info,deltalake=warn,buoyant_kernel=warn")
            .envs(env.iter().map(|(k, v)| (k, v)));
        Daemon::start(command, name, log_beside)
    }

    /// Starts `hourlake ingest` in the background (see [`Hourlake::ingest`]), flushing
    /// at least every 300 ms and logging ingest's debug lines, with `extra` flags.
    pub fn ingest_daemon(
        &self,
        bootstrap: &str,
        topics: &[&str],
        group: &str,
        lake: &Path,
        extra: &[&str],
    ) -> Daemon {
        let mut command = self.ingest(bootstrap, topics, group, lake);
        command
            .args(["--max-latency-ms", "300"])
            .args(extra)
            .env("RUST_LOG", "info,hourlake_ingest=debug,deltalake=warn");
        Daemon::start(command, "ingest", lake)
    }
}

/// A `hourlake produce` to run: the brokers and topics, and the flags set since.
#[derive(Debug, Clone)]
pub struct Produce {
    hourlake: Hourlake,
    args: Vec<String>,
}

impl Produce {
    /// Adds `--FLAG VALUE`, e.g. `.with("count", 3000)`.
    pub fn with(mut self, flag: &str, value: impl Display) -> Produce {
        self.args.push(format!("--{flag}"));
        self.args.push(value.to_string());
        self
    }

    fn command(&self) -> Command {
        let mut command = self.hourlake.command();
        command.arg("produce").args(&self.args);
        command
    }

    /// Runs it to the end and returns its JSON report (blocks).
    pub fn run(&self) -> Value {
        let out: Output = self
            .command()
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

    /// Runs it to the end on a blocking thread (from async code); its JSON report.
    pub async fn run_async(self) -> Value {
        tokio::task::spawn_blocking(move || self.run())
            .await
            .expect("hourlake produce")
    }

    /// Starts it in the background; its log goes to a file (a pipe nobody reads until
    /// the end could fill up and stall it).
    pub fn spawn(&self) -> Producing {
        let log = std::env::temp_dir().join(crate::unique("hourlake-produce"));
        let file = std::fs::File::create(&log).expect("producer log");
        let child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .expect("spawning hourlake produce");
        Producing { child, log }
    }
}

/// A `hourlake produce` running in the background.
pub struct Producing {
    child: Child,
    log: PathBuf,
}

impl Producing {
    /// Whether it has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for it and returns its report; a failure shows the end of its log.
    pub fn wait(self) -> Value {
        let out = self
            .child
            .wait_with_output()
            .expect("waiting for hourlake produce");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
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

    /// [`Producing::wait`] on a blocking thread (from async code).
    pub async fn wait_async(self) -> Value {
        tokio::task::spawn_blocking(move || self.wait())
            .await
            .expect("hourlake produce")
    }
}

/// A field of a produce report as a number (0 when absent), e.g. `num(&report, "/sent")`.
pub fn num(report: &Value, pointer: &str) -> u64 {
    report.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// A long-running `hourlake` child process, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `command` with its stderr in a log file beside `lake`, named after `name`.
    fn start(mut command: Command, name: &str, lake: &Path) -> Daemon {
        let log = lake.with_extension(format!("{}.log", crate::unique(name)));
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
        Daemon { child, log }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("waiting for the process")
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The address it logged after `announcement` (e.g. `serving metrics on http://`),
    /// waiting up to 30 s for it.
    pub fn logged_addr(&self, announcement: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log_text();
            if let Some(rest) = log.split(announcement).nth(1) {
                let end = rest
                    .find(|c: char| c == '/' || c.is_whitespace())
                    .unwrap_or(rest.len());
                return rest[..end].to_string();
            }
            assert!(
                Instant::now() < deadline,
                "never logged `{announcement}`:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The metrics address it logged (`--metrics-addr`).
    pub fn metrics_addr(&self) -> String {
        self.logged_addr("serving metrics on http://")
    }

    /// Waits (up to 60 s) until it has been assigned partitions.
    pub fn wait_assigned(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log_text().contains("assigned") {
            assert!(
                Instant::now() < deadline,
                "never assigned:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
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
