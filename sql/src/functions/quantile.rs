//! Quantiles over Apache DataSketches KLL (doubles), e.g. session length percentiles:
//!
//! - `quantile_sketch(expr [, k])` → the serialized KLL sketch (Binary), default k 200;
//! - `quantile_union(sketch)` → the merge of serialized sketches;
//! - `quantile_estimate(sketch, q)` → the value at normalized rank q in [0, 1] (Float64).

use std::mem::size_of;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, Float64Array};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, GroupsAccumulator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datasketches::common::SearchCriteria;
use datasketches::kll::{KllFloat, KllSketch};

use super::groups::{literal_int, passes, Grouped, Single, SketchGroups};
use super::hashing::for_each_binary;

/// k when none is given: ~1.65 % normalized rank error.
pub const DEFAULT_K: u16 = 200;

type Kll = KllSketch<KllFloat<f64>>;

/// Registers the quantile functions with a session.
pub fn register(ctx: &SessionContext) {
    ctx.register_udaf(AggregateUDF::from(QuantileAggregate::new(
        "quantile_sketch",
        false,
    )));
    ctx.register_udaf(AggregateUDF::from(QuantileAggregate::new(
        "quantile_union",
        true,
    )));
    ctx.register_udf(ScalarUDF::from(QuantileEstimate::default()));
}

fn exec(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("kll: {e}"))
}

fn read_sketch(bytes: &[u8]) -> Result<Kll> {
    Kll::deserialize(bytes).map_err(|e| {
        DataFusionError::Execution(format!(
            "not a DataSketches KLL doubles sketch ({} bytes): {e}",
            bytes.len()
        ))
    })
}

/// The aggregate behind `quantile_sketch` (values in) and `quantile_union` (sketches in).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct QuantileAggregate {
    name: &'static str,
    merges_sketches: bool,
    signature: Signature,
}

impl QuantileAggregate {
    fn new(name: &'static str, merges_sketches: bool) -> QuantileAggregate {
        let signature = Signature::one_of(
            vec![TypeSignature::Any(1), TypeSignature::Any(2)],
            Volatility::Immutable,
        );
        QuantileAggregate {
            name,
            merges_sketches,
            signature,
        }
    }

    fn k(&self, args: &AccumulatorArgs<'_>) -> Result<u16> {
        Ok(literal_int(args, 1, self.name, "k", 8..=65_535)?.map_or(DEFAULT_K, |k| k as u16))
    }

    fn groups(&self, args: &AccumulatorArgs<'_>) -> Result<KllGroups> {
        Ok(KllGroups {
            k: self.k(args)?,
            merges_sketches: self.merges_sketches,
            groups: Vec::new(),
        })
    }
}

impl AggregateUDFImpl for QuantileAggregate {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Single(self.groups(&args)?)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[sketch]", args.name),
            DataType::Binary,
            true,
        ))])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Grouped(self.groups(&args)?)))
    }

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(Some(
            Kll::new(DEFAULT_K).map_err(exec)?.serialize(),
        )))
    }
}

#[derive(Debug)]
struct KllGroups {
    k: u16,
    merges_sketches: bool,
    groups: Vec<Option<Kll>>,
}

impl KllGroups {
    fn group(&mut self, g: usize) -> Result<&mut Kll> {
        let k = self.k;
        let slot = &mut self.groups[g];
        if slot.is_none() {
            *slot = Some(Kll::new(k).map_err(exec)?);
        }
        slot.as_mut().ok_or_else(|| exec("group sketch missing"))
    }

    fn update_rows(
        &mut self,
        values: &ArrayRef,
        group_of: &dyn Fn(usize) -> usize,
        filter: Option<&BooleanArray>,
    ) -> Result<()> {
        if self.merges_sketches {
            return self.merge_rows(values, group_of, filter);
        }
        let floats = arrow::compute::cast(values, &DataType::Float64)
            .map_err(|e| DataFusionError::Plan(format!("quantile_sketch takes numbers: {e}")))?;
        for (row, v) in floats.as_primitive::<Float64Type>().iter().enumerate() {
            if let Some(v) = v.filter(|v| !v.is_nan()) {
                if passes(filter, row) {
                    self.group(group_of(row))?
                        .update(KllFloat::<f64>::new(v).map_err(exec)?);
                }
            }
        }
        Ok(())
    }

