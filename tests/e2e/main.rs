//! End-to-end tests: one test binary (it links the whole stack once) against a real
//! Kafka broker the repo starts itself, real Delta tables on disk, and the real
//! `hourlake` binary as a child process. The harness (broker, processes, lake readers)
//! is the `hourlake-testkit` crate.

mod backfill;
mod cluster;
mod collect;
mod compaction;
mod dashboard;
mod distributed;
mod flight;
mod forget;
mod hostile;
mod ingest;
mod kafka_script;
mod produce;
mod prometheus;
mod replay;
mod s3;
mod serve;
mod spark;

/// The `hourlake` binary this build made.
fn hourlake() -> hourlake_testkit::binary::Hourlake {
    hourlake_testkit::binary::Hourlake::at(env!("CARGO_BIN_EXE_hourlake"))
}
