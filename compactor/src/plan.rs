//! Which hours need work, and why: the table's files grouped by hour, and the hours
//! whose data changed (new, late or duplicate events) since the last rollup.

use std::collections::{BTreeMap, BTreeSet};

use deltalake::kernel::{Action, Remove};
use deltalake::DeltaTable;
use hourlake_catalog::{Hour, TableId};

use crate::{CompactorConfig, CompactorError};

/// One data file of a table, as the snapshot lists it.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Path relative to the table root, URL-decoded.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Rows in the file, when the log has statistics.
    pub rows: Option<u64>,
    /// When the file was written (milliseconds since the Unix epoch, from the log).
    pub written_at_ms: i64,
    /// The action that removes this file in a rewrite commit.
    pub remove: Remove,
}

/// The active files of an event table, per hour partition.
pub fn files_by_hour(
    id: TableId,
    table: &DeltaTable,
) -> Result<BTreeMap<Hour, Vec<DataFile>>, CompactorError> {
    let snapshot = table.snapshot().map_err(id.delta_error())?;
    let mut hours: BTreeMap<Hour, Vec<DataFile>> = BTreeMap::new();
    for view in snapshot.log_data().iter() {
        let values = view.partition_values_map();
        let Some(hour) = Hour::from_partition_values(&values) else {
            return Err(CompactorError::Unexpected {
                table: id.name(),
                reason: format!("file {} has no event hour partition values", view.path()),
            });
        };
        hours.entry(hour).or_default().push(DataFile {
            path: view.path().into_owned(),
            size: u64::try_from(view.size()).unwrap_or(0),
            rows: view.num_records().map(|n| n as u64),
            written_at_ms: view.modification_time(),
            remove: view.remove_action(false),
        });
    }
    Ok(hours)
}

/// The URLs of `files` (paths relative to the root of `table`), as DataFusion reads
/// them once the table's object store is registered in the session.
pub fn file_urls(
    id: TableId,
    table: &DeltaTable,
    files: &[&DataFile],
) -> Result<Vec<String>, CompactorError> {
    let mut root = table.table_url().clone();
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    files
        .iter()
        .map(|f| {
            root.join(&f.path)
                .map(|u| u.to_string())
                .map_err(|e| CompactorError::Unexpected {
                    table: id.name(),
                    reason: format!("file path {}: {e}", f.path),
                })
        })
        .collect()
}

/// Why an hour is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteReason {
    /// An open hour with more undersized files than allowed.
    TooManySmallFiles,
    /// A closed hour with more than one undersized file.
    ClosedHourFragmented,
    /// A closed hour whose data changed since its rollup: duplicates may have arrived.
    ChangedSinceRollup,
}

/// The undersized files of an hour, if the hour should be rewritten now.
pub fn rewrite_reason(
    config: &CompactorConfig,
    files: &[DataFile],
    closed: bool,
    dirty: bool,
) -> Option<RewriteReason> {
    let undersized = files
        .iter()
        .filter(|f| f.size < config.undersized_below())
        .count();
    if closed && dirty && undersized >= 1 {
        Some(RewriteReason::ChangedSinceRollup)
    } else if closed && undersized > 1 {
        Some(RewriteReason::ClosedHourFragmented)
    } else if undersized > config.max_small_files {
        Some(RewriteReason::TooManySmallFiles)
    } else {
        None
    }
}

/// Whether the hour ended at least `closed_after` before `now_micros`.
pub fn is_closed(config: &CompactorConfig, hour: Hour, now_micros: i64) -> bool {
    let grace = i64::try_from(config.closed_after.as_micros()).unwrap_or(i64::MAX);
    hour.end_micros().saturating_add(grace) <= now_micros
}

/// Hours that received new data (data-changing adds: ingest, not rewrites) in the
/// commits after `since` up to and including `upto`. `None` when part of that log is
/// gone (cleaned up), so every hour must be treated as changed.
pub async fn hours_changed_between(
    id: TableId,
    table: &DeltaTable,
    since: u64,
    upto: u64,
) -> Result<Option<BTreeSet<Hour>>, CompactorError> {
    let log_store = table.log_store();
    let mut hours = BTreeSet::new();
    for version in since.saturating_add(1)..=upto {
        let Some(bytes) = log_store
            .read_commit_entry(version)
            .await
            .map_err(id.delta_error())?
        else {
            return Ok(None);
        };
        let actions =
            deltalake::logstore::get_actions(version, &bytes).map_err(id.delta_error())?;
        for action in actions {
            if let Action::Add(add) = action {
                if add.data_change {
                    if let Some(hour) = Hour::from_partition_values(&add.partition_values) {
                        hours.insert(hour);
                    }
                }
            }
        }
    }
    Ok(Some(hours))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64) -> DataFile {
        DataFile {
            path: "x.parquet".into(),
            size,
            rows: None,
            written_at_ms: 0,
            remove: Remove {
                path: "x.parquet".into(),
                data_change: false,
                deletion_timestamp: None,
                extended_file_metadata: None,
                partition_values: None,
                size: None,
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            },
        }
    }

    #[test]
    fn decides_which_hours_to_rewrite() {
        let config = CompactorConfig {
            target_file_size: 1000,
            max_small_files: 3,
            ..CompactorConfig::default()
        };
        let small = |n| (0..n).map(|_| file(10)).collect::<Vec<_>>();
        // open hour: only past the small-file limit
        assert_eq!(rewrite_reason(&config, &small(3), false, true), None);
        assert_eq!(
            rewrite_reason(&config, &small(4), false, false),
            Some(RewriteReason::TooManySmallFiles)
        );
        // closed hour: down to one file, and once more after it changed
        assert_eq!(
            rewrite_reason(&config, &small(2), true, false),
            Some(RewriteReason::ClosedHourFragmented)
        );
        assert_eq!(rewrite_reason(&config, &small(1), true, false), None);
        assert_eq!(
            rewrite_reason(&config, &small(1), true, true),
            Some(RewriteReason::ChangedSinceRollup)
        );
        // big files are never rewritten
        assert_eq!(
            rewrite_reason(&config, &[file(900), file(800)], true, true),
            None
        );
    }

    #[test]
    fn hours_close_after_the_grace_period() {
        let config = CompactorConfig::default();
        let hour = Hour {
            date: 20_000,
            hour: 3,
        };
        assert!(!is_closed(&config, hour, hour.end_micros()));
        assert!(is_closed(
            &config,
            hour,
            hour.end_micros() + 5 * 60 * 1_000_000
        ));
    }
}
