//! One table's Parquet files of the open flush window, written while the window is
//! still being read.
//!
//! Each decoded chunk's rows are split by partition (event hour) as the chunk arrives.
//! An hour's rows are held until it has [`STRAGGLER_ROWS`] of them; from then on they
//! stream into the hour's file (zstd, see `commit::writer_properties`), which stays open
//! until the window commits. Hours that never get that many rows (late events, a quiet
//! hour) are stragglers: written at commit, one small plain file at a time.
//!
//! So ingest holds a window's rows only until they are encoded, not until the previous
//! window has committed: with two windows of decoded rows in flight, those rows were
//! most of ingest's peak memory while catching up (benches/RESULTS.md, issue 21). Files
//! are written under fresh names and become visible only through the commit, so rows
//! streamed before a commit that then fails (or is fenced) leave no visible data.

use std::collections::HashMap;

use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use delta_kernel::expressions::Scalar;
use deltalake::kernel::Action;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::DeltaTable;
use hourlake_catalog::schema::{EVENT_TIME, INGESTED_AT};
use hourlake_catalog::TableId;
use indexmap::IndexMap;

use crate::commit::{straggler_writer_properties, writer_properties, STRAGGLER_ROWS};
use crate::partition_rows::group_by_partition;
use crate::IngestError;

/// One table's files of the open window: the hours being streamed, the rows held of
/// the others, and what the commit reports of them.
pub struct HourFiles {
    table: TableId,
    hours: Vec<Hour>,
    /// Index into `hours` by partition path (`event_date=…/event_hour=…`).
    hour_of: HashMap<String, usize>,
    /// The streamed hours' open files.
    full: Option<RecordBatchWriter>,
    /// Writes stragglers at commit, one hour's file at a time.
    straggler: Option<RecordBatchWriter>,
    rows: usize,
    event_times: Vec<i64>,
    read_at: Vec<i64>,
    /// The first write that failed: the window cannot commit this table.
    failed: Option<IngestError>,
}

/// One partition's rows in the window.
struct Hour {
    values: IndexMap<String, Scalar>,
    /// Rows not yet written (all of them until the hour streams).
    held: Vec<RecordBatch>,
    held_rows: usize,
    /// Whether the hour has a file open in `full`.
    streaming: bool,
}

impl HourFiles {
    /// No rows yet for `table`.
    pub fn new(table: TableId) -> HourFiles {
        HourFiles {
            table,
            hours: Vec::new(),
            hour_of: HashMap::new(),
            full: None,
            straggler: None,
            rows: 0,
            event_times: Vec::new(),
            read_at: Vec::new(),
            failed: None,
        }
    }

    /// How many rows the window has given this table.
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// Takes the event times and read times of the rows added so far (for the lag
    /// metrics of a commit).
    pub fn take_times(&mut self) -> (Vec<i64>, Vec<i64>) {
        (
            std::mem::take(&mut self.event_times),
            std::mem::take(&mut self.read_at),
        )
    }

    /// Adds one chunk's rows of the table; an hour that reaches [`STRAGGLER_ROWS`]
    /// starts streaming into its file. A failure is kept and reported by
    /// [`HourFiles::finish`] (the window must be re-read).
    pub async fn add(&mut self, delta: &DeltaTable, batch: RecordBatch) {
        if self.failed.is_some() || batch.num_rows() == 0 {
            return;
        }
        self.rows += batch.num_rows();
        self.event_times.extend(micros(&batch, EVENT_TIME));
        self.read_at.extend(micros(&batch, INGESTED_AT));
        if let Err(e) = self.split(delta, batch).await {
            self.discard();
            self.failed = Some(e);
        }
    }

    async fn split(&mut self, delta: &DeltaTable, batch: RecordBatch) -> Result<(), IngestError> {
        let table = self.table;
        let batches = std::slice::from_ref(&batch);
        for group in group_by_partition(batches, table.partition_columns())? {
            let h = match self.hour_of.get(group.path()) {
                Some(&h) => h,
                None => {
                    self.hour_of
                        .insert(group.path().to_string(), self.hours.len());
                    self.hours.push(Hour {
                        values: group.values().clone(),
                        held: Vec::new(),
                        held_rows: 0,
                        streaming: false,
                    });
                    self.hours.len() - 1
                }
            };
            let hour = &mut self.hours[h];
            hour.held_rows += group.num_rows();
            for rows in group.batches(batches) {
                hour.held.push(rows?);
            }
            if hour.streaming || hour.held_rows >= STRAGGLER_ROWS {
                hour.streaming = true;
                let writer = writer(&mut self.full, delta, table, writer_properties)?;
                write_held(writer, hour)
                    .await
                    .map_err(table.delta_error())?;
            }
        }
        Ok(())
    }

