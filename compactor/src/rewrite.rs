//! Rewriting one hour: its undersized files become few files near the target size,
//! sorted by `user_id, event_time`, with duplicate `event_id`s removed (the first
//! ingested copy stays). Committed as one `OPTIMIZE` commit that removes exactly the
//! files it read, which never conflicts with ingest's appends.

use std::time::{Duration, Instant};

use datafusion::prelude::ParquetReadOptions;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::Action;
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use futures::StreamExt;
use hourlake_catalog::schema::{EVENT_DATE, EVENT_HOUR};
use hourlake_catalog::{Hour, TableId};
use hourlake_sql::SessionFactory;

use crate::batch::conform;
use crate::dedup::{find_duplicates, without_duplicates};
use crate::plan::{file_urls, DataFile, RewriteReason};
use crate::{CompactorConfig, CompactorError, Lease};

/// What rewriting one hour did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourRewrite {
    /// The hour rewritten.
    pub hour: Hour,
    /// Why it was rewritten.
    pub reason: RewriteReason,
    /// Files read and removed.
    pub files_in: usize,
    /// Files written.
    pub files_out: usize,
    /// Bytes of the files read.
    pub bytes_in: u64,
    /// Bytes of the files written.
    pub bytes_out: u64,
    /// Rows read.
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
    /// Rows dropped because their `event_id` was already present.
    pub duplicates_removed: u64,
    /// Rows the duplicate search listed (equals `duplicates_removed`).
    pub duplicates_found: u64,
    /// The table version of the rewrite commit.
    pub version: u64,
    /// Wall time.
    pub millis: u64,
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Commit attempts of one hour's rewrite (each after deltalake's own 15 quick retries).
const REWRITE_ATTEMPTS: u32 = 4;
/// Wait before the second attempt; doubled before each next.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// [`rewrite_hour`], again on a fresh snapshot with the hour's files re-planned, when its
/// commit lost to concurrent writers (many ingest processes on object storage can keep
/// an OPTIMIZE from committing within deltalake's retries): up to four attempts, waiting
/// 0.2, 0.4 and 0.8 s between them.
#[allow(clippy::too_many_arguments)]
pub async fn rewrite_hour_retrying(
    id: TableId,
    table: &mut DeltaTable,
    factory: &SessionFactory,
    config: &CompactorConfig,
    lease: &mut Lease,
    hour: Hour,
    files: &[DataFile],
    reason: RewriteReason,
) -> Result<HourRewrite, CompactorError> {
    let mut files = files.to_vec();
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match rewrite_hour(id, table, factory, config, lease, hour, &files, reason).await {
            Err(e) if attempt < REWRITE_ATTEMPTS && is_commit_conflict(&e) => {
                tracing::warn!(table = id.name(), %hour, attempt, error = %e,
                    "rewrite commit lost to concurrent writers; re-planning the hour");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
                table.update_state().await.map_err(id.delta_error())?;
                files = crate::plan::files_by_hour(id, table)?
                    .remove(&hour)
                    .unwrap_or_default();
            }
            other => return other,
        }
    }
}

/// Whether `error` is a Delta commit that lost to concurrent commits (retrying on a
/// newer snapshot may succeed), not a failure of the rewrite itself.
pub fn is_commit_conflict(error: &CompactorError) -> bool {
    let CompactorError::Delta(delta) = error else {
        return false;
    };
    matches!(
        delta.source.as_ref(),
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_)
                | TransactionError::MaxCommitAttempts(_)
                | TransactionError::VersionAlreadyExists(_)
        }
    )
}

