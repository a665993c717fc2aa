//! Query parameters: from JSON (a list for `$1, $2, ...` or an object for `$name`) or
//! from an Arrow row (Flight SQL prepared statements), bound to a plan with each value
//! cast to the type the plan infers for its placeholder.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use arrow::array::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{self as sql_ast, VisitMut, VisitorMut};
use serde_json::Value;

use crate::SqlError;

fn scalar(value: &Value) -> Result<ScalarValue, SqlError> {
    Ok(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => ScalarValue::Int64(Some(i)),
            (None, Some(f)) => ScalarValue::Float64(Some(f)),
            _ => return Err(SqlError::Parameter(format!("number out of range: {n}"))),
        },
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        other => {
            return Err(SqlError::Parameter(format!(
                "parameters must be strings, numbers, booleans or null, not {other}"
            )))
        }
    })
}

/// Turns `[1, "a"]` into positional and `{"user": "u1"}` into named parameters.
pub fn from_json(value: &Value) -> Result<ParamValues, SqlError> {
    match value {
        Value::Array(items) => Ok(ParamValues::from(
            items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?,
        )),
        Value::Object(map) => Ok(ParamValues::from(
            map.iter()
                .map(|(k, v)| Ok((k.trim_start_matches('$').to_string(), scalar(v)?)))
                .collect::<Result<Vec<_>, SqlError>>()?,
        )),
        other => Err(SqlError::Parameter(format!(
            "params must be a list or an object, not {other}"
        ))),
    }
}

/// The first row of `batch` as positional parameters (column i is `$i+1`), the way
/// Flight SQL clients bind a prepared statement.
pub fn from_batch(batch: &RecordBatch) -> Result<ParamValues, SqlError> {
    if batch.num_rows() == 0 {
        return Ok(ParamValues::from(Vec::<ScalarValue>::new()));
    }
    if batch.num_rows() > 1 {
        return Err(SqlError::Parameter(format!(
            "one row of parameters per execution, got {}",
            batch.num_rows()
        )));
    }
    let values = batch
        .columns()
        .iter()
        .map(|column| ScalarValue::try_from_array(column, 0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParamValues::from(values))
}

/// Substitutes `values` for placeholders among the arguments of table functions
/// (`user_recommendations($1)`): those are evaluated while the statement is planned,
/// before [`bind`] can reach them. Returns the placeholders it bound.
pub fn bind_table_function_args(
    statement: &mut Statement,
    values: &ParamValues,
) -> Result<BTreeSet<String>, SqlError> {
    let mut binder = TableArgs {
        values,
        bound: BTreeSet::new(),
    };
    let flow = match statement {
        Statement::Statement(s) => s.visit(&mut binder),
        Statement::Explain(e) => match e.statement.as_mut() {
            Statement::Statement(s) => s.visit(&mut binder),
            _ => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(binder.bound),
    }
}

struct TableArgs<'a> {
    values: &'a ParamValues,
    bound: BTreeSet<String>,
}

impl TableArgs<'_> {
    fn literal(&self, id: &str) -> Result<sql_ast::Value, SqlError> {
        let missing = || SqlError::Parameter(format!("no value given for {id}"));
        let value = match self.values {
            ParamValues::List(list) => {
                let position = id
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| n.checked_sub(1))
                    .ok_or_else(missing)?;
                &list.get(position).ok_or_else(missing)?.value
            }
            ParamValues::Map(map) => {
                &map.get(id.trim_start_matches('$'))
                    .ok_or_else(missing)?
                    .value
            }
        };
        Ok(match value {
            v if v.is_null() => sql_ast::Value::Null,
            ScalarValue::Boolean(Some(b)) => sql_ast::Value::Boolean(*b),
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => sql_ast::Value::SingleQuotedString(s.clone()),
            v if v.data_type().is_numeric() => sql_ast::Value::Number(v.to_string(), false),
            v => sql_ast::Value::SingleQuotedString(v.to_string()),
        })
    }
}

impl VisitorMut for TableArgs<'_> {
    type Break = SqlError;

    fn pre_visit_table_factor(
        &mut self,
        factor: &mut sql_ast::TableFactor,
    ) -> ControlFlow<SqlError> {
        let sql_ast::TableFactor::Table {
            args: Some(args), ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        for arg in args.args.iter_mut() {
            let (sql_ast::FunctionArg::Unnamed(sql_ast::FunctionArgExpr::Expr(expr))
            | sql_ast::FunctionArg::Named {
                arg: sql_ast::FunctionArgExpr::Expr(expr),
                ..
            }) = arg
            else {
                continue;
            };
            let sql_ast::Expr::Value(value) = expr else {
                continue;
            };
            let sql_ast::Value::Placeholder(id) = &value.value else {
                continue;
            };
            let id = id.clone();
            match self.literal(&id) {
                Ok(literal) => value.value = literal,
                Err(e) => return ControlFlow::Break(e),
            }
            self.bound.insert(id);
        }
        ControlFlow::Continue(())
    }
}

