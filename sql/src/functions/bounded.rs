//! Size limits for the built-in functions whose output grows with an argument's
//! *value* rather than with the size of their inputs.
//!
//! DataFusion builds a function's result outside the memory pool, so without a
//! limit a tiny query such as `SELECT repeat('x', 2000000000)` asks the allocator
//! for gigabytes and gets the whole server OOM-killed (or aborted when the
//! allocation fails). [`register`] replaces each of these functions in a session by
//! a wrapper with the same name, aliases, signature, return type, coercion,
//! simplification, ordering and documentation (every [`ScalarUDFImpl`] method is
//! forwarded, so planning is unchanged). Before the wrapped function runs, the
//! wrapper computes from the arguments an upper bound of the bytes the call will
//! produce and fails with [`DataFusionError::ResourcesExhausted`] (HTTP 413) when
//! one value would exceed [`MAX_VALUE_BYTES`] or the whole call (a batch of rows,
//! plus the copies of scalar arguments that DataFusion broadcasts to every row)
//! would exceed [`MAX_CALL_BYTES`]. All arithmetic saturates; a row whose output is
//! NULL (because an argument that makes it NULL is NULL) counts as zero bytes.
//!
//! Covered, with the bound of one row's output:
//!
//! | function | bound (bytes) |
//! |---|---|
//! | `repeat(s, n)` | `len(s) * max(n, 0)` |
//! | `lpad(s, n [, fill])`, `rpad(..)` | `len(s) + max(n, 0) * w`, `w` = 1 if `fill` (default `' '`) is ASCII, else 4 (`n` characters of up to 4 bytes) |
//! | `replace(s, from, to)` | `from` empty: `len(s) + (chars(s) + 1) * len(to)`; else `len(s) + len(s) / len(from) * max(len(to) - len(from), 0)` |
//! | `regexp_replace(s, re, to [, flags])` | `len(s) + m * len(to) + r * len(s)`: `m` matches (`chars(s) + 1` with flag `g`, else 1), each expanding at most `r` group references (the `$` and `\` in `to`) of at most the matched text |
//! | `range(..)`, `generate_series(..)` (the scalar functions returning a list) | 8 bytes per element; integers counted exactly like DataFusion does, dates and timestamps from the smallest step or, if the step can go either way (`1 month -30 days`) or depends on a time zone, by stepping through the series (stopping at the limit) |
//! | `array_repeat(x, n)` | `max(n, 0) * (8 + size(x))` |
//! | `array_resize(a, n [, fill])` | `size(a) + max(n, 0) * (8 + size(fill))` |
//! | `array_replace(a, from, to)`, `array_replace_n(.., max)`, `array_replace_all(..)` | `size(a) + k * (8 + size(to))`, `k` = elements of `a`, at most 1 / `max` |
//! | `array_to_string(a, delim [, null_str])` | text of the elements + (elements) * `(len(delim) + len(null_str))` |
//!
//! `size(x)` is the bytes of one row of `x`: its fixed width, string length, or for
//! lists the sum over its elements plus 8 each. Numbers printed by
//! `array_to_string` count 20 bytes (integers), 350 (floats, which print without
//! exponent) or 128 (other fixed-width types).
//!
//! `replace` with an empty `from` returns its input unchanged in DataFusion 55, so
//! that bound is deliberately conservative (it guards a version that would insert
//! `to` between characters, as some engines do; nobody needs that call on large
//! inputs). For `lpad`/`rpad` the wrapper also rewrites the length argument so that
//! DataFusion's up-front capacity reservation (the sum of *all* requested lengths,
//! including rows whose string is NULL, and a negative length wrapping to
//! `usize::MAX`) stays within the bound: lengths of NULL rows become NULL and
//! negative lengths 0, which gives the same results.
//!
//! The other built-in scalar functions (`datafusion::functions::all_default_functions`
//! and `datafusion::functions_nested::all_default_nested_functions` of DataFusion 55)
//! were checked: their output is linear in the size of their inputs, by a small
//! constant factor at most, so they need no bound of their own: `concat`,
//! `concat_ws`, `overlay` (string + replacement), `translate`, `upper`/`lower`/
//! `initcap` (case mapping grows a character to at most 3), `to_hex`, `encode`
//! (2x), `chr`, `substr`, `left`/`right`, `split_part`, `reverse`, `to_char`,
//! `string_to_array` (at most one element per character), `make_array`,
//! `array_concat`/`array_append`/`array_prepend`, `flatten`, `array_slice`,
//! `array_positions`, the set operations, `array_sort`, `arrays_zip`, the map
//! functions, and the aggregating array functions. Lambdas (`array_transform`)
//! call the covered functions like any expression. The table functions
//! `generate_series`/`range` used in `FROM` are not scalar functions: they stream
//! batches.
//!
//! Not covered here, and needing limits elsewhere: DataFusion copies a scalar once
//! per row when it broadcasts it to a batch, so a constant projected from a table
//! (`SELECT repeat('x', 60000000) FROM t`: the call is folded at planning into a
//! 60 MB literal that the projection then copies into every row) or passed beside a
//! column to a function not covered here (`concat(col, <large constant>)`) can still
//! ask for [`MAX_VALUE_BYTES`] times the batch size. Covered functions count those
//! copies of their own scalar arguments in the call's total. Casts to
//! `FixedSizeBinary`/`FixedSizeList` types of huge width (`arrow_cast`, rewritten to
//! a cast at planning) allocate by type rather than by value.

use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{Array, ArrayRef, AsArray, Int64Array, OffsetSizeTrait};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Date32Type, FieldRef, Int64Type, IntervalMonthDayNano, IntervalMonthDayNanoType,
    IntervalUnit, TimeUnit, TimestampNanosecondType,
};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{ExprSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping,
};
use datafusion::prelude::SessionContext;

/// The most bytes one value (one row) produced by a covered function may take: 64 MiB.
pub const MAX_VALUE_BYTES: u64 = 64 * 1024 * 1024;

/// The most bytes one call of a covered function (a whole batch of rows) may produce:
/// 256 MiB.
pub const MAX_CALL_BYTES: u64 = 256 * 1024 * 1024;

/// Bytes counted for each element of a produced list (offset, index, validity).
const ELEMENT_OVERHEAD: u64 = 8;

/// How `array_replace*` limits its replacements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ReplaceMax {
    One,
    Argument,
    All,
}

/// Which bound a wrapped function gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Repeat,
    Pad,
    Replace,
    RegexpReplace,
    Range { include_upper: bool },
    ArrayRepeat,
    ArrayResize,
    ArrayReplace(ReplaceMax),
    ArrayToString,
}

/// Every covered function, by the name it is registered under.
const COVERED: &[(&str, Kind)] = &[
    ("repeat", Kind::Repeat),
    ("lpad", Kind::Pad),
    ("rpad", Kind::Pad),
    ("replace", Kind::Replace),
    ("regexp_replace", Kind::RegexpReplace),
    (
        "range",
        Kind::Range {
            include_upper: false,
        },
    ),
    (
        "generate_series",
        Kind::Range {
            include_upper: true,
        },
    ),
    ("array_repeat", Kind::ArrayRepeat),
    ("array_resize", Kind::ArrayResize),
    ("array_replace", Kind::ArrayReplace(ReplaceMax::One)),
    ("array_replace_n", Kind::ArrayReplace(ReplaceMax::Argument)),
    ("array_replace_all", Kind::ArrayReplace(ReplaceMax::All)),
    ("array_to_string", Kind::ArrayToString),
];

/// Replaces each covered function present in `ctx` by its size-checked wrapper
/// (under the same name and aliases). Absent functions are skipped; calling it
/// twice does not wrap twice.
pub fn register(ctx: &SessionContext) {
    for &(name, kind) in COVERED {
        let Ok(udf) = ctx.udf(name) else {
            continue;
        };
        if udf.inner().is::<Bounded>() {
            continue;
        }
        ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
            kind,
            inner: Arc::clone(udf.inner()).into(),
        }));
    }
}

