//! Retention: partitions past their keep time are removed whole — hours of the event
//! tables, days of `dead_letters` (by `ingest_date`) and of the rollups (by
//! `event_date`) — in one metadata-only commit per table: a Delta `remove` of every file
//! of those partitions, nothing rewritten. Vacuum deletes the files later, once they are
//! past the vacuum retention.
//!
//! Every Kafka offset stays accounted for (see [`crate::audit`]). Before a drop from an
//! ingested table commits, the offsets of the rows it removes are recorded in
//! `expired_offsets` as runs of consecutive offsets per partition, under the table's next
//! drop number; the drop's commit carries that number as a `txn` version (app id
//! [`DROP_APP_ID`]), and readers count the runs of committed drops only. A drop that
//! fails after recording its runs leaves runs under a number its table never committed;
//! the retry, under the same number, replaces them. Rollups hold no offsets: their drops
//! record nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::prelude::ParquetReadOptions;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::DeltaTable;
use hourlake_catalog::partition::{date_of, date_string, parse_date};
use hourlake_catalog::schema::{DROP_ID, EVENT_HOUR, KAFKA_OFFSET, KAFKA_PARTITION, KAFKA_TOPIC};
use hourlake_catalog::schema::{EVENT_DATE, SOURCE_TABLE};
use hourlake_catalog::{Hour, Lake, Rollup, TableId};
use hourlake_sql::{register_table, SessionFactory};

use crate::plan::{file_urls, DataFile};
use crate::{maintenance, CompactorConfig, CompactorError, Lease};

#[cfg(test)]
mod tests;

/// The `txn` app id, in an ingested table, of its last committed retention drop.
pub const DROP_APP_ID: &str = "hourlake-retention";

/// Every this many commits of `expired_offsets`, a drop compacts its source's runs into
/// few files and checkpoints, cleans up and vacuums the ledger, so that its log and
/// file count stay small however long the lake lives.
const LEDGER_TIDY_EVERY: u64 = 50;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// How long each kind of table keeps its partitions; `None` keeps them forever.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Raw events: an hour is dropped once it ended this long ago.
    pub events: Option<Duration>,
    /// Dead letters: an `ingest_date` is dropped once it ended this long ago.
    pub dead_letters: Option<Duration>,
    /// Rollup rows: an `event_date` is dropped once it ended this long ago.
    pub rollups: Option<Duration>,
}

impl RetentionConfig {
    /// Days each kind keeps (`None`: forever).
    pub fn days(events: Option<u64>, dead_letters: Option<u64>, rollups: Option<u64>) -> Self {
        let days = |d: Option<u64>| d.map(|d| Duration::from_secs(d.saturating_mul(DAY.as_secs())));
        RetentionConfig {
            events: days(events),
            dead_letters: days(dead_letters),
            rollups: days(rollups),
        }
    }

    /// Whether nothing is ever dropped.
    pub fn is_off(&self) -> bool {
        self.events.is_none() && self.dead_letters.is_none() && self.rollups.is_none()
    }

    /// Refuses settings that cannot work: a zero keep time, and rollups kept shorter
    /// than the raw events they summarize (the compactor would roll the trimmed hours up
    /// again at every pass).
    pub fn validate(&self) -> Result<(), String> {
        for (name, keep) in [
            ("events", self.events),
            ("dead_letters", self.dead_letters),
            ("rollups", self.rollups),
        ] {
            if keep == Some(Duration::ZERO) {
                return Err(format!("[retention] {name}_days must be 1 or more"));
            }
        }
        match (self.rollups, self.events) {
            (Some(_), None) => Err(
                "[retention] rollups_days needs events_days: rollups cannot be trimmed while the raw events they summarize are kept"
                    .into(),
            ),
            (Some(rollups), Some(events)) if rollups < events => Err(format!(
                "[retention] rollups_days ({}) must be at least events_days ({})",
                rollups.as_secs() / DAY.as_secs(),
                events.as_secs() / DAY.as_secs()
            )),
            _ => Ok(()),
        }
    }

