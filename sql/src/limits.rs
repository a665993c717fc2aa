//! Bounds on what one statement may ask of the planner: its size, how deeply its
//! expressions and plan nest, and how many parts it has.
//!
//! DataFusion and sqlparser walk expressions and plans recursively, and a left-deep
//! chain (`1+1+1+…`, `a OR b OR …`, many `UNION ALL`s or comma joins) parses without
//! recursion but nests as deep as it is long. Unbounded, a 4 KB request overflows a
//! thread's stack and aborts the process. These limits are checked right after parsing
//! and right after planning, before any recursive rewrite runs, and the planner runs on
//! threads whose stacks hold the deepest statement the limits allow
//! (see the query server's executor). The defaults follow ClickHouse (`max_query_size`,
//! `max_ast_depth`, `max_ast_elements`).

use std::ops::ControlFlow;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::config::SqlParserOptions;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::ast::{self as sql_ast, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::Dialect;
use thiserror::Error;

/// Largest statement text accepted, in bytes.
pub const DEFAULT_MAX_STATEMENT_BYTES: usize = 256 * 1024;
/// Deepest nesting of expressions, subqueries and relations in the parsed statement.
pub const DEFAULT_MAX_DEPTH: usize = 1_000;
/// Most expressions, subqueries, selects and relations in one statement.
pub const DEFAULT_MAX_ELEMENTS: usize = 50_000;

/// Why a statement was refused before planning.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitError {
    /// The text is longer than allowed.
    #[error("the statement is {bytes} bytes, more than the {limit} allowed")]
    TooLarge {
        /// The statement's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The statement nests too deeply or has too many parts.
    #[error("the statement is too complex: {0}")]
    TooComplex(String),
    /// A constant (as given, or computed while planning, e.g. by `repeat`) is too big to
    /// be copied into every row of a batch.
    #[error(
        "a constant in the statement is {bytes} bytes once computed, more than the {limit} \
         allowed (it would be copied into every row)"
    )]
    ConstantTooLarge {
        /// The constant's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

/// Largest constant a planned statement may hold: a constant is copied into every row
/// of a batch (8 192 rows), so this bounds what one batch of it can take (512 MiB).
pub const MAX_CONSTANT_BYTES: usize = 64 * 1024;

/// The bounds applied to one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementLimits {
    /// Largest statement text, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of the parsed statement and of its logical plan (plan nodes and
    /// expressions within them).
    pub max_depth: usize,
    /// Most parts (expressions, queries, selects, relations) of the parsed statement.
    pub max_elements: usize,
}

impl Default for StatementLimits {
    fn default() -> Self {
        StatementLimits {
            max_bytes: DEFAULT_MAX_STATEMENT_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_elements: DEFAULT_MAX_ELEMENTS,
        }
    }
}

