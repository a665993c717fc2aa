//! # hourlake-testkit
//!
//! What hourlake's tests and benchmarks share, so each exists once. A dev-dependency
//! only: no product crate depends on it.
//!
//! - [`kafka`]: a real broker started by `scripts/kafka`; topics, their end offsets,
//!   a group's committed offsets, a plain consumer, raw messages sent.
//! - [`binary`]: the `hourlake` binary as a child process — `hourlake produce`
//!   ([`binary::Produce`]), and long-running commands with their logs ([`binary::Daemon`]).
//! - [`setup`]: two fresh topics, a consumer group and a lake folder for one test.
//! - [`lake`]: JSON rows appended to a table, queries over the lake, and the
//!   exactly-once check of a lake against its topics.
//! - [`events`]: generated engagement and recommendation batches, shaped like
//!   `hourlake produce`'s events.
//! - [`http`]: a plain HTTP GET, and metric samples in Prometheus text.
//! - [`s3`]: a real S3-compatible server started by `scripts/s3` (versitygw), and lakes
//!   in it.
//! - [`resources`]: a process's CPU time and peak memory (Linux `/proc`).
//! - [`knobs`]: settings from the environment; [`stats`]: percentiles.

pub mod binary;
pub mod events;
pub mod http;
pub mod kafka;
pub mod knobs;
pub mod lake;
pub mod resources;
pub mod s3;
pub mod setup;
pub mod stats;

use std::path::{Path, PathBuf};

/// A name unique to this run, for topics, groups and folders.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The repository's root folder (where `scripts/` is).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
