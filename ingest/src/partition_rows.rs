//! Rows of one table grouped by partition (event hour), straight from decoded batches
//! without first merging them: a batch wholly in one hour is kept as it is, and the
//! rows of a mixed batch are copied once, sorted by hour, and each hour gets a slice.
//! (Merging the chunks, then copying each hour out of the merged batch, held a
//! window's rows two and three times over: benches/RESULTS.md, session 15.)

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, Scalar as ArrowScalar, UInt32Array};
use arrow::compute::kernels::cmp::eq;
use arrow::compute::take_record_batch;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter, SortField};
use delta_kernel::expressions::Scalar;
use deltalake::kernel::scalars::ScalarExt;
use indexmap::IndexMap;

/// One partition's rows among a flush's batches: the partition's values, and which rows
/// of which batch belong to it.
pub struct PartitionRows {
    values: IndexMap<String, Scalar>,
    /// The partition's path, `column=value/…` (empty for an unpartitioned table).
    path: String,
    pieces: Vec<Piece>,
    rows: usize,
}

/// A part of one batch that belongs to a partition.
enum Piece {
    /// The whole batch (index into the batches).
    Whole(usize),
    /// Rows of a mixed batch: a slice of its copy sorted by partition.
    Slice(RecordBatch),
}

impl PartitionRows {
    /// The partition columns' values, by column name (empty for an unpartitioned table).
    pub fn values(&self) -> &IndexMap<String, Scalar> {
        &self.values
    }

    /// The partition's path, `column=value/…` as Delta writes it (empty for an
    /// unpartitioned table): a key for its values.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// How many rows the partition has.
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// The partition's rows, batch by batch in order: a batch wholly in the partition
    /// as it is, the partition's rows of a mixed batch as a slice of its sorted copy.
    pub fn batches<'a>(
        &'a self,
        batches: &'a [RecordBatch],
    ) -> impl Iterator<Item = Result<RecordBatch, ArrowError>> + 'a {
        self.pieces.iter().map(move |piece| match piece {
            Piece::Whole(b) => Ok(batches[*b].clone()),
            Piece::Slice(rows) => Ok(rows.clone()),
        })
    }
}

/// Groups the rows of `batches` (of one schema) by the partition `columns`, partitions
/// in order of first appearance; every row is in exactly one group. No `columns` make
/// one group of everything.
pub fn group_by_partition(
    batches: &[RecordBatch],
    columns: &[&str],
) -> Result<Vec<PartitionRows>, ArrowError> {
    let mut groups: Vec<PartitionRows> = Vec::new();
    if columns.is_empty() {
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        if rows > 0 {
            groups.push(PartitionRows {
                values: IndexMap::new(),
                path: String::new(),
                pieces: (0..batches.len()).map(Piece::Whole).collect(),
                rows,
            });
        }
        return Ok(groups);
    }
    let mut converter: Option<RowConverter> = None;
    let mut group_of: HashMap<OwnedRow, usize> = HashMap::new();
    for (b, batch) in batches.iter().enumerate() {
        if batch.num_rows() == 0 {
            continue;
        }
        let keys = columns
            .iter()
            .map(|name| {
                batch.column_by_name(name).cloned().ok_or_else(|| {
                    ArrowError::SchemaError(format!("partition column {name} is missing"))
                })
            })
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        let converter = match &mut converter {
            Some(converter) => converter,
            None => converter.insert(RowConverter::new(
                keys.iter()
                    .map(|k| SortField::new(k.data_type().clone()))
                    .collect(),
            )?),
        };
        let mut groups = Groups {
            groups: &mut groups,
            group_of: &mut group_of,
            columns,
            keys: &keys,
        };
        // Most batches are wholly in one partition: found without a key per row.
        if is_constant(&keys)? {
            let first: Vec<ArrayRef> = keys.iter().map(|k| k.slice(0, 1)).collect();
            let key = converter.convert_columns(&first)?.row(0).owned();
            groups.add(key, 0, batch.num_rows(), Piece::Whole(b))?;
            continue;
        }
        let rows = converter.convert_columns(&keys)?;
        // This batch's partitions, by first row.
        let mut local: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut local_of = HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            let group = *local_of.entry(row).or_insert_with(|| {
                local.push((i, Vec::new()));
                local.len() - 1
            });
            // A chunk never reaches u32::MAX rows.
            local[group].1.push(i as u32);
        }
        // One copy of the batch with its rows in partition order, a slice of it per
        // partition (not a copy per partition: most are a late event or two).
        let order: UInt32Array = local
            .iter()
            .flat_map(|(_, indices)| indices.iter().copied())
            .collect();
        let sorted = take_record_batch(batch, &order)?;
        let mut offset = 0;
        for (first, indices) in local {
            let count = indices.len();
            let piece = Piece::Slice(sorted.slice(offset, count));
            offset += count;
            groups.add(rows.row(first).owned(), first, count, piece)?;
        }
    }
    Ok(groups)
}