    /// Writes the stragglers (one file each, closed before the next is opened) and
    /// closes the streamed hours' files; leaves the table's part of the window empty.
    /// Returns the files' `add` actions.
    pub async fn finish(&mut self, delta: &DeltaTable) -> Result<Vec<Action>, IngestError> {
        let written = match self.failed.take() {
            Some(e) => Err(e),
            None => self.write_all(delta).await,
        };
        if written.is_err() {
            self.discard();
        } else {
            self.clear();
        }
        written
    }

    async fn write_all(&mut self, delta: &DeltaTable) -> Result<Vec<Action>, IngestError> {
        let table = self.table;
        let mut adds = Vec::new();
        for hour in self.hours.iter_mut().filter(|h| !h.streaming) {
            let writer = writer(
                &mut self.straggler,
                delta,
                table,
                straggler_writer_properties,
            )?;
            // A straggler's rows came a few at a time from many chunks: one batch of
            // them is one write instead of a write per chunk.
            if hour.held.len() > 1 {
                let schema = hour.held[0].schema();
                hour.held = vec![concat_batches(&schema, &hour.held)?];
            }
            write_held(writer, hour)
                .await
                .map_err(table.delta_error())?;
            let written = writer.flush().await.map_err(table.delta_error())?;
            adds.extend(written.into_iter().map(Action::Add));
        }
        if let Some(full) = &mut self.full {
            let written = full.flush().await.map_err(table.delta_error())?;
            adds.extend(written.into_iter().map(Action::Add));
        }
        Ok(adds)
    }

    /// Drops the window's rows and abandons its files (they were never committed).
    pub fn discard(&mut self) {
        for writer in [&mut self.full, &mut self.straggler].into_iter().flatten() {
            writer.reset();
        }
        self.clear();
    }

    /// Empties the window's part (its files closed or abandoned).
    fn clear(&mut self) {
        self.hours.clear();
        self.hour_of.clear();
        self.rows = 0;
        self.event_times.clear();
        self.read_at.clear();
        self.failed = None;
    }
}

/// The writer in `slot`, made for `delta` with `properties` when first needed.
fn writer<'a>(
    slot: &'a mut Option<RecordBatchWriter>,
    delta: &DeltaTable,
    table: TableId,
    properties: fn() -> WriterProperties,
) -> Result<&'a mut RecordBatchWriter, IngestError> {
    let writer = match slot {
        Some(writer) => writer,
        None => slot.insert(
            RecordBatchWriter::for_table(delta)
                .map_err(table.delta_error())?
                .with_writer_properties(properties()),
        ),
    };
    Ok(writer)
}

/// Writes an hour's held rows into its file in `writer`, in order, freeing each.
async fn write_held(
    writer: &mut RecordBatchWriter,
    hour: &mut Hour,
) -> Result<(), deltalake::DeltaTableError> {
    hour.held_rows = 0;
    for rows in std::mem::take(&mut hour.held) {
        writer
            .write_partition(rows, &hour.values, WriteMode::Default)
            .await?;
    }
    Ok(())
}