/// A covered function: checks the size of what the inner function would produce,
/// then delegates to it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    kind: Kind,
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
}

#[warn(clippy::missing_trait_methods)] // Delegates, so it should implement every method.
impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    #[allow(deprecated)]
    fn display_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.inner.with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(Bounded {
            kind: self.kind,
            inner: Arc::clone(updated.inner()).into(),
        }))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    #[allow(deprecated)]
    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        self.inner.is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        check(
            self.kind,
            self.inner.name(),
            &mut args.args,
            args.number_rows,
        )?;
        self.inner.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.inner.preimage(args, lit_expr, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.inner.propagate_constraints(interval, inputs)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.inner.struct_field_mapping(literal_args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.placement(args)
    }
}

fn value_too_large(name: &str, bytes: u64) -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "{name} would produce {bytes} bytes in one value, more than the {MAX_VALUE_BYTES} allowed"
    ))
}

fn call_too_large(name: &str, bytes: u64, rows: usize) -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "{name} would produce {bytes} bytes in one call over {rows} rows, \
         more than the {MAX_CALL_BYTES} allowed"
    ))
}

fn unsupported(name: &str, data_type: &DataType) -> DataFusionError {
    DataFusionError::Execution(format!(
        "{name}: cannot bound the output size for an argument of type {data_type}"
    ))
}

/// Checks one call of a `kind` function named `name` over `rows` rows, possibly
/// rewriting arguments into equivalent ones that allocate less.
fn check(kind: Kind, name: &str, args: &mut [ColumnarValue], rows: usize) -> Result<()> {
    // Rows are read by index below: arrays must have the call's length.
    if let Some(other) = args.iter().find_map(|arg| match arg {
        ColumnarValue::Array(a) if a.len() != rows => Some(a.len()),
        _ => None,
    }) {
        return Err(DataFusionError::Execution(format!(
            "{name} was called over {rows} rows with an argument of {other}"
        )));
    }
    let all_scalar = args
        .iter()
        .all(|arg| matches!(arg, ColumnarValue::Scalar(_)));
    let calls = Calls {
        name,
        rows,
        all_scalar,
        broadcast: broadcast_bytes(args, rows),
    };
    match kind {
        Kind::Repeat => repeat(&calls, args),
        Kind::Pad => pad(&calls, args),
        Kind::Replace => replace(&calls, args),
        Kind::RegexpReplace => regexp_replace(&calls, args),
        Kind::Range { include_upper } => range(&calls, args, include_upper),
        Kind::ArrayRepeat => array_repeat(&calls, args),
        Kind::ArrayResize => array_resize(&calls, args),
        Kind::ArrayReplace(max) => array_replace(&calls, args, max),
        Kind::ArrayToString => array_to_string(&calls, args),
    }
}

/// What DataFusion's functions copy when they turn scalar arguments into arrays
/// of the batch's length (they do whenever any argument is an array).
fn broadcast_bytes(args: &[ColumnarValue], rows: usize) -> u64 {
    if args
        .iter()
        .all(|arg| matches!(arg, ColumnarValue::Scalar(_)))
    {
        return 0;
    }
    args.iter()
        .map(|arg| match arg {
            ColumnarValue::Scalar(s) => (s.size() as u64).saturating_mul(rows as u64),
            ColumnarValue::Array(_) => 0,
        })
        .fold(0, u64::saturating_add)
}

/// One call's shape, and the limits applied row by row.
struct Calls<'a> {
    name: &'a str,
    rows: usize,
    all_scalar: bool,
    broadcast: u64,
}

impl Calls<'_> {
    /// Fails if a row's bound exceeds [`MAX_VALUE_BYTES`] or their sum (plus the
    /// broadcast copies) exceeds [`MAX_CALL_BYTES`]. With only scalar arguments
    /// every row is the same, so one is computed.
    fn check(&self, mut row: impl FnMut(usize) -> Result<u64>) -> Result<()> {
        let mut total = self.broadcast;
        if total > MAX_CALL_BYTES {
            return Err(call_too_large(self.name, total, self.rows));
        }
        if self.all_scalar {
            if self.rows == 0 {
                return Ok(());
            }
            let bytes = row(0)?;
            if bytes > MAX_VALUE_BYTES {
                return Err(value_too_large(self.name, bytes));
            }
            total = bytes.saturating_mul(self.rows as u64);
            if total > MAX_CALL_BYTES {
                return Err(call_too_large(self.name, total, self.rows));
            }
            return Ok(());
        }
        for i in 0..self.rows {
            let bytes = row(i)?;
            if bytes > MAX_VALUE_BYTES {
                return Err(value_too_large(self.name, bytes));
            }
            total = total.saturating_add(bytes);
            if total > MAX_CALL_BYTES {
                return Err(call_too_large(self.name, total, self.rows));
            }
        }
        Ok(())
    }
}

/// An integer argument row by row (a scalar repeats).
enum Ints {
    Scalar(Option<i64>),
    Array(Int64Array),
}

impl Ints {
    fn new(name: &str, arg: &ColumnarValue) -> Result<Ints> {
        match arg {
            ColumnarValue::Scalar(s) if s.is_null() => Ok(Ints::Scalar(None)),
            ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(v) => Ok(Ints::Scalar(v)),
                _ => Err(unsupported(name, &s.data_type())),
            },
            ColumnarValue::Array(a) => {
                let a = match a.data_type() {
                    DataType::Int64 => Arc::clone(a),
                    DataType::Null
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64 => cast(a, &DataType::Int64)?,
                    other => return Err(unsupported(name, other)),
                };
                Ok(Ints::Array(a.as_primitive::<Int64Type>().clone()))
            }
        }
    }

    fn get(&self, i: usize) -> Option<i64> {
        match self {
            Ints::Scalar(v) => *v,
            Ints::Array(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

/// A string or binary argument row by row (a scalar repeats), without copying.
enum Bytes<'a> {
    Scalar(Option<&'a [u8]>),
    Array(ArrayRef),
}

impl<'a> Bytes<'a> {
    fn new(name: &str, arg: &'a ColumnarValue) -> Result<Bytes<'a>> {
        match arg {
            ColumnarValue::Scalar(s) => Ok(Bytes::Scalar(scalar_bytes(name, s)?)),
            ColumnarValue::Array(a) => {
                let a = match a.data_type() {
                    DataType::Null => return Ok(Bytes::Scalar(None)),
                    DataType::Dictionary(_, values) => cast(a, values)?,
                    _ => Arc::clone(a),
                };
                match a.data_type() {
                    DataType::Null => Ok(Bytes::Scalar(None)),
                    DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Binary
                    | DataType::LargeBinary
                    | DataType::BinaryView
                    | DataType::FixedSizeBinary(_) => Ok(Bytes::Array(a)),
                    other => Err(unsupported(name, other)),
                }
            }
        }
    }

    fn get(&self, i: usize) -> Option<&[u8]> {
        match self {
            Bytes::Scalar(v) => *v,
            Bytes::Array(a) => {
                if a.is_null(i) {
                    return None;
                }
                Some(match a.data_type() {
                    DataType::Utf8 => a.as_string::<i32>().value(i).as_bytes(),
                    DataType::LargeUtf8 => a.as_string::<i64>().value(i).as_bytes(),
                    DataType::Utf8View => a.as_string_view().value(i).as_bytes(),
                    DataType::Binary => a.as_binary::<i32>().value(i),
                    DataType::LargeBinary => a.as_binary::<i64>().value(i),
                    DataType::BinaryView => a.as_binary_view().value(i),
                    DataType::FixedSizeBinary(_) => a.as_fixed_size_binary().value(i),
                    _ => return None, // ruled out by `new`
                })
            }
        }
    }
}

fn scalar_bytes<'a>(name: &str, s: &'a ScalarValue) -> Result<Option<&'a [u8]>> {
    Ok(match s {
        ScalarValue::Null => None,
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
            v.as_deref().map(str::as_bytes)
        }
        ScalarValue::Binary(v)
        | ScalarValue::LargeBinary(v)
        | ScalarValue::BinaryView(v)
        | ScalarValue::FixedSizeBinary(_, v) => v.as_deref(),
        ScalarValue::Dictionary(_, v) => scalar_bytes(name, v)?,
        other => return Err(unsupported(name, &other.data_type())),
    })
}

/// Characters of UTF-8 text (bytes that do not continue a character); for other
/// bytes at most their count.
fn chars(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| (b as i8) >= -0x40).count() as u64
}

