//! The flusher: a task on the runtime that owns the Delta tables. It writes the open
//! window's rows into their files as they are decoded, commits each window it is
//! handed (one commit per table, the tables concurrently) and reports how that ended
//! over a channel; asked, it reads the offsets the tables hold. The poll thread keeps
//! one flush in flight while it fills the next window.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use deltalake::DeltaTable;
use hourlake_catalog::{Lake, TableId};
use tokio::runtime::Handle;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use crate::commit::{commit_table, CommitOutcome, TableCommit};
use crate::config::IngestConfig;
use crate::decoded::{FlushJob, OffsetRange};
use crate::fence::TxnVersions;
use crate::freshness::RecentLags;
use crate::hour_files::HourFiles;
use crate::metrics::IngestMetrics;
use crate::offsets::{load_from_table, CommittedOffsets, TopicPartition};
use crate::window::Window;
use crate::IngestError;

/// How many decoded rows may wait for the writer before the reader stops reading: a
/// few chunks, enough to keep the decoders busy while a window commits.
const WRITE_AHEAD_ROWS: usize = 8 * crate::chunk::CHUNK_MESSAGES;

/// The ingested tables, by id.
pub type Tables = BTreeMap<TableId, DeltaTable>;

/// Opens (or creates) every table ingest writes.
pub async fn open_tables(lake: &Lake) -> Result<Tables, IngestError> {
    let mut tables = Tables::new();
    for &id in TableId::INGEST_WRITES {
        tables.insert(id, lake.open_or_create(id).await?);
    }
    Ok(tables)
}

/// One table's part of a flush: its rows and the progress it tried to record, and how
/// its commit ended.
pub struct TableOutcome {
    pub table: TableId,
    pub rows: usize,
    pub progress: Vec<(TopicPartition, i64)>,
    pub result: Result<CommitOutcome, IngestError>,
}

/// How one flush ended: each table's outcome, and the offsets the window read.
pub struct Flushed {
    pub tables: Vec<TableOutcome>,
    pub ranges: BTreeMap<TopicPartition, OffsetRange>,
}

impl Flushed {
    /// Records what committed (the offsets each table now holds, the metrics) and logs
    /// what did not. Returns whether every table committed; if not, the window's
    /// partitions must be re-read from the tables' state.
    pub fn record(&self, committed: &mut CommittedOffsets, metrics: &IngestMetrics) -> bool {
        let mut clean = true;
        for outcome in &self.tables {
            let table = outcome.table;
            match &outcome.result {
                Ok(CommitOutcome::Committed { version }) => {
                    for (tp, last) in &outcome.progress {
                        committed.set(table, tp.clone(), *last);
                    }
                    let rows = outcome.rows as u64;
                    metrics
                        .rows_committed
                        .get_or_create(&IngestMetrics::table(table.name()))
                        .inc_by(rows);
                    metrics
                        .commits
                        .get_or_create(&IngestMetrics::table(table.name()))
                        .inc();
                    if table == TableId::DeadLetters {
                        metrics.dead_letters.inc_by(rows);
                    }
                    tracing::debug!(%table, version, rows, "committed");
                }
                Ok(CommitOutcome::Fenced {
                    partition,
                    expected,
                    found,
                }) => {
                    clean = false;
                    metrics.fenced.inc();
                    tracing::warn!(%table, %partition, ?expected, ?found, "another consumer wrote this partition; re-reading from the table's offsets");
                }
                Err(e) => {
                    clean = false;
                    metrics.commit_errors.inc();
                    tracing::error!(%table, error = %e, "commit failed; re-reading the window from Kafka");
                }
            }
        }
        clean
    }
}

/// What the flusher task is asked to do, in order.
enum Request {
    /// Rows of the open window, decoded: each table's go into its files now.
    Rows(BTreeMap<TableId, Vec<RecordBatch>>),
    /// The open window is dropped (its partitions will be re-read): abandon its files.
    Discard,
    /// Close and commit the window's files; the outcome goes to the outcome channel.
    Flush {
        commits: Vec<TableCommit>,
        ranges: BTreeMap<TopicPartition, OffsetRange>,
    },
    /// Read the offsets the tables hold of these partitions, at their newest versions.
    LoadOffsets {
        partitions: Vec<TopicPartition>,
        reply: oneshot::Sender<Result<CommittedOffsets, IngestError>>,
    },
}