    fn merge_rows(
        &mut self,
        values: &ArrayRef,
        group_of: &dyn Fn(usize) -> usize,
        filter: Option<&BooleanArray>,
    ) -> Result<()> {
        for_each_binary(values, |row, bytes| {
            if passes(filter, row) {
                let other = read_sketch(bytes)?;
                self.group(group_of(row))?.merge(&other).map_err(exec)?;
            }
            Ok(())
        })
    }

    fn finish(&self, groups: Vec<Option<Kll>>) -> Result<ArrayRef> {
        let mut b = BinaryBuilder::with_capacity(groups.len(), groups.len() * 64);
        for g in groups {
            match g {
                Some(sketch) => b.append_value(sketch.serialize()),
                None => b.append_value(Kll::new(self.k).map_err(exec)?.serialize()),
            }
        }
        Ok(Arc::new(b.finish()))
    }
}

impl SketchGroups for KllGroups {
    fn resize(&mut self, n: usize) {
        if self.groups.len() < n {
            self.groups.resize_with(n, || None);
        }
    }

    fn update(
        &mut self,
        values: &ArrayRef,
        group_of: &dyn Fn(usize) -> usize,
        filter: Option<&BooleanArray>,
    ) -> Result<()> {
        self.update_rows(values, group_of, filter)
    }

    fn merge(&mut self, states: &ArrayRef, group_of: &dyn Fn(usize) -> usize) -> Result<()> {
        self.merge_rows(states, group_of, None)
    }

    fn take(&mut self, emit_to: EmitTo, _as_state: bool) -> Result<ArrayRef> {
        // The final value is the serialized sketch itself.
        let groups = emit_to.take_needed(&mut self.groups);
        self.finish(groups)
    }

    fn empty(&self) -> Self {
        KllGroups {
            k: self.k,
            merges_sketches: self.merges_sketches,
            groups: Vec::new(),
        }
    }

    fn size(&self) -> usize {
        size_of::<Self>()
            + self
                .groups
                .iter()
                .map(|g| size_of::<Option<Kll>>() + g.as_ref().map_or(0, |s| s.num_retained() * 8))
                .sum::<usize>()
    }
}

/// `quantile_estimate(sketch, q)`: the value at normalized rank q (inclusive), NULL for an
/// empty sketch or a NULL input.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct QuantileEstimate {
    signature: Signature,
}

