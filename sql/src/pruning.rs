//! Hidden partitioning: a filter on `event_time` prunes the `event_date`/`event_hour`
//! partitions by itself, without the user writing partition columns.
//!
//! [`HiddenPartitioning`] wraps an event table's provider. For each pushed-down filter
//! that bounds `event_time` by a constant (after DataFusion folded `now() - interval
//! '1 hour'` and friends into literals), it adds the equivalent bound on the partition
//! columns, which Delta uses to skip whole partitions before listing a file.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
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

fn micros(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000)),
        _ => None,
    }
}

fn is_event_time(expr: &Expr) -> bool {
    match expr {
        Expr::Column(c) => c.name == EVENT_TIME,
        // A cast of the column to another timestamp unit keeps its order.
        Expr::Cast(c) => is_event_time(&c.expr),
        Expr::TryCast(c) => is_event_time(&c.expr),
        _ => false,
    }
}

fn constant(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(v, _) => micros(v),
        Expr::Cast(c) => constant(&c.expr),
        _ => None,
    }
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

/// The partition filters implied by one filter, if it bounds `event_time`.
pub fn partition_filters(filter: &Expr) -> Vec<Expr> {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if *op == Operator::And {
                let mut out = partition_filters(left);
                out.extend(partition_filters(right));
                return out;
            }
            let (op, t) = if is_event_time(left) {
                match constant(right) {
                    Some(t) => (*op, t),
                    None => return vec![],
                }
            } else if is_event_time(right) {
                match (constant(left), op.swap()) {
                    (Some(t), Some(op)) => (op, t),
                    _ => return vec![],
                }
            } else {
                return vec![];
            };
            match op {
                Operator::Gt | Operator::GtEq => vec![at_or_after(t)],
                Operator::Lt | Operator::LtEq => vec![at_or_before(t)],
                Operator::Eq => vec![at_or_after(t), at_or_before(t)],
                _ => vec![],
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_event_time(expr) => {
            let mut out = Vec::new();
            if let Some(t) = constant(low) {
                out.push(at_or_after(t));
            }
            if let Some(t) = constant(high) {
                out.push(at_or_before(t));
            }
            out
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
        let mut all = filters.to_vec();
        for f in filters {
            all.extend(partition_filters(f));
        }
        self.inner.scan(state, projection, &all, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(v),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn event_time_bounds_become_partition_bounds() {
        // 2026-11-22T13:45Z
        let t = 1_795_355_100_000_000;
        let (d, h) = date_and_hour(t);
        let date = lit(ScalarValue::Date32(Some(d)));
        let ge = partition_filters(&col(EVENT_TIME).gt_eq(ts(t)));
        assert_eq!(
            ge,
            vec![col(EVENT_DATE)
                .gt(date.clone())
                .or(col(EVENT_DATE).eq(date).and(col(EVENT_HOUR).gt_eq(lit(h))))]
        );
        // literal on the left, BETWEEN, AND of both, and things it must leave alone
        assert_eq!(partition_filters(&ts(t).lt(col(EVENT_TIME))), ge);
        assert_eq!(
            partition_filters(&col(EVENT_TIME).between(ts(t), ts(t + 1))).len(),
            2
        );
        assert_eq!(
            partition_filters(&col(EVENT_TIME).gt(ts(t)).and(col(EVENT_TIME).lt(ts(t + 1)))).len(),
            2
        );
        assert!(partition_filters(&col("user_id").eq(lit("u"))).is_empty());
        assert!(partition_filters(&col(EVENT_TIME).not_eq(ts(t))).is_empty());
        assert!(partition_filters(&col(EVENT_TIME).gt(col("_ingested_at"))).is_empty());
    }
}
