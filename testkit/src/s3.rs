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
}

/// Runs `scripts/s3 ARGS`; returns stdout, panicking with stderr on failure.
fn script(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(crate::repo_root().join("scripts/s3"))
        .args(args)
        .output()
        .expect("running scripts/s3");
    assert!(
        out.status.success(),
        "scripts/s3 {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The server shared by the whole run (started, or found already running).
pub fn shared() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        script(&["start"]);
        let env: Vec<(String, String)> = script(&["env"])
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
        S3Server { env, bucket }
    })
}

impl S3Server {
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
