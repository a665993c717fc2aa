//! Historical events from files another system wrote — NDJSON (optionally gzip) and
//! Parquet — through the same window, decoder, dead letters and flusher as Kafka ingest.
//!
//! Each file is the only partition of a pseudo-topic named by its content hash
//! (`backfill-<16 hex digits of its BLAKE3 hash>`), and an event's position in the file is
//! its offset. The `txn` offsets in each commit then make a second run, or a run after a
//! `kill -9`, add nothing twice, and the offset audit accounts for every line.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use tokio::runtime::Handle;

use hourlake_catalog::{Lake, TableId};

use crate::config::IngestConfig;
use crate::offline::OfflineIngest;
use crate::offsets::TopicPartition;
use crate::IngestError;

/// Prefix of the pseudo-topics of backfilled files.
pub const BACKFILL_TOPIC_PREFIX: &str = "backfill-";

/// One input file and the partition its events are recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillFile {
    pub path: PathBuf,
    pub format: FileFormat,
    /// `backfill-<content hash>`, partition 0.
    pub partition: TopicPartition,
    /// Size on disk.
    pub bytes: u64,
}

/// How a file holds its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileFormat {
    /// One JSON event per line.
    Ndjson,
    /// NDJSON, gzip-compressed (`.gz`).
    NdjsonGzip,
    /// Parquet whose columns are the event's wire fields (nested ones as structs/lists).
    Parquet,
}

impl FileFormat {
    /// The format a file name says: `.parquet`, `.gz`, else NDJSON (`None` for names
    /// backfill does not read, e.g. `_SUCCESS` or `.crc`).
    pub fn of(path: &Path) -> Option<FileFormat> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.starts_with('.') || name.starts_with('_') {
            return None;
        }
        if name.ends_with(".parquet") {
            Some(FileFormat::Parquet)
        } else if name.ends_with(".gz") {
            Some(FileFormat::NdjsonGzip)
        } else if [".ndjson", ".jsonl", ".json"]
            .iter()
            .any(|e| name.ends_with(e))
        {
            Some(FileFormat::Ndjson)
        } else {
            None
        }
    }
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> IngestError {
    IngestError::Input {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The files to read: the given files, and the readable files under the given folders
/// (recursively), in path order; each with its content hash.
pub fn files_under(paths: &[PathBuf]) -> Result<Vec<BackfillFile>, IngestError> {
    let mut found = Vec::new();
    let mut pending: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = pending.pop() {
        let meta = std::fs::metadata(&path).map_err(|e| io_error(&path, e))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(|e| io_error(&path, e))? {
                pending.push(entry.map_err(|e| io_error(&path, e))?.path());
            }
        } else if let Some(format) = FileFormat::of(&path) {
            found.push((path, format));
        } else if paths.contains(&path) {
            return Err(io_error(
                &path,
                "not NDJSON (.ndjson/.jsonl/.json, .gz) or Parquet (.parquet)",
            ));
        }
    }
    found.sort();
    found.dedup();
    found
        .into_iter()
        .map(|(path, format)| {
            let (hash, bytes) = content_hash(&path)?;
            Ok(BackfillFile {
                partition: TopicPartition::new(&format!("{BACKFILL_TOPIC_PREFIX}{hash}"), 0),
                path,
                format,
                bytes,
            })
        })
        .collect()
}

/// The first 16 hex digits of the file's BLAKE3 hash (fast enough not to matter next
/// to decoding), and its size.
fn content_hash(path: &Path) -> Result<(String, u64), IngestError> {
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut hasher = blake3::Hasher::new();
    let bytes = std::io::copy(&mut file, &mut hasher).map_err(|e| io_error(path, e))?;
    let hex = hasher.finalize().to_hex();
    Ok((hex[..16].to_string(), bytes))
}

/// Reads a file's events one by one.
enum Events {
    Lines(Box<dyn BufRead + Send>),
    Parquet {
        reader: ParquetRecordBatchReader,
        lines: std::vec::IntoIter<Vec<u8>>,
    },
}

impl Events {
    fn open(file: &BackfillFile) -> Result<Events, IngestError> {
        let path = &file.path;
        let opened = File::open(path).map_err(|e| io_error(path, e))?;
        Ok(match file.format {
            FileFormat::Ndjson => {
                Events::Lines(Box::new(BufReader::with_capacity(1 << 20, opened)))
            }
            FileFormat::NdjsonGzip => Events::Lines(Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::read::MultiGzDecoder::new(opened),
            ))),
            FileFormat::Parquet => Events::Parquet {
                reader: ParquetRecordBatchReaderBuilder::try_new(opened)
                    .and_then(|b| b.with_batch_size(8192).build())
                    .map_err(|e| io_error(path, e))?,
                lines: Vec::new().into_iter(),
            },
        })
    }

    /// Reads the next event into `line` (blank lines are skipped, not counted); its
    /// bytes are `line[range]`; `None` at the end.
    fn next(
        &mut self,
        path: &Path,
        line: &mut Vec<u8>,
    ) -> Result<Option<std::ops::Range<usize>>, IngestError> {
        match self {
            Events::Lines(reader) => loop {
                line.clear();
                if reader
                    .read_until(b'\n', line)
                    .map_err(|e| io_error(path, e))?
                    == 0
                {
                    return Ok(None);
                }
                let start = line.iter().position(|b| !b.is_ascii_whitespace());
                let end = line.iter().rposition(|b| !b.is_ascii_whitespace());
                if let (Some(start), Some(end)) = (start, end) {
                    return Ok(Some(start..end + 1));
                }
            },
            Events::Parquet { reader, lines } => loop {
                if let Some(next) = lines.next() {
                    *line = next;
                    return Ok(Some(0..line.len()));
                }
                let Some(batch) = reader.next() else {
                    return Ok(None);
                };
                let batch = batch.map_err(|e| io_error(path, e))?;
                let mut out = Vec::new();
                {
                    let mut writer = arrow_json::LineDelimitedWriter::new(&mut out);
                    writer.write(&batch).map_err(|e| io_error(path, e))?;
                    writer.finish().map_err(|e| io_error(path, e))?;
                }
                *lines = out
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>()
                    .into_iter();
            },
        }
    }
}

