//! Query parameters: from JSON (a list for `$1, $2, ...` or an object for `$name`) or
//! from an Arrow row (Flight SQL prepared statements), bound to a plan with each value
//! cast to the type the plan infers for its placeholder.

use arrow::array::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
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

/// Substitutes `values` into `plan`, casting each to its placeholder's inferred type
/// (so a client's `Int32` or string still compares with an `Int64` or timestamp column).
pub fn bind(plan: LogicalPlan, values: ParamValues) -> Result<LogicalPlan, SqlError> {
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
            let expected = types.len();
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
        let bound = bind(
            plan.clone(),
            ParamValues::from(vec![ScalarValue::Int32(Some(7))]),
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
        );
        assert!(matches!(err, Err(SqlError::Parameter(_))), "{err:?}");
        let err = bind(plan, ParamValues::from(Vec::<ScalarValue>::new()));
        assert!(matches!(err, Err(SqlError::Parameter(m)) if m.contains("1 parameter")));
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
