//! `quality_hourly` rows: figures written (an hour's rows replaced in one commit) and
//! read back as the history expectations compare with.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::protocol::SaveMode;
use hourlake_catalog::partition::date_string;
use hourlake_catalog::schema::{DIMENSION, EVENT_DATE, EVENT_HOUR, METRIC, SOURCE_TABLE, VALUE};
use hourlake_catalog::{Hour, Lake, TableId};

use super::expectation::History;
use super::figures::{doubles, hours_of, strings, Sources};
use super::{Figure, Metric, QualityConfig};
use crate::CompactorError;

const TABLE: TableId = TableId::QualityHourly;

/// The stored values of the watched figures of the days `hours` compare with (the
/// `anomaly_days` before each).
pub(crate) async fn history(
    sources: &Sources,
    config: &QualityConfig,
    hours: &[Hour],
) -> Result<History, CompactorError> {
    let mut history = History::new();
    let (Some(first), Some(last)) = (
        hours.iter().map(|h| h.date).min(),
        hours.iter().map(|h| h.date).max(),
    ) else {
        return Ok(history);
    };
    if !sources.has(TABLE) {
        return Ok(history);
    }
    let days = i32::try_from(config.anomaly_days).unwrap_or(i32::MAX);
    let of_hour: BTreeSet<i32> = hours.iter().map(|h| h.hour).collect();
    let watched = Metric::ALL
        .iter()
        .filter(|m| m.is_watched())
        .map(|m| format!("'{m}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {EVENT_DATE}, {EVENT_HOUR}, {SOURCE_TABLE}, {METRIC}, {DIMENSION}, {VALUE} \
         FROM {TABLE} WHERE {EVENT_DATE} >= DATE '{}' AND {EVENT_DATE} < DATE '{}' \
           AND {EVENT_HOUR} IN ({}) AND {METRIC} IN ({watched}) AND {VALUE} IS NOT NULL",
        date_string(first.saturating_sub(days)),
        date_string(last),
        of_hour
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    );
    for b in sources.query(&sql).await? {
        let at = hours_of(&b)?;
        let (tables, metrics, dims) = (strings(&b, 2)?, strings(&b, 3)?, strings(&b, 4)?);
        let values = doubles(&b, 5)?;
        for (row, hour) in at.iter().enumerate() {
            let table = tables[row].as_deref().and_then(TableId::from_name);
            let metric = metrics[row].as_deref().and_then(Metric::from_name);
            let (Some(table), Some(metric), Some(dim), Some(value)) =
                (table, metric, dims[row].clone(), values[row])
            else {
                continue; // a table or metric this build does not know
            };
            history
                .entry((table, metric, dim))
                .or_default()
                .insert(*hour, value);
        }
    }
    Ok(history)
}

/// Replaces every row of `hours` in `quality_hourly` with `figures` (of those hours),
/// in one commit; creates the table if needed.
pub(crate) async fn replace(
    lake: &Lake,
    hours: &[Hour],
    figures: &[Figure],
) -> Result<(), CompactorError> {
    let batch = batch(figures, chrono::Utc::now().timestamp_micros())?;
    lake.open_or_create(TABLE)
        .await?
        .write(vec![batch])
        .with_save_mode(SaveMode::Overwrite)
        .with_replace_where(Hour::sql_predicate_any(hours))
        .await
        .map_err(TABLE.delta_error())?;
    Ok(())
}

/// `figures` as rows of `quality_hourly`.
pub(crate) fn batch(figures: &[Figure], computed_at: i64) -> Result<RecordBatch, CompactorError> {
    let n = figures.len();
    let text = |f: &dyn Fn(&Figure) -> Option<&str>| -> ArrayRef {
        Arc::new(figures.iter().map(f).collect::<StringArray>())
    };
    let float = |f: &dyn Fn(&Figure) -> Option<f64>| -> ArrayRef {
        Arc::new(figures.iter().map(f).collect::<Float64Array>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(
            figures.iter().map(|f| f.hour.hour),
        )),
        text(&|f| Some(f.table.name())),
        text(&|f| Some(f.metric.name())),
        text(&|f| Some(f.dimension.as_str())),
        float(&|f| f.value),
        Arc::new(figures.iter().map(|f| f.numerator).collect::<Int64Array>()),
        Arc::new(
            figures
                .iter()
                .map(|f| f.denominator)
                .collect::<Int64Array>(),
        ),
        float(&|f| f.expected.as_ref().map(|e| e.low)),
        float(&|f| f.expected.as_ref().map(|e| e.high)),
        float(&|f| f.expected.as_ref().map(|e| e.median)),
        Arc::new(
            figures
                .iter()
                .map(|f| f.history_days)
                .collect::<Int32Array>(),
        ),
        text(&|f| f.anomaly().map(|d| d.name())),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(computed_at, n))
                .with_timezone("UTC"),
        ),
        Arc::new(Date32Array::from_iter_values(
            figures.iter().map(|f| f.hour.date),
        )),
    ];
    RecordBatch::try_new(TABLE.schema(), columns).map_err(|e| CompactorError::Unexpected {
        table: TABLE.name(),
        reason: format!("quality rows do not fit the table's schema: {e}"),
    })
}