fn byte_len(bytes: &[u8]) -> u64 {
    bytes.len() as u64
}

fn non_negative(n: i64) -> u64 {
    n.max(0) as u64
}

/// `repeat(s, n)`: `len(s) * max(n, 0)`.
fn repeat(calls: &Calls, args: &mut [ColumnarValue]) -> Result<()> {
    let [s, n] = args else { return Ok(()) };
    let (s, n) = (Bytes::new(calls.name, s)?, Ints::new(calls.name, n)?);
    calls.check(|i| {
        Ok(match (s.get(i), n.get(i)) {
            (Some(s), Some(n)) => byte_len(s).saturating_mul(non_negative(n)),
            _ => 0,
        })
    })
}

/// `lpad/rpad(s, n [, fill])`: `len(s) + max(n, 0) * w`, `w` 1 for an ASCII fill
/// (the default is a space) and 4 otherwise; then the length argument is made
/// safe for DataFusion's capacity reservation.
fn pad(calls: &Calls, args: &mut [ColumnarValue]) -> Result<()> {
    if !(2..=3).contains(&args.len()) {
        return Ok(());
    }
    let sanitized = {
        let s = Bytes::new(calls.name, &args[0])?;
        let n = Ints::new(calls.name, &args[1])?;
        let fill = match args.get(2) {
            Some(fill) => Some(Bytes::new(calls.name, fill)?),
            None => None,
        };
        // `None`: this row's output is NULL.
        let row = |i: usize| -> Option<(u64, u64)> {
            let s = s.get(i)?;
            let n = n.get(i)?;
            let width = match &fill {
                None => 1,
                Some(fill) if fill.get(i)?.is_ascii() => 1,
                Some(_) => 4,
            };
            Some((byte_len(s), non_negative(n).saturating_mul(width)))
        };
        calls.check(|i| Ok(row(i).map_or(0, |(s, pad)| s.saturating_add(pad))))?;

        // DataFusion reserves the sum of the requested lengths (times 4 for
        // non-ASCII), NULL rows included, before padding; a negative length
        // converts to `usize::MAX` there.
        let rows = if calls.all_scalar { 1 } else { calls.rows };
        let mut reserved = 0u64;
        let mut negative = false;
        for i in 0..rows {
            if let Some(n) = n.get(i) {
                negative |= n < 0;
                reserved = reserved.saturating_add(non_negative(n).saturating_mul(4));
            }
        }
        if calls.all_scalar {
            reserved = reserved.saturating_mul(calls.rows as u64);
        }
        (negative || reserved > MAX_CALL_BYTES).then(|| {
            // Same results: NULL where the output is NULL anyway, 0 for negatives.
            Int64Array::from_iter((0..calls.rows).map(|i| {
                let i = if calls.all_scalar { 0 } else { i };
                row(i).and(n.get(i)).map(|n| n.max(0))
            }))
        })
    };
    if let Some(lengths) = sanitized {
        args[1] = ColumnarValue::Array(Arc::new(lengths));
    }
    Ok(())
}

/// `replace(s, from, to)`: `from` empty: `len(s) + (chars(s) + 1) * len(to)`;
/// else `len(s) + len(s) / len(from) * (len(to) - len(from))` when `to` is longer,
/// `len(s)` otherwise (each replacement grows the text by the difference).
fn replace(calls: &Calls, args: &mut [ColumnarValue]) -> Result<()> {
    let [s, from, to] = args else { return Ok(()) };
    let s = Bytes::new(calls.name, s)?;
    let from = Bytes::new(calls.name, from)?;
    let to = Bytes::new(calls.name, to)?;
    calls.check(|i| {
        let (Some(s), Some(from), Some(to)) = (s.get(i), from.get(i), to.get(i)) else {
            return Ok(0);
        };
        let growth = if from.is_empty() {
            chars(s).saturating_add(1).saturating_mul(byte_len(to))
        } else {
            (byte_len(s) / byte_len(from))
                .saturating_mul(byte_len(to).saturating_sub(byte_len(from)))
        };
        Ok(byte_len(s).saturating_add(growth))
    })
}

/// `regexp_replace(s, re, to [, flags])`: `len(s) + m * len(to) + r * len(s)`, `m`
/// the matches (`chars(s) + 1` when global, else 1), `r` the group references in
/// `to` (each `$` or `\` counts as one), each at most the matched text; matches do
/// not overlap, so the references add at most `r * len(s)`.
fn regexp_replace(calls: &Calls, args: &mut [ColumnarValue]) -> Result<()> {
    if !(3..=4).contains(&args.len()) {
        return Ok(());
    }
    let s = Bytes::new(calls.name, &args[0])?;
    let pattern = Bytes::new(calls.name, &args[1])?;
    let to = Bytes::new(calls.name, &args[2])?;
    let flags = match args.get(3) {
        Some(flags) => Some(Bytes::new(calls.name, flags)?),
        None => None,
    };
    calls.check(|i| {
        let (Some(s), Some(_), Some(to)) = (s.get(i), pattern.get(i), to.get(i)) else {
            return Ok(0);
        };
        // NULL flags: assume global rather than rely on how they are treated.
        let global = flags
            .as_ref()
            .is_some_and(|flags| flags.get(i).is_none_or(|f| f.contains(&b'g')));
        let matches = if global {
            chars(s).saturating_add(1)
        } else {
            1
        };
        let references = to.iter().filter(|&&b| b == b'$' || b == b'\\').count() as u64;
        Ok(byte_len(s)
            .saturating_add(matches.saturating_mul(byte_len(to)))
            .saturating_add(references.saturating_mul(byte_len(s))))
    })
}

/// The elements one row may hold before it exceeds [`MAX_VALUE_BYTES`] at 8 bytes
/// each: counting stops just past it.
const MAX_ELEMENTS: u64 = MAX_VALUE_BYTES / 8;