    /// How long `id` keeps its partitions, if it is trimmed at all (the ledgers never
    /// are, nor `quality_hourly`: a hundred small rows an hour, the history anomaly
    /// detection compares with).
    pub fn keep(&self, id: TableId) -> Option<Duration> {
        match id {
            TableId::EngagementEvents | TableId::RecommendationEvents => self.events,
            TableId::DeadLetters => self.dead_letters,
            TableId::EngagementHourly
            | TableId::EngagementHourlyTotals
            | TableId::RecommendationHourly
            | TableId::Sessions
            | TableId::SessionsHourly
            | TableId::SessionsHourlyTotals => self.rollups,
            TableId::RemovedDuplicates
            | TableId::ExpiredOffsets
            | TableId::ErasureLog
            | TableId::IngestedMinutes
            | TableId::LossMinutely
            | TableId::QualityHourly => None,
        }
    }
}

/// What one drop removed from one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The table.
    pub table: TableId,
    /// Partitions removed: hours of an event table, days otherwise.
    pub partitions: usize,
    /// Files removed.
    pub files: usize,
    /// Rows removed (from the log's file statistics).
    pub rows: u64,
    /// Runs of offsets recorded in `expired_offsets` (none for rollups).
    pub offset_runs: usize,
    /// The table version of the drop's commit.
    pub version: u64,
}

/// A run of consecutive Kafka offsets of one partition, `first..=last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRun {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
}

/// The first partition kept: everything before it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cutoff {
    /// Event tables: hours before this one.
    Hour(Hour),
    /// Day-partitioned tables: dates before this one, in the table's first partition
    /// column.
    Day(&'static str, i32),
}

impl Cutoff {
    /// What `id` keeps when it keeps `keep` at `now_micros`: partitions that ended
    /// before `now - keep` go.
    fn of(id: TableId, keep: Duration, now_micros: i64) -> Cutoff {
        let keep = i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
        let edge = now_micros.saturating_sub(keep);
        let columns = id.partition_columns();
        if columns.contains(&EVENT_HOUR) {
            Cutoff::Hour(Hour::of_micros(edge))
        } else {
            Cutoff::Day(
                columns.first().copied().unwrap_or(EVENT_DATE),
                date_of(edge),
            )
        }
    }

    /// The partition of a file from its partition values (`(date, hour)`; hour 0 for
    /// day partitions), when it is before the cutoff.
    fn expired(
        &self,
        id: TableId,
        values: &HashMap<String, Option<String>>,
    ) -> Result<Option<(i32, i32)>, CompactorError> {
        let unexpected = || CompactorError::Unexpected {
            table: id.name(),
            reason: format!("a file has partition values {values:?}"),
        };
        Ok(match self {
            Cutoff::Hour(cutoff) => {
                let hour = Hour::from_partition_values(values).ok_or_else(unexpected)?;
                (hour < *cutoff).then_some((hour.date, hour.hour))
            }
            Cutoff::Day(column, cutoff) => {
                let date = values
                    .get(*column)
                    .and_then(|v| v.as_deref())
                    .and_then(parse_date)
                    .ok_or_else(unexpected)?;
                (date < *cutoff).then_some((date, 0))
            }
        })
    }

    /// The SQL predicate of the dropped partitions (recorded in the commit, and what
    /// concurrent appends are checked against).
    fn predicate(&self) -> String {
        match self {
            Cutoff::Hour(h) => format!(
                "{EVENT_DATE} < DATE '{d}' OR ({EVENT_DATE} = DATE '{d}' AND {EVENT_HOUR} < {})",
                h.hour,
                d = h.date_string()
            ),
            Cutoff::Day(column, date) => format!("{column} < DATE '{}'", date_string(*date)),
        }
    }
}

