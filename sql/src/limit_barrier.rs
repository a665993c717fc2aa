//! Keeps a `LIMIT` above scans that cannot take one.
//!
//! deltalake 1.1's metadata-only scan (`DeltaScanMetaExec`, planned for queries that
//! read no column: `SELECT 1 FROM t LIMIT 2`) says a limit may be pushed through it, yet
//! it is a leaf and ignores a fetch. DataFusion's `LimitPushdown` then drops the limit:
//! `SELECT 2000 FROM engagement_events LIMIT 1` answered every row. [`KeepLimitAbove`]
//! runs before `LimitPushdown` and wraps any such leaf in [`LimitBarrier`], which tells
//! the optimizer the truth, so the limit stays where it was planned.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};

use crate::pass_through::{PassThrough, Wrapped};

/// The rule: wraps leaves that claim limit pushdown but take no fetch.
#[derive(Debug, Default)]
pub struct KeepLimitAbove;

impl PhysicalOptimizerRule for KeepLimitAbove {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let ignores_fetch = node.children().is_empty()
                && node.supports_limit_pushdown()
                && node.with_fetch(Some(1)).is_none();
            if ignores_fetch {
                Ok(Transformed::yes(
                    Arc::new(LimitBarrier::new(node)) as Arc<dyn ExecutionPlan>
                ))
            } else {
                Ok(Transformed::no(node))
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "keep_limit_above"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input through unchanged; a limit cannot be pushed past it.
pub type LimitBarrier = Wrapped<Barrier>;

/// The [`PassThrough`] kind of [`LimitBarrier`]: the rows as they come.
#[derive(Debug)]
pub struct Barrier;

impl PassThrough for Barrier {
    const NAME: &'static str = "LimitBarrier";

    fn stream(input: SendableRecordBatchStream) -> SendableRecordBatchStream {
        input
    }
}
