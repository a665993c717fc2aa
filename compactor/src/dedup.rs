//! Finding and removing duplicate events: the copies of a resent event that
//! [`hourlake_catalog::dedup`] says lose (every copy but the first ingested). A rewrite
//! also drops any copy of an event the hour's large files (which it leaves as they are)
//! already hold: those keep theirs.
//!
//! Duplicates are rare, so they are found with an aggregate over `event_id` (which can
//! spill) and then ranked among themselves only, joined with the small set of repeated ids
//! on the build side; the rewrite then drops them batch by batch. (A window, or a hash
//! join built over every row, would hold whole hours in memory.) Each removed copy is
//! listed with the copy kept, for the `removed_duplicates` ledger.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use hourlake_catalog::dedup::copy_number_sql;
use hourlake_catalog::schema::{EVENT_ID, KAFKA_OFFSET, KAFKA_PARTITION, KAFKA_TOPIC};

/// Registers `name`: the `(_kafka_topic, _kafka_partition, _kafka_offset)` of every row
/// of `source` matching `filter` that repeats an event: a later copy of an `event_id`
/// seen more than once, or any copy of one the table `kept` already holds. Returns how
/// many rows it lists.
pub async fn register_duplicates(
    ctx: &SessionContext,
    source: &str,
    filter: &str,
    kept: Option<&str>,
    name: &str,
) -> datafusion::error::Result<u64> {
    let batches = duplicate_batches(ctx, source, filter, kept, false).await?;
    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("t", arrow::datatypes::DataType::Utf8, true),
            arrow::datatypes::Field::new("p", arrow::datatypes::DataType::Int32, true),
            arrow::datatypes::Field::new("o", arrow::datatypes::DataType::Int64, true),
        ])),
    };
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    Ok(rows)
}

/// The Kafka position of one row: what tells two copies of an event apart.
pub type Position = (String, i32, i64);

/// One copy to remove: where it is, its event, and the copy of that event that stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedCopy {
    /// The copy removed.
    pub removed: Position,
    /// Its `event_id`.
    pub event_id: String,
    /// The copy kept.
    pub kept: Position,
}

/// The duplicate copies of a rewrite, as [`register_duplicates`] finds them: their
/// positions, to filter the rewrite's output batch by batch (duplicates are few, an
/// anti join over a whole hour's rows would hold them all), and what the ledger
/// `removed_duplicates` records of each.
#[derive(Debug, Default)]
pub struct Duplicates {
    /// The positions to drop.
    pub positions: HashSet<Position>,
    /// Positions held by more than one row of the rewritten files (a doubled offset:
    /// one message written twice): all but the first row at each are dropped.
    pub doubled: HashSet<Position>,
    /// Each copy to drop, with the copy kept.
    pub copies: Vec<RemovedCopy>,
}

