//! Partition pruning: filters over partition columns only are evaluated on each file's
//! partition values (every row of a file has the same), so the files they reject are
//! left out of the scan and the filters need no re-check above it.

use arrow::array::Array;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::DFSchema;
use datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{ColumnarValue, Expr};

use super::FileIndex;

/// Whether `filter` reads partition columns only (and no subquery, no function that is
/// not immutable), so that pruning files by it is exact.
pub(super) fn is_partition_filter(filter: &Expr, partition_columns: &[&str]) -> bool {
    let subquery = filter
        .exists(|e| {
            Ok(matches!(
                e,
                Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
            ))
        })
        .unwrap_or(true);
    !partition_columns.is_empty()
        && !subquery
        && expr_applicable_for_cols(partition_columns, filter)
}

/// The files of `index` whose partition values pass every filter of `filters` (partition
/// filters, see [`is_partition_filter`]).
pub(super) fn prune(
    index: &FileIndex,
    state: &dyn Session,
    filters: &[Expr],
) -> Result<Vec<PartitionedFile>> {
    // The scan's filters name the table; the partition values' batch does not.
    let unqualified = filters.iter().map(|f| unnormalize_col(f.clone()));
    let Some(filter) = conjunction(unqualified) else {
        return Ok(index.files().to_vec());
    };
    let batch = index.partitions();
    let schema = DFSchema::try_from(batch.schema())?;
    let predicate = state.create_physical_expr(filter, &schema)?;
    let passed = match predicate.evaluate(batch)? {
        ColumnarValue::Array(array) => array,
        ColumnarValue::Scalar(value) => value.to_array_of_size(batch.num_rows())?,
    };
    let passed = datafusion::common::cast::as_boolean_array(&passed)?;
    Ok(index
        .files()
        .iter()
        .enumerate()
        .filter(|(i, _)| passed.is_valid(*i) && passed.value(*i))
        .map(|(_, file)| file.clone())
        .collect())
}
