//! What most end-to-end tests start from: two fresh topics on a broker, a consumer
//! group, and a lake folder of their own.

use std::path::PathBuf;

use hourlake_catalog::Lake;

use crate::binary::{Daemon, Hourlake};
use crate::kafka::create_topic;
use crate::unique;

/// Fresh `app` (engagement) and `rec` (recommendation) topics, a group name, and an
/// empty lake folder (removed on drop).
pub struct Setup {
    pub bootstrap: String,
    pub app: String,
    pub rec: String,
    pub group: String,
    pub dir: tempfile::TempDir,
    pub lake: Lake,
}

impl Setup {
    /// Creates both topics with `partitions` partitions each on the broker at `bootstrap`.
    pub async fn new(bootstrap: &str, partitions: i32) -> Setup {
        let (app, rec) = (unique("app"), unique("rec"));
        create_topic(bootstrap, &app, partitions).await;
        create_topic(bootstrap, &rec, partitions).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path().join("lake")).expect("lake");
        Setup {
            bootstrap: bootstrap.to_string(),
            app,
            rec,
            group: unique("g"),
            dir,
            lake,
        }
    }

    /// Both topics.
    pub fn topics(&self) -> [&str; 2] {
        [&self.app, &self.rec]
    }

    /// The lake's folder.
    pub fn lake_path(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    /// The lake's folder as a command-line argument.
    pub fn lake_arg(&self) -> String {
        self.lake_path()
            .to_str()
            .expect("a UTF-8 temporary path")
            .to_string()
    }

    /// Starts a `hourlake ingest` of both topics into the lake, as a member of the group.
    pub fn ingest(&self, hourlake: &Hourlake, extra: &[&str]) -> Daemon {
        hourlake.ingest_daemon(
            &self.bootstrap,
            &self.topics(),
            &self.group,
            &self.lake_path(),
            extra,
        )
    }

    /// `hourlake produce` into both topics (set its flags with `with`).
    pub fn produce(&self, hourlake: &Hourlake) -> crate::binary::Produce {
        hourlake.produce(&self.bootstrap, &self.app, &self.rec)
    }
}
