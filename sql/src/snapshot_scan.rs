//! A scan over one pinned Delta snapshot that is a plain Parquet `DataSourceExec`:
//! exactly the snapshot's `add` actions (never a listing of the table's folder), their
//! partition values as partition columns, their statistics from the log. Unlike
//! deltalake's own scan node, such a plan is serializable (datafusion-proto), so it can
//! run elsewhere than where it was planned.
//!
//! - [`SnapshotTable`]: the table provider (partition pruning, projection, limit).
//! - [`FileIndex`]: the snapshot's files, listed once per table version.
//! - refusals: tables whose files cannot be read as they are (deletion vectors, column
//!   mapping, files outside the table) answer [`SqlError::UnsupportedTable`](crate::SqlError).
//!
//! Hidden partitioning works as with deltalake's provider:
//! [`HiddenPartitioning`](crate::pruning::HiddenPartitioning) wraps a [`SnapshotTable`],
//! and the partition bounds it derives from `event_time` filters prune files here.

mod file_index;
mod protocol;
mod prune;
mod table;

pub use file_index::FileIndex;
pub use table::SnapshotTable;

#[cfg(test)]
mod tests;
