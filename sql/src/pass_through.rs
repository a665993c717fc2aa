//! A plan node over one input that keeps the input's properties — partitioning, order,
//! statistics — and changes only how its batches are handed on or what the optimizer
//! may do across it. hourlake's plan rewrites ([`limit_barrier`](crate::limit_barrier),
//! [`probe_slices`](crate::probe_slices)) are such nodes; each says what it does as a
//! [`PassThrough`] kind.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{
    ChildStats, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    SendableRecordBatchStream, Statistics, StatisticsArgs,
};

/// What a [`Wrapped`] node does with its input.
pub trait PassThrough: Debug + Send + Sync + 'static {
    /// The node's name in plans and `EXPLAIN`.
    const NAME: &'static str;
    /// The node's stream over its input's stream.
    fn stream(input: SendableRecordBatchStream) -> SendableRecordBatchStream;
}

/// A node of kind `K` over `input`.
#[derive(Debug)]
pub struct Wrapped<K: PassThrough> {
    input: Arc<dyn ExecutionPlan>,
    kind: PhantomData<K>,
}

impl<K: PassThrough> Wrapped<K> {
    /// `input` wrapped.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Wrapped<K> {
        Wrapped {
            input,
            kind: PhantomData,
        }
    }
}

impl<K: PassThrough> DisplayAs for Wrapped<K> {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}", K::NAME)
    }
}

impl<K: PassThrough> ExecutionPlan for Wrapped<K> {
    fn name(&self) -> &str {
        K::NAME
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
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
            Ok([input]) => Ok(Arc::new(Wrapped::<K>::new(input))),
            Err(children) => Err(DataFusionError::Internal(format!(
                "{} takes one child, got {}",
                K::NAME,
                children.len()
            ))),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(K::stream(self.input.execute(partition, context)?))
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

    /// A limit stays above: a node that changes nothing about the rows gains nothing
    /// from one below, and `LimitBarrier` exists to keep it above.
    fn supports_limit_pushdown(&self) -> bool {
        false
    }
}
