//! When a plan is distributed, and `EXPLAIN` showing the stages that will run.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{LogicalPlan, PlanType, StringifiedPlan};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::explain::ExplainExec;
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion_distributed::{
    display_plan_ascii, DistributedExec, DistributedExt, DistributedLeafExec,
    SessionStateBuilderExt,
};
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::PhysicalPlanNode;

use crate::distributed::{Distribution, HourlakeCodec, WorkerPool};
use crate::SqlError;

/// Makes sessions of `builder` plan with [`HourlakePlanner`] over `distribution`.
pub(crate) fn install(
    builder: SessionStateBuilder,
    distribution: &Distribution,
) -> Result<SessionStateBuilder, SqlError> {
    let mut builder = builder
        .with_distributed_worker_resolver(distribution.pool.resolver())
        .with_distributed_channel_resolver(distribution.pool.channels())
        .with_distributed_user_codec(HourlakeCodec)
        .with_distributed_file_scan_config_bytes_per_partition(distribution.bytes_per_task)?
        .with_distributed_planner();
    let distributed = builder
        .query_planner()
        .take()
        .ok_or_else(|| SqlError::Worker {
            worker: "(planner)".into(),
            message: "the distributed planner was not installed".into(),
        })?;
    Ok(builder.with_query_planner(Arc::new(HourlakePlanner {
        distributed,
        pool: distribution.pool.clone(),
    })))
}

/// Plans on the server as always; when workers are healthy and the plan only scans
/// lake files, plans it again distributed.
#[derive(Debug)]
struct HourlakePlanner {
    distributed: Arc<dyn QueryPlanner + Send + Sync>,
    pool: Arc<WorkerPool>,
}

#[async_trait]
impl QueryPlanner for HourlakePlanner {
    async fn create_physical_plan(
        &self,
        logical: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let local = DefaultPhysicalPlanner::default()
            .create_physical_plan(logical, session)
            .await?;
        if self.pool.healthy().is_empty() {
            return Ok(local);
        }
        if let (LogicalPlan::Explain(explain), Some(shown)) =
            (logical, local.downcast_ref::<ExplainExec>())
        {
            return self.explain(&explain.plan, shown, session).await;
        }
        if !only_scans_files(&local)? {
            return Ok(local);
        }
        self.distributed
            .create_physical_plan(logical, session)
            .await
    }
}

impl HourlakePlanner {
    /// `EXPLAIN` with the physical plan that will run: the distributed one (its stages
    /// and tasks) when the explained query would be distributed.
    async fn explain(
        &self,
        explained: &LogicalPlan,
        shown: &ExplainExec,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let local = DefaultPhysicalPlanner::default()
            .create_physical_plan(explained, session)
            .await?;
        let planned = match only_scans_files(&local)? {
            true => {
                self.distributed
                    .create_physical_plan(explained, session)
                    .await?
            }
            false => local,
        };
        if !is_distributed(planned.as_ref()) {
            return Ok(Arc::new(shown.clone()));
        }
        let text = display_plan_ascii(planned.as_ref(), false);
        let plans = shown
            .stringified_plans()
            .iter()
            .map(|plan| match plan.plan_type {
                PlanType::FinalPhysicalPlan => {
                    StringifiedPlan::new(PlanType::FinalPhysicalPlan, text.clone())
                }
                _ => plan.clone(),
            })
            .collect();
        Ok(Arc::new(ExplainExec::new(
            shown.schema(),
            plans,
            shown.verbose(),
        )))
    }
}

/// Whether every leaf of `plan` is a Parquet scan of lake files (or yields no or one
/// constant row), there is at least one scan, and the whole plan encodes: such plans
/// read only what every worker can read, and every node of them can be sent there.
fn only_scans_files(plan: &Arc<dyn ExecutionPlan>) -> Result<bool> {
    if !leaves_are_file_scans(plan)? {
        return Ok(false);
    }
    Ok(PhysicalPlanNode::try_from_physical_plan(plan.clone(), &HourlakeCodec).is_ok())
}

fn leaves_are_file_scans(plan: &Arc<dyn ExecutionPlan>) -> Result<bool> {
    let mut scans = 0;
    let mut foreign = false;
    plan.apply(|node| {
        if !node.children().is_empty() {
            return Ok(TreeNodeRecursion::Continue);
        }
        let file_scan = node.downcast_ref::<DataSourceExec>().is_some_and(|scan| {
            scan.data_source()
                .downcast_ref::<FileScanConfig>()
                .is_some()
        });
        if file_scan {
            scans += 1;
        } else if node.downcast_ref::<EmptyExec>().is_none()
            && node.downcast_ref::<PlaceholderRowExec>().is_none()
        {
            foreign = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(scans > 0 && !foreign)
}

/// Whether `plan` runs on workers.
pub fn is_distributed(plan: &dyn ExecutionPlan) -> bool {
    plan.downcast_ref::<DistributedExec>().is_some()
        || plan.children().iter().any(|c| is_distributed(c.as_ref()))
}

/// The whole scan a distributed leaf splits into per-task parts, if `plan` is one.
pub fn leaf_scan(plan: &dyn ExecutionPlan) -> Option<&Arc<dyn ExecutionPlan>> {
    plan.downcast_ref::<DistributedLeafExec>()
        .map(DistributedLeafExec::original)
}
