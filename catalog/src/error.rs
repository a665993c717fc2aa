use thiserror::Error;

/// Errors raised while locating, opening or creating lake tables.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// The lake location could not be turned into a usable URL.
    #[error("invalid lake location {location:?}: {reason}")]
    InvalidLocation { location: String, reason: String },
    /// A schema could not be converted between Arrow and Delta.
    #[error("schema of table {table}: {source}")]
    Schema {
        table: &'static str,
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
    /// The object store of the lake could not be built from its URL and storage options.
    #[error("object store of lake {location:?}: {source}")]
    ObjectStore {
        location: String,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// The Delta layer failed.
    #[error(transparent)]
    Delta(#[from] DeltaError),
}

/// A Delta operation on one named table failed: the one error every crate reports for
/// "Delta error on table X" (`.map_err(id.delta_error())`).
#[derive(Debug, Error)]
#[error("delta table {table}: {source}")]
pub struct DeltaError {
    /// The table's name.
    pub table: String,
    /// What deltalake said.
    #[source]
    pub source: Box<deltalake::DeltaTableError>,
}

impl DeltaError {
    /// `source`, raised on `table`.
    pub fn new(table: impl Into<String>, source: deltalake::DeltaTableError) -> DeltaError {
        DeltaError {
            table: table.into(),
            source: Box::new(source),
        }
    }
}
