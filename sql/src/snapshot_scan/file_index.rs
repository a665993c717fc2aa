//! The files of one table at one version: exactly the `add` actions of that snapshot,
//! as DataFusion [`PartitionedFile`]s with their typed partition values and statistics.
//! The table's folder is never listed, so files a compaction removed but vacuum has not
//! deleted yet, or files no commit ever added, are never read.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchOptions, StructArray};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::temporal_conversions::timestamp_ms_to_datetime;
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use deltalake::{DeltaTable, ObjectMeta, Path};
use hourlake_catalog::{Lake, TableId};

use super::protocol;
use crate::SqlError;

/// The files of one pinned table version, ready to scan.
#[derive(Debug)]
pub struct FileIndex {
    store_url: ObjectStoreUrl,
    table_schema: TableSchema,
    files: Vec<PartitionedFile>,
    /// One row per file (in `files` order): its partition values, for pruning.
    partitions: RecordBatch,
}

impl FileIndex {
    /// Lists `table` (the lake's table `id`, at the version it is loaded at) from its
    /// log: every `add` action, refusing tables and files the scan cannot read as they
    /// are. `schema` is the table's schema as queries see it, partition columns last.
    pub fn from_snapshot(
        lake: &Lake,
        id: TableId,
        table: &DeltaTable,
        schema: &SchemaRef,
    ) -> Result<FileIndex, SqlError> {
        let state = table.snapshot().map_err(id.delta_error())?;
        protocol::check_table(id, state)?;
        let table_schema =
            split_partition_columns(id, schema, state.metadata().partition_columns())?;
        let actions = state.add_actions_table(false).map_err(id.delta_error())?;
        let table_path = lake.table_path(id)?;
        let store_url = lake.object_store_url()?;

        let column = |name: &str| actions.column_by_name(name);
        let malformed = |what: &str| SqlError::UnsupportedTable {
            table: id.name().to_string(),
            feature: format!("add actions without a readable {what}"),
        };
        let paths = column("path")
            .and_then(|c| arrow::compute::cast(c, &DataType::Utf8).ok())
            .ok_or_else(|| malformed("path"))?;
        let paths = paths.as_string::<i32>();
        let sizes = column("size_bytes")
            .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
            .ok_or_else(|| malformed("size"))?;
        let modified =
            column("modification_time").and_then(|c| c.as_primitive_opt::<Int64Type>().cloned());
        let records =
            column("num_records").and_then(|c| c.as_primitive_opt::<Int64Type>().cloned());
        let stats = ColumnStats {
            null_counts: column("null_count").and_then(|c| c.as_struct_opt().cloned()),
            mins: column("min").and_then(|c| c.as_struct_opt().cloned()),
            maxs: column("max").and_then(|c| c.as_struct_opt().cloned()),
        };
        let deletion_vectors = column("deletion_vector");
        let partitions = partition_batch(
            table_schema.table_partition_cols(),
            column("partition").and_then(|c| c.as_struct_opt()),
            actions.num_rows(),
        )
        .map_err(|_| malformed("partition value"))?;

        let file_schema = table_schema.file_schema().clone();
        let mut files = Vec::with_capacity(actions.num_rows());
        for row in 0..actions.num_rows() {
            if !paths.is_valid(row) || !sizes.is_valid(row) {
                return Err(malformed("path and size"));
            }
            let raw_path = paths.value(row);
            let has_deletion_vector = deletion_vectors.is_some_and(|dv| dv.is_valid(row));
            protocol::check_file(id, raw_path, has_deletion_vector)?;
            let relative = Path::from_url_path(raw_path).map_err(|_| malformed("path"))?;
            let location = relative
                .parts()
                .fold(table_path.clone(), |path, part| path.join(part));
            let size = u64::try_from(sizes.value(row)).map_err(|_| malformed("size"))?;
            let values = partitions
                .columns()
                .iter()
                .map(|c| ScalarValue::try_from_array(c, row))
                .collect::<Result<Vec<_>, _>>()?;
            let num_rows = records
                .as_ref()
                .filter(|r| r.is_valid(row))
                .and_then(|r| usize::try_from(r.value(row)).ok());
            let statistics = stats.of_file(&file_schema, row, size, num_rows);
            // When the file was written, as the log says (it keys cached footers).
            let last_modified = modified
                .as_ref()
                .filter(|m| m.is_valid(row))
                .and_then(|m| timestamp_ms_to_datetime(m.value(row)))
                .map(|t| t.and_utc())
                .unwrap_or_default();
            let meta = ObjectMeta {
                location,
                last_modified,
                size,
                e_tag: None,
                version: None,
            };
            files.push(
                PartitionedFile::new_from_meta(meta)
                    .with_partition_values(values)
                    .with_statistics(Arc::new(statistics)),
            );
        }
        Ok(FileIndex {
            store_url,
            table_schema,
            files,
            partitions,
        })
    }

    /// The URL of the object store the files are in (registered by
    /// [`Lake::register_object_store`]).
    pub fn store_url(&self) -> &ObjectStoreUrl {
        &self.store_url
    }

