//! One atomic Delta commit per table per flush: the window's Parquet files and the
//! `txn` actions that record which Kafka offsets the table now holds.

use std::time::Duration;

use deltalake::kernel::transaction::{
    CommitBuilder, CommitConflictError, CommitProperties, TransactionError,
};
use deltalake::kernel::Transaction;
use deltalake::parquet::basic::{Compression, Encoding, ZstdLevel};
use deltalake::parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder,
};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};
use hourlake_catalog::schema::{
    EVENT_TIME, INGESTED_AT, KAFKA_OFFSET, KAFKA_PARTITION, KAFKA_TOPIC,
};
use hourlake_catalog::TableId;

use crate::fence::{check_fence, TxnVersions};
use crate::hour_files::HourFiles;
use crate::offsets::{app_id, TopicPartition};
use crate::IngestError;

/// What one table's commit should record besides its files.
pub struct TableCommit {
    pub table: TableId,
    /// `(partition, new last offset, the last offset we believe the table holds)`.
    pub progress: Vec<(TopicPartition, i64, Option<i64>)>,
}

/// How a table commit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Committed as this table version.
    Committed { version: u64 },
    /// The table holds other offsets for a partition than we believed: another consumer
    /// wrote it. Nothing was committed; the partition must be re-read from the table's state.
    Fenced {
        partition: TopicPartition,
        expected: Option<i64>,
        found: Option<i64>,
    },
}

const ATTEMPTS: u32 = 5;

fn is_concurrent_txn(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction)
        }
    )
}

/// Columns whose values are (nearly) all distinct within an hour's file: a dictionary
/// only costs time there (the encoder interns every value, then falls back to plain
/// past the page limit). Ids, times and measures; and `user_id`, whose hour holds a
/// few rows per user (the compactor's rewrite, sorted by user, is where its values
/// repeat). Top-level columns only (a `ColumnPath` from one string is one path part);
/// the `items` list's leaves keep their dictionaries (the encoder gives up on one by
/// itself past its page limit).
const UNIQUE_COLUMNS: [&str; 10] = [
    "event_id",
    "event_time",
    KAFKA_OFFSET,
    "session_id",
    "request_id",
    "user_id",
    "properties",
    INGESTED_AT,
    "session_length_ms",
    "amount",
];

/// Columns written as deltas: offsets count up by one per partition, event times
/// mostly rise and read times never fall within a window, so their differences pack
/// into a few bits (`_ingested_at` of an hour's file: a quarter of its zstd-only size,
/// in a third of the time).
const RISING_COLUMNS: [&str; 3] = [KAFKA_OFFSET, EVENT_TIME, INGESTED_AT];

/// The columns whose min/max can prune an ingest file: when it was read and where from,
/// and when its events happened. Every other column is written without statistics: in
/// an ingest file, which holds whatever a window read of an hour, random ids, users,
/// event types, countries or amounts span (nearly) their whole range, so their ranges
/// never prune it, and computing them compares every value (a string compare per row
/// for each dictionary column). The compactor rewrites files sorted by `user_id` with
/// full statistics.
const PRUNING_COLUMNS: [&str; 5] = [
    EVENT_TIME,
    INGESTED_AT,
    KAFKA_TOPIC,
    KAFKA_PARTITION,
    KAFKA_OFFSET,
];

/// Below this many rows an hour's file in a window is a straggler (late events, or a
/// quiet hour), written plainly: snappy, no dictionaries, no delta encoding. parquet sets
/// up per column of every file a zstd compression and decompression context, a dictionary
/// table and a 1 MiB delta buffer, which for a file of a few dozen rows cost more than
/// writing its rows — with one-second windows, whose late events spread over dozens of
/// hours, a tenth of ingest's CPU went to zstd contexts alone. The compactor rewrites
/// such files.
pub const STRAGGLER_ROWS: usize = 10_000;

/// How ingest writes its Parquet files of at least [`STRAGGLER_ROWS`] rows: zstd(1),
/// smaller than snappy and about as fast here (LZ4 measured 60 % larger files for 8 %
/// less write CPU); dictionaries only where values repeat; deltas for rising numbers;
/// statistics only where they can prune. Together a tenth less write CPU and a tenth
/// smaller files than parquet's defaults (benches/RESULTS.md).
pub fn writer_properties() -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()));
    for column in UNIQUE_COLUMNS {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    for column in RISING_COLUMNS {
        builder =
            builder.set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
    }
    prunable_statistics(builder).build()
}

