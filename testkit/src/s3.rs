//! A real S3-compatible server (versitygw), started by `scripts/s3` on 127.0.0.1, which
//! refuses a server whose conditional PUTs are not atomic. One server serves a whole
//! test binary; each test gets a lake under its own prefix. If the server cannot be
//! started the test fails: it never skips.

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;

use hourlake_catalog::Lake;

/// The running server: its client settings as `scripts/s3 env` prints them.
#[derive(Debug)]
pub struct S3Server {
    env: Vec<(String, String)>,
    bucket: String,
    /// `scripts/s3`'s state dir of a dedicated server (the shared one uses the default).
    state_dir: Option<std::path::PathBuf>,
}

/// Runs `scripts/s3 ARGS` (on the server of `state_dir`, or the shared one); returns
/// stdout, panicking with stderr on failure.
fn script_in(args: &[&str], state_dir: Option<&std::path::Path>) -> String {
    let mut command = Command::new("bash");
    command
        .arg(crate::repo_root().join("scripts/s3"))
        .args(args);
    if let Some(dir) = state_dir {
        command.env("HOURLAKE_S3_DIR", dir);
    }
    let out = command.output().expect("running scripts/s3");
    assert!(
        out.status.success(),
        "scripts/s3 {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts the server of `state_dir` (or the shared one) and reads its client settings.
fn start(state_dir: Option<std::path::PathBuf>) -> S3Server {
    script_in(&["start"], state_dir.as_deref());
    let env: Vec<(String, String)> = script_in(&["env"], state_dir.as_deref())
        .lines()
        .filter_map(|line| {
            let (key, value) = line.strip_prefix("export ")?.split_once('=')?;
            Some((key.to_string(), value.trim_matches(['"', '\'']).to_string()))
        })
        .collect();
    let bucket = env
        .iter()
        .find(|(key, _)| key == "HOURLAKE_S3_BUCKET")
        .map(|(_, value)| value.clone())
        .unwrap_or_else(|| "hourlake".to_string());
    assert!(
        env.iter().any(|(key, _)| key == "AWS_ENDPOINT_URL"),
        "scripts/s3 env printed no endpoint: {env:?}"
    );
    S3Server {
        env,
        bucket,
        state_dir,
    }
}

/// A server of its own, for tests that stop and start it; removed on drop.
pub fn dedicated(name: &str) -> S3Server {
    let dir = std::env::temp_dir().join(crate::unique(&format!("hourlake-s3-{name}")));
    start(Some(dir))
}

/// The server shared by the whole run (started, or found already running).
pub fn shared() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| start(None))
}

impl S3Server {
    /// Stops the server (an outage: requests are refused until [`S3Server::start_again`]).
    pub fn stop(&self) {
        script_in(&["stop"], self.state_dir.as_deref());
    }

    /// Starts a stopped server again, on the same address with the same data.
    pub fn start_again(&self) {
        script_in(&["start"], self.state_dir.as_deref());
    }

    /// The client settings (`AWS_ENDPOINT_URL`, credentials, …) to put in a child
    /// process's environment.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// A fresh lake location in the server's bucket: `s3://bucket/<unique prefix>`.
    pub fn new_location(&self, prefix: &str) -> String {
        format!("s3://{}/{}", self.bucket, crate::unique(prefix))
    }

    /// The storage options a [`Lake`] in this process needs (the same settings as
    /// [`S3Server::env`], as object-store keys).
    pub fn storage_options(&self) -> HashMap<String, String> {
        let key = |name: &str| match name {
            "AWS_ENDPOINT_URL" => Some("aws_endpoint"),
            "AWS_REGION" => Some("aws_region"),
            "AWS_ACCESS_KEY_ID" => Some("aws_access_key_id"),
            "AWS_SECRET_ACCESS_KEY" => Some("aws_secret_access_key"),
            "AWS_ALLOW_HTTP" => Some("aws_allow_http"),
            _ => None,
        };
        self.env
            .iter()
            .filter_map(|(name, value)| Some((key(name)?.to_string(), value.clone())))
            .collect()
    }

    /// Where the object at `location` (an `s3://bucket/key` of this server) is a file or
    /// folder on this machine: the server's posix backend keeps a folder per bucket.
    pub fn local_path(&self, location: &str) -> std::path::PathBuf {
        let data = self
            .env
            .iter()
            .find(|(key, _)| key == "HOURLAKE_S3_DATA")
            .map(|(_, value)| value.clone())
            .expect("scripts/s3 env printed no HOURLAKE_S3_DATA");
        let key = location.strip_prefix("s3://").expect("an s3:// location");
        std::path::Path::new(&data).join(key)
    }

    /// The lake at `location`, opened in this process.
    pub fn lake(&self, location: &str) -> Lake {
        Lake::from_location(location, self.storage_options()).expect("an s3:// lake")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(dir) = &self.state_dir {
            let _ = Command::new("bash")
                .arg(crate::repo_root().join("scripts/s3"))
                .arg("clean")
                .env("HOURLAKE_S3_DIR", dir)
                .output();
        }
    }
}
