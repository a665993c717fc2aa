//! API errors: JSON `{"error": {"code", "message"}}` with the right HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;
use hourlake_sql::limits::LimitError;
use hourlake_sql::SqlError;

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code (`sql_parse`, `forbidden`, `timeout`, ...).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 413 for a statement over the size limit (or with a constant too big to copy into
    /// every row), 400 for one too complex to plan.
    pub fn from_limit(e: LimitError) -> ApiError {
        match e {
            LimitError::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "statement_too_large",
                e.to_string(),
            ),
            LimitError::TooComplex(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "statement_too_complex",
                e.to_string(),
            ),
            LimitError::ConstantTooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "resources_exhausted",
                e.to_string(),
            ),
        }
    }

    /// 400 for a request that cannot be understood.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

/// Classifies a DataFusion error: the user's fault (400) or ours (500).
pub fn from_datafusion(e: DataFusionError) -> ApiError {
    let root = e.find_root();
    match root {
        DataFusionError::SQL(..) => {
            ApiError::new(StatusCode::BAD_REQUEST, "sql_parse", root.to_string())
        }
        DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "sql_plan", e.strip_backtrace())
        }
        DataFusionError::ResourcesExhausted(_) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "resources_exhausted",
            e.strip_backtrace(),
        ),
        DataFusionError::Execution(_) | DataFusionError::ArrowError(..) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "sql_execution",
            e.strip_backtrace(),
        ),
        _ => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.strip_backtrace(),
        ),
    }
}

impl From<SqlError> for ApiError {
    fn from(e: SqlError) -> ApiError {
        match e {
            e @ SqlError::NotReadOnly(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            SqlError::Parameter(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_parameter", message)
            }
            SqlError::DataFusion(e) => from_datafusion(e),
            SqlError::Limit(e) => ApiError::from_limit(e),
            other => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "lake_unavailable",
                other.to_string(),
            ),
        }
    }
}