/// `range`/`generate_series` as scalar functions: 8 bytes per element.
fn range(calls: &Calls, args: &mut [ColumnarValue], include_upper: bool) -> Result<()> {
    if args.iter().any(|arg| arg.data_type().is_null()) {
        return Ok(()); // DataFusion returns NULL
    }
    let Some(first) = args.first() else {
        return Ok(());
    };
    match first.data_type() {
        DataType::Int64
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => {
            let ints = args
                .iter()
                .map(|arg| Ints::new(calls.name, arg))
                .collect::<Result<Vec<_>>>()?;
            calls.check(|i| {
                let (start, stop, step) = match ints.as_slice() {
                    [stop] => (Some(0), stop.get(i), Some(1)),
                    [start, stop] => (start.get(i), stop.get(i), Some(1)),
                    [start, stop, step] => (start.get(i), stop.get(i), step.get(i)),
                    _ => return Ok(0),
                };
                let (Some(start), Some(stop), Some(step)) = (start, stop, step) else {
                    return Ok(0);
                };
                Ok(int_range_len(start, stop, step, include_upper).saturating_mul(8))
            })
        }
        DataType::Date32 | DataType::Date64 => {
            let [start, stop, step] = args else {
                return Ok(());
            };
            let start = Column::new(start, |a| Ok(cast(a, &DataType::Date32)?))?;
            let stop = Column::new(stop, |a| Ok(cast(a, &DataType::Date32)?))?;
            let step = Column::new(step, interval_mdn)?;
            let (starts, stops, steps) = (
                start.array.as_primitive::<Date32Type>(),
                stop.array.as_primitive::<Date32Type>(),
                step.array.as_primitive::<IntervalMonthDayNanoType>(),
            );
            calls.check(|i| {
                let (a, b, c) = (start.index(i), stop.index(i), step.index(i));
                if starts.is_null(a) || stops.is_null(b) || steps.is_null(c) {
                    return Ok(0);
                }
                Ok(date_range_len(
                    starts.value(a),
                    stops.value(b),
                    steps.value(c),
                    include_upper,
                )
                .saturating_mul(8))
            })
        }
        DataType::Timestamp(_, _) => {
            let [start, stop, step] = args else {
                return Ok(());
            };
            let start = Column::new(start, to_nanoseconds)?;
            let stop = Column::new(stop, to_nanoseconds)?;
            let step = Column::new(step, interval_mdn)?;
            let zone = match start.array.data_type() {
                DataType::Timestamp(_, zone) => zone.clone(),
                _ => None,
            };
            let tz: Tz = zone.as_deref().unwrap_or("+00").parse()?;
            let fixed_offset = zone
                .as_deref()
                .is_none_or(|z| z.starts_with('+') || z.starts_with('-'));
            let (starts, stops, steps) = (
                start.array.as_primitive::<TimestampNanosecondType>(),
                stop.array.as_primitive::<TimestampNanosecondType>(),
                step.array.as_primitive::<IntervalMonthDayNanoType>(),
            );
            calls.check(|i| {
                let (a, b, c) = (start.index(i), stop.index(i), step.index(i));
                if starts.is_null(a) || stops.is_null(b) || steps.is_null(c) {
                    return Ok(0);
                }
                Ok(timestamp_range_len(
                    starts.value(a),
                    stops.value(b),
                    steps.value(c),
                    tz,
                    fixed_offset,
                    include_upper,
                )
                .saturating_mul(8))
            })
        }
        other => Err(unsupported(calls.name, &other)),
    }
}

/// An argument as an array (a scalar as one row), converted by `convert`.
struct Column {
    array: ArrayRef,
    scalar: bool,
}

impl Column {
    fn new(arg: &ColumnarValue, convert: impl Fn(&ArrayRef) -> Result<ArrayRef>) -> Result<Column> {
        let (array, scalar) = match arg {
            ColumnarValue::Scalar(s) => (scalar_array(s)?, true),
            ColumnarValue::Array(a) => (Arc::clone(a), false),
        };
        Ok(Column {
            array: convert(&array)?,
            scalar,
        })
    }

    fn index(&self, i: usize) -> usize {
        if self.scalar {
            0
        } else {
            i
        }
    }
}

/// A scalar as a one-row array; list-like scalars already hold one.
fn scalar_array(s: &ScalarValue) -> Result<ArrayRef> {
    Ok(match s {
        ScalarValue::List(a) => Arc::clone(a) as ArrayRef,
        ScalarValue::LargeList(a) => Arc::clone(a) as ArrayRef,
        ScalarValue::FixedSizeList(a) => Arc::clone(a) as ArrayRef,
        ScalarValue::Map(a) => Arc::clone(a) as ArrayRef,
        ScalarValue::Struct(a) => Arc::clone(a) as ArrayRef,
        other => other.to_array_of_size(1)?,
    })
}

fn interval_mdn(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(a, &DataType::Interval(IntervalUnit::MonthDayNano))?)
}

fn to_nanoseconds(a: &ArrayRef) -> Result<ArrayRef> {
    match a.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Ok(Arc::clone(a)),
        DataType::Timestamp(_, zone) => Ok(cast(
            a,
            &DataType::Timestamp(TimeUnit::Nanosecond, zone.clone()),
        )?),
        other => Err(unsupported("range", other)),
    }
}

/// The elements of an integer `range`/`generate_series`, as DataFusion counts them.
fn int_range_len(start: i64, stop: i64, step: i64, include_upper: bool) -> u64 {
    if !include_upper && start == stop {
        return 0;
    }
    let limit = match step.signum() {
        0 => return 0, // DataFusion fails
        1 if include_upper => stop,
        1 => stop.saturating_sub(1),
        _ if include_upper => stop,
        _ => stop.saturating_add(1),
    };
    if (step > 0 && start > limit) || (step < 0 && start < limit) {
        return 0;
    }
    (start.abs_diff(limit) / step.unsigned_abs()).saturating_add(1)
}

/// Whether a series moving down (`negative`) or up has passed `stop`.
fn past(current: i64, stop: i64, negative: bool, include_upper: bool) -> bool {
    match (negative, include_upper) {
        (true, true) => current < stop,
        (false, true) => current > stop,
        (true, false) => current <= stop,
        (false, false) => current >= stop,
    }
}

/// The elements of a series from `start` to `stop` (not past it yet) whose every
/// step moves by `least..=most`, if that bound is known: the series moves the
/// way it ends (as DataFusion decides from `negative`) by at least `least`.
fn stepped_len(
    start: i64,
    stop: i64,
    (least, most): (i128, i128),
    negative: bool,
    include_upper: bool,
) -> Option<u64> {
    let step = match negative {
        false if least > 0 => least,
        true if most < 0 => -most,
        _ => return None,
    };
    let span = (i128::from(stop) - i128::from(start)).abs();
    let count = if include_upper {
        span / step + 1
    } else {
        (span - 1) / step + 1
    };
    Some(u64::try_from(count).unwrap_or(u64::MAX))
}

/// The elements of a series that cannot be bounded up front: steps through it
/// like DataFusion does, stopping just past [`MAX_ELEMENTS`] or at a step that
/// goes nowhere (DataFusion would repeat it forever).
fn walked_len(
    start: i64,
    stop: i64,
    negative: bool,
    include_upper: bool,
    mut step: impl FnMut(i64) -> Option<i64>,
) -> u64 {
    let mut count = 0;
    let mut current = start;
    while !past(current, stop, negative, include_upper) {
        count += 1;
        if count > MAX_ELEMENTS {
            break;
        }
        match step(current) {
            Some(next) if next == current => return MAX_ELEMENTS + 1,
            Some(next) => current = next,
            None => break,
        }
    }
    count
}

const NANOS_PER_DAY: i128 = 86_400_000_000_000;

/// How far a step of `months` and `days` moves, in days: a month is 28 to 31 days.
fn calendar_days(months: i32, days: i32) -> (i128, i128) {
    let (months, days) = (i128::from(months), i128::from(days));
    if months >= 0 {
        (months * 28 + days, months * 31 + days)
    } else {
        (months * 31 + days, months * 28 + days)
    }
}

/// The elements of a date series: DataFusion adds months, days, then the whole
/// days in the nanoseconds, until past `stop` (for `range`, past `stop - step`).
fn date_range_len(start: i32, stop: i32, step: IntervalMonthDayNano, include_upper: bool) -> u64 {
    let (months, days, nanos) = IntervalMonthDayNanoType::to_parts(step);
    if months == 0 && days == 0 {
        return 0; // DataFusion fails
    }
    let stop = if include_upper {
        stop
    } else {
        match Date32Type::subtract_month_day_nano_opt(stop, step) {
            Some(stop) => stop,
            None => return 0, // DataFusion fails
        }
    };
    let (start, stop) = (i64::from(start), i64::from(stop));
    let negative = months < 0 || days < 0;
    if past(start, stop, negative, true) {
        return 0;
    }
    let (least, most) = calendar_days(months, days);
    let whole_days = i128::from(nanos) / NANOS_PER_DAY;
    let moves = (least + whole_days, most + whole_days);
    if let Some(count) = stepped_len(start, stop, moves, negative, true) {
        if count <= MAX_ELEMENTS {
            return count;
        }
    }
    walked_len(start, stop, negative, true, |current| {
        let next = Date32Type::add_month_day_nano_opt(i32::try_from(current).ok()?, step)?;
        Some(i64::from(next))
    })
}