/// Finds the duplicate copies among the rows of `source` matching `filter` (and those
/// of events the table `kept` already holds).
pub async fn find_duplicates(
    ctx: &SessionContext,
    source: &str,
    filter: &str,
    kept: Option<&str>,
) -> datafusion::error::Result<Duplicates> {
    let mut out = Duplicates::default();
    for b in duplicate_batches(ctx, source, filter, kept, true).await? {
        let text = |i: usize| arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8);
        let (topics, event_ids, kept_topics) = (text(0)?, text(3)?, text(4)?);
        let (topics, event_ids, kept_topics) = (
            topics.as_string::<i32>(),
            event_ids.as_string::<i32>(),
            kept_topics.as_string::<i32>(),
        );
        let partitions = b.column(1).as_primitive::<Int32Type>();
        let offsets = b.column(2).as_primitive::<Int64Type>();
        let kept_partitions = b.column(5).as_primitive::<Int32Type>();
        let kept_offsets = b.column(6).as_primitive::<Int64Type>();
        let elsewhere = b.column(7).as_boolean();
        for i in 0..b.num_rows() {
            let removed = (
                topics.value(i).to_string(),
                partitions.value(i),
                offsets.value(i),
            );
            let same_position = topics.value(i) == kept_topics.value(i)
                && partitions.value(i) == kept_partitions.value(i)
                && offsets.value(i) == kept_offsets.value(i);
            if same_position && !elsewhere.value(i) {
                out.doubled.insert(removed);
                continue;
            }
            if out.positions.insert(removed.clone()) {
                out.copies.push(RemovedCopy {
                    removed,
                    event_id: event_ids.value(i).to_string(),
                    kept: (
                        kept_topics.value(i).to_string(),
                        kept_partitions.value(i),
                        kept_offsets.value(i),
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// Drops the rows of `batch` whose position is one of `duplicates`' positions, and the
/// rows at a doubled position but the first (`seen`: the doubled positions already
/// kept, across the batches of one rewrite).
pub fn without_duplicates(
    batch: &RecordBatch,
    duplicates: &Duplicates,
    seen: &mut HashSet<Position>,
) -> datafusion::error::Result<RecordBatch> {
    if duplicates.positions.is_empty() && duplicates.doubled.is_empty() {
        return Ok(batch.clone());
    }
    let column = |name: &str| {
        batch.column_by_name(name).ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!("rewrite output lacks {name}"))
        })
    };
    let topics = arrow::compute::cast(column(KAFKA_TOPIC)?, &arrow::datatypes::DataType::Utf8)?;
    let topics = topics.as_string::<i32>();
    let partitions = column(KAFKA_PARTITION)?.as_primitive::<Int32Type>();
    let offsets = column(KAFKA_OFFSET)?.as_primitive::<Int64Type>();
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|i| {
            let key = (
                topics.value(i).to_string(),
                partitions.value(i),
                offsets.value(i),
            );
            let keep = if duplicates.positions.contains(&key) {
                false
            } else if duplicates.doubled.contains(&key) {
                seen.insert(key)
            } else {
                true
            };
            Some(keep)
        })
        .collect();
    Ok(arrow::compute::filter_record_batch(batch, &keep)?)
}

/// The duplicate copies as rows `(t, p, o, e, kt, kp, ko)`: position and `event_id` of
/// each copy to drop, and the position of the copy kept — the first in
/// [`hourlake_catalog::dedup::COPY_ORDER`] within `source`, or, for events the table
/// `kept` already holds, the first of those (every copy in `source` then goes).
/// A copy at the kept copy's own position within `source` is one message held twice (a
/// doubled offset): with `doubled_too` it is listed (the rewrite keeps one row there),
/// otherwise left out (dropping by position would drop both). The last column,
/// `elsewhere`, tells copies of events `kept` holds.
async fn duplicate_batches(
    ctx: &SessionContext,
    source: &str,
    filter: &str,
    kept: Option<&str>,
    doubled_too: bool,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    let same_position = if doubled_too {
        ""
    } else {
        " AND NOT (r.t = f.kt AND r.p = f.kp AND r.o = f.ko)"
    };
    let not_kept_elsewhere = match kept {
        Some(kept) => format!(" AND NOT EXISTS (SELECT 1 FROM {kept} k WHERE k.{EVENT_ID} = r.e)"),
        None => String::new(),
    };
    let mut sql = format!(
        "WITH repeated AS (SELECT {EVENT_ID} FROM {source} WHERE {filter} \
                           GROUP BY {EVENT_ID} HAVING count(*) > 1), \
              ranked AS (SELECT s.{KAFKA_TOPIC} AS t, s.{KAFKA_PARTITION} AS p, s.{KAFKA_OFFSET} AS o, \
                           s.{EVENT_ID} AS e, {copy} AS copy \
                         FROM repeated r JOIN {source} s ON r.{EVENT_ID} = s.{EVENT_ID} WHERE {filter}), \
              firsts AS (SELECT e, t AS kt, p AS kp, o AS ko FROM ranked WHERE copy = 1) \
         SELECT r.t, r.p, r.o, r.e, f.kt, f.kp, f.ko, false AS elsewhere \
         FROM ranked r JOIN firsts f ON r.e = f.e \
         WHERE r.copy > 1{same_position}{not_kept_elsewhere}",
        copy = copy_number_sql(Some("s")),
    );
    if let Some(kept) = kept {
        sql.push_str(&format!(
            " UNION ALL SELECT s.{KAFKA_TOPIC} AS t, s.{KAFKA_PARTITION} AS p, s.{KAFKA_OFFSET} AS o, \
                s.{EVENT_ID} AS e, k.kt, k.kp, k.ko, true AS elsewhere \
              FROM {source} s JOIN ( \
                SELECT e, kt, kp, ko FROM ( \
                  SELECT k.{EVENT_ID} AS e, k.{KAFKA_TOPIC} AS kt, k.{KAFKA_PARTITION} AS kp, \
                    k.{KAFKA_OFFSET} AS ko, {kept_copy} AS copy \
                  FROM {kept} k WHERE k.{EVENT_ID} IN (SELECT {EVENT_ID} FROM {source} WHERE {filter})) \
                WHERE copy = 1) k ON s.{EVENT_ID} = k.e \
              WHERE {filter}",
            kept_copy = copy_number_sql(Some("k")),
        ));
    }
    ctx.sql(&sql).await?.collect().await
}

/// A condition (for a WHERE clause over `alias`) that drops the rows listed in the
/// table registered by [`register_duplicates`] as `name`.
pub fn not_a_duplicate(alias: &str, name: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM {name} d WHERE d.t = {alias}.{KAFKA_TOPIC} \
           AND d.p = {alias}.{KAFKA_PARTITION} AND d.o = {alias}.{KAFKA_OFFSET})"
    )
}