/// The poll thread's end of the flusher: hands windows over one at a time, collects
/// their outcomes, and decides what each table's commit holds. Its methods that wait
/// block the calling thread: call them off the runtime's threads.
pub struct Flusher {
    requests: mpsc::UnboundedSender<Request>,
    outcomes: mpsc::UnboundedReceiver<Flushed>,
    in_flight: bool,
    /// Rows handed over and not yet written into their files (shared with the task).
    unwritten: Arc<AtomicUsize>,
    progress_interval: Duration,
    /// When each table last recorded progress for every partition read.
    last_progress: HashMap<TableId, Instant>,
}

fn stopped() -> IngestError {
    IngestError::Thread("the flusher stopped".into())
}

impl Flusher {
    /// Starts the flusher task on `runtime`; it owns `tables` from now on, and ends when
    /// this end is dropped.
    pub fn start(
        runtime: &Handle,
        tables: Tables,
        config: &IngestConfig,
        metrics: IngestMetrics,
    ) -> Flusher {
        let (requests, requested) = mpsc::unbounded_channel();
        let (report, outcomes) = mpsc::unbounded_channel();
        let unwritten = Arc::new(AtomicUsize::new(0));
        let task = FlushTask {
            unwritten: unwritten.clone(),
            files: tables.keys().map(|id| (*id, HourFiles::new(*id))).collect(),
            txns: tables
                .keys()
                .map(|id| (*id, TxnVersions::default()))
                .collect(),
            tables,
            group: config.group.clone(),
            checkpoint_interval: config.checkpoint_interval,
            metrics,
            recent: RecentLags::default(),
        };
        runtime.spawn(task.serve(requested, report));
        Flusher {
            requests,
            outcomes,
            in_flight: false,
            unwritten,
            progress_interval: config.progress_interval,
            last_progress: HashMap::new(),
        }
    }

    /// Whether a flush is being written.
    pub fn is_busy(&self) -> bool {
        self.in_flight
    }

    /// Hands rows of the open window over to be written into its files now, while the
    /// rest of the window is read (and the previous one may still be committing).
    pub fn stream(&mut self, rows: BTreeMap<TableId, Vec<RecordBatch>>) -> Result<(), IngestError> {
        if rows.is_empty() {
            return Ok(());
        }
        let count: usize = rows.values().flatten().map(RecordBatch::num_rows).sum();
        self.unwritten.fetch_add(count, Ordering::SeqCst);
        self.requests
            .send(Request::Rows(rows))
            .map_err(|_| stopped())
    }

    /// Hands `window`'s decoded chunks to the writer, then waits while more than a few
    /// chunks wait for it: the reader stays a few chunks ahead of the writer instead of
    /// holding a window's rows.
    pub fn write_ahead(&mut self, window: &mut Window) -> Result<(), IngestError> {
        self.stream(window.ready())?;
        self.wait_for_writer(WRITE_AHEAD_ROWS)
    }