impl Default for QuantileEstimate {
    fn default() -> Self {
        QuantileEstimate {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for QuantileEstimate {
    fn name(&self) -> &str {
        "quantile_estimate"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let sketches = args.args[0].to_array(args.number_rows)?;
        let ranks = arrow::compute::cast(
            &args.args[1].to_array(args.number_rows)?,
            &DataType::Float64,
        )?;
        let ranks = ranks.as_primitive::<Float64Type>();
        let mut out: Vec<Option<f64>> = vec![None; sketches.len()];
        for_each_binary(&sketches, |row, bytes| {
            if ranks.is_null(row) {
                return Ok(());
            }
            let q = ranks.value(row);
            if !(0.0..=1.0).contains(&q) {
                return Err(DataFusionError::Execution(format!(
                    "quantile_estimate: q must be in [0, 1], got {q}"
                )));
            }
            let sketch = read_sketch(bytes)?;
            out[row] = sketch
                .quantile(q, SearchCriteria::Inclusive)
                .map_err(exec)?
                .map(KllFloat::into_inner);
            Ok(())
        })?;
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::Schema;
    use datafusion::datasource::MemTable;

    use super::*;

    async fn session() -> SessionContext {
        let ctx = SessionContext::new();
        register(&ctx);
        // Session lengths 1..=100 000 ms, in four partitions, two groups.
        let schema = Arc::new(Schema::new(vec![
            Field::new("ms", DataType::Int64, true),
            Field::new("g", DataType::Int64, false),
        ]));
        let parts: Vec<Vec<RecordBatch>> = (0..4i64)
            .map(|p| {
                let ms: Vec<Option<i64>> = (1..=100_000i64)
                    .filter(|v| v % 4 == p)
                    .map(|v| if v % 1000 == 0 { None } else { Some(v) })
                    .collect();
                let g: Vec<i64> = (1..=100_000i64)
                    .filter(|v| v % 4 == p)
                    .map(|v| v % 2)
                    .collect();
                vec![RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(ms)),
                        Arc::new(Int64Array::from(g)),
                    ],
                )
                .unwrap()]
            })
            .collect();
        ctx.register_table("s", Arc::new(MemTable::try_new(schema, parts).unwrap()))
            .unwrap();
        ctx
    }

    async fn floats(ctx: &SessionContext, sql: &str) -> Vec<Option<f64>> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<Float64Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn percentiles_within_rank_error_and_unions_merge() {
        let ctx = session().await;
        for q in [0.5, 0.95, 0.99] {
            let est = floats(
                &ctx,
                &format!("SELECT quantile_estimate(quantile_sketch(ms), {q}) FROM s"),
            )
            .await[0]
                .unwrap();
            let exact = q * 100_000.0;
            // KLL k=200: normalized rank error ~1.65 % (99 % confidence); 3 % of 100 000 is generous.
            assert!((est - exact).abs() <= 3_000.0, "q {q}: {est} vs {exact}");
            let merged = floats(
                &ctx,
                &format!("SELECT quantile_estimate(quantile_union(sk), {q}) FROM (SELECT g, quantile_sketch(ms) AS sk FROM s GROUP BY g)"),
            )
            .await[0]
            .unwrap();
            assert!(
                (merged - exact).abs() <= 3_000.0,
                "union q {q}: {merged} vs {exact}"
            );
        }
        let ends = floats(
            &ctx,
            "SELECT quantile_estimate(quantile_sketch(ms), 0.0) FROM s",
        )
        .await[0];
        assert_eq!(ends, Some(1.0), "rank 0 is the minimum");
        let empty = floats(
            &ctx,
            "SELECT quantile_estimate(quantile_sketch(ms), 0.5) FROM s WHERE g > 5",
        )
        .await;
        assert_eq!(empty, vec![None], "an empty sketch has no quantiles");
        let err = ctx
            .sql("SELECT quantile_estimate(quantile_sketch(ms), 1.5) FROM s")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("q must be in [0, 1]"), "{err}");
        let err = ctx
            .sql("SELECT quantile_estimate(arrow_cast('x', 'Binary'), 0.5)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a DataSketches KLL"), "{err}");
    }

    /// The reference implementation (Apache DataSketches for Python) reads our sketches
    /// and answers the same quantiles.
    #[tokio::test]
    async fn reference_implementation_reads_our_sketches() {
        let ctx = session().await;
        let batches = ctx
            .sql("SELECT quantile_sketch(ms) FROM s")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let bytes = arrow::compute::cast(batches[0].column(0), &DataType::Binary).unwrap();
        let bytes = bytes.as_binary::<i32>().value(0).to_vec();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kll.bin");
        std::fs::write(&file, &bytes).unwrap();
        let script = "import datasketches as ds, sys\n\
                      s = ds.kll_doubles_sketch.deserialize(open(sys.argv[1], 'rb').read())\n\
                      print(s.n)\n\
                      for q in (0.1, 0.5, 0.9, 0.99): print(repr(s.get_quantile(q)))\n";
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&file)
            .output()
            .expect("python3 (with the PyPI package `datasketches`) is needed for this test");
        assert!(
            out.status.success(),
            "reference failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap().trim(),
            "99900",
            "every non-null value counted"
        );
        // KLL compaction is randomized: compare answers from the very same bytes.
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        for q in [0.1, 0.5, 0.9, 0.99] {
            let theirs: f64 = lines.next().unwrap().trim().parse().unwrap();
            let ours = floats(
                &ctx,
                &format!("SELECT quantile_estimate(decode('{hex}', 'hex'), {q})"),
            )
            .await[0]
                .unwrap();
            assert_eq!(ours, theirs, "q {q}");
        }
    }
}