/// Substitutes `values` into `plan`, casting each to its placeholder's inferred type
/// (so a client's `Int32` or string still compares with an `Int64` or timestamp column).
/// `already_bound` are placeholders [`bind_table_function_args`] took from the same
/// values.
pub fn bind(
    plan: LogicalPlan,
    values: ParamValues,
    already_bound: &BTreeSet<String>,
) -> Result<LogicalPlan, SqlError> {
    let types = plan.get_parameter_types()?;
    let cast = |id: &str, value: &ScalarValue| -> Result<ScalarValue, SqlError> {
        match types.get(id) {
            Some(Some(wanted)) if value.data_type() != *wanted && !value.is_null() => value
                .cast_to(wanted)
                .map_err(|e| SqlError::Parameter(format!("{id}: {}", e.strip_backtrace()))),
            _ => Ok(value.clone()),
        }
    };
    let values = match values {
        ParamValues::List(list) => {
            let expected = types
                .keys()
                .chain(already_bound.iter())
                .collect::<BTreeSet<_>>()
                .len();
            if list.len() != expected {
                return Err(SqlError::Parameter(format!(
                    "the statement has {expected} parameter(s), {} given",
                    list.len()
                )));
            }
            ParamValues::from(
                list.iter()
                    .enumerate()
                    .map(|(i, v)| cast(&format!("${}", i + 1), &v.value))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
        ParamValues::Map(map) => ParamValues::from(
            map.iter()
                .map(|(name, v)| Ok((name.clone(), cast(&format!("${name}"), &v.value)?)))
                .collect::<Result<Vec<_>, SqlError>>()?,
        ),
    };
    Ok(plan.with_param_values(values)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bound_values_take_the_placeholder_type() {
        let ctx = datafusion::prelude::SessionContext::new();
        let plan = ctx
            .state()
            .create_logical_plan("SELECT count(*) FROM generate_series(1, 10) WHERE value > $1")
            .await
            .unwrap();
        let none = BTreeSet::new();
        let bound = bind(
            plan.clone(),
            ParamValues::from(vec![ScalarValue::Int32(Some(7))]),
            &none,
        )
        .unwrap();
        let batches = ctx
            .execute_logical_plan(bound)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("| 3 "), "{text}");
        let from_text = bind(
            plan.clone(),
            ParamValues::from(vec![ScalarValue::from("8")]),
            &none,
        )
        .unwrap();
        let batches = ctx
            .execute_logical_plan(from_text)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("| 2 "), "{text}");
        let err = bind(
            plan.clone(),
            ParamValues::from(vec![ScalarValue::from("eight")]),
            &none,
        );
        assert!(matches!(err, Err(SqlError::Parameter(_))), "{err:?}");
        let err = bind(plan, ParamValues::from(Vec::<ScalarValue>::new()), &none);
        assert!(matches!(err, Err(SqlError::Parameter(m)) if m.contains("1 parameter")));
    }

    #[test]
    fn table_function_arguments_take_bound_values() {
        let limits = crate::limits::StatementLimits::default();
        let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
        let mut statement = limits
            .parse(
                "SELECT * FROM user_recommendations($1) r, t WHERE r.rank < $2 AND t.x = $1",
                &dialect,
            )
            .unwrap();
        let values = ParamValues::from(vec![ScalarValue::from("u'1"), ScalarValue::Int64(Some(3))]);
        let bound = bind_table_function_args(&mut statement, &values).unwrap();
        assert_eq!(bound, BTreeSet::from(["$1".to_string()]));
        let text = statement.to_string();
        assert!(text.contains("user_recommendations('u''1')"), "{text}");
        // Placeholders elsewhere stay for `bind`.
        assert!(
            text.contains("r.rank < $2") && text.contains("t.x = $1"),
            "{text}"
        );
        let mut named = limits
            .parse("SELECT * FROM user_recommendations($user)", &dialect)
            .unwrap();
        let err = bind_table_function_args(&mut named, &values).unwrap_err();
        assert!(
            err.to_string().contains("no value given for $user"),
            "{err}"
        );
    }

    #[test]
    fn lists_and_objects() {
        let list = from_json(&serde_json::json!([1, "a", 2.5, true, null])).unwrap();
        assert!(matches!(list, ParamValues::List(ref v) if v.len() == 5));
        let map = from_json(&serde_json::json!({"user": "u1", "$n": 3})).unwrap();
        match map {
            ParamValues::Map(m) => {
                assert!(m.contains_key("user") && m.contains_key("n"));
            }
            ParamValues::List(_) => panic!("expected named parameters"),
        }
        assert!(from_json(&serde_json::json!("x")).is_err());
        assert!(from_json(&serde_json::json!([[1]])).is_err());
    }
}
