//! Query parameters from JSON: a list for `$1, $2, ...` or an object for `$name`.

use datafusion::common::{ParamValues, ScalarValue};
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

#[cfg(test)]
mod tests {
    use super::*;

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