/// Drops what `config` says `id` (an event table or `dead_letters`, whose lease is
/// `lease`) no longer keeps at `now_micros`, and for an event table what its rollups no
/// longer keep. One entry per table that lost partitions.
pub async fn expire(
    factory: &SessionFactory,
    config: &CompactorConfig,
    id: TableId,
    table: &mut DeltaTable,
    lease: &mut Lease,
    now_micros: i64,
) -> Result<Vec<Dropped>, CompactorError> {
    let mut dropped = Vec::new();
    if let Some(keep) = config.retention.keep(id) {
        // The ledger exists wherever retention runs, dropped anything yet or not, so
        // readers of every table (SQL, Spark) find it.
        if TableId::INGESTED.contains(&id) {
            factory
                .lake()
                .open_or_create(TableId::ExpiredOffsets)
                .await?;
        }
        dropped.extend(drop_before(factory, config, id, table, lease, keep, now_micros).await?);
    }
    if let Some(keep) = config.retention.rollups {
        // The sessions derived from engagement events and their rollup are summaries
        // too: kept as long as the rollups.
        let derived: Vec<TableId> = if id == TableId::EngagementEvents {
            std::iter::once(TableId::Sessions)
                .chain(Rollup::of_source(TableId::Sessions).map(|r| r.table))
                .collect()
        } else {
            Vec::new()
        };
        let summaries = Rollup::of_source(id).map(|r| r.table).chain(derived);
        for summary in summaries {
            let Some(mut rolled) = factory.lake().open(summary).await? else {
                continue;
            };
            dropped.extend(
                drop_before(
                    factory,
                    config,
                    summary,
                    &mut rolled,
                    lease,
                    keep,
                    now_micros,
                )
                .await?,
            );
        }
    }
    Ok(dropped)
}

/// Removes every partition of `table` that ended more than `keep` before `now_micros`,
/// recording the offsets of an ingested table's rows first.
async fn drop_before(
    factory: &SessionFactory,
    config: &CompactorConfig,
    id: TableId,
    table: &mut DeltaTable,
    lease: &mut Lease,
    keep: Duration,
    now_micros: i64,
) -> Result<Option<Dropped>, CompactorError> {
    table.update_state().await.map_err(id.delta_error())?;
    let cutoff = Cutoff::of(id, keep, now_micros);
    let (files, partitions) = expired_files(id, table, cutoff)?;
    if files.is_empty() {
        return Ok(None);
    }

    let mut props = CommitProperties::default().with_create_checkpoint(false);
    let mut offset_runs = 0;
    if TableId::INGESTED.contains(&id) {
        let drop_id = committed_drop(id, table).await? + 1;
        let runs = runs_of(factory, id, table, &files).await?;
        offset_runs = runs.len();
        lease.renew().await?;
        record_runs(factory.lake(), config, id, drop_id, &runs).await?;
        props = props.with_application_transactions(vec![Transaction::new(
            DROP_APP_ID,
            i64::try_from(drop_id).unwrap_or(i64::MAX),
        )]);
    }
    // Never commit on a lease we no longer hold: another compactor may be dropping (and
    // recording) the same partitions.
    lease.renew().await?;
    let version = commit_drop(id, table, &files, props, cutoff).await?;
    table.update_state().await.map_err(id.delta_error())?;
    Ok(Some(Dropped {
        table: id,
        partitions,
        files: files.len(),
        rows: files.iter().map(|f| f.rows.unwrap_or(0)).sum(),
        offset_runs,
        version,
    }))
}

/// The files of `table`'s partitions before `cutoff` (to be removed with a
/// data-changing `remove`), and how many partitions they are in.
fn expired_files(
    id: TableId,
    table: &DeltaTable,
    cutoff: Cutoff,
) -> Result<(Vec<DataFile>, usize), CompactorError> {
    let snapshot = table.snapshot().map_err(id.delta_error())?;
    let mut files = Vec::new();
    let mut partitions = BTreeSet::new();
    for view in snapshot.log_data().iter() {
        if let Some(partition) = cutoff.expired(id, &view.partition_values_map())? {
            partitions.insert(partition);
            files.push(DataFile {
                path: view.path().into_owned(),
                size: u64::try_from(view.size()).unwrap_or(0),
                rows: view.num_records().map(|n| n as u64),
                written_at_ms: view.modification_time(),
                remove: view.remove_action(true),
            });
        }
    }
    Ok((files, partitions.len()))
}

