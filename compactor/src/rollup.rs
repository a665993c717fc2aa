//! Hourly rollups: for each changed hour, every combination of the rollup dimensions
//! (and `ALL` for each dimension, via GROUPING SETS), computed from the deduplicated
//! events of one source version and replacing that hour's rows in one commit.

use std::collections::BTreeSet;

use arrow::array::RecordBatch;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;
use hourlake_catalog::schema::{
    ALL_MEMBER, COMPUTED_AT, ENGAGEMENT_DIMENSIONS, EVENT_DATE, EVENT_HOUR,
    RECOMMENDATION_DIMENSIONS, SOURCE_VERSION, UNKNOWN_MEMBER,
};
use hourlake_catalog::TableId;
use hourlake_sql::{register_table, SessionFactory};

use crate::batch::conform;
use crate::dedup::{not_a_duplicate, register_duplicates};
use crate::error::delta;
use crate::hour::sql_predicate_any;
use crate::{CompactorError, Hour};

/// The `txn` app id, in a rollup table, of the source version its rollups cover:
/// every data change of the source up to that version is reflected in the rollup.
pub fn watermark_app_id(source: TableId) -> String {
    format!("hourlake-rollup-{}", source.name())
}

/// The rollup dimensions and measures of a source table, if it has a rollup.
fn definition(source: TableId) -> Option<(&'static [&'static str], &'static str)> {
    match source {
        TableId::EngagementEvents => Some((
            ENGAGEMENT_DIMENSIONS,
            "count(*) AS events, \
             hll_sketch(user_id) AS users_sketch, \
             sum(CASE WHEN event_type = 'install' THEN 1 ELSE 0 END) AS installs, \
             sum(CASE WHEN event_type = 'session_start' THEN 1 ELSE 0 END) AS sessions, \
             count(session_length_ms) AS session_length_count, \
             coalesce(sum(session_length_ms), 0) AS session_length_ms_sum, \
             quantile_sketch(CAST(session_length_ms AS DOUBLE)) AS session_length_sketch, \
             sum(CASE WHEN event_type = 'screen_view' THEN 1 ELSE 0 END) AS screen_views, \
             sum(CASE WHEN event_type = 'click' THEN 1 ELSE 0 END) AS clicks, \
             sum(CASE WHEN event_type = 'search' THEN 1 ELSE 0 END) AS searches, \
             sum(CASE WHEN event_type = 'notification_view' THEN 1 ELSE 0 END) AS notification_views, \
             sum(CASE WHEN event_type = 'notification_open' THEN 1 ELSE 0 END) AS notification_opens, \
             sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases, \
             coalesce(sum(CASE WHEN event_type = 'purchase' THEN amount END), 0.0) AS revenue",
        )),
        TableId::RecommendationEvents => Some((
            RECOMMENDATION_DIMENSIONS,
            "count(*) AS events, \
             sum(CASE WHEN event_type = 'rec_served' THEN 1 ELSE 0 END) AS served, \
             sum(CASE WHEN event_type = 'rec_served' THEN coalesce(CAST(array_length(items) AS BIGINT), 0) ELSE 0 END) AS items_served, \
             sum(CASE WHEN event_type = 'rec_impression' THEN 1 ELSE 0 END) AS impressions, \
             sum(CASE WHEN event_type = 'rec_click' THEN 1 ELSE 0 END) AS clicks, \
             hll_sketch(user_id) AS users_sketch",
        )),
        _ => None,
    }
}

/// Every subset of `dims` (as GROUPING SETS, each with the hour), largest first.
fn grouping_sets(dims: &[&str]) -> String {
    let n = dims.len();
    let mut sets = Vec::new();
    for mask in (0..(1u32 << n)).rev() {
        let mut cols = vec![EVENT_DATE.to_string(), EVENT_HOUR.to_string()];
        cols.extend(
            dims.iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << (n - 1 - i)) != 0)
                .map(|(_, d)| d.to_string()),
        );
        sets.push(format!("({})", cols.join(", ")));
    }
    sets.join(", ")
}

/// The table of duplicate copies the rollup query leaves out.
const DUPLICATES: &str = "duplicate_copies";