/// The elements of a timestamp series, stepping in the zone `tz` until past
/// `stop`: bounded up front when days are 24 hours long (a fixed-offset zone, or
/// a step of nanoseconds only), else by stepping through.
fn timestamp_range_len(
    start: i64,
    stop: i64,
    step: IntervalMonthDayNano,
    tz: Tz,
    fixed_offset: bool,
    include_upper: bool,
) -> u64 {
    let (months, days, nanos) = IntervalMonthDayNanoType::to_parts(step);
    if months == 0 && days == 0 && nanos == 0 {
        return 0; // DataFusion fails
    }
    let Some(next) = TimestampNanosecondType::add_month_day_nano(start, step, tz) else {
        return 0; // DataFusion fails
    };
    let negative = next < start;
    if past(start, stop, negative, include_upper) {
        return 0;
    }
    if fixed_offset || (months == 0 && days == 0) {
        let (least, most) = calendar_days(months, days);
        let nanos = i128::from(nanos);
        let moves = (least * NANOS_PER_DAY + nanos, most * NANOS_PER_DAY + nanos);
        if let Some(count) = stepped_len(start, stop, moves, negative, include_upper) {
            // Exact for nanoseconds only: DataFusion would make them all.
            if count <= MAX_ELEMENTS || (months == 0 && days == 0) {
                return count;
            }
        }
    }
    walked_len(start, stop, negative, include_upper, |current| {
        TimestampNanosecondType::add_month_day_nano(current, step, tz)
    })
}

/// Bytes of one row of a (scalar or array) argument, see [`row_sizes`].
enum Sizes {
    Scalar(u64),
    Rows(Vec<u64>),
}

impl Sizes {
    fn new(arg: &ColumnarValue) -> Sizes {
        match arg {
            ColumnarValue::Scalar(s) => Sizes::Scalar(s.size() as u64),
            ColumnarValue::Array(a) => Sizes::Rows(row_sizes(a.as_ref())),
        }
    }

    fn get(&self, i: usize) -> u64 {
        match self {
            Sizes::Scalar(size) => *size,
            Sizes::Rows(sizes) => sizes.get(i).copied().unwrap_or(0),
        }
    }
}

/// `array_repeat(x, n)`: `max(n, 0) * (8 + size(x))` (a NULL `x` repeats too).
fn array_repeat(calls: &Calls, args: &mut [ColumnarValue]) -> Result<()> {
    let [x, n] = args else { return Ok(()) };
    let (x, n) = (Sizes::new(x), Ints::new(calls.name, n)?);
    calls.check(|i| {
        Ok(n.get(i).map_or(0, |n| {
            non_negative(n).saturating_mul(ELEMENT_OVERHEAD.saturating_add(x.get(i)))
        }))
    })
}

/// `array_resize(a, n [, fill])`: `size(a) + max(n, 0) * (8 + size(fill))`.
fn array_resize(calls: &Calls, args: &mut [ColumnarValue]) -> Result<()> {
    if !(2..=3).contains(&args.len()) {
        return Ok(());
    }
    let list = Column::new(&args[0], |a| Ok(Arc::clone(a)))?;
    let list_sizes = row_sizes(list.array.as_ref());
    let n = Ints::new(calls.name, &args[1])?;
    let element_width = match list.array.data_type() {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            f.data_type().primitive_width().unwrap_or(16) as u64
        }
        _ => 16,
    };
    let fill = args.get(2).map(Sizes::new);
    calls.check(|i| {
        let row = list.index(i);
        if is_null_row(list.array.as_ref(), row) {
            return Ok(0);
        }
        let Some(n) = n.get(i) else { return Ok(0) };
        let fill = fill.as_ref().map_or(element_width, |fill| fill.get(i));
        Ok(list_sizes
            .get(row)
            .copied()
            .unwrap_or(0)
            .saturating_add(non_negative(n).saturating_mul(ELEMENT_OVERHEAD.saturating_add(fill))))
    })
}

/// `array_replace*(a, from, to [, max])`: `size(a) + k * (8 + size(to))`, `k` the
/// elements of `a` replaced at most.
fn array_replace(calls: &Calls, args: &mut [ColumnarValue], max: ReplaceMax) -> Result<()> {
    if args.len() < 3 {
        return Ok(());
    }
    let list = Column::new(&args[0], |a| Ok(Arc::clone(a)))?;
    let list_sizes = row_sizes(list.array.as_ref());
    let lengths = list_lengths(list.array.as_ref());
    let to = Sizes::new(&args[2]);
    let most = match (max, args.get(3)) {
        (ReplaceMax::Argument, Some(n)) => Some(Ints::new(calls.name, n)?),
        _ => None,
    };
    calls.check(|i| {
        let row = list.index(i);
        if is_null_row(list.array.as_ref(), row) {
            return Ok(0);
        }
        let elements = lengths.get(row).copied().unwrap_or(0);
        let replaced = match (max, &most) {
            (ReplaceMax::One, _) => elements.min(1),
            (ReplaceMax::All, _) | (ReplaceMax::Argument, None) => elements,
            (ReplaceMax::Argument, Some(most)) => match most.get(i) {
                Some(most) => elements.min(non_negative(most)),
                None => return Ok(0),
            },
        };
        Ok(list_sizes
            .get(row)
            .copied()
            .unwrap_or(0)
            .saturating_add(replaced.saturating_mul(ELEMENT_OVERHEAD.saturating_add(to.get(i)))))
    })
}

/// `array_to_string(a, delim [, null_str])`: the text of the (flattened) elements,
/// plus `len(delim) + len(null_str)` per element.
fn array_to_string(calls: &Calls, args: &mut [ColumnarValue]) -> Result<()> {
    if !(2..=3).contains(&args.len()) {
        return Ok(());
    }
    let list = Column::new(&args[0], |a| Ok(Arc::clone(a)))?;
    let Some((ranges, child)) = list_ranges(list.array.as_ref()) else {
        return Ok(()); // not a list: DataFusion fails or returns NULL
    };
    let texts = text_sizes(child.as_ref())?;
    let delimiter = Bytes::new(calls.name, &args[1])?;
    let null_string = match args.get(2) {
        Some(arg) => Some(Bytes::new(calls.name, arg)?),
        None => None,
    };
    calls.check(|i| {
        let row = list.index(i);
        if is_null_row(list.array.as_ref(), row) {
            return Ok(0);
        }
        let Some(delimiter) = delimiter.get(i) else {
            return Ok(0);
        };
        let null_string = null_string
            .as_ref()
            .and_then(|n| n.get(i))
            .map_or(0, byte_len);
        let (start, end) = ranges.get(row).copied().unwrap_or((0, 0));
        let (parts, text) = texts
            .get(start..end)
            .unwrap_or(&[])
            .iter()
            .fold((0u64, 0u64), |(parts, text), &(p, t)| {
                (parts.saturating_add(p), text.saturating_add(t))
            });
        Ok(text
            .saturating_add(parts.saturating_mul(byte_len(delimiter).saturating_add(null_string))))
    })
}

/// Whether row `i` of `array` is NULL (every row of an array of type Null is).
fn is_null_row(array: &dyn Array, i: usize) -> bool {
    array.data_type().is_null() || array.is_null(i)
}

/// Each row's range from consecutive offsets.
fn windows<O: OffsetSizeTrait>(offsets: &[O]) -> Vec<(usize, usize)> {
    offsets
        .windows(2)
        .map(|w| (w[0].as_usize(), w[1].as_usize()))
        .collect()
}