/// Commits the removal of `files` (planned on `table`'s loaded snapshot) as a DELETE
/// of the partitions before `cutoff`; the new version. Concurrent appends elsewhere do
/// not conflict with it; an append into a dropped partition does (deltalake checks
/// added files against the predicate), and the drop is retried at the next pass.
async fn commit_drop(
    id: TableId,
    table: &DeltaTable,
    files: &[DataFile],
    props: CommitProperties,
    cutoff: Cutoff,
) -> Result<u64, CompactorError> {
    let actions = files
        .iter()
        .map(|f| Action::Remove(f.remove.clone()))
        .collect();
    let snapshot = table.snapshot().map_err(id.delta_error())?;
    let committed = CommitBuilder::from(props)
        .with_actions(actions)
        .build(
            Some(snapshot),
            table.log_store(),
            DeltaOperation::Delete {
                predicate: Some(cutoff.predicate()),
            },
        )
        .await
        .map_err(id.delta_error())?;
    Ok(committed.version())
}

/// The number of the last retention drop committed to `table` (0: none yet): the runs
/// of `expired_offsets` recorded under it and lower numbers count.
pub async fn committed_drop(id: TableId, table: &DeltaTable) -> Result<u64, CompactorError> {
    let snapshot = table.snapshot().map_err(id.delta_error())?;
    let version = snapshot
        .transaction_version(table.log_store().as_ref(), DROP_APP_ID)
        .await
        .map_err(id.delta_error())?;
    Ok(version.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

/// The offsets held by `files` of `id`, as runs of consecutive offsets per partition.
/// Offsets that `removed_duplicates` lists are left out: the copy is a leftover of a
/// rewrite that did not commit, and once it is gone the ledger accounts for it.
async fn runs_of(
    factory: &SessionFactory,
    id: TableId,
    table: &DeltaTable,
    files: &[DataFile],
) -> Result<Vec<OffsetRun>, CompactorError> {
    let ctx = factory.local_context()?;
    table
        .update_datafusion_session(&ctx.state())
        .map_err(id.delta_error())?;
    let refs: Vec<&DataFile> = files.iter().collect();
    let urls = file_urls(id, table, &refs)?;
    let dropped = ctx
        .read_parquet(urls, ParquetReadOptions::default())
        .await?;
    ctx.register_table("dropped", dropped.into_view())?;
    runs_of_dropped(factory, &ctx, id, "true").await
}

/// The offsets of `table`'s rows matching `predicate` (what a delete is about to
/// remove), as runs like [`runs_of`]'s.
pub async fn runs_matching(
    factory: &SessionFactory,
    id: TableId,
    table: &DeltaTable,
    predicate: &str,
) -> Result<Vec<OffsetRun>, CompactorError> {
    let ctx = factory.local_context()?;
    register_table(&ctx, "dropped", table).await?;
    runs_of_dropped(factory, &ctx, id, predicate).await
}

/// The runs of the offsets of the rows of table `dropped` (registered in `ctx`) that
/// match `predicate`, leaving out copies `removed_duplicates` lists.
async fn runs_of_dropped(
    factory: &SessionFactory,
    ctx: &datafusion::prelude::SessionContext,
    id: TableId,
    predicate: &str,
) -> Result<Vec<OffsetRun>, CompactorError> {
    let mut leftovers = String::new();
    let ledger = TableId::RemovedDuplicates;
    if TableId::EVENTS.contains(&id) {
        if let Some(removed) = factory.lake().open(ledger).await? {
            register_table(ctx, ledger.name(), &removed).await?;
            leftovers = format!(
                " WHERE NOT EXISTS (SELECT 1 FROM {ledger} r WHERE r.{KAFKA_TOPIC} = d.{KAFKA_TOPIC} \
                   AND r.{KAFKA_PARTITION} = d.{KAFKA_PARTITION} AND r.{KAFKA_OFFSET} = d.{KAFKA_OFFSET})"
            );
        }
    }
    // Consecutive offsets share `o - row_number()`: one group per run.
    let sql = format!(
        "WITH held AS (SELECT DISTINCT CAST(d.{KAFKA_TOPIC} AS VARCHAR) AS t, d.{KAFKA_PARTITION} AS p, \
                        d.{KAFKA_OFFSET} AS o FROM (SELECT * FROM dropped WHERE {predicate}) d{leftovers}), \
              grouped AS (SELECT t, p, o, o - CAST(row_number() OVER (PARTITION BY t, p ORDER BY o) AS BIGINT) AS run \
                          FROM held) \
         SELECT t, CAST(p AS BIGINT), min(o), max(o) FROM grouped GROUP BY t, p, run"
    );
    let mut runs = Vec::new();
    for batch in ctx.sql(&sql).await?.collect().await? {
        let topics = arrow::compute::cast(batch.column(0), &DataType::Utf8)
            .map_err(datafusion::error::DataFusionError::from)?;
        let topics = topics.as_string::<i32>();
        let number = |i: usize| batch.column(i).as_primitive_opt::<Int64Type>();
        let (Some(partitions), Some(firsts), Some(lasts)) = (number(1), number(2), number(3))
        else {
            return Err(CompactorError::Unexpected {
                table: id.name(),
                reason: "offset runs are not integers".into(),
            });
        };
        for row in 0..batch.num_rows() {
            if topics.is_null(row) || firsts.is_null(row) || lasts.is_null(row) {
                continue;
            }
            runs.push(OffsetRun {
                topic: topics.value(row).to_string(),
                partition: i32::try_from(partitions.value(row)).unwrap_or(i32::MAX),
                first: firsts.value(row),
                last: lasts.value(row),
            });
        }
    }
    runs.sort_by(|a, b| (&a.topic, a.partition, a.first).cmp(&(&b.topic, b.partition, b.first)));
    Ok(runs)
}

/// Records `runs` in `expired_offsets` as drop `drop_id` of `source`, replacing whatever
/// an earlier attempt of that drop recorded (in one commit).
pub async fn record_runs(
    lake: &Lake,
    config: &CompactorConfig,
    source: TableId,
    drop_id: u64,
    runs: &[OffsetRun],
) -> Result<(), CompactorError> {
    let id = TableId::ExpiredOffsets;
    let n = runs.len();
    let drop_id = i64::try_from(drop_id).unwrap_or(i64::MAX);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            runs.iter().map(|r| r.topic.as_str()),
        )),
        Arc::new(Int32Array::from_iter_values(
            runs.iter().map(|r| r.partition),
        )),
        Arc::new(Int64Array::from_iter_values(runs.iter().map(|r| r.first))),
        Arc::new(Int64Array::from_iter_values(runs.iter().map(|r| r.last))),
        Arc::new(Int64Array::from_iter_values(std::iter::repeat_n(
            drop_id, n,
        ))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(
                chrono::Utc::now().timestamp_micros(),
                n,
            ))
            .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            source.name(),
            n,
        ))),
    ];
    let batch =
        RecordBatch::try_new(id.schema(), columns).map_err(|e| CompactorError::Unexpected {
            table: id.name(),
            reason: format!("offset runs do not fit the ledger's schema: {e}"),
        })?;
    let ledger = lake.open_or_create(id).await?;
    let written = ledger
        .write(vec![batch])
        .with_save_mode(SaveMode::Overwrite)
        .with_replace_where(format!(
            "{SOURCE_TABLE} = '{}' AND {DROP_ID} = {drop_id}",
            source.name()
        ))
        .await
        .map_err(id.delta_error())?;
    if written
        .version()
        .is_some_and(|v| v.is_multiple_of(LEDGER_TIDY_EVERY))
    {
        tidy_ledger(written, source, config).await?;
    }
    Ok(())
}

/// Compacts the runs `source`'s drops recorded into few files (only this source's
/// partition: its lease covers nothing else), then checkpoints, cleans up and vacuums
/// the ledger.
async fn tidy_ledger(
    ledger: DeltaTable,
    source: TableId,
    config: &CompactorConfig,
) -> Result<(), CompactorError> {
    let id = TableId::ExpiredOffsets;
    let filters = [(
        SOURCE_TABLE,
        deltalake::FilterOp::Eq,
        deltalake::FilterValue::Scalar(source.name()),
    )];
    let (mut ledger, _) = ledger
        .optimize()
        .with_filters(&filters)
        .await
        .map_err(id.delta_error())?;
    maintenance::maintain(id, &mut ledger, config).await?;
    Ok(())
}
