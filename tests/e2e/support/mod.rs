//! Shared helpers of the end-to-end tests: a real Kafka broker, the `hourlake`
//! binary as a child process, and readers of the lake.

pub mod kafka;
pub mod lake;
pub mod process;

/// A name unique to this test run, for topics, groups and folders.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
