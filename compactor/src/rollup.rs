//! Building the hourly rollups declared in [`hourlake_catalog::rollup`]: for each
//! changed hour, the rows of every combination of the rollup's dimensions (and `ALL`
//! for each dimension, via GROUPING SETS), computed from the deduplicated events of one
//! source version and replacing that hour's rows in one commit, which also records the
//! source version covered (the watermark).

use std::collections::BTreeSet;

use arrow::array::RecordBatch;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;
use hourlake_catalog::rollup::{dimension_value_sql, ALL_MEMBER, COMPUTED_AT, SOURCE_VERSION};
use hourlake_catalog::schema::{EVENT_DATE, EVENT_HOUR};
use hourlake_catalog::{Hour, Lake, Rollup, TableId};
use hourlake_sql::{register_table, SessionFactory};

use crate::batch::collect_conformed;
use crate::dedup::{not_a_duplicate, register_duplicates};
use crate::plan::hours_changed_between;
use crate::CompactorError;

/// The `txn` app id, in a rollup table, of the source version its rollups cover:
/// every data change of the source up to that version is reflected in the rollup.
pub fn watermark_app_id(source: TableId) -> String {
    format!("hourlake-rollup-{}", source.name())
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

/// The SQL computing the rows of `rollup` for `hours` from its source table (registered
/// in the session under its name) at `source_version`, leaving out the rows listed in
/// the table named `duplicates` (see [`crate::dedup`]), when there is one.
pub fn rollup_sql(
    rollup: &Rollup,
    hours: &[Hour],
    source_version: u64,
    duplicates: Option<&str>,
) -> String {
    let dims = rollup.dimensions;
    // Missing dimension values become 'unknown' before grouping, so NULL after
    // grouping can only mean "all values": the ALL rows.
    // Each with its separating ", " (nothing for a rollup without dimensions).
    let dim_inputs: String = dims
        .iter()
        .map(|d| format!(", {} AS {d}", dimension_value_sql(d)))
        .collect();
    let dim_outputs: String = dims
        .iter()
        .map(|d| format!("coalesce({d}, '{ALL_MEMBER}') AS {d}, "))
        .collect();
    let except = if dims.is_empty() {
        String::new()
    } else {
        format!(" EXCEPT ({})", dims.join(", "))
    };
    let mut rows = format!("({})", Hour::sql_predicate_any(hours));
    if let Some(final_rows) = rollup.final_rows {
        rows = format!("{rows} AND ({final_rows})");
    }
    if let Some(duplicates) = duplicates {
        rows = format!("{rows} AND {}", not_a_duplicate("s", duplicates));
    }
    format!(
        "WITH deduplicated AS ( \
           SELECT *{except}{dim_inputs} FROM {src} s WHERE {rows}) \
         SELECT {EVENT_HOUR}, {dim_outputs}{measures}, \
           CAST({source_version} AS BIGINT) AS {SOURCE_VERSION}, now() AS {COMPUTED_AT}, {EVENT_DATE} \
         FROM deduplicated \
         GROUP BY GROUPING SETS ({sets})",
        src = rollup.source.name(),
        measures = rollup.measures_sql(),
        sets = grouping_sets(dims),
    )
}

/// Recomputes the rows of `rollup` for `hours` from `source` (its source table, at its
/// loaded version) and replaces them in `table` (the rollup table) in one commit that
/// also records `watermark`: the source version up to which every change is now
/// reflected. Returns the rollup table's new version and the rows written.
pub async fn recompute_hours(
    factory: &SessionFactory,
    rollup: &Rollup,
    source: &DeltaTable,
    table: &DeltaTable,
    hours: &[Hour],
    watermark: u64,
) -> Result<(u64, usize), CompactorError> {
    let source_version = source.version().unwrap_or(0);
    let ctx = factory.context()?;
    let source_name = rollup.source.name();
    register_table(&ctx, source_name, source).await?;
    let hours_filter = format!("({})", Hour::sql_predicate_any(hours));
    // Hours rewritten in this pass hold no duplicates any more: no anti join then. A
    // derived source (sessions) is made from deduplicated events already.
    let duplicates = if TableId::EVENTS.contains(&rollup.source) {
        register_duplicates(&ctx, source_name, &hours_filter, None, DUPLICATES).await?
    } else {
        0
    };
    let sql = rollup_sql(
        rollup,
        hours,
        source_version,
        (duplicates > 0).then_some(DUPLICATES),
    );
    let schema = rollup.schema();
    let batches = collect_conformed(&ctx, &sql, &schema).await?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let props = CommitProperties::default().with_application_transactions(vec![Transaction::new(
        watermark_app_id(rollup.source),
        i64::try_from(watermark).unwrap_or(i64::MAX),
    )]);
    let written = table
        .clone()
        .write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_replace_where(Hour::sql_predicate_any(hours))
        .with_commit_properties(props)
        .await
        .map_err(rollup.table.delta_error())?;
    Ok((written.version().unwrap_or(0), rows))
}

/// The source version `table` (the table of `rollup`) covers, if it was ever computed.
pub async fn watermark(rollup: &Rollup, table: &DeltaTable) -> Result<Option<u64>, CompactorError> {
    let snapshot = table.snapshot().map_err(rollup.table.delta_error())?;
    let v = snapshot
        .transaction_version(table.log_store().as_ref(), watermark_app_id(rollup.source))
        .await
        .map_err(rollup.table.delta_error())?;
    Ok(v.and_then(|v| u64::try_from(v).ok()))
}

/// One rollup during a compactor pass over its source: its table, what it covers, and
/// the hours the pass recomputes.
#[derive(Debug)]
pub struct RollupPass {
    /// The rollup.
    pub rollup: &'static Rollup,
    /// Its table.
    pub table: DeltaTable,
    /// Hours of the source whose data changed since the watermark (`None`: unknown, so
    /// every hour).
    changed: Option<BTreeSet<Hour>>,
    /// Hours the rollup table holds rows for.
    rolled: BTreeSet<Hour>,
    /// The hours to recompute, in order.
    pub stale: Vec<Hour>,
}

impl RollupPass {
    /// Opens (or creates) the table of `rollup` and reads what it covers of `source`,
    /// whose loaded version is `upto`.
    pub async fn start(
        lake: &Lake,
        factory: &SessionFactory,
        rollup: &'static Rollup,
        source: &DeltaTable,
        upto: u64,
    ) -> Result<RollupPass, CompactorError> {
        let table = lake.open_or_create(rollup.table).await?;
        let changed = match watermark(rollup, &table).await? {
            Some(w) => hours_changed_between(rollup.source, source, w, upto).await?,
            None => None,
        };
        let rolled = hourlake_sql::rollup_hours(factory, rollup.table, &table).await?;
        Ok(RollupPass {
            rollup,
            table,
            changed,
            rolled,
            stale: Vec::new(),
        })
    }

    /// Marks `hour` (a closed hour) for recomputing when its rollup rows are missing or
    /// older than its data; whether it did.
    pub fn mark_if_stale(&mut self, hour: Hour) -> bool {
        let stale = self.is_stale(hour);
        if stale {
            self.stale.push(hour);
        }
        stale
    }

    /// Whether the rollup rows of `hour` are missing or older than its data.
    pub fn is_stale(&self, hour: Hour) -> bool {
        self.changed.as_ref().is_none_or(|c| c.contains(&hour)) || !self.is_rolled(hour)
    }

    /// Whether the rollup table holds rows of `hour`.
    pub fn is_rolled(&self, hour: Hour) -> bool {
        self.rolled.contains(&hour)
    }

    /// Marks `hour` for recomputing.
    pub fn mark(&mut self, hour: Hour) {
        self.stale.push(hour);
    }

    /// Recomputes the marked hours from `source` (see [`recompute_hours`]); the rows
    /// written.
    pub async fn recompute(
        &self,
        factory: &SessionFactory,
        source: &DeltaTable,
        watermark: u64,
    ) -> Result<usize, CompactorError> {
        if self.stale.is_empty() {
            return Ok(0);
        }
        let (_, rows) = recompute_hours(
            factory,
            self.rollup,
            source,
            &self.table,
            &self.stale,
            watermark,
        )
        .await?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use hourlake_catalog::rollup::{
        ENGAGEMENT_HOURLY, ENGAGEMENT_HOURLY_TOTALS, RECOMMENDATION_HOURLY,
    };

    use super::*;

    #[test]
    fn grouping_sets_cover_every_subset() {
        let sets = grouping_sets(&["a", "b"]);
        assert_eq!(
            sets,
            "(event_date, event_hour, a, b), (event_date, event_hour, a), (event_date, event_hour, b), (event_date, event_hour)"
        );
        assert_eq!(
            grouping_sets(ENGAGEMENT_HOURLY.dimensions)
                .matches('(')
                .count(),
            16
        );
    }

    #[test]
    fn a_rollup_without_dimensions_groups_by_the_hour_alone() {
        let hour = Hour {
            date: 20_000,
            hour: 7,
        };
        let sql = rollup_sql(&ENGAGEMENT_HOURLY_TOTALS, &[hour], 42, None);
        assert!(
            sql.contains("SELECT * FROM engagement_events s WHERE"),
            "{sql}"
        );
        assert!(
            sql.contains("SELECT event_hour, count(*) AS events,"),
            "{sql}"
        );
        assert!(
            sql.ends_with("GROUP BY GROUPING SETS ((event_date, event_hour))"),
            "{sql}"
        );
    }

    #[test]
    fn rollup_sql_leaves_out_duplicates_only_when_there_are_some() {
        let hour = Hour {
            date: 20_000,
            hour: 7,
        };
        let words = |sql: &str| {
            sql.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let clean = rollup_sql(&RECOMMENDATION_HOURLY, &[hour], 42, None);
        assert_eq!(
            words(&clean),
            words(
                "WITH deduplicated AS ( \
               SELECT * EXCEPT (model_version, surface), coalesce(model_version, 'unknown') AS model_version, \
               coalesce(surface, 'unknown') AS surface FROM recommendation_events s \
               WHERE ((event_date = DATE '2024-10-04' AND event_hour = 7))) \
             SELECT event_hour, coalesce(model_version, 'ALL') AS model_version, coalesce(surface, 'ALL') AS surface, \
               count(*) AS events, sum(CASE WHEN event_type = 'rec_served' THEN 1 ELSE 0 END) AS served, \
               coalesce(sum(CASE WHEN event_type = 'rec_served' THEN CAST(array_length(items) AS BIGINT) END), 0) AS items_served, \
               sum(CASE WHEN event_type = 'rec_impression' THEN 1 ELSE 0 END) AS impressions, \
               sum(CASE WHEN event_type = 'rec_click' THEN 1 ELSE 0 END) AS clicks, \
               hll_sketch(user_id) AS users_sketch, \
               CAST(42 AS BIGINT) AS source_version, now() AS computed_at, event_date \
             FROM deduplicated \
             GROUP BY GROUPING SETS ((event_date, event_hour, model_version, surface), \
               (event_date, event_hour, model_version), (event_date, event_hour, surface), \
               (event_date, event_hour))"
            )
        );
        let deduplicated = rollup_sql(&RECOMMENDATION_HOURLY, &[hour], 42, Some("dups"));
        assert!(deduplicated.contains(&format!(
            "WHERE ((event_date = DATE '2024-10-04' AND event_hour = 7)) AND {})",
            not_a_duplicate("s", "dups")
        )));
    }
}
