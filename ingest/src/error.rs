use thiserror::Error;

/// Errors that stop ingest (bad events never do: they become dead letters).
#[derive(Debug, Error)]
pub enum IngestError {
    /// The lake could not be opened or a table created.
    #[error(transparent)]
    Catalog(#[from] hourlake_catalog::CatalogError),
    /// The Kafka client could not be set up.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A Delta operation failed in a way retries did not fix.
    #[error(transparent)]
    Delta(#[from] hourlake_catalog::DeltaError),
    /// Another writer committed offsets of a partition this one reads (offline ingest,
    /// which cannot re-read, stops here; the pipeline re-reads instead).
    #[error("delta table {table}: another writer holds offsets of {partition}")]
    Fenced {
        table: &'static str,
        partition: String,
    },
    /// Building an Arrow batch failed (a bug: builders and schema disagree).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The configuration is not usable.
    #[error("invalid ingest configuration: {0}")]
    Config(String),
    /// An input file of a backfill cannot be read.
    #[error("{path}: {reason}")]
    Input { path: String, reason: String },
    /// Kafka did not say where a `--start-at` time falls in a partition.
    #[error("no start offset: {0}")]
    StartOffset(String),
    /// The ingest thread died.
    #[error("ingest thread failed: {0}")]
    Thread(String),
}
