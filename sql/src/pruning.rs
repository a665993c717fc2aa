//! Hidden partitioning: a filter on `event_time` prunes the `event_date`/`event_hour`
//! partitions by itself, without the user writing partition columns.
//!
//! [`HiddenPartitioning`] wraps an event table's provider. For each pushed-down filter
//! that bounds `event_time` by a constant (after DataFusion folded `now() - interval
//! '1 hour'` and friends into literals), it adds the partition bounds the filter
//! implies, which Delta uses to skip whole partitions before listing a file.
//!
//! A partition bound is only added when every row the filter accepts lies inside it,
//! so pruning never changes a result. The filter must compare `event_time`, or a chain
//! of casts of it to UTC timestamps (any unit) or dates, with a constant: each such
//! cast is a known non-decreasing function of the instant, whose inverse turns the
//! compared constant into an exact bound on `event_time`. Anything else (casts to
//! strings, integers or other time zones, functions such as `date_trunc`, `<>`, `OR`,
//! `NOT`) adds nothing and is simply evaluated on every partition.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::{
    col, lit, Between, BinaryExpr, Expr, LogicalPlan, Operator, TableProviderFilterPushDown,
};
use datafusion::physical_plan::ExecutionPlan;
use hourlake_catalog::partition::date_and_hour;
use hourlake_catalog::schema::{EVENT_DATE, EVENT_HOUR};

/// The column whose bounds become partition bounds.
pub const EVENT_TIME: &str = "event_time";

/// An event table whose `event_time` filters also prune its hour partitions.
#[derive(Debug)]
pub struct HiddenPartitioning {
    inner: Arc<dyn TableProvider>,
}

impl HiddenPartitioning {
    /// Wraps `inner`, an event table partitioned by `event_date`, `event_hour`.
    pub fn new(inner: Arc<dyn TableProvider>) -> HiddenPartitioning {
        HiddenPartitioning { inner }
    }
}

/// Whether a timestamp's time zone reads its values as UTC: named UTC, a zero offset,
/// or none at all (a wall-clock time, which for these values is UTC's). Casts between
/// such types never shift a value (Arrow only shifts a zone-less value cast to a zone,
/// by that zone's offset: zero here).
fn is_utc(tz: Option<&str>) -> bool {
    matches!(tz, None | Some("UTC" | "+00:00" | "Z"))
}

/// What a compared value counts, with the instant 1970-01-01T00:00Z at 0: UTC
/// timestamps of some unit, or days (`Date32`). Other types are not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    Timestamp(TimeUnit),
    Date,
}

impl Scale {
    fn of(data_type: &DataType) -> Option<Scale> {
        match data_type {
            DataType::Timestamp(unit, tz) if is_utc(tz.as_deref()) => Some(Scale::Timestamp(*unit)),
            DataType::Date32 => Some(Scale::Date),
            _ => None,
        }
    }

    /// How many of this scale's ticks make a day.
    fn per_day(self) -> i128 {
        const SECONDS: i128 = 86_400;
        match self {
            Scale::Date => 1,
            Scale::Timestamp(TimeUnit::Second) => SECONDS,
            Scale::Timestamp(TimeUnit::Millisecond) => SECONDS * 1_000,
            Scale::Timestamp(TimeUnit::Microsecond) => SECONDS * 1_000_000,
            Scale::Timestamp(TimeUnit::Nanosecond) => SECONDS * 1_000_000_000,
        }
    }

    /// `value` as a count of this scale's ticks, if it has this scale (a UTC timestamp
    /// of the same unit, or a date) and is not null.
    fn value(self, value: &ScalarValue) -> Option<i128> {
        let (v, unit, tz) = match value {
            ScalarValue::Date32(Some(d)) if self == Scale::Date => return Some(i128::from(*d)),
            ScalarValue::TimestampSecond(Some(v), tz) => (v, TimeUnit::Second, tz),
            ScalarValue::TimestampMillisecond(Some(v), tz) => (v, TimeUnit::Millisecond, tz),
            ScalarValue::TimestampMicrosecond(Some(v), tz) => (v, TimeUnit::Microsecond, tz),
            ScalarValue::TimestampNanosecond(Some(v), tz) => (v, TimeUnit::Nanosecond, tz),
            _ => return None,
        };
        (self == Scale::Timestamp(unit) && is_utc(tz.as_deref())).then_some(i128::from(*v))
    }
}

