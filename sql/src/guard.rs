//! The read-only guard: a query server answers reads only. DDL (`CREATE`, `DROP`,
//! `CREATE EXTERNAL TABLE`), DML (`INSERT`, `COPY`, ...) and statements (`SET`,
//! transactions) are refused before anything runs.

use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;

use crate::SqlError;

/// Refuses any plan that is not a read.
pub fn ensure_read_only(plan: &LogicalPlan) -> Result<(), SqlError> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| SqlError::NotReadOnly(e.strip_backtrace()))
}
