//! Errors of the collector's setup (a request's errors are HTTP answers, `response`).

use thiserror::Error;

/// The collector cannot start.
#[derive(Debug, Error)]
pub enum CollectError {
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
    #[error(transparent)]
    EmptyToken(#[from] hourlake_net::EmptyToken),
    #[error("creating the Kafka producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}