impl StatementLimits {
    /// Refuses a text longer than `max_bytes`.
    pub fn check_size(&self, sql: &str) -> Result<(), LimitError> {
        if sql.len() > self.max_bytes {
            return Err(LimitError::TooLarge {
                bytes: sql.len(),
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Parses exactly one statement of `sql` and checks its shape against the limits
    /// (the parser keeps DataFusion's own bound on recursive descent, too). The size
    /// limit is the caller's to check, on the text as the client sent it
    /// ([`check_size`](Self::check_size)): numbering `?` placeholders lengthens it.
    pub fn parse(&self, sql: &str, dialect: &dyn Dialect) -> Result<Statement, crate::SqlError> {
        let recursion_limit = SqlParserOptions::default().recursion_limit.get();
        let mut statements = DFParserBuilder::new(sql)
            .with_dialect(dialect)
            .with_recursion_limit(recursion_limit)
            .build()?
            .parse_statements()?;
        if statements.len() > 1 {
            return Err(datafusion::error::DataFusionError::NotImplemented(
                "one SQL statement per request".into(),
            )
            .into());
        }
        let statement = statements.pop_front().ok_or_else(|| {
            datafusion::error::DataFusionError::Plan("no SQL statement was given".into())
        })?;
        self.check_statement(&statement)?;
        Ok(statement)
    }

    /// Checks a parsed statement's nesting depth and number of parts.
    pub fn check_statement(&self, statement: &Statement) -> Result<(), LimitError> {
        let mut shape = Shape {
            limits: *self,
            depth: 0,
            elements: 0,
        };
        let flow = match statement {
            Statement::Statement(s) => s.visit(&mut shape),
            Statement::Explain(explain) => match explain.statement.as_ref() {
                Statement::Statement(s) => s.visit(&mut shape),
                // EXPLAIN of DDL/COPY: refused later by the read-only guard.
                _ => ControlFlow::Continue(()),
            },
            _ => ControlFlow::Continue(()),
        };
        match flow {
            ControlFlow::Break(e) => Err(e),
            ControlFlow::Continue(()) => Ok(()),
        }
    }

    /// Checks the constants of an optimized plan (after constant folding) against
    /// [`MAX_CONSTANT_BYTES`].
    pub fn check_constants(&self, plan: &LogicalPlan) -> Result<(), LimitError> {
        let mut biggest = 0;
        let _ = plan.apply_with_subqueries(|node| {
            let _ = node.apply_expressions(|e| {
                e.apply(|e| {
                    if let Expr::Literal(value, _) = e {
                        biggest = biggest.max(value.size());
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            });
            Ok(TreeNodeRecursion::Continue)
        });
        if biggest > MAX_CONSTANT_BYTES {
            return Err(LimitError::ConstantTooLarge {
                bytes: biggest,
                limit: MAX_CONSTANT_BYTES,
            });
        }
        Ok(())
    }

    /// Checks the nesting depth of a logical plan: plan nodes (including subqueries)
    /// plus the expressions within each node.
    pub fn check_plan(&self, plan: &LogicalPlan) -> Result<(), LimitError> {
        let deepest = plan_depth(plan);
        if deepest > self.max_depth {
            return Err(LimitError::TooComplex(format!(
                "its plan nests {deepest} levels deep, more than the {} allowed \
                 (long chains of UNION, joins or operators nest one level per link)",
                self.max_depth
            )));
        }
        Ok(())
    }
}

/// Tracks depth and count while sqlparser walks a statement.
struct Shape {
    limits: StatementLimits,
    depth: usize,
    elements: usize,
}

impl Shape {
    fn enter(&mut self) -> ControlFlow<LimitError> {
        self.depth += 1;
        self.elements += 1;
        if self.depth > self.limits.max_depth {
            return ControlFlow::Break(LimitError::TooComplex(format!(
                "it nests more than {} levels deep (long chains of operators such as \
                 `a + b + …` or `x OR y OR …` nest one level per link)",
                self.limits.max_depth
            )));
        }
        if self.elements > self.limits.max_elements {
            return ControlFlow::Break(LimitError::TooComplex(format!(
                "it has more than {} parts (expressions, subqueries, relations)",
                self.limits.max_elements
            )));
        }
        ControlFlow::Continue(())
    }

    fn leave(&mut self) -> ControlFlow<LimitError> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }
}

impl Visitor for Shape {
    type Break = LimitError;

    fn pre_visit_query(&mut self, _query: &sql_ast::Query) -> ControlFlow<LimitError> {
        self.enter()
    }
    fn post_visit_query(&mut self, _query: &sql_ast::Query) -> ControlFlow<LimitError> {
        self.leave()
    }
    fn pre_visit_select(&mut self, _select: &sql_ast::Select) -> ControlFlow<LimitError> {
        self.enter()
    }
    fn post_visit_select(&mut self, _select: &sql_ast::Select) -> ControlFlow<LimitError> {
        self.leave()
    }
    fn pre_visit_table_factor(
        &mut self,
        _factor: &sql_ast::TableFactor,
    ) -> ControlFlow<LimitError> {
        self.enter()
    }
    fn post_visit_table_factor(
        &mut self,
        _factor: &sql_ast::TableFactor,
    ) -> ControlFlow<LimitError> {
        self.leave()
    }
    fn pre_visit_expr(&mut self, _expr: &sql_ast::Expr) -> ControlFlow<LimitError> {
        self.enter()
    }
    fn post_visit_expr(&mut self, _expr: &sql_ast::Expr) -> ControlFlow<LimitError> {
        self.leave()
    }
}

/// The deepest path through `plan`: nodes, subqueries and the expressions of each node.
fn plan_depth(plan: &LogicalPlan) -> usize {
    let mut deepest_expr = 0;
    let _ = plan.apply_expressions(|e| {
        deepest_expr = deepest_expr.max(expr_depth(e));
        Ok(TreeNodeRecursion::Continue)
    });
    let mut deepest_child = 0;
    for child in plan.inputs() {
        deepest_child = deepest_child.max(plan_depth(child));
    }
    let _ = plan.apply_subqueries(|subquery| {
        deepest_child = deepest_child.max(plan_depth(subquery));
        Ok(TreeNodeRecursion::Continue)
    });
    1 + deepest_child.max(deepest_expr)
}

fn expr_depth(expr: &Expr) -> usize {
    let mut deepest = 0;
    let _ = expr.apply_children(|child| {
        deepest = deepest.max(expr_depth(child));
        Ok(TreeNodeRecursion::Continue)
    });
    1 + deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    fn parse(sql: &str, limits: StatementLimits) -> Result<Statement, crate::SqlError> {
        limits.parse(sql, &GenericDialect {})
    }

    fn limits(max_depth: usize, max_elements: usize) -> StatementLimits {
        StatementLimits {
            max_bytes: 1 << 20,
            max_depth,
            max_elements,
        }
    }

    #[test]
    fn refuses_long_text() {
        let l = StatementLimits {
            max_bytes: 10,
            ..StatementLimits::default()
        };
        assert_eq!(
            l.check_size("SELECT 1 + 1"),
            Err(LimitError::TooLarge {
                bytes: 12,
                limit: 10
            })
        );
        assert!(l.check_size("SELECT 1").is_ok());
    }

    #[test]
    fn refuses_deep_chains_of_every_shape() {
        let l = limits(100, 100_000);
        let chain = |sep: &str, n: usize| ["1"].repeat(n).join(sep);
        // Within the limit: fine.
        assert!(parse(&format!("SELECT {}", chain("+", 50)), l).is_ok());
        for sql in [
            format!("SELECT {}", chain("+", 150)),
            format!("SELECT {}", chain(" OR ", 150)),
            format!("SELECT 1 WHERE {}", chain(" = 1 AND ", 150)),
            format!(
                "SELECT {}{}{}",
                "(".repeat(20),
                chain("*", 120),
                ")".repeat(20)
            ),
            format!("SELECT * FROM t WHERE x IN (0, {})", chain("+", 150)),
        ] {
            let err = parse(&sql, l).expect_err(&sql[..40.min(sql.len())]);
            assert!(
                matches!(err, crate::SqlError::Limit(LimitError::TooComplex(_))),
                "{err}"
            );
        }
    }

    #[test]
    fn refuses_too_many_parts() {
        let l = limits(1_000, 500);
        let list = (0..600)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let err = parse(&format!("SELECT * FROM t WHERE x IN ({list})"), l).unwrap_err();
        assert!(err.to_string().contains("more than 500 parts"), "{err}");
        let unions = vec!["SELECT 1"; 300].join(" UNION ALL ");
        assert!(parse(&unions, l).is_err());
        let joins = (0..300)
            .map(|i| format!("(SELECT {i}) s{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        assert!(parse(&format!("SELECT * FROM {joins}"), l).is_err());
    }

    #[test]
    fn refuses_more_than_one_statement() {
        assert!(parse("SELECT 1; SELECT 2", StatementLimits::default()).is_err());
        assert!(parse("  ", StatementLimits::default()).is_err());
    }

    #[tokio::test]
    async fn constants_too_big_to_copy_into_every_row_are_refused() {
        let ctx = datafusion::prelude::SessionContext::new();
        let l = StatementLimits::default();
        let optimized = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let plan = ctx.state().create_logical_plan(sql).await.unwrap();
                ctx.state().optimize(&plan).unwrap()
            }
        };
        let small = optimized("SELECT repeat('ab', 1000) AS s FROM generate_series(1, 10)").await;
        assert!(l.check_constants(&small).is_ok());
        let folded =
            optimized("SELECT repeat('ab', 100000) AS s FROM generate_series(1, 10)").await;
        assert!(matches!(
            l.check_constants(&folded),
            Err(LimitError::ConstantTooLarge { bytes, .. }) if bytes >= 200_000
        ));
    }

    #[tokio::test]
    async fn plan_depth_counts_unions_and_joins() {
        let ctx = datafusion::prelude::SessionContext::new();
        let l = limits(60, 100_000);
        let plan = |sql: String| {
            let ctx = ctx.clone();
            async move { ctx.state().create_logical_plan(&sql).await.unwrap() }
        };
        let small = plan(["SELECT 1"; 5].join(" UNION ALL ")).await;
        assert!(l.check_plan(&small).is_ok());
        let unions = plan(["SELECT 1"; 80].join(" UNION ALL ")).await;
        assert!(l.check_plan(&unions).is_err());
        let joins = (0..80)
            .map(|i| format!("(SELECT {i}) s{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let joined = plan(format!("SELECT * FROM {joins}")).await;
        assert!(l.check_plan(&joined).is_err());
        let ors = plan(format!(
            "SELECT 1 WHERE {}",
            ["random() > 0.5"; 80].join(" OR ")
        ))
        .await;
        assert!(l.check_plan(&ors).is_err());
    }
}