/// Rewrites `hour`'s undersized files (`files` is every file of the hour in the
/// table's current snapshot) and commits the result.
#[allow(clippy::too_many_arguments)]
pub async fn rewrite_hour(
    id: TableId,
    table: &mut DeltaTable,
    factory: &SessionFactory,
    config: &CompactorConfig,
    lease: &mut Lease,
    hour: Hour,
    files: &[DataFile],
    reason: RewriteReason,
) -> Result<HourRewrite, CompactorError> {
    let started = Instant::now();
    let (rewrite, keep): (Vec<&DataFile>, Vec<&DataFile>) = files
        .iter()
        .partition(|f| f.size < config.undersized_below());
    let rewrite_urls = file_urls(id, table, &rewrite)?;
    let keep_urls = file_urls(id, table, &keep)?;

    let ctx = factory.context()?;
    table
        .update_datafusion_session(&ctx.state())
        .map_err(id.delta_error())?;
    let options = ParquetReadOptions::default();
    let source = ctx.read_parquet(rewrite_urls, options.clone()).await?;
    ctx.register_table("rewrite_source", source.into_view())?;
    let kept = if keep_urls.is_empty() {
        None
    } else {
        let kept = ctx.read_parquet(keep_urls, options).await?;
        ctx.register_table("kept_source", kept.into_view())?;
        Some("kept_source")
    };
    let duplicates = find_duplicates(&ctx, "rewrite_source", "true", kept).await?;

    let schema = id.schema();
    let data_columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| !id.partition_columns().contains(n))
        .map(|n| format!("r.{}", quoted(n)))
        .collect();
    let sql = format!(
        "SELECT {columns}, DATE '{date}' AS {EVENT_DATE}, {hour} AS {EVENT_HOUR} \
         FROM rewrite_source r ORDER BY r.user_id, r.event_time",
        columns = data_columns.join(", "),
        date = hour.date_string(),
        hour = hour.hour,
    );
    let rows_in = ctx
        .sql("SELECT count(*) FROM rewrite_source")
        .await?
        .collect()
        .await?
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0) as u64;

    let mut writer = RecordBatchWriter::for_table(table)
        .map_err(id.delta_error())?
        .with_writer_properties(writer_properties());
    let mut adds = Vec::new();
    let mut rows_out = 0u64;
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
    let mut doubled_kept = std::collections::HashSet::new();
    while let Some(batch) = stream.next().await {
        let batch =
            without_duplicates(&conform(&batch?, &schema)?, &duplicates, &mut doubled_kept)?;
        rows_out += batch.num_rows() as u64;
        writer.write(batch).await.map_err(id.delta_error())?;
        if writer.buffer_len() as u64 >= config.target_file_size {
            adds.extend(writer.flush().await.map_err(id.delta_error())?);
        }
    }
    adds.extend(writer.flush().await.map_err(id.delta_error())?);

    let bytes_out = adds
        .iter()
        .map(|a| u64::try_from(a.size).unwrap_or(0))
        .sum();
    let files_out = adds.len();
    let mut actions: Vec<Action> = adds
        .into_iter()
        .map(|mut add| {
            add.data_change = false;
            Action::Add(add)
        })
        .collect();
    actions.extend(rewrite.iter().map(|f| Action::Remove(f.remove.clone())));

    // Never commit on a lease we no longer hold: another compactor may be rewriting
    // the same files, and two rewrites of one file would double its rows. The lease is
    // the only guard here: deltalake's conflict checker ignores concurrent removes with
    // dataChange=false (an OPTIMIZE's), so two rewrites of one hour would both commit
    // (tried: a second rewrite from a stale plan committed and doubled the hour). A
    // DELETE's removes do conflict (tests: a_rewrite_that_loses_a_real_commit_race…).
    lease.renew().await?;
    // The removed copies go to the ledger first: a rewrite that fails after this leaves
    // ledger rows whose copies are still in the table, which readers do not count.
    crate::ledger::record_removed(factory.lake(), id, hour, &duplicates.copies).await?;
    let snapshot = table.snapshot().map_err(id.delta_error())?;
    let committed = CommitBuilder::from(CommitProperties::default().with_create_checkpoint(false))
        .with_actions(actions)
        .build(
            Some(snapshot),
            table.log_store(),
            DeltaOperation::Optimize {
                predicate: Some(hour.sql_predicate()),
                target_size: i64::try_from(config.target_file_size).unwrap_or(i64::MAX),
            },
        )
        .await
        .map_err(id.delta_error())?;
    let version = committed.version();
    table.update_state().await.map_err(id.delta_error())?;

    Ok(HourRewrite {
        hour,
        reason,
        files_in: rewrite.len(),
        files_out,
        bytes_in: rewrite.iter().map(|f| f.size).sum(),
        bytes_out,
        rows_in,
        rows_out,
        duplicates_removed: rows_in.saturating_sub(rows_out),
        duplicates_found: (duplicates.positions.len() + duplicates.doubled.len()) as u64,
        version,
        millis: started.elapsed().as_millis() as u64,
    })
}

/// Compacted files use zstd with a larger row group than ingest's, for better pruning
/// and compression of whole hours.
fn writer_properties() -> deltalake::parquet::file::properties::WriterProperties {
    use deltalake::parquet::basic::{Compression, ZstdLevel};
    deltalake::parquet::file::properties::WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(1024 * 1024))
        .build()
}

#[cfg(test)]
mod conflict_tests {
    use super::*;
    use deltalake::kernel::transaction::CommitConflictError;

    fn delta(source: DeltaTableError) -> CompactorError {
        CompactorError::Delta(hourlake_catalog::DeltaError::new("t", source))
    }

    #[test]
    fn lost_commits_are_retried_and_other_failures_are_not() {
        let lost = [
            TransactionError::MaxCommitAttempts(15),
            TransactionError::CommitConflict(CommitConflictError::ConcurrentDeleteRead),
            TransactionError::VersionAlreadyExists(7),
        ];
        for source in lost {
            assert!(is_commit_conflict(&delta(DeltaTableError::Transaction {
                source
            })));
        }
        assert!(!is_commit_conflict(&delta(DeltaTableError::Generic(
            "disk full".into()
        ))));
        assert!(!is_commit_conflict(&CompactorError::Unexpected {
            table: "t",
            reason: "x".into()
        }));
    }
}
