use thiserror::Error;

/// Errors of the SQL layer.
#[derive(Debug, Error)]
pub enum SqlError {
    /// The lake or a table could not be opened.
    #[error(transparent)]
    Catalog(#[from] hourlake_catalog::CatalogError),
    /// A Delta table could not be exposed to DataFusion.
    #[error(transparent)]
    Delta(#[from] hourlake_catalog::DeltaError),
    /// A table uses a Delta feature the snapshot scan cannot read (deletion vectors,
    /// column mapping, files outside the table's folder): it is refused, never misread.
    #[error("table {table} uses {feature}, which hourlake's snapshot scan does not read")]
    UnsupportedTable {
        /// The table's name.
        table: String,
        /// The feature, as the Delta protocol names it where it has a name.
        feature: String,
    },
    /// A query worker could not be used (bad address, or it failed to start).
    #[error("worker {worker}: {message}")]
    Worker {
        /// The worker's address.
        worker: String,
        /// What went wrong.
        message: String,
    },
    /// The statement is not a read (DDL, DML, COPY, SET, ...).
    #[error("only read queries are allowed here: {0}")]
    NotReadOnly(String),
    /// The statement is over a size or complexity limit.
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
    /// A query parameter could not be used.
    #[error("bad parameter: {0}")]
    Parameter(String),
    /// Planning or running a query failed.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}