/// Where a backfill stands, for progress displays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackfillProgress {
    /// Files finished.
    pub files_done: usize,
    /// Events read (including those already in the lake from an earlier run).
    pub events: u64,
    /// Bytes of the files finished, plus the current one's size once it is done.
    pub bytes_done: u64,
    /// Rows committed by this run (events and dead letters).
    pub rows_committed: u64,
    /// Events skipped because an earlier run committed them.
    pub skipped: u64,
    pub elapsed_secs: f64,
}

/// Backfills `files` into `lake`, one flush window at a time (`config.flush.max_rows`
/// events), calling `on_progress` after each commit. Blocks: call it off the runtime's
/// threads.
pub fn backfill(
    runtime: &Handle,
    lake: &Lake,
    config: &IngestConfig,
    files: &[BackfillFile],
    mut on_progress: impl FnMut(&BackfillProgress),
) -> Result<BackfillProgress, IngestError> {
    let partitions: Vec<TopicPartition> = files.iter().map(|f| f.partition.clone()).collect();
    let mut ingest = OfflineIngest::open(runtime, lake, config, &partitions)?;
    let started = Instant::now();
    let mut progress = BackfillProgress::default();
    let window = config.flush.max_rows.max(1);
    let mut in_window = 0usize;
    // A window is written while the next one is read: decode it, wait for the previous
    // window's commit, start this one's.
    let mut pending = false;
    let mut flush = |ingest: &mut OfflineIngest,
                     progress: &mut BackfillProgress,
                     pending: &mut bool,
                     last: bool| {
        let decoded = ingest.decode()?;
        if *pending {
            ingest.finish_commit()?;
        }
        ingest.start_commit(decoded)?;
        *pending = true;
        if last {
            ingest.finish_commit()?;
            *pending = false;
        }
        let metrics = ingest.metrics();
        progress.rows_committed = [
            TableId::EngagementEvents,
            TableId::RecommendationEvents,
            TableId::DeadLetters,
        ]
        .iter()
        .map(|t| metrics.rows_of(t.name()))
        .sum();
        progress.skipped = metrics.skipped_committed.get();
        progress.elapsed_secs = started.elapsed().as_secs_f64();
        on_progress(progress);
        Ok::<(), IngestError>(())
    };
    let mut line = Vec::new();
    for file in files {
        let mut events = Events::open(file)?;
        let mut offset = 0i64;
        while let Some(range) = events.next(&file.path, &mut line)? {
            ingest.add(&file.partition, offset, &line[range]);
            ingest.write_ahead()?;
            offset += 1;
            progress.events += 1;
            in_window += 1;
            if in_window >= window {
                flush(&mut ingest, &mut progress, &mut pending, false)?;
                in_window = 0;
            }
        }
        progress.files_done += 1;
        progress.bytes_done += file.bytes;
    }
    flush(&mut ingest, &mut progress, &mut pending, true)?;
    Ok(progress)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn event(i: usize, now_ms: i64) -> String {
        format!(
            r#"{{"event_id":"bf-{i}","event_type":"click","event_time":{},"user_id":"u{}"}}"#,
            now_ms - i as i64,
            i % 7
        )
    }

    #[test]
    fn files_are_read_once_whatever_the_number_of_runs() {
        let runtime = crate::test_runtime::one_worker_runtime();
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input");
        std::fs::create_dir_all(input.join("day=1")).unwrap();
        let now = chrono::Utc::now().timestamp_millis() - 3_600_000;
        // plain NDJSON with a blank line and a bad line; gzip in a sub-folder
        let mut plain: Vec<String> = (0..500).map(|i| event(i, now)).collect();
        plain.insert(10, String::new());
        plain.insert(20, "{not json".into());
        std::fs::write(input.join("a.ndjson"), plain.join("\n")).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(
            (500..800)
                .map(|i| event(i, now))
                .collect::<Vec<_>>()
                .join("\n")
                .as_bytes(),
        )
        .unwrap();
        std::fs::write(
            input.join("day=1").join("b.ndjson.gz"),
            gz.finish().unwrap(),
        )
        .unwrap();
        std::fs::write(input.join("_SUCCESS"), b"").unwrap();

        let files = files_under(std::slice::from_ref(&input)).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files
            .iter()
            .all(|f| f.partition.topic.starts_with(BACKFILL_TOPIC_PREFIX)));
        assert_ne!(files[0].partition, files[1].partition);

        let lake = Lake::local(dir.path().join("lake")).unwrap();
        let mut config = IngestConfig::new("unused", vec![], "hourlake-backfill");
        config.flush.max_rows = 128;
        let mut calls = 0;
        let first = backfill(runtime.handle(), &lake, &config, &files, |_| calls += 1).unwrap();
        assert_eq!(
            first.events, 801,
            "500 + the bad line + 300; the blank line is no event"
        );
        assert_eq!(first.rows_committed, 801);
        assert!(calls >= 6, "a commit every 128 events");
        let count = |table: TableId| {
            let lake = lake.clone();
            runtime.block_on(async move { hourlake_testkit_free_count(&lake, table).await })
        };
        assert_eq!(count(TableId::EngagementEvents), 800);
        assert_eq!(count(TableId::DeadLetters), 1);

        // again: nothing is added twice
        let second = backfill(runtime.handle(), &lake, &config, &files, |_| {}).unwrap();
        assert_eq!(second.rows_committed, 0);
        assert_eq!(second.skipped, 801);
        assert_eq!(count(TableId::EngagementEvents), 800);
    }

    #[test]
    fn windows_written_while_they_are_read_commit_every_event_once() {
        let runtime = crate::test_runtime::one_worker_runtime();
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input");
        std::fs::create_dir_all(&input).unwrap();
        let now = chrono::Utc::now().timestamp_millis() - 3_600_000;
        // Windows of 11 000 events span several decoded chunks, whose rows go to the
        // writer before the window commits; the first window's hour passes the
        // threshold above which an hour's rows stream into their file.
        let events: usize = 12_500;
        let lines: Vec<String> = (0..events).map(|i| event(i, now)).collect();
        std::fs::write(input.join("big.ndjson"), lines.join("\n")).unwrap();
        let files = files_under(std::slice::from_ref(&input)).unwrap();

        let lake = Lake::local(dir.path().join("lake")).unwrap();
        let mut config = IngestConfig::new("unused", vec![], "hourlake-backfill");
        config.flush.max_rows = 11_000;
        let mut commits = 0;
        let first = backfill(runtime.handle(), &lake, &config, &files, |_| commits += 1).unwrap();
        assert_eq!(first.events, events as u64);
        assert_eq!(first.rows_committed, events as u64);
        assert_eq!(commits, 2);
        let count = |table: TableId| {
            let lake = lake.clone();
            runtime.block_on(async move { hourlake_testkit_free_count(&lake, table).await })
        };
        assert_eq!(
            count(TableId::EngagementEvents),
            events,
            "no event lost or doubled"
        );

        let second = backfill(runtime.handle(), &lake, &config, &files, |_| {}).unwrap();
        assert_eq!(second.rows_committed, 0);
        assert_eq!(second.skipped, events as u64);
        assert_eq!(count(TableId::EngagementEvents), events);
    }

    async fn hourlake_testkit_free_count(lake: &Lake, table: TableId) -> usize {
        let Some(t) = lake.open(table).await.unwrap() else {
            return 0;
        };
        t.snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| f.num_records().unwrap_or(0))
            .sum()
    }
}
