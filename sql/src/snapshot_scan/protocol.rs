//! What the snapshot scan refuses to read. It reads an `add` action's Parquet file as
//! it is, so a table whose files need more than that — rows masked by deletion vectors,
//! columns renamed by column mapping — would be misread. hourlake never writes such
//! tables; this guards against other writers.

use deltalake::table::state::DeltaTableState;
use hourlake_catalog::TableId;

use crate::SqlError;

/// Reader features (as the Delta protocol names them) that change how a file is read.
const REFUSED_READER_FEATURES: &[&str] = &["deletionVectors", "columnMapping"];
/// The table property that turns column mapping on (`id` or `name`).
const COLUMN_MAPPING_MODE: &str = "delta.columnMapping.mode";

fn unsupported(table: TableId, feature: &str) -> SqlError {
    SqlError::UnsupportedTable {
        table: table.name().to_string(),
        feature: feature.to_string(),
    }
}

/// Refuses a table whose protocol or properties need more than reading its files.
/// (The kernel's accessors for both are internal API; their serialized forms are the
/// protocol's own, stable names.)
pub(super) fn check_table(table: TableId, state: &DeltaTableState) -> Result<(), SqlError> {
    let unreadable = |_| unsupported(table, "an unreadable protocol or metadata action");
    let protocol = serde_json::to_value(state.protocol()).map_err(unreadable)?;
    let features = protocol
        .get("readerFeatures")
        .and_then(|f| f.as_array())
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str());
    for feature in features {
        if REFUSED_READER_FEATURES.contains(&feature) {
            return Err(unsupported(table, feature));
        }
    }
    // Column mapping on a legacy protocol (reader version 2) has no feature list.
    let metadata = serde_json::to_value(state.metadata()).map_err(unreadable)?;
    let mode = metadata
        .get("configuration")
        .and_then(|c| c.get(COLUMN_MAPPING_MODE))
        .and_then(|m| m.as_str());
    if mode.is_some_and(|mode| !mode.eq_ignore_ascii_case("none")) {
        return Err(unsupported(table, "columnMapping"));
    }
    Ok(())
}

/// Refuses a file the scan cannot read as it is: one with a deletion vector, or one
/// named by an absolute URL (outside the table's folder, as shallow clones have).
pub(super) fn check_file(
    table: TableId,
    raw_path: &str,
    has_deletion_vector: bool,
) -> Result<(), SqlError> {
    if has_deletion_vector {
        return Err(unsupported(table, "deletionVectors"));
    }
    if raw_path.contains("://") {
        return Err(unsupported(table, "absolute file paths"));
    }
    Ok(())
}
