//! # hourlake-compactor
//!
//! Keeps the lake healthy while ingest runs: bin-packs an hour's small files, removes
//! duplicate event ids, builds the hourly rollups, checkpoints and vacuums.
//!
//! Not built yet: this crate is a placeholder for the compactor issue.
