//! File pruning at planning time:
//! - by partition: filters over partition columns only are evaluated on each file's
//!   partition values (every row of a file has the same), so the files they reject are
//!   left out of the scan and the filters need no re-check above it;
//! - by bounds: filters over file columns are checked against each file's bounds from
//!   the log (as deltalake's provider does); a file is skipped only when no row in its
//!   bounds can pass, and the filters are still applied to the rows read.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, UInt64Array};
use arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::DFSchema;
use datafusion::common::{Column, ColumnStatistics, ScalarValue};
use datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{ColumnarValue, Expr};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;

use super::FileIndex;

/// Whether `filter` reads partition columns only (and no subquery, no function that is
/// not immutable), so that pruning files by it is exact.
pub(super) fn is_partition_filter(filter: &Expr, partition_columns: &[&str]) -> bool {
    applies_to(filter, partition_columns)
}

/// Whether `filter` reads only `columns` (and no subquery, no function that is not
/// immutable).
fn applies_to(filter: &Expr, columns: &[&str]) -> bool {
    let subquery = filter
        .exists(|e| {
            Ok(matches!(
                e,
                Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
            ))
        })
        .unwrap_or(true);
    !columns.is_empty() && !subquery && expr_applicable_for_cols(columns, filter)
}

/// The `files` whose bounds may hold a row that passes `filters` (those of them over
/// file columns only); files without bounds are kept.
pub(super) fn prune_by_bounds(
    files: Vec<PartitionedFile>,
    file_schema: &SchemaRef,
    state: &dyn Session,
    filters: &[Expr],
) -> Result<Vec<PartitionedFile>> {
    let columns: Vec<&str> = file_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let applicable = filters
        .iter()
        .map(|f| unnormalize_col(f.clone()))
        .filter(|f| applies_to(f, &columns));
    let Some(filter) = conjunction(applicable) else {
        return Ok(files);
    };
    let schema = DFSchema::try_from(file_schema.clone())?;
    let predicate = state.create_physical_expr(filter, &schema)?;
    let pruning = PruningPredicateBuilder::new()
        .with_file_schema(file_schema.clone())
        .try_build(predicate)?;
    if pruning.always_true() {
        return Ok(files);
    }
    let keep = pruning.prune(&FileBounds {
        files: &files,
        schema: file_schema,
    })?;
    Ok(files
        .into_iter()
        .zip(keep)
        .filter_map(|(file, keep)| keep.then_some(file))
        .collect())
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

/// The files' column bounds as the pruning predicate reads them. The index's bounds
/// are marked inexact (they need not be tight) but they are true bounds — a maximum the
/// writer truncated is rounded up (see `file_index`) — which is all pruning needs;
/// DataFusion's own adapter reads exact statistics only.
struct FileBounds<'a> {
    files: &'a [PartitionedFile],
    schema: &'a SchemaRef,
}

impl FileBounds<'_> {
    fn column(
        &self,
        column: &Column,
        part: impl Fn(&ColumnStatistics) -> &Precision<ScalarValue>,
    ) -> Option<ArrayRef> {
        let index = self.schema.index_of(column.name()).ok()?;
        let values: Vec<ScalarValue> = self
            .files
            .iter()
            .map(|file| {
                file.statistics
                    .as_ref()
                    .and_then(|s| s.column_statistics.get(index))
                    .and_then(|stats| part(stats).get_value().cloned())
                    .unwrap_or(ScalarValue::Null)
            })
            .collect();
        if values.iter().all(ScalarValue::is_null) {
            return None;
        }
        ScalarValue::iter_to_array(values).ok()
    }
}

impl PruningStatistics for FileBounds<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.column(column, |s| &s.min_value)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.column(column, |s| &s.max_value)
    }

    fn num_containers(&self) -> usize {
        self.files.len()
    }

    /// Null counts are used only where exact: "all nulls" must be certain.
    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let index = self.schema.index_of(column.name()).ok()?;
        let counts: UInt64Array = self
            .files
            .iter()
            .map(|file| {
                let stats = file.statistics.as_ref()?.column_statistics.get(index)?;
                match stats.null_count {
                    Precision::Exact(n) => u64::try_from(n).ok(),
                    _ => None,
                }
            })
            .collect();
        (counts.null_count() < counts.len()).then(|| Arc::new(counts) as ArrayRef)
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        let counts: UInt64Array = self
            .files
            .iter()
            .map(|file| match file.statistics.as_ref()?.num_rows {
                Precision::Exact(n) => u64::try_from(n).ok(),
                _ => None,
            })
            .collect();
        (counts.null_count() < counts.len()).then(|| Arc::new(counts) as ArrayRef)
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}
