//! Conforming query output to a table's exact Arrow schema before it is written.

use arrow::array::ArrayRef;
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};

/// Casts each column of `batch` (found by name) to the type of `schema`'s field:
/// queries read strings as views and literals as 64-bit, tables store plain types.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                DataFusionError::Internal(format!("query output lacks column {}", field.name()))
            })?;
            Ok(cast(column, field.data_type())?)
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Runs `sql` in `ctx` and conforms its batches to `schema` (see [`conform`]).
pub async fn collect_conformed(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    schema: &SchemaRef,
) -> std::result::Result<Vec<RecordBatch>, crate::CompactorError> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(batches
        .iter()
        .map(|b| conform(b, schema))
        .collect::<Result<_>>()?)
}
