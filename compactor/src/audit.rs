//! Loss accounting, proven: every Kafka offset from the log start (or the first offset
//! hourlake saw) to the end is in exactly one place — a row of an event table, a dead
//! letter, a removed duplicate in the [`ledger`](crate::ledger) whose copy is gone, or
//! an offset whose row a committed [`retention`](crate::retention) drop removed
//! (`expired_offsets`). [`audit`] counts, per topic-partition, what is where, what is
//! missing and what is doubled.
//!
//! What the audit cannot see once retention dropped rows: whether a dropped offset was
//! doubled (its copies are gone together, and an expired run is not compared with the
//! rows still held), and the runs themselves are taken as recorded from the dropped
//! files.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::error::DataFusionError;
use hourlake_catalog::schema::{
    DROP_ID, FIRST_OFFSET, INGESTED_AT, KAFKA_OFFSET, KAFKA_PARTITION, KAFKA_TOPIC, LAST_OFFSET,
    SOURCE_TABLE,
};
use hourlake_catalog::{Lake, TableId};
use hourlake_sql::{LakeSnapshot, SessionFactory};
use serde::Serialize;

use crate::CompactorError;

/// A topic-partition.
pub type TopicPartition = (String, i32);

/// What Kafka holds of a partition: the first offset still in its log and the offset
/// after its last message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaRange {
    /// The log start offset.
    pub start: i64,
    /// The high watermark.
    pub end: i64,
}

/// One partition's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionAudit {
    pub topic: String,
    pub partition: i32,
    /// Offsets expected: from the log start (or the first offset hourlake saw, if
    /// earlier) to the end.
    pub expected: i64,
    /// Rows of the event tables.
    pub in_tables: i64,
    /// Dead letters.
    pub dead_letters: i64,
    /// Removed duplicates whose copy is gone from the tables.
    pub removed_duplicates: i64,
    /// Offsets whose rows retention dropped (runs of committed drops in
    /// `expired_offsets`).
    pub expired: i64,
    /// Expected offsets found nowhere.
    pub missing: i64,
    /// Offsets found in more than one row.
    pub doubled: i64,
    /// The highest offset the lake accounts for, if any.
    pub last_offset: Option<i64>,
}

impl PartitionAudit {
    /// Whether every offset is in exactly one place.
    pub fn is_exact(&self) -> bool {
        self.missing == 0 && self.doubled == 0
    }

    /// Offsets Kafka holds after the last one the lake accounts for (`range`: the
    /// partition's Kafka range): not ingested yet, rather than lost.
    pub fn lag(&self, range: &KafkaRange) -> i64 {
        let next = self.last_offset.map_or(range.start, |last| last + 1);
        (range.end - next).max(0)
    }
}

/// Counts for one partition as the lake holds them.
#[derive(Debug, Default)]
struct Held {
    in_tables: i64,
    dead_letters: i64,
    distinct: i64,
    doubled: i64,
    ledger_only: i64,
    expired: i64,
    first: Option<i64>,
    last: Option<i64>,
}

/// The account of every partition the lake or `kafka` knows of.
pub async fn audit(
    lake: &Lake,
    kafka: &BTreeMap<TopicPartition, KafkaRange>,
) -> Result<Vec<PartitionAudit>, CompactorError> {
    account(lake, kafka, None).await
}

/// The lake's own account (no Kafka ranges) of what was ingested before
/// `ingested_before_micros`: each table's snapshot is read on its own, so offsets
/// committed moments ago may be in one table's snapshot and not yet in another's;
/// leaving out the latest rows keeps that from looking like a gap. What the compactor
/// checks continuously (`hourlake_compactor_audit_missing_offsets`).
pub async fn audit_settled(
    lake: &Lake,
    ingested_before_micros: i64,
) -> Result<Vec<PartitionAudit>, CompactorError> {
    account(lake, &BTreeMap::new(), Some(ingested_before_micros)).await
}

