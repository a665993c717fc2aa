//! The `removed_duplicates` ledger: every resent copy a rewrite drops is recorded —
//! its Kafka position, its event, the hour, and the copy kept — so that after
//! compaction every Kafka offset is still in exactly one place (a row, a dead letter, or
//! this ledger), and an audit can prove it.
//!
//! The ledger is appended before the rewrite commits (two tables cannot commit
//! together). A rewrite that then fails leaves rows whose copies are still in their
//! table; readers count a ledger row only when its copy is gone (see
//! [`crate::audit`]), and repeated rows of one position count once.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use hourlake_catalog::{Hour, Lake, TableId};

use crate::dedup::RemovedCopy;
use crate::CompactorError;

/// Appends `copies`, removed from `source` in `hour`, to the ledger (created if
/// missing). Nothing is written for no copies.
pub async fn record_removed(
    lake: &Lake,
    source: TableId,
    hour: Hour,
    copies: &[RemovedCopy],
) -> Result<(), CompactorError> {
    if copies.is_empty() {
        return Ok(());
    }
    let id = TableId::RemovedDuplicates;
    let batch = ledger_batch(source, hour, copies, chrono::Utc::now().timestamp_micros())?;
    let mut table = lake.open_or_create(id).await?;
    let mut writer = RecordBatchWriter::for_table(&table).map_err(id.delta_error())?;
    writer.write(batch).await.map_err(id.delta_error())?;
    writer
        .flush_and_commit(&mut table)
        .await
        .map_err(id.delta_error())?;
    Ok(())
}

/// The ledger rows of `copies`, in the ledger's schema.
fn ledger_batch(
    source: TableId,
    hour: Hour,
    copies: &[RemovedCopy],
    removed_at: i64,
) -> Result<RecordBatch, CompactorError> {
    let n = copies.len();
    let text = |f: &dyn Fn(&RemovedCopy) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(copies.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|c| c.removed.0.as_str()),
        Arc::new(Int32Array::from_iter_values(
            copies.iter().map(|c| c.removed.1),
        )),
        Arc::new(Int64Array::from_iter_values(
            copies.iter().map(|c| c.removed.2),
        )),
        text(&|c| c.event_id.as_str()),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            source.name(),
            n,
        ))),
        text(&|c| c.kept.0.as_str()),
        Arc::new(Int32Array::from_iter_values(
            copies.iter().map(|c| c.kept.1),
        )),
        Arc::new(Int64Array::from_iter_values(
            copies.iter().map(|c| c.kept.2),
        )),
        Arc::new(Int32Array::from_iter_values(std::iter::repeat_n(
            hour.hour, n,
        ))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(removed_at, n))
                .with_timezone("UTC"),
        ),
        Arc::new(Date32Array::from_iter_values(std::iter::repeat_n(
            hour.date, n,
        ))),
    ];
    RecordBatch::try_new(TableId::RemovedDuplicates.schema(), columns).map_err(|e| {
        CompactorError::Unexpected {
            table: TableId::RemovedDuplicates.name(),
            reason: format!("ledger rows do not fit the ledger's schema: {e}"),
        }
    })
}
