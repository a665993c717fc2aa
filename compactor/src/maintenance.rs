//! Keeping a table's storage tidy: checkpoints, old log entries, unreferenced files.

use deltalake::operations::vacuum::VacuumMode;
use deltalake::DeltaTable;
use hourlake_catalog::TableId;

use crate::{CompactorConfig, CompactorError};

/// What one maintenance run did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// The version a checkpoint was written for.
    pub checkpoint_version: Option<u64>,
    /// Log entries removed (older than the log retention and covered by a checkpoint).
    pub log_entries_removed: usize,
    /// Data files deleted by vacuum.
    pub files_vacuumed: usize,
}

/// Checkpoints `table`, removes expired log entries and vacuums data files that the
/// log no longer references and that are older than the retention. Files of commits
/// still in flight are younger than the retention, so they are never touched.
pub async fn maintain(
    id: TableId,
    table: &mut DeltaTable,
    config: &CompactorConfig,
) -> Result<Maintenance, CompactorError> {
    table.update_state().await.map_err(id.delta_error())?;
    let mut done = Maintenance::default();
    deltalake::checkpoints::create_checkpoint(table, None)
        .await
        .map_err(id.delta_error())?;
    done.checkpoint_version = table.version();
    done.log_entries_removed = deltalake::checkpoints::cleanup_metadata(table, None)
        .await
        .map_err(id.delta_error())?;
    let retention =
        chrono::Duration::from_std(config.vacuum_retention).unwrap_or(chrono::Duration::days(7));
    let (vacuumed, metrics) = table
        .clone()
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .await
        .map_err(id.delta_error())?;
    done.files_vacuumed = metrics.files_deleted.len();
    *table = vacuumed;
    Ok(done)
}
