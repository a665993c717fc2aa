//! A window's rows of one table, grouped by partition (event hour), so that each hour
//! is written and its file closed before the next one is opened.
//!
//! Every open Parquet file holds, per column, its encoders, dictionary and zstd
//! contexts: a few MB per file. A window read while catching up holds late events of
//! dozens of hours; with all their files open at once those per-file costs, not the
//! rows, were most of ingest's peak memory (heaptrack, benches/RESULTS.md).

use std::collections::HashMap;

use arrow::array::UInt32Array;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

/// The row indices of each partition of `batch` by `columns`, in order of first
/// appearance; `None` when there is at most one partition (write the batch as it is).
pub fn partition_indices(
    batch: &RecordBatch,
    columns: &[&str],
) -> Result<Option<Vec<UInt32Array>>, ArrowError> {
    if columns.is_empty() || batch.num_rows() == 0 {
        return Ok(None);
    }
    let keys = columns
        .iter()
        .map(|name| {
            batch.column_by_name(name).cloned().ok_or_else(|| {
                ArrowError::SchemaError(format!("partition column {name} is missing"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let converter = RowConverter::new(
        keys.iter()
            .map(|k| SortField::new(k.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(&keys)?;
    let mut groups: Vec<Vec<u32>> = Vec::new();
    let mut group_of = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let group = *group_of.entry(row).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        // A batch never reaches u32::MAX rows (windows are cut at max_rows).
        groups[group].push(i as u32);
    }
    Ok((groups.len() > 1).then(|| groups.into_iter().map(UInt32Array::from).collect()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(dates: Vec<i32>, hours: Vec<i32>) -> RecordBatch {
        let ids: Vec<String> = (0..dates.len()).map(|i| format!("e{i}")).collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("event_id", DataType::Utf8, false),
                Field::new("event_date", DataType::Date32, false),
                Field::new("event_hour", DataType::Int32, false),
            ])),
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(Date32Array::from(dates)),
                Arc::new(Int32Array::from(hours)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_group_by_date_and_hour_in_order_of_first_appearance() {
        let b = batch(vec![1, 1, 2, 1, 2, 1], vec![5, 6, 5, 5, 5, 6]);
        let groups = partition_indices(&b, &["event_date", "event_hour"])
            .unwrap()
            .unwrap();
        let groups: Vec<Vec<u32>> = groups.iter().map(|g| g.values().to_vec()).collect();
        assert_eq!(groups, vec![vec![0, 3], vec![1, 5], vec![2, 4]]);
        // By date alone (dead letters): two groups.
        let by_date = partition_indices(&b, &["event_date"]).unwrap().unwrap();
        assert_eq!(by_date.len(), 2);
        assert_eq!(by_date[0].values().to_vec(), vec![0, 1, 3, 5]);
    }

    #[test]
    fn one_partition_or_none_needs_no_split() {
        let b = batch(vec![1, 1], vec![5, 5]);
        assert!(partition_indices(&b, &["event_date", "event_hour"])
            .unwrap()
            .is_none());
        assert!(partition_indices(&b, &[]).unwrap().is_none());
        assert!(partition_indices(&b, &["missing"]).is_err());
    }
}