/// One cast as Arrow computes it, `x` to `y`: both non-decreasing, so `y >= c` and
/// `y <= c` each hold exactly on one side of a threshold of `x`, which
/// [`Step::least_reaching`] and [`Step::greatest_within`] compute exactly.
///
/// Treating a cast as if it were not there is wrong at the boundaries, which is why
/// each is inverted instead. Casting to seconds (or milliseconds), for instance:
/// `CAST(event_time AS TIMESTAMP(0)) <= '10:59:59'` holds up to 10:59:59.999999 (hour
/// 10: after 1970 a truncated instant stays in its hour, as seconds divide hours), and
/// `> '10:59:59'` from 11:00:00 on; `< '11:00:00'` is `<= '10:59:59'`. Before 1970
/// truncation rounds *up*, so `= '1970-01-01 00:00:00'` also holds in hour 23 of
/// 1969-12-31. Casting to `DATE` keeps only the day, so `CAST(event_time AS DATE) =
/// TIMESTAMP '2026-11-30 00:00:00'` (compared as `CAST(CAST(event_time AS DATE) AS
/// TIMESTAMP)`) holds for the whole day, not only in its first hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `y = x * m`: to a finer timestamp unit, or a date to a timestamp (an overflow is
    /// null or an error, never a row that passes).
    Multiply(i128),
    /// `y = x / d` rounded toward zero: to a coarser timestamp unit. Before 1970 this
    /// rounds *up*: 1969-12-31T23:59:59.999999 cast to seconds is 1970-01-01T00:00:00.
    Truncate(i128),
    /// `y = floor(x / d)`: a UTC timestamp to its date.
    Floor(i128),
}

impl Step {
    fn between(from: Scale, to: Scale) -> Step {
        let (f, t) = (from.per_day(), to.per_day());
        match (from, to) {
            (Scale::Timestamp(_), Scale::Date) => Step::Floor(f),
            _ if f > t => Step::Truncate(f / t),
            _ => Step::Multiply(t / f),
        }
    }

    /// The least `x` with `y >= c`.
    fn least_reaching(self, c: i128) -> Option<i128> {
        match self {
            Step::Multiply(m) => Some(c.div_euclid(m) + i128::from(c.rem_euclid(m) != 0)),
            // trunc(x / d) >= c: x >= c·d when c > 0; x > (c - 1)·d when c <= 0, since
            // every x in ((c - 1)·d, c·d] truncates to c (or above, for c = 0).
            Step::Truncate(d) if c > 0 => c.checked_mul(d),
            Step::Truncate(d) => (c - 1).checked_mul(d)?.checked_add(1),
            Step::Floor(d) => c.checked_mul(d),
        }
    }

    /// The greatest `x` with `y <= c`.
    fn greatest_within(self, c: i128) -> Option<i128> {
        match self {
            Step::Multiply(m) => Some(c.div_euclid(m)),
            // trunc(x / d) <= c: x < (c + 1)·d when c >= 0; x <= c·d when c < 0.
            Step::Truncate(d) if c >= 0 => (c + 1).checked_mul(d)?.checked_sub(1),
            Step::Truncate(d) => c.checked_mul(d),
            Step::Floor(d) => (c + 1).checked_mul(d)?.checked_sub(1),
        }
    }
}

/// The casts from `event_time` (microseconds, UTC) to `expr`, innermost first, and the
/// scale `expr` compares in, if `expr` is `event_time` or such a chain of casts of it.
fn event_time_casts(expr: &Expr, column: Scale) -> Option<(Vec<Step>, Scale)> {
    let (inner, to) = match expr {
        Expr::Column(c) if c.name == EVENT_TIME => return Some((Vec::new(), column)),
        Expr::Cast(c) => (&c.expr, c.field.data_type()),
        // Like a cast, but null where the cast fails: a null never passes a filter.
        Expr::TryCast(c) => (&c.expr, c.field.data_type()),
        _ => return None,
    };
    let (mut steps, from) = event_time_casts(inner, column)?;
    let to = Scale::of(to)?;
    // A date cast to a date, or a timestamp to its own unit, changes nothing.
    if from != to {
        steps.push(Step::between(from, to));
    }
    Some((steps, to))
}

/// The value of a constant expression: a literal, or casts of one (computed the way the
/// query computes them, so the bound is on the very value `event_time` is compared with).
fn constant(expr: &Expr) -> Option<ScalarValue> {
    match expr {
        Expr::Literal(v, _) => Some(v.clone()),
        Expr::Cast(c) => constant(&c.expr)?.cast_to(c.field.data_type()).ok(),
        // An unsafe cast that succeeds gives what the safe one gives; if it fails, the
        // value would be null (no row passes) and we just do not prune.
        Expr::TryCast(c) => constant(&c.expr)?.cast_to(c.field.data_type()).ok(),
        _ => None,
    }
}

/// Inclusive bounds on `event_time` in microseconds; `None` is unbounded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Bounds {
    at_least: Option<i64>,
    at_most: Option<i64>,
}

