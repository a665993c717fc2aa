use thiserror::Error;

/// Errors of the compactor.
#[derive(Debug, Error)]
pub enum CompactorError {
    /// The lake or a table could not be opened.
    #[error(transparent)]
    Catalog(#[from] hourlake_catalog::CatalogError),
    /// The SQL session could not be built.
    #[error(transparent)]
    Sql(#[from] hourlake_sql::SqlError),
    /// A Delta operation failed.
    #[error(transparent)]
    Delta(#[from] hourlake_catalog::DeltaError),
    /// A query over the tables failed.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Reading or writing the lease failed.
    #[error("lease of {table}: {source}")]
    LeaseStore {
        table: &'static str,
        #[source]
        source: object_store::Error,
    },
    /// Another compactor holds the table's lease.
    #[error("{table} is being compacted by {holder} (lease valid for {remaining_ms} ms more)")]
    LeaseHeld {
        table: &'static str,
        holder: String,
        remaining_ms: i64,
    },
    /// This compactor's lease was taken over while it worked; it stopped before committing.
    #[error("lease of {table} was lost to {holder}")]
    LeaseLost { table: &'static str, holder: String },
    /// A lease file could not be read.
    #[error("lease of {table}: unreadable lease file {path}: {reason}")]
    LeaseCorrupt {
        table: &'static str,
        path: String,
        reason: String,
    },
    /// A file or log entry of the table does not look like hourlake wrote it.
    #[error("{table}: {reason}")]
    Unexpected { table: &'static str, reason: String },
}
