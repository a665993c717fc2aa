//! What every sketch aggregate shares: per-group sketch state behind one small trait,
//! adapted to DataFusion's grouped (`GroupsAccumulator`) and ungrouped (`Accumulator`)
//! paths, and the literal parameters (`lg_k`, `k`).

use std::fmt::Debug;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::expressions::Literal;

/// The sketches of an aggregate's groups.
pub trait SketchGroups: Debug + Send + Sync + 'static {
    /// Makes sure groups `0..n` exist.
    fn resize(&mut self, n: usize);
    /// Adds input rows (values, or sketches for the union functions) to their groups.
    fn update(
        &mut self,
        values: &ArrayRef,
        group_of: &dyn Fn(usize) -> usize,
        filter: Option<&BooleanArray>,
    ) -> Result<()>;
    /// Merges serialized partial states into their groups.
    fn merge(&mut self, states: &ArrayRef, group_of: &dyn Fn(usize) -> usize) -> Result<()>;
    /// Takes groups out: their final values, or (`as_state`) their serialized sketches.
    fn take(&mut self, emit_to: EmitTo, as_state: bool) -> Result<ArrayRef>;
    /// No groups, same parameters.
    fn empty(&self) -> Self
    where
        Self: Sized;
    /// Bytes held.
    fn size(&self) -> usize;
}

/// Whether row `row` passes an aggregate's FILTER clause.
pub fn passes(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

/// The literal integer argument at `index`, checked against `range`; `None` when absent.
pub fn literal_int(
    args: &AccumulatorArgs<'_>,
    index: usize,
    function: &str,
    what: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>> {
    let Some(expr) = args.exprs.get(index) else {
        return Ok(None);
    };
    let literal = expr.downcast_ref::<Literal>().ok_or_else(|| {
        DataFusionError::Plan(format!("{function}: {what} must be a literal integer"))
    })?;
    match literal.value().cast_to(&DataType::Int64)? {
        ScalarValue::Int64(Some(v)) if range.contains(&v) => Ok(Some(v)),
        other => Err(DataFusionError::Plan(format!(
            "{function}: {what} must be between {} and {}, got {other}",
            range.start(),
            range.end()
        ))),
    }
}

/// The grouped path.
#[derive(Debug)]
pub struct Grouped<S>(pub S);

impl<S: SketchGroups> GroupsAccumulator for Grouped<S> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.0.resize(total_num_groups);
        self.0
            .update(&values[0], &|row| group_indices[row], opt_filter)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.0.take(emit_to, false)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.0.take(emit_to, true)?])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.0.resize(total_num_groups);
        self.0.merge(&values[0], &|row| group_indices[row])
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut one = self.0.empty();
        one.resize(values[0].len());
        one.update(&values[0], &|row| row, opt_filter)?;
        Ok(vec![one.take(EmitTo::All, true)?])
    }

    fn size(&self) -> usize {
        self.0.size()
    }
}

/// The ungrouped path: one group.
#[derive(Debug)]
pub struct Single<S>(pub S);

impl<S: SketchGroups> Accumulator for Single<S> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.0.resize(1);
        self.0.update(&values[0], &|_| 0, None)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.0.resize(1);
        ScalarValue::try_from_array(&self.0.take(EmitTo::All, false)?, 0)
    }

    fn size(&self) -> usize {
        self.0.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.0.resize(1);
        Ok(vec![ScalarValue::try_from_array(
            &self.0.take(EmitTo::All, true)?,
            0,
        )?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.0.resize(1);
        self.0.merge(&states[0], &|_| 0)
    }
}