    /// Waits until at most `rows` rows handed over wait to be written: reading ahead of
    /// the writer would only hold decoded rows in memory.
    pub fn wait_for_writer(&self, rows: usize) -> Result<(), IngestError> {
        while self.unwritten.load(Ordering::SeqCst) > rows {
            if self.requests.is_closed() {
                return Err(stopped());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Abandons the open window's files: its partitions will be re-read.
    pub fn discard(&mut self) -> Result<(), IngestError> {
        self.requests.send(Request::Discard).map_err(|_| stopped())
    }

    /// Hands the rest of a window over and has it committed, `committed` being the
    /// offsets the tables are believed to hold. One flush at a time: collect the
    /// previous one's outcome first ([`Flusher::finished`], [`Flusher::wait`]).
    pub fn flush(
        &mut self,
        job: FlushJob,
        committed: &CommittedOffsets,
    ) -> Result<(), IngestError> {
        if self.in_flight {
            return Err(IngestError::Thread(
                "a flush started while another was in flight".into(),
            ));
        }
        self.stream(job.batches)?;
        let commits = self.plan(&job.touched, &job.ranges, committed);
        self.requests
            .send(Request::Flush {
                commits,
                ranges: job.ranges,
            })
            .map_err(|_| stopped())?;
        self.in_flight = true;
        Ok(())
    }

    /// The outcome of the flush in flight, if it has finished.
    pub fn finished(&mut self) -> Result<Option<Flushed>, IngestError> {
        if !self.in_flight {
            return Ok(None);
        }
        match self.outcomes.try_recv() {
            Ok(flushed) => {
                self.in_flight = false;
                Ok(Some(flushed))
            }
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(stopped()),
        }
    }

    /// Waits for the flush in flight, if there is one, and returns its outcome.
    pub fn wait(&mut self) -> Result<Option<Flushed>, IngestError> {
        if !self.in_flight {
            return Ok(None);
        }
        self.in_flight = false;
        self.outcomes.blocking_recv().map(Some).ok_or_else(stopped)
    }

    /// Reads the offsets the tables hold of `partitions`, at their newest versions
    /// (after any flush handed over before).
    pub fn load_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<CommittedOffsets, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::LoadOffsets {
                partitions: partitions.to_vec(),
                reply,
            })
            .map_err(|_| stopped())?;
        answer.blocking_recv().map_err(|_| stopped())?
    }

    /// Decides what each table's commit records: `txn` progress for the partitions it
    /// has rows from — or for every partition read, when its progress is due.
    fn plan(
        &mut self,
        touched: &BTreeMap<TableId, BTreeSet<TopicPartition>>,
        ranges: &BTreeMap<TopicPartition, OffsetRange>,
        committed: &CommittedOffsets,
    ) -> Vec<TableCommit> {
        let mut commits = Vec::new();
        for &table in TableId::INGEST_WRITES {
            let due = self
                .last_progress
                .get(&table)
                .is_none_or(|t| t.elapsed() >= self.progress_interval);
            let rows_from = touched.get(&table);
            let progress: Vec<(TopicPartition, i64, Option<i64>)> = ranges
                .iter()
                .filter(|(tp, _)| due || rows_from.is_some_and(|s| s.contains(*tp)))
                .filter_map(|(tp, range)| {
                    let believed = committed.get(table, tp);
                    (believed.is_none_or(|b| range.last > b))
                        .then(|| (tp.clone(), range.last, believed))
                })
                .collect();
            if rows_from.is_none() && progress.is_empty() {
                continue;
            }
            if due {
                self.last_progress.insert(table, Instant::now());
            }
            commits.push(TableCommit { table, progress });
        }
        commits
    }
}

/// The task's side: the tables and what committing needs.
struct FlushTask {
    tables: Tables,
    /// Rows handed over and not yet written (the poll thread's back-pressure).
    unwritten: Arc<AtomicUsize>,
    /// Each table's files of the open window (same keys as `tables`).
    files: BTreeMap<TableId, HourFiles>,
    /// Each table's `txn` versions, for the fence check (same keys as `tables`).
    txns: BTreeMap<TableId, TxnVersions>,
    group: String,
    checkpoint_interval: u64,
    metrics: IngestMetrics,
    /// The last minute of commits' freshness, for the p95 gauge.
    recent: RecentLags,
}

impl FlushTask {
    /// Serves requests in order until the poll thread's end is dropped.
    async fn serve(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        report: mpsc::UnboundedSender<Flushed>,
    ) {
        while let Some(request) = requests.recv().await {
            match request {
                Request::Rows(rows) => self.write(rows).await,
                Request::Discard => self.files.values_mut().for_each(HourFiles::discard),
                Request::Flush { commits, ranges } => {
                    let tables = self.commit(commits).await;
                    if report.send(Flushed { tables, ranges }).is_err() {
                        return;
                    }
                }
                Request::LoadOffsets { partitions, reply } => {
                    let _ = reply.send(self.load_offsets(&partitions).await);
                }
            }
        }
    }