/// For a list-like array: each row's range in its child, and the child.
fn list_ranges(array: &dyn Array) -> Option<(Vec<(usize, usize)>, ArrayRef)> {
    fn views<O: OffsetSizeTrait>(offsets: &[O], sizes: &[O]) -> Vec<(usize, usize)> {
        offsets
            .iter()
            .zip(sizes)
            .map(|(o, s)| (o.as_usize(), o.as_usize().saturating_add(s.as_usize())))
            .collect()
    }
    Some(match array.data_type() {
        DataType::List(_) => {
            let a = array.as_list::<i32>();
            (windows(a.value_offsets()), Arc::clone(a.values()))
        }
        DataType::LargeList(_) => {
            let a = array.as_list::<i64>();
            (windows(a.value_offsets()), Arc::clone(a.values()))
        }
        DataType::ListView(_) => {
            let a = array.as_list_view::<i32>();
            (views(a.offsets(), a.sizes()), Arc::clone(a.values()))
        }
        DataType::LargeListView(_) => {
            let a = array.as_list_view::<i64>();
            (views(a.offsets(), a.sizes()), Arc::clone(a.values()))
        }
        DataType::FixedSizeList(_, n) => {
            let a = array.as_fixed_size_list();
            let n = (*n).max(0) as usize;
            let ranges = (0..a.len()).map(|i| (i * n, (i + 1) * n)).collect();
            (ranges, Arc::clone(a.values()))
        }
        DataType::Map(_, _) => {
            let a = array.as_map();
            (
                windows(a.value_offsets()),
                Arc::new(a.entries().clone()) as ArrayRef,
            )
        }
        _ => return None,
    })
}

/// Elements in each row of a list-like array (0 for other arrays).
fn list_lengths(array: &dyn Array) -> Vec<u64> {
    match list_ranges(array) {
        Some((ranges, _)) => ranges
            .iter()
            .map(|&(start, end)| end.saturating_sub(start) as u64)
            .collect(),
        None => vec![0; array.len()],
    }
}

/// Sums `sizes` (plus `overhead` each) over each range.
fn sum_ranges(ranges: &[(usize, usize)], sizes: &[u64], overhead: u64) -> Vec<u64> {
    ranges
        .iter()
        .map(|&(start, end)| {
            sizes
                .get(start..end)
                .unwrap_or(&[])
                .iter()
                .fold(0u64, |acc, &s| {
                    acc.saturating_add(s.saturating_add(overhead))
                })
        })
        .collect()
}

/// A bound of the bytes each row of `array` takes when copied: fixed widths,
/// string lengths, the sum over list elements plus 8 each, the sum over struct
/// fields; for types without a cheaper bound, the whole array's memory.
fn row_sizes(array: &dyn Array) -> Vec<u64> {
    let rows = array.len();
    let lengths = |offsets: Vec<(usize, usize)>| -> Vec<u64> {
        offsets
            .into_iter()
            .map(|(start, end)| end.saturating_sub(start) as u64)
            .collect()
    };
    match array.data_type() {
        DataType::Null => vec![0; rows],
        DataType::Boolean => vec![1; rows],
        DataType::FixedSizeBinary(width) => vec![(*width).max(0) as u64; rows],
        DataType::Utf8 => lengths(windows(array.as_string::<i32>().value_offsets())),
        DataType::LargeUtf8 => lengths(windows(array.as_string::<i64>().value_offsets())),
        DataType::Binary => lengths(windows(array.as_binary::<i32>().value_offsets())),
        DataType::LargeBinary => lengths(windows(array.as_binary::<i64>().value_offsets())),
        DataType::Utf8View => array
            .as_string_view()
            .lengths()
            .map(|l| l as u64 + 16)
            .collect(),
        DataType::BinaryView => array
            .as_binary_view()
            .lengths()
            .map(|l| l as u64 + 16)
            .collect(),
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::ListView(_)
        | DataType::LargeListView(_)
        | DataType::FixedSizeList(_, _)
        | DataType::Map(_, _) => match list_ranges(array) {
            Some((ranges, child)) => {
                sum_ranges(&ranges, &row_sizes(child.as_ref()), ELEMENT_OVERHEAD)
            }
            None => vec![array.get_array_memory_size() as u64; rows],
        },
        DataType::Struct(_) => {
            let mut sizes = vec![0u64; rows];
            for column in array.as_struct().columns() {
                for (size, field) in sizes.iter_mut().zip(row_sizes(column.as_ref())) {
                    *size = size.saturating_add(field);
                }
            }
            sizes
        }
        DataType::Dictionary(key, _) => {
            let dictionary = array.as_any_dictionary();
            let values = row_sizes(dictionary.values().as_ref());
            let key = key.primitive_width().unwrap_or(8) as u64;
            dictionary
                .normalized_keys()
                .into_iter()
                .map(|k| key.saturating_add(values.get(k).copied().unwrap_or(0)))
                .collect()
        }
        other => match other.primitive_width() {
            Some(width) => vec![width as u64; rows],
            None => vec![array.get_array_memory_size() as u64; rows],
        },
    }
}