/// The bounds every row with `expr op value` has, where `expr` is `event_time` or casts
/// of it, compared in `column`'s scale.
fn bounds(expr: &Expr, op: Operator, value: &Expr, column: Scale) -> Bounds {
    let Some((steps, scale)) = event_time_casts(expr, column) else {
        return Bounds::default();
    };
    let Some(c) = constant(value).and_then(|v| scale.value(&v)) else {
        return Bounds::default();
    };
    // Values are integers: `y > c` is `y >= c + 1` and `y < c` is `y <= c - 1`.
    let (at_least, at_most) = match op {
        Operator::Eq => (Some(c), Some(c)),
        Operator::GtEq => (Some(c), None),
        Operator::Gt => (Some(c + 1), None),
        Operator::LtEq => (None, Some(c)),
        Operator::Lt => (None, Some(c - 1)),
        _ => (None, None),
    };
    // Undo the casts, outermost first. A bound that leaves i64 is dropped: an empty
    // range (nothing to scan) or no bound at all, and not pruning is always correct.
    let at_least = at_least.and_then(|c| {
        let x = steps
            .iter()
            .rev()
            .try_fold(c, |c, step| step.least_reaching(c))?;
        i64::try_from(x).ok()
    });
    let at_most = at_most.and_then(|c| {
        let x = steps
            .iter()
            .rev()
            .try_fold(c, |c, step| step.greatest_within(c))?;
        i64::try_from(x).ok()
    });
    Bounds { at_least, at_most }
}

/// `(event_date, event_hour) >= hour of t`
fn at_or_after(t: i64) -> Expr {
    let (date, hour) = date_and_hour(t);
    let date = lit(ScalarValue::Date32(Some(date)));
    col(EVENT_DATE).gt(date.clone()).or(col(EVENT_DATE)
        .eq(date)
        .and(col(EVENT_HOUR).gt_eq(lit(hour))))
}

/// `(event_date, event_hour) <= hour of t`
fn at_or_before(t: i64) -> Expr {
    let (date, hour) = date_and_hour(t);
    let date = lit(ScalarValue::Date32(Some(date)));
    col(EVENT_DATE).lt(date.clone()).or(col(EVENT_DATE)
        .eq(date)
        .and(col(EVENT_HOUR).lt_eq(lit(hour))))
}

fn to_partition_filters(bounds: Bounds) -> Vec<Expr> {
    let mut out = Vec::new();
    out.extend(bounds.at_least.map(at_or_after));
    out.extend(bounds.at_most.map(at_or_before));
    out
}

/// The partition filters implied by one filter over a table of `schema`: bounds on
/// `(event_date, event_hour)` that every row passing `filter` meets (none if `filter`
/// does not bound `event_time` in a way proven here, or `event_time` is not a UTC
/// microsecond timestamp in `schema`).
pub fn partition_filters(filter: &Expr, schema: &Schema) -> Vec<Expr> {
    let column = match schema.field_with_name(EVENT_TIME).map(|f| f.data_type()) {
        Ok(DataType::Timestamp(TimeUnit::Microsecond, tz)) if is_utc(tz.as_deref()) => {
            Scale::Timestamp(TimeUnit::Microsecond)
        }
        _ => return Vec::new(),
    };
    implied(filter, column)
}

fn implied(filter: &Expr, column: Scale) -> Vec<Expr> {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if *op == Operator::And {
                let mut out = implied(left, column);
                out.extend(implied(right, column));
                return out;
            }
            let mut found = bounds(left, *op, right, column);
            if found == Bounds::default() {
                // `constant op expr` is `expr swapped(op) constant`.
                if let Some(swapped) = op.swap() {
                    found = bounds(right, swapped, left, column);
                }
            }
            to_partition_filters(found)
        }
        // `expr BETWEEN low AND high` is `expr >= low AND expr <= high`.
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let low = bounds(expr, Operator::GtEq, low, column);
            let high = bounds(expr, Operator::LtEq, high, column);
            to_partition_filters(Bounds {
                at_least: low.at_least,
                at_most: high.at_most,
            })
        }
        _ => vec![],
    }
}

#[async_trait]
impl TableProvider for HiddenPartitioning {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        self.inner.get_logical_plan()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Everything is offered to the scan (for pruning); exact partition filters
        // stay exact, everything else is re-checked above the scan.
        let inner = self.inner.supports_filters_pushdown(filters)?;
        Ok(inner
            .into_iter()
            .map(|support| match support {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Exact,
                _ => TableProviderFilterPushDown::Inexact,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.inner.schema();
        let mut all = filters.to_vec();
        for f in filters {
            all.extend(partition_filters(f, &schema));
        }
        self.inner.scan(state, projection, &all, limit).await
    }
}

#[cfg(test)]
mod tests;