    /// Writes each table's rows into its files of the open window.
    async fn write(&mut self, rows: BTreeMap<TableId, Vec<RecordBatch>>) {
        for (id, batches) in rows {
            let (Some(table), Some(files)) = (self.tables.get(&id), self.files.get_mut(&id)) else {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                self.unwritten.fetch_sub(rows, Ordering::SeqCst);
                tracing::error!(table = %id, "rows of a table ingest does not write");
                continue;
            };
            for batch in batches {
                let rows = batch.num_rows();
                files.add(table, batch).await;
                self.unwritten.fetch_sub(rows, Ordering::SeqCst);
            }
        }
    }

    /// Commits every table's part of a flush at once.
    async fn commit(&mut self, commits: Vec<TableCommit>) -> Vec<TableOutcome> {
        let started = Instant::now();
        let mut commits: BTreeMap<TableId, TableCommit> =
            commits.into_iter().map(|c| (c.table, c)).collect();
        let context = CommitContext {
            group: &self.group,
            checkpoint_interval: self.checkpoint_interval,
            metrics: &self.metrics,
            recent: &self.recent,
        };
        let mut unplanned = Vec::new();
        let tables = self
            .tables
            .iter_mut()
            .zip(self.txns.values_mut())
            .zip(self.files.values_mut());
        let work = tables.filter_map(|(((id, table), txns), files)| {
            let Some(job) = commits.remove(id) else {
                if files.num_rows() > 0 {
                    // Rows without offsets to record cannot commit: re-read them.
                    files.discard();
                    unplanned.push(*id);
                }
                return None;
            };
            Some(commit_one(table, txns, files, job, &context))
        });
        let mut outcomes = futures::future::join_all(work).await;
        outcomes.extend(unplanned.into_iter().map(|table| TableOutcome {
            table,
            rows: 0,
            progress: Vec::new(),
            result: Err(IngestError::Thread(format!(
                "{table}: a window's rows came without offsets to commit"
            ))),
        }));
        context
            .metrics
            .commit_latency
            .observe(started.elapsed().as_secs_f64());
        outcomes
    }