/// For each element of `array` as `array_to_string` prints it inside a list: the
/// parts it prints (each preceded by a delimiter, NULLs printed as the null string)
/// and a bound of their text.
fn text_sizes(array: &dyn Array) -> Result<Vec<(u64, u64)>> {
    let rows = array.len();
    match array.data_type() {
        DataType::Null => Ok(vec![(0, 0); rows]),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            let Some((ranges, child)) = list_ranges(array) else {
                return Ok(vec![(0, 0); rows]);
            };
            let children = text_sizes(child.as_ref())?;
            Ok(ranges
                .iter()
                .enumerate()
                .map(|(i, &(start, end))| {
                    if array.is_null(i) {
                        return (1, 0);
                    }
                    children
                        .get(start..end)
                        .unwrap_or(&[])
                        .iter()
                        .fold((0u64, 0u64), |(parts, text), &(p, t)| {
                            (parts.saturating_add(p), text.saturating_add(t))
                        })
                })
                .collect())
        }
        DataType::Dictionary(_, _) => {
            let dictionary = array.as_any_dictionary();
            let values = text_sizes(dictionary.values().as_ref())?;
            Ok(dictionary
                .normalized_keys()
                .into_iter()
                .enumerate()
                .map(|(i, k)| {
                    if array.is_null(i) {
                        (1, 0)
                    } else {
                        values.get(k).copied().unwrap_or((1, 0))
                    }
                })
                .collect())
        }
        data_type => {
            let per_value: Option<u64> = match data_type {
                DataType::Boolean => Some(5),
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64 => Some(20),
                DataType::Float16 | DataType::Float32 | DataType::Float64 => Some(350),
                DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::FixedSizeBinary(_) => None,
                other if other.primitive_width().is_some() => Some(128),
                _ => None,
            };
            let text: Vec<u64> = match per_value {
                Some(bytes) => vec![bytes; rows],
                None => match data_type {
                    DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Binary
                    | DataType::LargeBinary
                    | DataType::BinaryView
                    | DataType::FixedSizeBinary(_) => row_sizes(array),
                    // Structs, maps and the like print through a cast to text.
                    _ => row_sizes(array)
                        .into_iter()
                        .map(|s| s.saturating_mul(8).saturating_add(128))
                        .collect(),
                },
            };
            Ok(text
                .into_iter()
                .enumerate()
                .map(|(i, t)| if array.is_null(i) { (1, 0) } else { (1, t) })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;

    use super::*;

    fn session() -> SessionContext {
        let ctx = SessionContext::new();
        register(&ctx);
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
        ctx.sql(sql).await?.collect().await
    }

    /// The single value of a one-row, one-column result, as text.
    async fn value(ctx: &SessionContext, sql: &str) -> String {
        let batches = run(ctx, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let batch = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .unwrap_or_else(|| panic!("{sql}: no rows"));
        assert_eq!(batch.num_rows(), 1, "{sql}");
        let column = cast(batch.column(0), &DataType::Utf8).unwrap();
        let column = column.as_string::<i32>();
        if column.is_null(0) {
            "NULL".to_string()
        } else {
            column.value(0).to_string()
        }
    }

    /// Asserts `sql` fails with our limit error naming `function`.
    async fn refused(ctx: &SessionContext, sql: &str, function: &str) -> String {
        let error = match run(ctx, sql).await {
            Ok(batches) => panic!(
                "{sql} was not refused:\n{}",
                pretty_format_batches(&batches).unwrap()
            ),
            Err(e) => e,
        };
        let root = error.find_root();
        assert!(
            matches!(root, DataFusionError::ResourcesExhausted(_)),
            "{sql}: {error}"
        );
        let message = root.to_string();
        assert!(
            message.contains(&format!("{function} would produce")),
            "{sql}: {message}"
        );
        assert!(
            message.contains(&MAX_VALUE_BYTES.to_string())
                || message.contains(&MAX_CALL_BYTES.to_string()),
            "{sql}: {message}"
        );
        message
    }

    #[tokio::test]
    async fn hostile_calls_are_refused_before_allocating() {
        let ctx = session();
        let message = refused(&ctx, "SELECT repeat('x', 2000000000)", "repeat").await;
        assert!(
            message.contains("repeat would produce 2000000000 bytes in one value, more than the 67108864 allowed"),
            "{message}"
        );
        refused(&ctx, "SELECT lpad('a', 2000000000)", "lpad").await;
        refused(&ctx, "SELECT rpad('a', 2000000000, 'xy')", "rpad").await;
        refused(&ctx, "SELECT lpad('a', 20000000, 'é')", "lpad").await;
        refused(
            &ctx,
            "SELECT replace(repeat('x', 100000), '', repeat('y', 1000))",
            "replace",
        )
        .await;
        refused(
            &ctx,
            "SELECT replace(replace(repeat('x', 10000), 'x', repeat('y', 10000)), 'y', repeat('z', 10000))",
            "replace",
        )
        .await;
        refused(
            &ctx,
            "SELECT regexp_replace(repeat('x', 100000), '', repeat('y', 1000), 'g')",
            "regexp_replace",
        )
        .await;
        refused(
            &ctx,
            "SELECT regexp_replace(repeat('x', 10000000), '(.*)', repeat('$1', 10))",
            "regexp_replace",
        )
        .await;
        refused(&ctx, "SELECT range(1, 1000000000)", "range").await;
        refused(
            &ctx,
            "SELECT generate_series(1, 1000000000)",
            "generate_series",
        )
        .await;
        refused(&ctx, "SELECT range(1000000000)", "range").await;
        refused(
            &ctx,
            "SELECT generate_series(-9223372036854775807, 9223372036854775807, 1)",
            "generate_series",
        )
        .await;
        refused(&ctx, "SELECT unnest(range(1, 1000000000)) LIMIT 1", "range").await;
        refused(&ctx, "SELECT array_repeat(1, 1000000000)", "array_repeat").await;
        refused(
            &ctx,
            "SELECT array_repeat(NULL, 1000000000)",
            "array_repeat",
        )
        .await;
        refused(
            &ctx,
            "SELECT array_repeat(make_array(1, 2, 3), 10000000)",
            "array_repeat",
        )
        .await;
        refused(
            &ctx,
            "SELECT array_resize(make_array(1), 1000000000)",
            "array_resize",
        )
        .await;
        refused(
            &ctx,
            "SELECT array_replace_all(array_repeat('a', 1000), 'a', repeat('b', 1000000))",
            "array_replace_all",
        )
        .await;
        refused(
            &ctx,
            "SELECT array_to_string(array_repeat(1, 1000), repeat(',', 1000000))",
            "array_to_string",
        )
        .await;
    }

    #[tokio::test]
    async fn bounded_date_and_timestamp_series() {
        let ctx = session();
        assert_eq!(
            value(
                &ctx,
                "SELECT cardinality(range(DATE '2020-01-01', DATE '2020-01-11', INTERVAL '1 day'))"
            )
            .await,
            "10"
        );
        assert_eq!(
            value(&ctx, "SELECT cardinality(generate_series(DATE '2020-01-31', DATE '2020-12-31', INTERVAL '1 month'))").await,
            "12"
        );
        assert_eq!(
            value(&ctx, "SELECT cardinality(generate_series(TIMESTAMP '2020-01-01 00:00:00', TIMESTAMP '2020-01-02 00:00:00', INTERVAL '1 hour'))").await,
            "25"
        );
        assert_eq!(
            value(&ctx, "SELECT cardinality(range(TIMESTAMP '2020-01-02 00:00:00', TIMESTAMP '2020-01-01 00:00:00', INTERVAL '-1 hour'))").await,
            "24"
        );
        assert_eq!(
            value(&ctx, "SELECT cardinality(generate_series(arrow_cast(TIMESTAMP '2020-03-01 00:00:00', 'Timestamp(Nanosecond, Some(\"Europe/Paris\"))'), arrow_cast(TIMESTAMP '2020-04-01 00:00:00', 'Timestamp(Nanosecond, Some(\"Europe/Paris\"))'), INTERVAL '1 day'))").await,
            "32"
        );
        refused(
            &ctx,
            "SELECT generate_series(TIMESTAMP '1970-01-01 00:00:00', TIMESTAMP '2200-01-01 00:00:00', INTERVAL '1 second')",
            "generate_series",
        )
        .await;
        // A step that returns to where it started would never end.
        refused(
            &ctx,
            "SELECT generate_series(DATE '2021-01-01', DATE '2020-01-01', INTERVAL '1 month -31 days')",
            "generate_series",
        )
        .await;
        refused(
            &ctx,
            "SELECT generate_series(arrow_cast(TIMESTAMP '2020-01-01 00:00:00', 'Timestamp(Nanosecond, Some(\"Europe/Paris\"))'), arrow_cast(TIMESTAMP '2021-01-01 00:00:00', 'Timestamp(Nanosecond, Some(\"Europe/Paris\"))'), INTERVAL '1 month -31 days')",
            "generate_series",
        )
        .await;
    }

    #[tokio::test]
    async fn normal_inputs_give_the_usual_answers() {
        let ctx = session();
        let cases = [
            ("SELECT repeat('ab', 3)", "ababab"),
            ("SELECT repeat('ab', -1)", ""),
            ("SELECT lpad('hi', 5)", "   hi"),
            ("SELECT lpad('hi', 5, 'xy')", "xyxhi"),
            ("SELECT lpad('hello', 3, 'xy')", "hel"),
            ("SELECT lpad('hi', -2, 'xy')", ""),
            ("SELECT rpad('hi', 5)", "hi   "),
            ("SELECT rpad('hi', 5, 'é')", "hiééé"),
            ("SELECT replace('aabbcc', 'bb', 'X')", "aaXcc"),
            ("SELECT replace('abc', '', 'X')", "abc"),
            (
                "SELECT regexp_replace('foobarbaz', 'b(..)', 'X\\1Y', 'g')",
                "fooXarYXazY",
            ),
            ("SELECT regexp_replace('aaa', 'a', 'b')", "baa"),
            ("SELECT range(1, 5)", "[1, 2, 3, 4]"),
            ("SELECT range(3)", "[0, 1, 2]"),
            ("SELECT range(5, 1, -2)", "[5, 3]"),
            ("SELECT generate_series(1, 3)", "[1, 2, 3]"),
            ("SELECT array_repeat(1, 3)", "[1, 1, 1]"),
            ("SELECT array_repeat('ab', 2)", "[ab, ab]"),
            (
                "SELECT array_repeat(make_array(1, 2), 2)",
                "[[1, 2], [1, 2]]",
            ),
            (
                "SELECT array_resize(make_array(1, 2), 4, 0)",
                "[1, 2, 0, 0]",
            ),
            ("SELECT array_resize(make_array(1, 2, 3), 1)", "[1]"),
            (
                "SELECT array_replace_all(make_array(1, 2, 1), 1, 9)",
                "[9, 2, 9]",
            ),
            (
                "SELECT array_replace_n(make_array(1, 1, 1), 1, 9, 2)",
                "[9, 9, 1]",
            ),
            ("SELECT array_replace(make_array(1, 1), 1, 9)", "[9, 1]"),
            ("SELECT array_to_string(make_array(1, 2, 3), ',')", "1,2,3"),
            (
                "SELECT array_to_string(make_array('a', NULL, 'c'), '-', 'N')",
                "a-N-c",
            ),
            ("SELECT count(*) FROM generate_series(1, 100000)", "100000"),
            ("SELECT count(*) FROM range(1, 1000000)", "999999"),
            ("SELECT cardinality(range(1, 1000000))", "999999"),
            ("SELECT length(repeat('x', 1000000))", "1000000"),
        ];
        let plain = SessionContext::new();
        for (sql, expected) in cases {
            assert_eq!(value(&ctx, sql).await, expected, "{sql}");
            assert_eq!(
                value(&plain, sql).await,
                expected,
                "{sql} without the wrappers"
            );
        }
        // The wrappers keep names, aliases and documentation.
        assert_eq!(value(&ctx, "SELECT list_repeat(7, 2)").await, "[7, 7]");
        let repeat = ctx.udf("repeat").unwrap();
        assert!(repeat.inner().is::<Bounded>());
        assert!(repeat.documentation().is_some());
        assert_eq!(repeat.name(), "repeat");
        register(&ctx); // twice: still one wrapper
        assert!(!ctx
            .udf("repeat")
            .unwrap()
            .inner()
            .downcast_ref::<Bounded>()
            .unwrap()
            .inner
            .is::<Bounded>());
    }

    #[tokio::test]
    async fn series_with_uneven_steps_match_datafusion() {
        let ctx = session();
        let plain = SessionContext::new();
        let paris = |ts: &str| {
            format!("arrow_cast(TIMESTAMP '{ts}', 'Timestamp(Nanosecond, Some(\"Europe/Paris\"))')")
        };
        let queries = [
            "SELECT generate_series(DATE '2021-12-31', DATE '2020-01-31', INTERVAL '-1 month 1 day')".to_string(),
            "SELECT range(DATE '2021-12-31', DATE '2020-01-31', INTERVAL '-1 month 2 days')".to_string(),
            "SELECT generate_series(DATE '2020-01-01', DATE '2020-03-01', INTERVAL '1 day 36 hours')".to_string(),
            "SELECT range(TIMESTAMP '2020-01-31 12:00:00', TIMESTAMP '2021-01-01 00:00:00', INTERVAL '1 month -1 day 3 hours')".to_string(),
            format!(
                "SELECT generate_series({}, {}, INTERVAL '1 month -1 day')",
                paris("2020-01-31 00:00:00"),
                paris("2021-01-01 00:00:00")
            ),
            format!(
                "SELECT range({}, {}, INTERVAL '-1 day')",
                paris("2020-11-01 00:00:00"),
                paris("2020-09-01 00:00:00")
            ),
        ];
        for sql in &queries {
            let expected = value(&plain, sql).await;
            assert_ne!(expected, "[]", "{sql}");
            assert_eq!(value(&ctx, sql).await, expected, "{sql}");
        }
    }

    #[tokio::test]
    async fn plans_are_unchanged() {
        let ctx = session();
        let plain = SessionContext::new();
        table(&ctx, 10, 3, true);
        table(&plain, 10, 3, true);
        for sql in [
            "SELECT repeat(s, n), lpad(s, n + 2), rpad(s, 4, f), replace(s, 'a', f) FROM t",
            "SELECT regexp_replace(s, 'a+', 'x', 'g'), range(n), generate_series(1, n) FROM t",
            "SELECT array_repeat(s, n), array_resize(range(n), 5, 0), \
             array_replace_all(range(n), 1, 7), array_to_string(range(n), f) FROM t \
             WHERE repeat(s, 2) = 'abab' ORDER BY lpad(s, 3)",
            "SELECT repeat('ab', 3), list_repeat(1, 2), range(1, 4)",
        ] {
            let plan = |ctx: &SessionContext| {
                let ctx = ctx.clone();
                async move {
                    let frame = ctx.sql(sql).await.unwrap();
                    let schema = frame.schema().clone();
                    let plan = frame.into_optimized_plan().unwrap();
                    let text = plan.display_indent_schema().to_string();
                    (schema, text)
                }
            };
            assert_eq!(plan(&ctx).await, plan(&plain).await, "{sql}");
        }
    }

    #[tokio::test]
    async fn null_arguments_give_null() {
        let ctx = session();
        for sql in [
            "SELECT repeat(NULL, 2000000000)",
            "SELECT repeat('x', NULL)",
            "SELECT lpad(NULL, 2000000000)",
            "SELECT lpad('x', NULL)",
            "SELECT rpad('x', 2000000000, NULL)",
            "SELECT replace(NULL, '', repeat('y', 1000))",
            "SELECT replace(repeat('x', 100000), NULL, repeat('y', 1000))",
            "SELECT regexp_replace(NULL, '', 'y', 'g')",
            "SELECT range(NULL)",
            "SELECT generate_series(1, NULL)",
            "SELECT array_repeat(1, NULL)",
            "SELECT array_resize(make_array(1), NULL)",
            "SELECT array_to_string(CASE WHEN false THEN make_array(1) END, ',')",
            "SELECT array_to_string(make_array(1), NULL)",
        ] {
            assert_eq!(value(&ctx, sql).await, "NULL", "{sql}");
        }
    }

    /// A table `t(s, n, f)` of `rows` rows: `s` a short string, `n` = `n`, `f` a fill.
    fn table(ctx: &SessionContext, rows: usize, n: i64, nulls: bool) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("f", DataType::Utf8, true),
        ]));
        let s = StringArray::from_iter((0..rows).map(|i| (!nulls || i % 2 == 0).then_some("ab")));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(s),
                Arc::new(Int64Array::from(vec![n; rows])),
                Arc::new(StringArray::from(vec!["-"; rows])),
            ],
        )
        .unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.deregister_table("t").unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
    }

    #[tokio::test]
    async fn column_arguments_are_limited_per_call() {
        let ctx = session();
        // 4096 rows of 2 * 40000 bytes = 312 MiB in one call: refused, though each
        // value (78 KiB) is small.
        table(&ctx, 4096, 40_000, false);
        let message = refused(&ctx, "SELECT repeat(s, n) FROM t", "repeat").await;
        assert!(message.contains("in one call"), "{message}");
        assert!(message.contains(&MAX_CALL_BYTES.to_string()), "{message}");
        refused(&ctx, "SELECT lpad(s, n * 2) FROM t", "lpad").await;
        refused(&ctx, "SELECT cardinality(range(n * 2)) FROM t", "range").await;
        refused(&ctx, "SELECT array_repeat(s, n * 5) FROM t", "array_repeat").await;
        // The same rows asking for less pass: 4096 * 2 * 10000 = 78 MiB.
        table(&ctx, 4096, 10_000, false);
        assert_eq!(
            value(&ctx, "SELECT sum(length(repeat(s, n))) FROM t").await,
            (4096 * 2 * 10_000).to_string()
        );
        assert_eq!(
            value(&ctx, "SELECT sum(length(lpad(s, n, f))) FROM t").await,
            (4096 * 10_000).to_string()
        );
        assert_eq!(
            value(&ctx, "SELECT sum(cardinality(range(n / 4))) FROM t").await,
            (4096 * 2_500).to_string()
        );
        // A scalar broadcast to every row counts too.
        refused(
            &ctx,
            "SELECT array_repeat(repeat('x', 1000000), n - n) FROM t",
            "array_repeat",
        )
        .await;
    }

    #[tokio::test]
    async fn pad_lengths_of_null_or_negative_rows_do_not_reserve() {
        let ctx = session();
        // Half the strings are NULL; their requested lengths must not be reserved.
        table(&ctx, 4096, 60_000, true);
        assert_eq!(
            value(&ctx, "SELECT sum(length(lpad(s, n, f))) FROM t").await,
            (2048 * 60_000).to_string()
        );
        // A negative length with a column fill: '' (DataFusion would reserve usize::MAX).
        table(&ctx, 3, -1, false);
        assert_eq!(
            value(&ctx, "SELECT max(length(lpad(s, n, f))) FROM t").await,
            "0"
        );
        assert_eq!(
            value(&ctx, "SELECT max(length(rpad('abc', -5, f))) FROM t").await,
            "0"
        );
    }
}