/// The SQL computing the rollup rows of `hours` from `source_table` (registered in the
/// session under that name) at `source_version`, leaving out the rows listed in the
/// duplicates table (see [`crate::dedup`]).
pub fn rollup_sql(source: TableId, hours: &[Hour], source_version: u64) -> Option<String> {
    let (dims, measures) = definition(source)?;
    // Missing dimension values become 'unknown' before grouping, so NULL after
    // grouping can only mean "all values": the ALL rows.
    let dim_inputs = dims
        .iter()
        .map(|d| format!("coalesce({d}, '{UNKNOWN_MEMBER}') AS {d}"))
        .collect::<Vec<_>>()
        .join(", ");
    let dim_outputs = dims
        .iter()
        .map(|d| format!("coalesce({d}, '{ALL_MEMBER}') AS {d}"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "WITH deduplicated AS ( \
           SELECT * EXCEPT ({dim_list}), {dim_inputs} FROM {src} s \
           WHERE ({hours}) AND {unique}) \
         SELECT {EVENT_HOUR}, {dim_outputs}, {measures}, \
           CAST({source_version} AS BIGINT) AS {SOURCE_VERSION}, now() AS {COMPUTED_AT}, {EVENT_DATE} \
         FROM deduplicated \
         GROUP BY GROUPING SETS ({sets})",
        dim_list = dims.join(", "),
        src = source.name(),
        unique = not_a_duplicate("s", DUPLICATES),
        hours = sql_predicate_any(hours),
        sets = grouping_sets(dims),
    ))
}

/// The hours a rollup table holds rows for.
pub async fn hours_in(
    factory: &SessionFactory,
    rollup: TableId,
    table: &DeltaTable,
) -> Result<BTreeSet<Hour>, CompactorError> {
    Ok(hourlake_sql::rollup_hours(factory, rollup, table)
        .await?
        .into_iter()
        .map(|(date, hour)| Hour { date, hour })
        .collect())
}

/// Recomputes the rollup rows of `hours` from `source` (at its loaded version) and
/// replaces them in `rollup` in one commit that also records `watermark`: the source
/// version up to which every change is now reflected. Returns the rollup version.
#[allow(clippy::too_many_arguments)]
pub async fn recompute_hours(
    factory: &SessionFactory,
    source_id: TableId,
    source: &DeltaTable,
    rollup_id: TableId,
    rollup: &DeltaTable,
    hours: &[Hour],
    watermark: u64,
) -> Result<Option<(u64, usize)>, CompactorError> {
    let source_version = source.version().unwrap_or(0);
    let Some(sql) = rollup_sql(source_id, hours, source_version) else {
        return Ok(None);
    };
    let ctx = factory.context()?;
    register_table(&ctx, source_id.name(), source).await?;
    let hours_filter = format!("({})", sql_predicate_any(hours));
    // Hours rewritten in this pass hold no duplicates any more: skip the anti join then.
    let duplicates =
        register_duplicates(&ctx, source_id.name(), &hours_filter, None, DUPLICATES).await?;
    let sql = if duplicates == 0 {
        sql.replace(&not_a_duplicate("s", DUPLICATES), "true")
    } else {
        sql
    };
    let schema = rollup_id.schema();
    let batches: Vec<RecordBatch> = ctx
        .sql(&sql)
        .await?
        .collect()
        .await?
        .iter()
        .map(|b| conform(b, &schema))
        .collect::<Result<_, _>>()?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let props = CommitProperties::default().with_application_transactions(vec![Transaction::new(
        watermark_app_id(source_id),
        i64::try_from(watermark).unwrap_or(i64::MAX),
    )]);
    let written = rollup
        .clone()
        .write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_replace_where(sql_predicate_any(hours))
        .with_commit_properties(props)
        .await
        .map_err(delta(rollup_id))?;
    Ok(Some((written.version().unwrap_or(0), rows)))
}

/// The source version the rollup of `source` covers, if it was ever computed.
pub async fn watermark(
    source: TableId,
    rollup: &DeltaTable,
) -> Result<Option<u64>, CompactorError> {
    let id = source.rollup().unwrap_or(source);
    let snapshot = rollup.snapshot().map_err(delta(id))?;
    let v = snapshot
        .transaction_version(rollup.log_store().as_ref(), watermark_app_id(source))
        .await
        .map_err(delta(id))?;
    Ok(v.and_then(|v| u64::try_from(v).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_sets_cover_every_subset() {
        let sets = grouping_sets(&["a", "b"]);
        assert_eq!(
            sets,
            "(event_date, event_hour, a, b), (event_date, event_hour, a), (event_date, event_hour, b), (event_date, event_hour)"
        );
        assert_eq!(
            grouping_sets(ENGAGEMENT_DIMENSIONS).matches('(').count(),
            16
        );
    }
}
