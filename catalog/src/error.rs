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
    /// The Delta layer failed.
    #[error("delta table {table}: {source}")]
    Delta {
        table: &'static str,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
}
