//! Replacing the start-hour partitions a pass recomputed, streamed: the rows of the
//! recomputed and the carried sessions go from the query straight into files (rolled at
//! the target file size), and one commit removes every file of those hours and adds the
//! new ones, with the watermark. Nothing is collected: a first pass over weeks of
//! history holds no more than the writer's open files and the query's spillable state.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::DeltaTable;
use futures::StreamExt;
use hourlake_catalog::schema::{IS_FINAL, SESSION_START};
use hourlake_catalog::TableId;

use super::sessionize::Sessionize;
use super::windows::hours_sql;
use crate::batch::conform;
use crate::lease::Lease;
use crate::plan::files_by_hour;
use crate::CompactorError;

/// How often a wait for the sorted events checks whether the lease needs renewing.
const KEEP_ALIVE_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// What the replacement wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replaced {
    /// Sessions recomputed.
    pub sessions: usize,
    /// Of those, still provisional.
    pub provisional: usize,
    /// The earliest start of a provisional one.
    pub earliest_provisional: Option<i64>,
    /// Stored sessions carried over unchanged.
    pub carried: usize,
    /// Files removed and added.
    pub files_removed: usize,
    /// Files written.
    pub files_added: usize,
}

/// Replaces the start-hour partitions of `sessions` that the windows of `recompute`
/// touch with the sessions it yields and the rows of `carried` (SQL yielding the stored
/// sessions to keep), in one commit carrying `watermark`. The caller holds the lease;
/// it is kept alive as the rows stream and renewed before the commit.
#[allow(clippy::too_many_arguments)]
pub async fn replace_hours(
    ctx: &SessionContext,
    sessions: &mut DeltaTable,
    recompute: &Sessionize<'_>,
    computed_at_micros: i64,
    carried: &str,
    watermark: Transaction,
    target_file_size: u64,
    lease: &mut Lease,
) -> Result<Replaced, CompactorError> {
    let id = TableId::Sessions;
    let schema = id.schema();
    let mut writer = RecordBatchWriter::for_table(sessions)
        .map_err(id.delta_error())?
        .with_target_file_size(target_file_size);
    let mut replaced = Replaced::default();
    let mut fold = recompute.fold(computed_at_micros);
    let mut events = ctx
        .sql(&recompute.events_sql())
        .await?
        .execute_stream()
        .await?;
    let mut exhausted = false;
    while !exhausted {
        // The first events come only once the sort has read them all, which can take
        // longer than the lease lives: keep it alive while waiting.
        let next = loop {
            match tokio::time::timeout(KEEP_ALIVE_POLL, events.next()).await {
                Ok(next) => break next,
                Err(_) => lease.keep_alive().await?,
            }
        };
        let recomputed = match next {
            Some(batch) => fold.push(&batch?)?,
            None => {
                exhausted = true;
                fold.finish()?
            }
        };
        for batch in recomputed {
            tally_provisional(&batch, &mut replaced)?;
            replaced.sessions += batch.num_rows();
            writer.write(batch).await.map_err(id.delta_error())?;
            lease.keep_alive().await?;
        }
    }
    let mut stream = ctx.sql(carried).await?.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = conform(&batch?, &schema)?;
        if batch.num_rows() == 0 {
            continue;
        }
        replaced.carried += batch.num_rows();
        writer.write(batch).await.map_err(id.delta_error())?;
        lease.keep_alive().await?;
    }
    let adds = writer.flush().await.map_err(id.delta_error())?;

    let removes: Vec<Action> = files_by_hour(id, sessions)?
        .into_iter()
        .filter(|(hour, _)| {
            recompute.windows.iter().any(|w| {
                let (first, last) = w.hours();
                first <= *hour && *hour <= last
            })
        })
        .flat_map(|(_, files)| files)
        .map(|file| {
            let mut remove = file.remove;
            remove.data_change = true;
            Action::Remove(remove)
        })
        .collect();
    replaced.files_removed = removes.len();
    replaced.files_added = adds.len();
    let actions: Vec<Action> = adds.into_iter().map(Action::Add).chain(removes).collect();

    lease.renew().await?;
    let snapshot = sessions.snapshot().map_err(id.delta_error())?;
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: Some(
            id.partition_columns()
                .iter()
                .map(|c| c.to_string())
                .collect(),
        ),
        predicate: Some(hours_sql(recompute.windows)),
    };
    CommitBuilder::from(CommitProperties::default().with_application_transactions(vec![watermark]))
        .with_actions(actions)
        .build(Some(snapshot), sessions.log_store(), operation)
        .await
        .map_err(id.delta_error())?;
    sessions.update_state().await.map_err(id.delta_error())?;
    Ok(replaced)
}

/// Counts the provisional sessions of `batch` (rows of `sessions`) into `replaced`.
fn tally_provisional(batch: &RecordBatch, replaced: &mut Replaced) -> Result<(), CompactorError> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| CompactorError::Unexpected {
                table: TableId::Sessions.name(),
                reason: format!("sessionized rows lack {name}"),
            })
    };
    let (finals, starts) = (column(IS_FINAL)?, column(SESSION_START)?);
    let (finals, starts) = (
        finals.as_boolean(),
        starts.as_primitive::<TimestampMicrosecondType>(),
    );
    for i in 0..batch.num_rows() {
        if finals.is_valid(i) && !finals.value(i) {
            replaced.provisional += 1;
            let start = starts.value(i);
            replaced.earliest_provisional = Some(
                replaced
                    .earliest_provisional
                    .map_or(start, |e| e.min(start)),
            );
        }
    }
    Ok(())
}