async fn account(
    lake: &Lake,
    kafka: &BTreeMap<TopicPartition, KafkaRange>,
    ingested_before_micros: Option<i64>,
) -> Result<Vec<PartitionAudit>, CompactorError> {
    let factory = SessionFactory::new(lake.clone());
    // Tables load in `TableId::ALL` order, the ledgers last: a commit seen in a table has
    // its ledger rows (written before it) seen too.
    let snapshot = LakeSnapshot::load(&factory, None).await?;
    let ctx = snapshot.session(&factory).await?;
    let settled = match ingested_before_micros {
        Some(micros) => format!(" WHERE {INGESTED_AT} < to_timestamp_micros({micros})"),
        None => String::new(),
    };
    let exists = |id: TableId| ctx.table_exist(id.name()).unwrap_or(false);
    let position = format!("{KAFKA_TOPIC} AS t, {KAFKA_PARTITION} AS p, {KAFKA_OFFSET} AS o");
    let mut parts = Vec::new();
    for (id, event, dead) in [
        (TableId::EngagementEvents, 1, 0),
        (TableId::RecommendationEvents, 1, 0),
        (TableId::DeadLetters, 0, 1),
    ] {
        if exists(id) {
            parts.push(format!(
                "SELECT {position}, {event} AS ev, {dead} AS dl FROM {id}{settled}"
            ));
        }
    }
    let mut held: BTreeMap<TopicPartition, Held> = BTreeMap::new();
    if !parts.is_empty() {
        let sql = format!(
            "WITH held AS ({rows}), \
                  per_offset AS (SELECT t, p, o, count(*) AS n, sum(ev) AS ev, sum(dl) AS dl \
                                 FROM held GROUP BY t, p, o) \
             SELECT CAST(t AS VARCHAR), CAST(p AS BIGINT), sum(ev), sum(dl), count(*), \
                    count(*) FILTER (WHERE n > 1), min(o), max(o) \
             FROM per_offset GROUP BY t, p",
            rows = parts.join(" UNION ALL "),
        );
        for row in rows(&ctx, &sql).await? {
            let h = held.entry((row.0, row.1 as i32)).or_default();
            h.in_tables = row.2[0];
            h.dead_letters = row.2[1];
            h.distinct = row.2[2];
            h.doubled = row.2[3];
            h.first = Some(row.2[4]);
            h.last = Some(row.2[5]);
        }
        if exists(TableId::RemovedDuplicates) {
            let ledger = TableId::RemovedDuplicates;
            // With a cutoff, removed copies above the settled rows of their partition
            // are left out too (their neighbours may not be settled yet).
            let (settled_join, settled_cte) = match ingested_before_micros {
                Some(_) => (
                    " JOIN settled s ON s.t = l.t AND s.p = l.p AND l.o <= s.top",
                    ", settled AS (SELECT t, p, max(o) AS top FROM held GROUP BY t, p)",
                ),
                None => ("", ""),
            };
            let sql = format!(
                "WITH held AS ({rows}){settled_cte}, \
                      ledger AS (SELECT DISTINCT {position} FROM {ledger}) \
                 SELECT CAST(l.t AS VARCHAR), CAST(l.p AS BIGINT), count(*), min(l.o), max(l.o) \
                 FROM ledger l{settled_join} WHERE NOT EXISTS \
                   (SELECT 1 FROM held h WHERE h.t = l.t AND h.p = l.p AND h.o = l.o) \
                 GROUP BY l.t, l.p",
                rows = parts.join(" UNION ALL "),
            );
            for row in rows(&ctx, &sql).await? {
                let h = held.entry((row.0, row.1 as i32)).or_default();
                h.ledger_only = row.2[0];
                h.first = Some(h.first.map_or(row.2[1], |f| f.min(row.2[1])));
                h.last = Some(h.last.map_or(row.2[2], |l| l.max(row.2[2])));
            }
        }
        if let Some(sql) = expired_sql(&snapshot, &parts, ingested_before_micros).await? {
            for row in rows(&ctx, &sql).await? {
                let h = held.entry((row.0, row.1 as i32)).or_default();
                h.expired = row.2[0];
                h.first = Some(h.first.map_or(row.2[1], |f| f.min(row.2[1])));
                h.last = Some(h.last.map_or(row.2[2], |l| l.max(row.2[2])));
            }
        }
    }
    let mut keys: Vec<TopicPartition> = held.keys().cloned().collect();
    keys.extend(kafka.keys().cloned());
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .map(|tp| {
            let h = held.remove(&tp).unwrap_or_default();
            let range = kafka.get(&tp);
            // From the log start, or from the first offset seen if that is earlier (the
            // log has been truncated since); to the high watermark (or past the last
            // offset seen, without Kafka).
            let start = match (range, h.first) {
                (Some(r), Some(first)) => r.start.min(first),
                (Some(r), None) => r.start,
                (None, Some(first)) => first,
                (None, None) => 0,
            };
            let end = match (range, h.last) {
                (Some(r), Some(last)) => r.end.max(last + 1),
                (Some(r), None) => r.end,
                (None, Some(last)) => last + 1,
                (None, None) => 0,
            };
            let expected = (end - start).max(0);
            PartitionAudit {
                topic: tp.0,
                partition: tp.1,
                expected,
                in_tables: h.in_tables,
                dead_letters: h.dead_letters,
                removed_duplicates: h.ledger_only,
                expired: h.expired,
                missing: (expected - h.distinct - h.ledger_only - h.expired).max(0),
                doubled: h.doubled,
                last_offset: h.last,
            }
        })
        .collect())
}