    async fn load_offsets(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<CommittedOffsets, IngestError> {
        let mut loaded = CommittedOffsets::default();
        for (id, table) in self.tables.iter_mut() {
            table.update_state().await.map_err(id.delta_error())?;
            load_from_table(table, *id, &self.group, partitions, &mut loaded).await?;
        }
        Ok(loaded)
    }
}

/// Commits one table's part of a flush; observes the event-time lag and the
/// read-to-commit time of what committed.
/// What every table's commit of a flush shares.
struct CommitContext<'a> {
    group: &'a str,
    checkpoint_interval: u64,
    metrics: &'a IngestMetrics,
    recent: &'a RecentLags,
}

async fn commit_one(
    table: &mut DeltaTable,
    txns: &mut TxnVersions,
    files: &mut HourFiles,
    job: TableCommit,
    context: &CommitContext<'_>,
) -> TableOutcome {
    let CommitContext {
        group,
        checkpoint_interval,
        metrics,
        recent,
    } = *context;
    let id = job.table;
    let rows = files.num_rows();
    let progress: Vec<(TopicPartition, i64)> = job
        .progress
        .iter()
        .map(|(tp, last, _)| (tp.clone(), *last))
        .collect();
    let (times, read_at) = files.take_times();
    let result = commit_table(table, txns, group, job, files, checkpoint_interval).await;
    if let Ok(CommitOutcome::Committed { .. }) = &result {
        let now = chrono::Utc::now().timestamp_micros();
        let seconds_since = |t: &i64| now.saturating_sub(*t) as f64 / 1e6;
        if !times.is_empty() {
            let lags: Vec<f64> = times.iter().map(seconds_since).collect();
            metrics.event_time_lag.observe_all(lags.iter().copied());
            if let Some(p95) = recent.add(&lags) {
                metrics.event_to_commit_p95.set(p95);
            }
        }
        metrics
            .read_to_commit
            .observe_all(read_at.iter().map(seconds_since));
    }
    TableOutcome {
        table: id,
        rows,
        progress,
        result,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use arrow::array::AsArray;
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::hour_files::tests::rows;

    /// A job of `batches` of the engagement table, read from `t-0` at `first..=last`.
    fn job(batches: Vec<RecordBatch>, first: i64, last: i64) -> FlushJob {
        let tp = TopicPartition::new("t", 0);
        FlushJob {
            batches: BTreeMap::from([(TableId::EngagementEvents, batches)]),
            touched: BTreeMap::from([(TableId::EngagementEvents, BTreeSet::from([tp.clone()]))]),
            ranges: BTreeMap::from([(tp, OffsetRange { first, last })]),
        }
    }

    /// Every event id in the table's files.
    fn event_ids(table: &DeltaTable) -> Vec<String> {
        let mut ids = Vec::new();
        for uri in table.get_file_uris().unwrap() {
            let path = uri.strip_prefix("file://").unwrap_or(&uri).to_string();
            let file = std::fs::File::open(&path).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let column = batch.column_by_name("event_id").unwrap().as_string::<i32>();
                ids.extend(column.iter().map(|v| v.unwrap().to_string()));
            }
        }
        ids.sort();
        ids
    }

    #[test]
    fn rows_streamed_before_a_discard_never_reach_the_table_and_a_window_commits_whole() {
        let runtime = crate::test_runtime::one_worker_runtime();
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        let tables = runtime.block_on(open_tables(&lake)).unwrap();
        let config = IngestConfig::new("unused", vec!["t".into()], "g");
        let metrics = IngestMetrics::default();
        let mut flusher = Flusher::start(runtime.handle(), tables, &config, metrics.clone());
        let mut committed = CommittedOffsets::default();

        // A window whose rows were streamed (one hour past the streaming threshold),
        // then dropped: a failed commit before it, or a rebalance.
        let many = crate::commit::STRAGGLER_ROWS + 5;
        flusher
            .stream(BTreeMap::from([(
                TableId::EngagementEvents,
                vec![
                    rows("dropped-", 0, many, 0),
                    rows("dropped-", many as i64, 2, -1),
                ],
            )]))
            .unwrap();
        flusher.discard().unwrap();

        // The re-read window: some rows streamed while it was read, the rest with the
        // flush.
        flusher
            .stream(BTreeMap::from([(
                TableId::EngagementEvents,
                vec![rows("kept-", 0, 3, 0)],
            )]))
            .unwrap();
        flusher
            .flush(job(vec![rows("kept-", 3, 2, -1)], 0, 4), &committed)
            .unwrap();
        let flushed = flusher.wait().unwrap().unwrap();
        assert!(flushed.record(&mut committed, &metrics));
        assert_eq!(
            flusher.unwritten.load(Ordering::SeqCst),
            0,
            "every row handed over was written (the poll thread's back-pressure count)"
        );
        flusher.wait_for_writer(0).unwrap();
        let tp = TopicPartition::new("t", 0);
        assert_eq!(committed.get(TableId::EngagementEvents, &tp), Some(4));

        let mut table = runtime
            .block_on(lake.open(TableId::EngagementEvents))
            .unwrap()
            .unwrap();
        runtime.block_on(table.update_state()).unwrap();
        let want: Vec<String> = (0..5).map(|i| format!("kept-{i}")).collect();
        assert_eq!(
            event_ids(&table),
            want,
            "exactly the committed window's rows"
        );
        assert_eq!(
            table.snapshot().unwrap().log_data().num_files(),
            2,
            "one file per hour"
        );
        assert_eq!(
            metrics
                .rows_committed
                .get_or_create(&IngestMetrics::table(TableId::EngagementEvents.name()))
                .get(),
            5
        );
    }
}