/// How ingest writes files of fewer than [`STRAGGLER_ROWS`] rows: snappy, plain
/// encodings, the same statistics as [`writer_properties`].
pub fn straggler_writer_properties() -> WriterProperties {
    let builder = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false);
    prunable_statistics(builder).build()
}

/// Statistics only on the columns whose ranges can prune an ingest file.
fn prunable_statistics(mut builder: WriterPropertiesBuilder) -> WriterPropertiesBuilder {
    builder = builder.set_statistics_enabled(EnabledStatistics::None);
    for column in PRUNING_COLUMNS {
        builder = builder
            .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::Page);
    }
    builder
}

/// Closes one table's files of a flush (`files`, streamed while the window was read)
/// and commits them with the window's offsets, retrying transient failures. Files are
/// written under fresh names and only become visible through the commit, so a crash
/// or a failed commit leaves no visible data. `files` is empty afterwards, whatever
/// the outcome.
pub async fn commit_table(
    table: &mut DeltaTable,
    known_txns: &mut TxnVersions,
    group: &str,
    job: TableCommit,
    files: &mut HourFiles,
    checkpoint_interval: u64,
) -> Result<CommitOutcome, IngestError> {
    let id = job.table;
    let fenced = match table.update_state().await {
        Ok(()) => check_fence(table, known_txns, group, &job.progress).await,
        Err(e) => Err(e),
    };
    let fenced = match fenced {
        Ok(fenced) => fenced,
        Err(e) => {
            files.discard();
            return Err(id.delta_error()(e).into());
        }
    };
    if let Some(fenced) = fenced {
        files.discard();
        return Ok(fenced);
    }
    let adds = files.finish(table).await?;
    let txns: Vec<Transaction> = job
        .progress
        .iter()
        .map(|(tp, last, _)| Transaction::new(app_id(group, tp), *last))
        .collect();
    let partition_by = Some(
        id.partition_columns()
            .iter()
            .map(|c| c.to_string())
            .collect(),
    );

    let mut attempt = 0;
    loop {
        attempt += 1;
        let snapshot = table.snapshot().map_err(id.delta_error())?;
        let props = CommitProperties::default()
            .with_application_transactions(txns.clone())
            .with_create_checkpoint(false);
        let result = CommitBuilder::from(props)
            .with_actions(adds.clone())
            .build(
                Some(snapshot),
                table.log_store(),
                DeltaOperation::Write {
                    mode: SaveMode::Append,
                    partition_by: partition_by.clone(),
                    predicate: None,
                },
            )
            .await;
        match result {
            Ok(done) => {
                let version = done.version();
                // The commit's own snapshot is the table at `version`: adopting it spares
                // replaying the commit's log a second time (`update_state`). Commits of
                // other writers after it are read before the next commit (the fence).
                table.state = Some(done.snapshot);
                if checkpoint_interval > 0 && version > 0 && version % checkpoint_interval == 0 {
                    if let Err(e) = deltalake::checkpoints::create_checkpoint(table, None).await {
                        tracing::warn!(table = id.name(), version, error = %e, "checkpoint failed; will retry at the next interval");
                    }
                }
                return Ok(CommitOutcome::Committed { version });
            }
            Err(e) if is_concurrent_txn(&e) => {
                // Another consumer committed offsets of one of our partitions meanwhile.
                table.update_state().await.map_err(id.delta_error())?;
                if let Some(fenced) = check_fence(table, known_txns, group, &job.progress)
                    .await
                    .map_err(id.delta_error())?
                {
                    return Ok(fenced);
                }
                if attempt >= ATTEMPTS {
                    return Err(id.delta_error()(e).into());
                }
            }
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(table = id.name(), attempt, error = %e, "commit failed, retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                table.update_state().await.map_err(id.delta_error())?;
                if let Some(fenced) = check_fence(table, known_txns, group, &job.progress)
                    .await
                    .map_err(id.delta_error())?
                {
                    return Ok(fenced);
                }
            }
            Err(e) => return Err(id.delta_error()(e).into()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use arrow::record_batch::RecordBatch;

    use super::*;
    use crate::decoded::DecodedRows;
    use crate::offsets::{load_from_table, CommittedOffsets};
    use hourlake_catalog::Lake;

    fn one_event_batch(offset: i64) -> RecordBatch {
        let tp = TopicPartition::new("t", 0);
        let payload = format!(
            r#"{{"event_id":"e{offset}","event_type":"click","event_time":1795355100000,"user_id":"u"}}"#
        );
        let (committed, validation) = (CommittedOffsets::default(), Default::default());
        let mut w = DecodedRows::new(&committed, &validation);
        w.add(
            &tp,
            payload.as_bytes(),
            &crate::decoded::tests::meta(offset),
        );
        w.take().unwrap().merged(TableId::EngagementEvents)
    }

    /// A fresh lake in a temporary folder, and its engagement table.
    pub(crate) async fn new_engagement_table() -> (tempfile::TempDir, Lake, DeltaTable) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        let table = lake
            .open_or_create(TableId::EngagementEvents)
            .await
            .unwrap();
        (dir, lake, table)
    }

    /// Writes `batches` into a window's files of `table`, then commits them with
    /// `progress`.
    async fn commit_rows(
        table: &mut DeltaTable,
        txns: &mut TxnVersions,
        batches: Vec<RecordBatch>,
        progress: Vec<(TopicPartition, i64, Option<i64>)>,
    ) -> CommitOutcome {
        let mut files = HourFiles::new(TableId::EngagementEvents);
        for batch in batches {
            files.add(table, batch).await;
        }
        let job = TableCommit {
            table: TableId::EngagementEvents,
            progress,
        };
        let outcome = commit_table(table, txns, "g", job, &mut files, 0)
            .await
            .unwrap();
        assert_eq!(files.num_rows(), 0, "the files are empty after a commit");
        outcome
    }

    #[tokio::test]
    async fn commits_rows_with_offsets_and_fences_a_stale_writer() {
        let (dir, lake, mut table) = new_engagement_table().await;
        let tp = TopicPartition::new("t", 0);
        let rows = |offset: i64| vec![one_event_batch(offset)];
        let progress = |offset: i64, expected: Option<i64>| vec![(tp.clone(), offset, expected)];

        let mut txns = TxnVersions::default();
        let first = commit_rows(&mut table, &mut txns, rows(0), progress(0, None)).await;
        assert_eq!(first, CommitOutcome::Committed { version: 1 });
        // Another writer of the same partition, which has seen offset 0 committed.
        let mut stale = lake
            .open_or_create(TableId::EngagementEvents)
            .await
            .unwrap();
        let mut stale_txns = TxnVersions::default();
        assert_eq!(
            stale_txns.get(&stale, &app_id("g", &tp)).await.unwrap(),
            Some(0)
        );
        let second = commit_rows(&mut table, &mut txns, rows(1), progress(1, Some(0))).await;
        assert_eq!(second, CommitOutcome::Committed { version: 2 });

        // The other writer still believes offset 0 is the last one: it must not commit
        // (its cached offsets catch up with the commit it has not seen).
        let fenced = commit_rows(&mut stale, &mut stale_txns, rows(1), progress(1, Some(0))).await;
        assert_eq!(
            fenced,
            CommitOutcome::Fenced {
                partition: tp.clone(),
                expected: Some(0),
                found: Some(1)
            }
        );
        table.update_state().await.unwrap();
        assert_eq!(table.version(), Some(2), "a fenced commit adds no version");
        assert_eq!(
            table.snapshot().unwrap().log_data().num_files(),
            2,
            "a fenced commit's file is not in the table"
        );
        assert!(
            parquet_files(dir.path()).len() <= 3,
            "at most the fenced window's one abandoned file besides the table's"
        );

        let mut offsets = CommittedOffsets::default();
        load_from_table(
            &table,
            TableId::EngagementEvents,
            "g",
            std::slice::from_ref(&tp),
            &mut offsets,
        )
        .await
        .unwrap();
        assert_eq!(offsets.get(TableId::EngagementEvents, &tp), Some(1));
        // Another group keeps its own offsets.
        load_from_table(
            &table,
            TableId::EngagementEvents,
            "other",
            std::slice::from_ref(&tp),
            &mut offsets,
        )
        .await
        .unwrap();
        assert_eq!(offsets.get(TableId::EngagementEvents, &tp), None);

        // A progress-only commit (no rows) records offsets too.
        assert_eq!(
            commit_rows(&mut table, &mut txns, Vec::new(), progress(7, Some(1))).await,
            CommitOutcome::Committed { version: 3 }
        );
        let files = table.snapshot().unwrap().log_data().num_files();
        assert_eq!(files, 2, "one file per data commit, none for progress");
    }

    /// Every Parquet file under `dir`.
    fn parquet_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(parquet_files(&path));
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
        out
    }

    /// A full hour's file: zstd, dictionaries only where values repeat, deltas for rising
    /// numbers, statistics only where they prune. A straggler's (the row of the next
    /// hour, in the same commit): snappy and plain encodings, the same statistics.
    #[tokio::test]
    async fn full_files_and_stragglers_are_each_written_their_own_way() {
        use std::sync::Arc;

        use arrow::array::{AsArray, Int32Array};
        use arrow::compute::concat_batches;
        use arrow::datatypes::Int32Type;
        use deltalake::parquet::file::metadata::ColumnChunkMetaData;
        use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};

        let (dir, _lake, mut table) = new_engagement_table().await;
        // Two chunks: the full hour's rows but one and a late row of another hour, then
        // the full hour's last row — its file is made of both chunks.
        let mut rows = vec![one_event_batch(1); STRAGGLER_ROWS - 1];
        let late = one_event_batch(2);
        let hour = late.schema().index_of("event_hour").unwrap();
        let full_hour = late.column(hour).as_primitive::<Int32Type>().value(0);
        let mut columns = late.columns().to_vec();
        columns[hour] = Arc::new(Int32Array::from(vec![(full_hour + 1) % 24]));
        rows.insert(
            STRAGGLER_ROWS / 2,
            RecordBatch::try_new(late.schema(), columns).unwrap(),
        );
        commit_rows(
            &mut table,
            &mut TxnVersions::default(),
            vec![
                concat_batches(&rows[0].schema(), &rows).unwrap(),
                one_event_batch(3),
            ],
            vec![(TopicPartition::new("t", 0), 3, None)],
        )
        .await;

        let mut files: Vec<(i64, Vec<ColumnChunkMetaData>)> = parquet_files(dir.path())
            .iter()
            .map(|path| {
                let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
                let metadata = reader.metadata();
                (
                    metadata.file_metadata().num_rows(),
                    metadata.row_group(0).columns().to_vec(),
                )
            })
            .collect();
        files.sort_by_key(|(rows, _)| *rows);
        let [(1, straggler), (full_rows, full)] = files.as_slice() else {
            panic!("want a one-row file and a full one: {files:?}");
        };
        assert_eq!(*full_rows, STRAGGLER_ROWS as i64);
        let column = |columns: &[ColumnChunkMetaData], name: &str| {
            columns
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap_or_else(|| panic!("no column {name}"))
                .clone()
        };
        let has_deltas =
            |c: &ColumnChunkMetaData| c.encodings().any(|e| e == Encoding::DELTA_BINARY_PACKED);

        let offset = column(full, KAFKA_OFFSET);
        assert!(has_deltas(&offset));
        assert!(has_deltas(&column(full, INGESTED_AT)));
        assert!(offset.dictionary_page_offset().is_none());
        assert!(offset.statistics().is_some(), "offsets keep min/max");
        let event_id = column(full, "event_id");
        assert!(event_id.dictionary_page_offset().is_none());
        assert!(
            event_id.statistics().is_none(),
            "random ids carry no min/max"
        );
        for unique in ["user_id", "properties", INGESTED_AT] {
            assert!(
                column(full, unique).dictionary_page_offset().is_none(),
                "{unique} is written without a dictionary"
            );
        }
        let event_type = column(full, "event_type");
        assert!(event_type.dictionary_page_offset().is_some());
        assert!(
            event_type.statistics().is_none(),
            "an ingest file's event types never prune it"
        );
        for pruning in ["event_time", INGESTED_AT, KAFKA_OFFSET, "_kafka_topic"] {
            assert!(
                column(full, pruning).statistics().is_some(),
                "{pruning} keeps min/max"
            );
        }
        assert_eq!(
            event_type.compression(),
            Compression::ZSTD(ZstdLevel::try_new(1).unwrap())
        );

        for c in straggler {
            assert_eq!(c.compression(), Compression::SNAPPY, "{}", c.column_path());
            assert!(c.dictionary_page_offset().is_none(), "{}", c.column_path());
            assert!(!has_deltas(c), "{}", c.column_path());
        }
        assert!(column(straggler, "event_time").statistics().is_some());
        assert!(column(straggler, "event_id").statistics().is_none());
    }
}