/// Whether every one of `keys` holds a single value (no nulls) in all its rows.
fn is_constant(keys: &[ArrayRef]) -> Result<bool, ArrowError> {
    for key in keys {
        if key.is_empty() {
            continue;
        }
        let first = ArrowScalar::new(key.slice(0, 1));
        if eq(key, &first)?.true_count() != key.len() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The groups found so far, and what a batch's rows are keyed by.
struct Groups<'a> {
    groups: &'a mut Vec<PartitionRows>,
    group_of: &'a mut HashMap<OwnedRow, usize>,
    columns: &'a [&'a str],
    keys: &'a [ArrayRef],
}

impl Groups<'_> {
    /// Adds `piece` (`count` rows, the first of them row `row` of the keys) to the group
    /// of `key`, opened if new.
    fn add(
        &mut self,
        key: OwnedRow,
        row: usize,
        count: usize,
        piece: Piece,
    ) -> Result<(), ArrowError> {
        let g = match self.group_of.get(&key) {
            Some(&g) => g,
            None => {
                let values = self
                    .columns
                    .iter()
                    .zip(self.keys)
                    .map(|(name, column)| {
                        let value = Scalar::from_array(column.as_ref(), row).ok_or_else(|| {
                            ArrowError::InvalidArgumentError(format!(
                                "partition column {name} has an unsupported type {}",
                                column.data_type()
                            ))
                        })?;
                        Ok((name.to_string(), value))
                    })
                    .collect::<Result<IndexMap<_, _>, ArrowError>>()?;
                let path = values
                    .iter()
                    .map(|(column, value)| format!("{column}={}", value.serialize()))
                    .collect::<Vec<_>>()
                    .join("/");
                self.groups.push(PartitionRows {
                    values,
                    path,
                    pieces: Vec::new(),
                    rows: 0,
                });
                self.group_of.insert(key, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[g];
        group.rows += count;
        group.pieces.push(piece);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Date32Array, Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(first_id: usize, dates: Vec<i32>, hours: Vec<i32>) -> RecordBatch {
        let ids: Vec<String> = (0..dates.len())
            .map(|i| format!("e{}", first_id + i))
            .collect();
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

    /// Each group's values (as Delta writes them into `add` actions) and event ids, in
    /// order.
    fn ids(groups: &[PartitionRows], batches: &[RecordBatch]) -> Vec<(String, Vec<String>)> {
        groups
            .iter()
            .map(|g| {
                let mut ids = Vec::new();
                for part in g.batches(batches) {
                    let part = part.unwrap();
                    let col = part.column(0).as_string::<i32>();
                    ids.extend(col.iter().map(|v| v.unwrap().to_string()));
                }
                assert_eq!(ids.len(), g.num_rows());
                (g.path().to_string(), ids)
            })
            .collect()
    }

    #[test]
    fn rows_of_several_batches_group_by_date_and_hour_in_order_of_first_appearance() {
        let batches = [
            batch(0, vec![1, 1, 2, 1, 2, 1], vec![5, 6, 5, 5, 5, 6]),
            batch(6, vec![], vec![]),
            // Wholly in one partition seen before.
            batch(10, vec![1, 1], vec![6, 6]),
            // A new partition, and one seen before.
            batch(20, vec![3, 1], vec![0, 5]),
        ];
        let groups = group_by_partition(&batches, &["event_date", "event_hour"]).unwrap();
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ids(&groups, &batches),
            vec![
                (
                    "event_date=1970-01-02/event_hour=5".to_string(),
                    s(&["e0", "e3", "e21"])
                ),
                (
                    "event_date=1970-01-02/event_hour=6".to_string(),
                    s(&["e1", "e5", "e10", "e11"])
                ),
                (
                    "event_date=1970-01-03/event_hour=5".to_string(),
                    s(&["e2", "e4"])
                ),
                (
                    "event_date=1970-01-04/event_hour=0".to_string(),
                    s(&["e20"])
                ),
            ]
        );
        assert!(
            matches!(groups[1].pieces[1], Piece::Whole(2)),
            "a batch wholly in one partition is not copied"
        );
        // By date alone (dead letters): three groups.
        let by_date = group_by_partition(&batches, &["event_date"]).unwrap();
        assert_eq!(by_date.len(), 3);
        assert_eq!(by_date[0].num_rows(), 7);
    }

    #[test]
    fn no_partition_columns_make_one_group_and_a_missing_column_is_an_error() {
        let batches = [batch(0, vec![1, 2], vec![5, 5]), batch(2, vec![3], vec![1])];
        let groups = group_by_partition(&batches, &[]).unwrap();
        assert_eq!(groups.len(), 1);
        assert!(groups[0].values().is_empty());
        assert_eq!(ids(&groups, &batches)[0].1, vec!["e0", "e1", "e2"]);
        assert!(group_by_partition(&[], &["event_hour"]).unwrap().is_empty());
        assert!(group_by_partition(&batches, &["missing"]).is_err());
    }
}