    /// The file columns and the partition columns.
    pub fn table_schema(&self) -> &TableSchema {
        &self.table_schema
    }

    /// Every file of the snapshot.
    pub fn files(&self) -> &[PartitionedFile] {
        &self.files
    }

    /// The partition values of every file, one row per file in [`FileIndex::files`] order.
    pub fn partitions(&self) -> &RecordBatch {
        &self.partitions
    }
}

/// `schema` as file columns followed by the partition columns, which must be its last
/// columns, in the log's order (hourlake's tables are created so).
fn split_partition_columns(
    id: TableId,
    schema: &SchemaRef,
    partition_columns: &[String],
) -> Result<TableSchema, SqlError> {
    let fields = schema.fields();
    let split = fields.len().checked_sub(partition_columns.len());
    let trailing = split.is_some_and(|split| {
        fields[split..]
            .iter()
            .zip(partition_columns)
            .all(|(f, p)| f.name() == p)
    });
    let Some(split) = split.filter(|_| trailing) else {
        return Err(SqlError::UnsupportedTable {
            table: id.name().to_string(),
            feature: "partition columns that are not its last columns".to_string(),
        });
    };
    let file_schema =
        Schema::new(fields[..split].to_vec()).with_metadata(schema.metadata().clone());
    Ok(TableSchema::builder(Arc::new(file_schema))
        .with_table_partition_cols(fields[split..].to_vec())
        .build())
}

/// The typed partition values of every file (`partition`: the values the log replay
/// parsed), cast to the partition columns' types, one row per file.
fn partition_batch(
    fields: &[FieldRef],
    parsed: Option<&StructArray>,
    rows: usize,
) -> Result<RecordBatch, ArrowError> {
    let mut columns = Vec::with_capacity(fields.len());
    for field in fields {
        // A missing column is an error, never nulls: those would silently drop files.
        let values = parsed
            .and_then(|p| p.column_by_name(field.name()))
            .ok_or_else(|| ArrowError::SchemaError(format!("no values of {}", field.name())))?;
        columns.push(arrow::compute::cast(values, field.data_type())?);
    }
    // Nullable: a partition value may be null (which no partition filter passes).
    let schema = Schema::new(
        fields
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new_with_options(
        Arc::new(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
}

/// The log's per-file column statistics (`nullCount`, `minValues`, `maxValues`).
struct ColumnStats {
    null_counts: Option<StructArray>,
    mins: Option<StructArray>,
    maxs: Option<StructArray>,
}

impl ColumnStats {
    /// One file's statistics over the file columns: its row count (exact: tables with
    /// deletion vectors are refused), and for columns of an integer, date or UTC
    /// microsecond timestamp type the log's bounds and null count (inexact, as bounds are).
    /// Strings and floats get none: the log may truncate strings, and NaN has no order.
    fn of_file(
        &self,
        file_schema: &Schema,
        row: usize,
        size: u64,
        num_rows: Option<usize>,
    ) -> Statistics {
        let column_statistics = file_schema
            .fields()
            .iter()
            .map(|field| {
                let mut column = ColumnStatistics::new_unknown();
                if !has_bounds(field.data_type()) {
                    return column;
                }
                let value = |stats: &Option<StructArray>| -> Option<ScalarValue> {
                    let stats = stats.as_ref().filter(|s| s.is_valid(row))?;
                    let values = stats.column_by_name(field.name())?;
                    if !values.is_valid(row) {
                        return None;
                    }
                    ScalarValue::try_from_array(values, row).ok()
                };
                if let Some(min) = value(&self.mins).filter(|v| v.data_type() == *field.data_type())
                {
                    column.min_value = Precision::Inexact(min);
                }
                let max = value(&self.maxs)
                    .filter(|v| v.data_type() == *field.data_type())
                    .and_then(round_up_truncated);
                if let Some(max) = max {
                    column.max_value = Precision::Inexact(max);
                }
                let nulls = value(&self.null_counts).and_then(|v| match v {
                    ScalarValue::Int64(Some(n)) => usize::try_from(n).ok(),
                    _ => None,
                });
                if let Some(nulls) = nulls {
                    column.null_count = Precision::Inexact(nulls);
                }
                column
            })
            .collect();
        Statistics {
            num_rows: num_rows.map_or(Precision::Absent, Precision::Exact),
            total_byte_size: usize::try_from(size).map_or(Precision::Absent, Precision::Inexact),
            column_statistics,
        }
    }
}

/// Whether the log's bounds of a column of this type are used.
fn has_bounds(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Date32
            | DataType::Timestamp(TimeUnit::Microsecond, _)
    )
}

/// A maximum as a true upper bound: writers may truncate timestamp statistics to
/// milliseconds, so one on a whole millisecond may stand for any instant within it
/// (as deltalake reads it too).
fn round_up_truncated(max: ScalarValue) -> Option<ScalarValue> {
    match max {
        ScalarValue::TimestampMicrosecond(Some(v), tz) if v % 1_000 == 0 => Some(
            ScalarValue::TimestampMicrosecond(Some(v.checked_add(999)?), tz),
        ),
        other => Some(other),
    }
}
