//! hourlake's own plan nodes ([`LimitBarrier`], [`ProbeSlices`]) encoded for workers.
//! Both carry no state besides their one input, so a node is its tag.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crate::limit_barrier::LimitBarrier;
use crate::probe_slices::ProbeSlices;

const LIMIT_BARRIER: u8 = 1;
const PROBE_SLICES: u8 = 2;

/// Encodes and decodes hourlake's plan nodes; the coordinator and every worker use it.
#[derive(Debug, Default, Clone, Copy)]
pub struct HourlakeCodec;

impl PhysicalExtensionCodec for HourlakeCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = inputs else {
            return Err(DataFusionError::Internal(format!(
                "an hourlake plan node takes one input, got {}",
                inputs.len()
            )));
        };
        let input = input.clone();
        match buf {
            [LIMIT_BARRIER] => Ok(Arc::new(LimitBarrier::new(input))),
            [PROBE_SLICES] => Ok(Arc::new(ProbeSlices::new(input))),
            other => Err(DataFusionError::Internal(format!(
                "unknown hourlake plan node {other:?} (server and worker versions differ?)"
            ))),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let tag = if node.downcast_ref::<LimitBarrier>().is_some() {
            LIMIT_BARRIER
        } else if node.downcast_ref::<ProbeSlices>().is_some() {
            PROBE_SLICES
        } else {
            return Err(DataFusionError::NotImplemented(format!(
                "{} cannot run on a worker",
                node.name()
            )));
        };
        buf.push(tag);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::physical_plan::AsExecutionPlan;
    use datafusion_proto::protobuf::PhysicalPlanNode;

    fn round_trip(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        let node = PhysicalPlanNode::try_from_physical_plan(plan, &HourlakeCodec).unwrap();
        let ctx = SessionContext::new();
        node.try_into_physical_plan(&ctx.task_ctx(), &HourlakeCodec)
            .unwrap()
    }

    #[test]
    fn hourlake_nodes_survive_the_wire() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let leaf: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(schema));
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(LimitBarrier::new(Arc::new(ProbeSlices::new(leaf))));
        let back = round_trip(plan);
        assert_eq!(back.name(), "LimitBarrier");
        assert_eq!(back.children()[0].name(), "ProbeSlices");
        assert_eq!(back.children()[0].children()[0].name(), "EmptyExec");
    }

    #[test]
    fn unknown_tags_and_input_counts_are_refused() {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let leaf: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(schema));
        let converter = datafusion_proto::physical_plan::DefaultPhysicalProtoConverter {};
        let task = ctx.task_ctx();
        let unknown =
            HourlakeCodec.try_decode(&[9], std::slice::from_ref(&leaf), &task, &converter);
        assert!(unknown
            .unwrap_err()
            .to_string()
            .contains("unknown hourlake plan node"));
        let no_input = HourlakeCodec.try_decode(&[LIMIT_BARRIER], &[], &task, &converter);
        assert!(no_input.unwrap_err().to_string().contains("one input"));
        let foreign = HourlakeCodec.try_encode(leaf, &mut Vec::new(), &converter);
        assert!(foreign
            .unwrap_err()
            .to_string()
            .contains("cannot run on a worker"));
    }
}
