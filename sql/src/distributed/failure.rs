//! Telling a lost worker from a failed query.

use datafusion::error::DataFusionError;

/// Whether `error` means a worker could not be reached or went away (transport, gRPC
/// status other than a query error the worker sent back), rather than the query itself
/// failing: only then may the query be retried elsewhere.
pub fn is_worker_failure(error: &DataFusionError) -> bool {
    match error {
        DataFusionError::Context(_, inner) => is_worker_failure(inner),
        DataFusionError::Shared(inner) => is_worker_failure(inner),
        DataFusionError::Diagnostic(_, inner) => is_worker_failure(inner),
        DataFusionError::Collection(errors) => errors.iter().any(is_worker_failure),
        DataFusionError::External(source) => {
            if let Some(status) = source.downcast_ref::<tonic::Status>() {
                // A query error travels as an `Internal` status carrying the original
                // DataFusion error; every other status is the transport's.
                return !(status.code() == tonic::Code::Internal
                    && status.message() == "DataFusionError");
            }
            if let Some(inner) = source.downcast_ref::<DataFusionError>() {
                return is_worker_failure(inner);
            }
            let text = source.to_string();
            [
                "transport error",
                "Distributed DataFusion worker",
                "h2 protocol error",
                "broken pipe",
                "connection reset",
                "Connection refused",
            ]
            .iter()
            .any(|mark| text.contains(mark))
        }
        DataFusionError::Execution(message) => message.contains("Distributed DataFusion worker"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn transport_errors_are_worker_failures_and_query_errors_are_not() {
        let unavailable =
            DataFusionError::External(Box::new(tonic::Status::unavailable("connection refused")));
        assert!(is_worker_failure(&unavailable));
        let wrapped = DataFusionError::Context(
            "stage 1".into(),
            Box::new(DataFusionError::Shared(Arc::new(unavailable))),
        );
        assert!(is_worker_failure(&wrapped));
        let sent_back =
            DataFusionError::External(Box::new(tonic::Status::internal("DataFusionError")));
        assert!(!is_worker_failure(&sent_back));
        assert!(!is_worker_failure(&DataFusionError::Execution(
            "Cast error: cannot cast 'x' to Int64".into()
        )));
        assert!(!is_worker_failure(&DataFusionError::ResourcesExhausted(
            "memory".into()
        )));
    }
}
