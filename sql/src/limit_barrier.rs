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
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{
    ChildStats, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    SendableRecordBatchStream, Statistics, StatisticsArgs,
};

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
                    Arc::new(LimitBarrier { inner: node }) as Arc<dyn ExecutionPlan>
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
#[derive(Debug)]
pub struct LimitBarrier {
    inner: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for LimitBarrier {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "LimitBarrier")
    }
}

impl ExecutionPlan for LimitBarrier {
    fn name(&self) -> &str {
        "LimitBarrier"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.inner]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match <[Arc<dyn ExecutionPlan>; 1]>::try_from(children) {
            Ok([inner]) => Ok(Arc::new(LimitBarrier { inner })),
            Err(children) => Err(datafusion::error::DataFusionError::Internal(format!(
                "LimitBarrier takes one child, got {}",
                children.len()
            ))),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, context)
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(input_stats
            .first()
            .cloned()
            .unwrap_or_else(|| Arc::new(Statistics::new_unknown(&self.schema()))))
    }

    fn supports_limit_pushdown(&self) -> bool {
        false
    }
}
