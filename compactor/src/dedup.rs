//! Finding duplicate events: producers resend at least once, so an `event_id` can
//! arrive more than once. The first ingested copy is the one kept.
//!
//! Duplicates are rare, so they are found with an aggregate over `event_id` and then
//! ranked among themselves only; the full rows then pass through one anti join and a
//! single sort. (A window over every row would hold whole hours in memory.)

use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use hourlake_catalog::schema::{INGESTED_AT, KAFKA_OFFSET, KAFKA_PARTITION, KAFKA_TOPIC};

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
    let mut sql = format!(
        "WITH repeated AS (SELECT event_id FROM {source} WHERE {filter} \
                           GROUP BY event_id HAVING count(*) > 1), \
              ranked AS (SELECT s.{KAFKA_TOPIC} AS t, s.{KAFKA_PARTITION} AS p, s.{KAFKA_OFFSET} AS o, \
                           row_number() OVER (PARTITION BY s.event_id \
                             ORDER BY s.{INGESTED_AT}, s.{KAFKA_TOPIC}, s.{KAFKA_PARTITION}, s.{KAFKA_OFFSET}) AS copy \
                         FROM {source} s WHERE {filter} \
                           AND EXISTS (SELECT 1 FROM repeated r WHERE r.event_id = s.event_id)) \
         SELECT t, p, o FROM ranked WHERE copy > 1"
    );
    if let Some(kept) = kept {
        sql.push_str(&format!(
            " UNION SELECT s.{KAFKA_TOPIC} AS t, s.{KAFKA_PARTITION} AS p, s.{KAFKA_OFFSET} AS o \
              FROM {source} s WHERE {filter} \
                AND EXISTS (SELECT 1 FROM {kept} k WHERE k.event_id = s.event_id)"
        ));
    }
    let df = ctx.sql(&sql).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    Ok(rows)
}

/// A condition (for a WHERE clause over `alias`) that drops the rows listed in the
/// table registered by [`register_duplicates`] as `name`.
pub fn not_a_duplicate(alias: &str, name: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM {name} d WHERE d.t = {alias}.{KAFKA_TOPIC} \
           AND d.p = {alias}.{KAFKA_PARTITION} AND d.o = {alias}.{KAFKA_OFFSET})"
    )
}
