//! What a plan reads: the tables (for cache keys), whether its answer can be cached at
//! all, and, once run, the files and bytes.

use std::collections::BTreeSet;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::ExecutionPlan;

/// The names of the tables an (analyzed) logical plan scans, subqueries included: a
/// lake table by its name, the catalog's own as `information_schema.<table>`.
pub fn tables_read(plan: &LogicalPlan) -> BTreeSet<String> {
    let mut tables = BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = &scan.table_name;
            tables.insert(match name.schema() {
                Some("information_schema") => format!("information_schema.{}", name.table()),
                _ => name.table().to_string(),
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    tables
}

/// Whether the answer of `plan` (unoptimized: before `now()` is folded into a constant)
/// can change while the tables it reads stay the same: it calls a function that is
/// not immutable (`now()`, `current_date`, `random()`, `uuid()`, …), directly or
/// through a view. Such answers are never cached and get no ETag.
pub fn is_time_or_randomness_dependent(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if let Some(view) = scan.source.get_logical_plan() {
                found |= is_time_or_randomness_dependent(&view);
            }
        }
        let _ = node.apply_expressions(|e| {
            e.apply(|e| {
                let volatility = match e {
                    Expr::ScalarFunction(f) => Some(f.func.signature().volatility),
                    Expr::AggregateFunction(f) => Some(f.func.signature().volatility),
                    Expr::WindowFunction(w) => Some(w.fun.signature().volatility),
                    _ => None,
                };
                found |= volatility.is_some_and(|v| v != Volatility::Immutable);
                Ok(if found {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })
        });
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// Files a physical plan will read (after partition pruning).
pub fn files_scanned(plan: &dyn ExecutionPlan) -> usize {
    if let Some(scan) = crate::distributed::leaf_scan(plan) {
        return files_scanned(scan.as_ref());
    }
    let mut files = 0;
    if let Some(source) = plan.downcast_ref::<DataSourceExec>() {
        if let Some(config) = source.data_source().downcast_ref::<FileScanConfig>() {
            files += config.file_groups.iter().map(|g| g.len()).sum::<usize>();
        }
    }
    for child in plan.children() {
        files += files_scanned(child.as_ref());
    }
    files
}

/// Bytes read from storage by an executed plan (the `bytes_scanned` metric of its scans).
pub fn bytes_scanned(plan: &dyn ExecutionPlan) -> u64 {
    let mut bytes = plan
        .metrics()
        .and_then(|m| m.sum_by_name("bytes_scanned"))
        .map_or(0, |v| v.as_usize() as u64);
    for child in plan.children() {
        bytes += bytes_scanned(child.as_ref());
    }
    bytes
}
