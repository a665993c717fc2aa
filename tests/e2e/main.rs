//! End-to-end tests: one test binary (it links the whole stack once) against a real
//! Kafka broker the repo starts itself, real Delta tables on disk, and the real
//! `hourlake` binary as a child process.

mod support;

mod compaction;
mod flight;
mod hostile;
mod ingest;
mod kafka_script;
mod produce;
mod serve;