/// The non-null values of a timestamp column of `batch`, if it has one.
fn micros(batch: &RecordBatch, name: &str) -> Vec<i64> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .map(|c| c.iter().flatten().collect())
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Int32Array};
    use arrow::compute::concat_batches;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::commit::tests::new_engagement_table;
    use crate::decoded::DecodedRows;
    use crate::offsets::{CommittedOffsets, TopicPartition};

    /// `n` engagement rows (ids `<prefix><offset>`, offsets from `first`) whose event
    /// time is `hours` hours after a fixed hour.
    pub(crate) fn rows(prefix: &str, first: i64, n: usize, hours: i64) -> RecordBatch {
        let tp = TopicPartition::new("t", 0);
        let (committed, validation) = (CommittedOffsets::default(), Default::default());
        let mut decoded = DecodedRows::new(&committed, &validation);
        let time = 1_795_355_100_000 + hours * 3_600_000;
        for offset in first..first + n as i64 {
            let payload = format!(
                r#"{{"event_id":"{prefix}{offset}","event_type":"click","event_time":{time},"user_id":"u"}}"#
            );
            decoded.add(
                &tp,
                payload.as_bytes(),
                &crate::decoded::tests::meta(offset),
            );
        }
        decoded.take().unwrap().merged(TableId::EngagementEvents)
    }

    /// The `numRecords` of each `add`, smallest first.
    fn records(adds: &[Action]) -> Vec<i64> {
        let mut records: Vec<i64> = adds
            .iter()
            .map(|a| match a {
                Action::Add(add) => {
                    let stats: serde_json::Value =
                        serde_json::from_str(add.stats.as_deref().unwrap()).unwrap();
                    stats["numRecords"].as_i64().unwrap()
                }
                other => panic!("not an add: {other:?}"),
            })
            .collect();
        records.sort();
        records
    }

    #[tokio::test]
    async fn an_hour_streams_once_it_has_enough_rows_and_stragglers_wait_for_the_commit() {
        let (_dir, _lake, table) = new_engagement_table().await;
        let mut files = HourFiles::new(TableId::EngagementEvents);
        files.add(&table, rows("e", 0, STRAGGLER_ROWS - 1, 0)).await;
        assert_eq!(files.hours.len(), 1);
        assert!(
            !files.hours[0].streaming,
            "below the threshold rows are held"
        );
        assert_eq!(files.hours[0].held_rows, STRAGGLER_ROWS - 1);
        assert!(files.full.is_none(), "no file opened yet");

        // One chunk: the hour's last rows and three late ones.
        let now = rows("e", 9_999, 2, 0);
        let late = rows("e", 10_001, 3, -1);
        files
            .add(
                &table,
                concat_batches(&now.schema(), [&now, &late]).unwrap(),
            )
            .await;
        let [hour, late_hour] = files.hours.as_slice() else {
            panic!("two hours");
        };
        assert!(
            hour.streaming,
            "the hour streams once it reaches the threshold"
        );
        assert!(
            hour.held.is_empty() && hour.held_rows == 0,
            "its rows are written"
        );
        assert!(!late_hour.streaming);
        assert_eq!(late_hour.held_rows, 3);
        assert_eq!(files.num_rows(), STRAGGLER_ROWS + 4);
        let (times, read_at) = files.take_times();
        assert_eq!(
            (times.len(), read_at.len()),
            (STRAGGLER_ROWS + 4, STRAGGLER_ROWS + 4)
        );

        // More rows of the streaming hour are written as they come; the late hour's
        // rows of a later chunk are held with its first ones.
        files.add(&table, rows("e", 10_004, 5, 0)).await;
        assert!(files.hours[0].held.is_empty());
        files.add(&table, rows("g", 10_009, 2, -1)).await;
        assert_eq!(files.hours[1].held.len(), 2);

        let adds = files.finish(&table).await.unwrap();
        assert_eq!(records(&adds), vec![5, STRAGGLER_ROWS as i64 + 6]);
        // The straggler's pieces are in its one file, in the order they came.
        let straggler = adds
            .iter()
            .find_map(|a| match a {
                Action::Add(add) if add.path.contains("event_hour=12") => Some(add.path.clone()),
                _ => None,
            })
            .expect("the late hour's file");
        let root = table.table_url().to_file_path().unwrap();
        let path = root.join(&straggler);
        let reader =
            deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(&path).unwrap(),
            )
            .unwrap()
            .build()
            .unwrap();
        let mut ids = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let column = batch.column_by_name("event_id").unwrap();
            let column = column
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            ids.extend(column.iter().map(|v| v.unwrap().to_string()));
        }
        assert_eq!(ids, ["e10001", "e10002", "e10003", "g10009", "g10010"]);
        assert_eq!(files.num_rows(), 0);
        assert!(files.hours.is_empty(), "the next window starts empty");

        // The writers are used again by the next window.
        files.add(&table, rows("f", 20_000, 7, 0)).await;
        assert_eq!(records(&files.finish(&table).await.unwrap()), vec![7]);
    }

    #[tokio::test]
    async fn a_discarded_window_leaves_nothing_and_a_failed_write_is_reported_at_commit() {
        let (_dir, _lake, table) = new_engagement_table().await;
        let mut files = HourFiles::new(TableId::EngagementEvents);
        files.add(&table, rows("e", 0, STRAGGLER_ROWS, 0)).await;
        files
            .add(&table, rows("e", STRAGGLER_ROWS as i64, 2, -1))
            .await;
        assert!(files.hours[0].streaming);
        files.discard();
        assert_eq!(files.num_rows(), 0);
        assert!(
            files.finish(&table).await.unwrap().is_empty(),
            "a discarded window writes no file"
        );

        // Rows that do not fit the table (no event id, no user): the write fails.
        let bad = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("event_date", DataType::Date32, false),
                Field::new("event_hour", DataType::Int32, false),
            ])),
            vec![
                Arc::new(Date32Array::from(vec![20_000])),
                Arc::new(Int32Array::from(vec![3])),
            ],
        )
        .unwrap();
        files.add(&table, bad).await;
        files.add(&table, rows("e", 0, 4, 0)).await;
        assert!(
            files.finish(&table).await.is_err(),
            "the window cannot commit this table"
        );
        assert_eq!(files.num_rows(), 0, "its rows are dropped, to be re-read");
        files.add(&table, rows("e", 0, 4, 0)).await;
        assert_eq!(records(&files.finish(&table).await.unwrap()), vec![4]);
    }
}