/// The query counting, per partition, the offsets of the runs in `expired_offsets` that
/// committed drops recorded (with their lowest and highest offset); `None` when no drop
/// ever committed. `held` are the queries of the rows held; with a cutoff, runs are cut
/// at the highest settled offset of their partition, as removed duplicates are.
async fn expired_sql(
    snapshot: &LakeSnapshot,
    held: &[String],
    ingested_before_micros: Option<i64>,
) -> Result<Option<String>, CompactorError> {
    let ledger = TableId::ExpiredOffsets;
    if snapshot.table(ledger).is_none() {
        return Ok(None);
    }
    let mut committed = Vec::new();
    for &id in TableId::INGESTED {
        if let Some(table) = snapshot.table(id) {
            let n = crate::retention::committed_drop(id, table).await?;
            if n > 0 {
                committed.push(format!("({SOURCE_TABLE} = '{id}' AND {DROP_ID} <= {n})"));
            }
        }
    }
    if committed.is_empty() {
        return Ok(None);
    }
    let (settled_ctes, last, settled_join) = match ingested_before_micros {
        Some(_) => (
            format!(
                "held AS ({}), settled AS (SELECT t, p, max(o) AS top FROM held GROUP BY t, p), ",
                held.join(" UNION ALL ")
            ),
            "least(r.last, coalesce(s.top, r.last))",
            " LEFT JOIN settled s ON s.t = r.t AND s.p = r.p",
        ),
        None => (String::new(), "r.last", ""),
    };
    Ok(Some(format!(
        "WITH {settled_ctes}\
              runs AS (SELECT DISTINCT {KAFKA_TOPIC} AS t, {KAFKA_PARTITION} AS p, {FIRST_OFFSET} AS first, \
                              {LAST_OFFSET} AS last, {SOURCE_TABLE} AS src, {DROP_ID} AS n \
                       FROM {ledger} WHERE {committed}), \
              counted AS (SELECT r.t, r.p, r.first, {last} AS last FROM runs r{settled_join}) \
         SELECT CAST(t AS VARCHAR), CAST(p AS BIGINT), sum(last - first + 1), min(first), max(last) \
         FROM counted WHERE first <= last GROUP BY t, p",
        committed = committed.join(" OR "),
    )))
}

/// The rows of `sql`: a text, a number and more numbers.
async fn rows(
    ctx: &hourlake_sql::SessionContext,
    sql: &str,
) -> Result<Vec<(String, i64, Vec<i64>)>, CompactorError> {
    let mut out = Vec::new();
    for batch in ctx.sql(sql).await?.collect().await? {
        let cast = |i: usize, to: &DataType| {
            arrow::compute::cast(batch.column(i), to).map_err(DataFusionError::from)
        };
        let text = cast(0, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let numbers = (1..batch.num_columns())
            .map(|i| cast(i, &DataType::Int64))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let value = |i: usize| {
                let column = numbers[i].as_primitive::<Int64Type>();
                if column.is_null(row) {
                    0
                } else {
                    column.value(row)
                }
            };
            out.push((
                text.value(row).to_string(),
                value(0),
                (1..numbers.len()).map(value).collect(),
            ));
        }
    }
    Ok(out)
}
