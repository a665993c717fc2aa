//! Computing the figures of a set of hours (see the table in [`super`]): from the
//! rollup rows (headline figures, null shares), the hours' events (late shares, exact
//! distinct users), the `removed_duplicates` ledger, `dead_letters`, and the `sessions`
//! of the hours `sessions_hourly` covers (session consistency). Each query
//! covers every hour at once; hours a table has nothing for get zeros (a table that
//! went quiet is a figure too), as long as the table exists.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int32Type, Int64Type};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use hourlake_catalog::rollup::{ALL_MEMBER, UNKNOWN_MEMBER};
use hourlake_catalog::schema::{
    EVENT_DATE, EVENT_HOUR, INGESTED_AT, INGEST_DATE, KAFKA_OFFSET, KAFKA_PARTITION, KAFKA_TOPIC,
    SOURCE_TABLE, USER_ID,
};
use hourlake_catalog::{Hour, Lake, Rollup, TableId};
use hourlake_sql::views::session_consistency_sql;
use hourlake_sql::{register_table, SessionFactory};

use super::{Figure, Metric};
use crate::dedup::{not_a_duplicate, register_duplicates};
use crate::{CompactorConfig, CompactorError};

const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// The tables figures are read from, registered in one session (at the versions
/// loaded now: the rollups this pass just committed included).
pub(crate) struct Sources {
    ctx: SessionContext,
    present: BTreeSet<TableId>,
}

impl Sources {
    /// Every table that exists among those the figures read.
    pub async fn open(lake: &Lake, factory: &SessionFactory) -> Result<Sources, CompactorError> {
        let ctx = factory.context()?;
        let mut present = BTreeSet::new();
        for id in [
            TableId::EngagementEvents,
            TableId::RecommendationEvents,
            TableId::DeadLetters,
            TableId::EngagementHourly,
            TableId::RecommendationHourly,
            TableId::RemovedDuplicates,
            TableId::Sessions,
            TableId::SessionsHourly,
            TableId::QualityHourly,
        ] {
            if let Some(table) = lake.open(id).await? {
                register_table(&ctx, id.name(), &table).await?;
                present.insert(id);
            }
        }
        Ok(Sources { ctx, present })
    }

    /// Whether `id` exists (and is registered under its name).
    pub fn has(&self, id: TableId) -> bool {
        self.present.contains(&id)
    }

    /// The answer to `sql`.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, CompactorError> {
        Ok(self.ctx.sql(sql).await?.collect().await?)
    }
}

/// The figures of `hours`, not yet judged.
pub(crate) async fn compute(
    sources: &Sources,
    config: &CompactorConfig,
    hours: &[Hour],
) -> Result<Vec<Figure>, CompactorError> {
    let mut out = Vec::new();
    // Events per hour over every event table (for the dead-letter rate).
    let mut events: BTreeMap<Hour, i64> = hours.iter().map(|h| (*h, 0)).collect();
    // The rollups of the event tables (`sessions_hourly` is read by `session_figures`).
    for rollup in Rollup::ALL {
        // A rollup without dimensions (the totals) repeats its full rollup's ALL rows.
        if !TableId::EVENTS.contains(&rollup.source)
            || rollup.dimensions.is_empty()
            || !sources.has(rollup.table)
        {
            continue;
        }
        let headline = headline_figures(sources, rollup, hours).await?;
        for f in &headline {
            if f.metric == Metric::Events {
                *events.entry(f.hour).or_default() += f.numerator.unwrap_or(0);
            }
        }
        let totals: BTreeMap<Hour, i64> = headline
            .iter()
            .filter(|f| f.metric == Metric::Events)
            .map(|f| (f.hour, f.numerator.unwrap_or(0)))
            .collect();
        out.extend(headline);
        out.extend(null_shares(sources, rollup, hours, &totals).await?);
        if sources.has(rollup.source) {
            let late = late_shares(sources, config, rollup.source, hours).await?;
            let exact = exact_users(sources, config, rollup.source, hours, &out).await?;
            let removed = duplicates_removed(sources, rollup.source, hours).await?;
            out.extend(late.into_iter().chain(exact).chain(removed));
        }
    }
    out.extend(dead_letters(sources, hours, &events).await?);
    out.extend(session_figures(sources, hours).await?);
    Ok(out)
}

/// The consistency figures of the `sessions` table (source table `sessions`), from
/// [`session_consistency_sql`], for the hours of `hours` that `sessions_hourly` covers:
/// only there is every session starting in the hour final, so the figures are complete.
/// The other hours get none (not partial ones); the pass that rolls them up in
/// `sessions_hourly` computes them again.
async fn session_figures(sources: &Sources, hours: &[Hour]) -> Result<Vec<Figure>, CompactorError> {
    if !sources.has(TableId::Sessions) || !sources.has(TableId::SessionsHourly) {
        return Ok(Vec::new());
    }
    let covered = rolled_up_hours(sources, TableId::SessionsHourly, hours).await?;
    if covered.is_empty() {
        return Ok(Vec::new());
    }
    let mut select = vec!["sessions"];
    for (_, numerator, value, denominator) in CONSISTENCY_RATIOS {
        select.extend([numerator, value, denominator]);
    }
    let select = numbered(&select, str::to_string);
    let sql = format!(
        "SELECT {EVENT_DATE}, {EVENT_HOUR}, {select} FROM ({})",
        session_consistency_sql(Some(&covered))
    );
    let table = TableId::Sessions;
    let mut by_hour: BTreeMap<Hour, Vec<Figure>> = BTreeMap::new();
    for b in sources.query(&sql).await? {
        let at = hours_of(&b)?;
        let sessions = int64s(&b, 2)?;
        let mut ratios = Vec::new();
        for i in 0..CONSISTENCY_RATIOS.len() {
            let first = 3 + 3 * i;
            ratios.push((
                int64s(&b, first)?,
                doubles(&b, first + 1)?,
                int64s(&b, first + 2)?,
            ));
        }
        for (row, hour) in at.iter().enumerate() {
            let mut figures = vec![Figure::count(
                *hour,
                table,
                Metric::Sessions,
                sessions[row].unwrap_or(0),
            )];
            for ((metric, ..), (n, v, d)) in CONSISTENCY_RATIOS.iter().zip(&ratios) {
                figures.push(Figure {
                    numerator: Some(n[row].unwrap_or(0)),
                    denominator: Some(d[row].unwrap_or(0)),
                    ..Figure::new(*hour, table, *metric, v[row])
                });
            }
            by_hour.insert(*hour, figures);
        }
    }
    let mut out = Vec::new();
    for hour in covered {
        out.extend(by_hour.remove(&hour).unwrap_or_else(|| {
            // Rolled up without a session left (all erased): no sessions, no ratios.
            let mut none = vec![Figure::count(hour, table, Metric::Sessions, 0)];
            for (metric, ..) in CONSISTENCY_RATIOS {
                none.push(Figure::share(hour, table, metric, 0, 0));
            }
            none
        }));
    }
    Ok(out)
}

/// The ratios of the consistency check written as figures: metric, and the columns of
/// [`session_consistency_sql`] holding its numerator, value and denominator.
const CONSISTENCY_RATIOS: [(Metric, &str, &str, &str); 3] = [
    (
        Metric::StartsPerSession,
        "app_session_starts",
        "starts_per_session",
        "sessions",
    ),
    (
        Metric::AppLengthRatio,
        "app_session_length_ms",
        "app_length_ratio",
        "sessionized_duration_ms",
    ),
    (
        Metric::AgreementRate,
        "agreeing_sessions",
        "agreement_rate",
        "sessions",
    ),
];

/// `columns`, each through `expr`, as a select list named `c0, c1, …`: a column may be
/// selected twice, and the answer is read by position.
fn numbered(columns: &[&str], expr: impl Fn(&str) -> String) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} AS c{i}", expr(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The hours of `hours` that the rollup table `rollup` holds rows for.
async fn rolled_up_hours(
    sources: &Sources,
    rollup: TableId,
    hours: &[Hour],
) -> Result<Vec<Hour>, CompactorError> {
    let sql = format!(
        "SELECT DISTINCT {EVENT_DATE}, {EVENT_HOUR} FROM {rollup} WHERE {}",
        Hour::sql_predicate_any(hours)
    );
    let mut covered = BTreeSet::new();
    for b in sources.query(&sql).await? {
        covered.extend(hours_of(&b)?);
    }
    Ok(covered.into_iter().collect())
}

/// A figure read from the `ALL` row of a rollup: its metric, and SQL over the row.
struct Headline {
    metric: Metric,
    sql: &'static str,
}

/// A share read from the `ALL` row of a rollup: numerator and denominator columns.
struct Ratio {
    metric: Metric,
    numerator: &'static str,
    denominator: &'static str,
}

/// The headline figures each rollup gives, and its ratios.
fn headlines(rollup: &Rollup) -> (&'static [Headline], &'static [Ratio]) {
    const USERS: Headline = Headline {
        metric: Metric::Users,
        sql: "hll_estimate(users_sketch)",
    };
    match rollup.table {
        TableId::EngagementHourly => (
            &[
                Headline {
                    metric: Metric::Events,
                    sql: "events",
                },
                USERS,
                Headline {
                    metric: Metric::AppSessionStarts,
                    sql: "sessions",
                },
                Headline {
                    metric: Metric::Purchases,
                    sql: "purchases",
                },
                Headline {
                    metric: Metric::Revenue,
                    sql: "revenue",
                },
            ],
            &[],
        ),
        TableId::RecommendationHourly => (
            &[
                Headline {
                    metric: Metric::Events,
                    sql: "events",
                },
                USERS,
            ],
            &[Ratio {
                metric: Metric::Ctr,
                numerator: "clicks",
                denominator: "impressions",
            }],
        ),
        _ => (&[], &[]),
    }
}

/// `d1 = 'ALL' AND d2 = 'ALL' …` over the dimensions of `rollup` but `except`, with
/// `except = 'unknown'`.
fn members_sql(rollup: &Rollup, unknown: Option<&str>) -> String {
    rollup
        .dimensions
        .iter()
        .map(|d| {
            let member = if Some(*d) == unknown {
                UNKNOWN_MEMBER
            } else {
                ALL_MEMBER
            };
            format!("{d} = '{member}'")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The figures of the rollup's `ALL` rows: events, users, … (zeros for hours without
/// a row).
async fn headline_figures(
    sources: &Sources,
    rollup: &Rollup,
    hours: &[Hour],
) -> Result<Vec<Figure>, CompactorError> {
    let (heads, ratios) = headlines(rollup);
    let mut columns: Vec<&str> = heads.iter().map(|h| h.sql).collect();
    for r in ratios {
        columns.extend([r.numerator, r.denominator]);
    }
    let select = numbered(&columns, |c| format!("CAST({c} AS DOUBLE)"));
    let sql = format!(
        "SELECT {EVENT_DATE}, {EVENT_HOUR}, {select} FROM {} WHERE {} AND ({})",
        rollup.table,
        members_sql(rollup, None),
        Hour::sql_predicate_any(hours)
    );
    let mut rows: BTreeMap<Hour, Vec<f64>> = BTreeMap::new();
    for b in sources.query(&sql).await? {
        let at = hours_of(&b)?;
        let values = (0..columns.len())
            .map(|i| doubles(&b, 2 + i))
            .collect::<Result<Vec<_>, _>>()?;
        for (row, hour) in at.iter().enumerate() {
            rows.insert(
                *hour,
                values.iter().map(|v| v[row].unwrap_or(0.0)).collect(),
            );
        }
    }
    let source = rollup.source;
    let mut out = Vec::new();
    for hour in hours {
        let zeros = vec![0.0; columns.len()];
        let v = rows.get(hour).unwrap_or(&zeros);
        for (i, h) in heads.iter().enumerate() {
            out.push(match h.metric {
                Metric::Revenue => Figure::new(*hour, source, h.metric, Some(v[i])),
                _ => Figure::count(*hour, source, h.metric, v[i].round() as i64),
            });
        }
        for (j, r) in ratios.iter().enumerate() {
            let at = heads.len() + 2 * j;
            let (n, d) = (v[at].round() as i64, v[at + 1].round() as i64);
            out.push(Figure::share(*hour, source, r.metric, n, d));
        }
    }
    Ok(out)
}

/// Per nullable dimension of `rollup`: the share of events without a value, from the
/// rollup's `unknown` rows and the hours' event totals.
async fn null_shares(
    sources: &Sources,
    rollup: &Rollup,
    hours: &[Hour],
    totals: &BTreeMap<Hour, i64>,
) -> Result<Vec<Figure>, CompactorError> {
    let schema = rollup.source.schema();
    let dims: Vec<&str> = rollup
        .dimensions
        .iter()
        .copied()
        .filter(|d| schema.field_with_name(d).is_ok_and(|f| f.is_nullable()))
        .collect();
    if dims.is_empty() {
        return Ok(Vec::new());
    }
    let hours_sql = Hour::sql_predicate_any(hours);
    let sql = dims
        .iter()
        .map(|d| {
            format!(
                "SELECT {EVENT_DATE}, {EVENT_HOUR}, '{d}' AS dimension, CAST(events AS BIGINT) AS n \
                 FROM {} WHERE {} AND ({hours_sql})",
                rollup.table,
                members_sql(rollup, Some(d))
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut unknown: BTreeMap<(Hour, String), i64> = BTreeMap::new();
    for b in sources.query(&sql).await? {
        let at = hours_of(&b)?;
        let dim = strings(&b, 2)?;
        let n = int64s(&b, 3)?;
        for (row, hour) in at.iter().enumerate() {
            if let Some(d) = &dim[row] {
                unknown.insert((*hour, d.clone()), n[row].unwrap_or(0));
            }
        }
    }
    let mut out = Vec::new();
    for hour in hours {
        let total = totals.get(hour).copied().unwrap_or(0);
        for d in &dims {
            let part = unknown.get(&(*hour, d.to_string())).copied().unwrap_or(0);
            out.push(Figure::share(*hour, rollup.source, Metric::NullShare, part, total).of(*d));
        }
    }
    Ok(out)
}

/// The share of each hour's (deduplicated) events ingested after the hour closed: at
/// or after its end plus `closed_after`.
async fn late_shares(
    sources: &Sources,
    config: &CompactorConfig,
    source: TableId,
    hours: &[Hour],
) -> Result<Vec<Figure>, CompactorError> {
    let hours_sql = format!("({})", Hour::sql_predicate_any(hours));
    let duplicates = format!("quality_duplicates_{source}");
    let found =
        register_duplicates(&sources.ctx, source.name(), &hours_sql, None, &duplicates).await?;
    let mut rows = hours_sql.clone();
    if found > 0 {
        rows = format!("{rows} AND {}", not_a_duplicate("s", &duplicates));
    }
    let grace = i64::try_from(config.closed_after.as_micros()).unwrap_or(i64::MAX / 2);
    let sql = format!(
        "SELECT {EVENT_DATE}, {EVENT_HOUR}, count(*) AS n, \
           sum(CASE WHEN ingested >= (at / {MICROS_PER_HOUR} + 1) * {MICROS_PER_HOUR} + {grace} \
               THEN 1 ELSE 0 END) AS late \
         FROM (SELECT {EVENT_DATE}, {EVENT_HOUR}, CAST({INGESTED_AT} AS BIGINT) AS ingested, \
                 CAST(event_time AS BIGINT) AS at FROM {source} s WHERE {rows}) \
         GROUP BY 1, 2"
    );
    let mut counts: BTreeMap<Hour, (i64, i64)> = BTreeMap::new();
    for b in sources.query(&sql).await? {
        let at = hours_of(&b)?;
        let (n, late) = (int64s(&b, 2)?, int64s(&b, 3)?);
        for (row, hour) in at.iter().enumerate() {
            counts.insert(*hour, (n[row].unwrap_or(0), late[row].unwrap_or(0)));
        }
    }
    Ok(hours
        .iter()
        .map(|h| {
            let (n, late) = counts.get(h).copied().unwrap_or((0, 0));
            Figure::share(*h, source, Metric::LateShare, late, n)
        })
        .collect())
}

/// On the sampled hours: exact distinct users, and the HLL estimate's relative error
/// against them (the estimate is the `users` figure already in `so_far`).
async fn exact_users(
    sources: &Sources,
    config: &CompactorConfig,
    source: TableId,
    hours: &[Hour],
    so_far: &[Figure],
) -> Result<Vec<Figure>, CompactorError> {
    let sampled: Vec<Hour> = hours
        .iter()
        .copied()
        .filter(|h| config.quality.samples_exact_users(*h))
        .collect();
    if sampled.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {EVENT_DATE}, {EVENT_HOUR}, count(DISTINCT {USER_ID}) AS n FROM {source} \
         WHERE {} GROUP BY 1, 2",
        Hour::sql_predicate_any(&sampled)
    );
    let mut exact: BTreeMap<Hour, i64> = BTreeMap::new();
    for b in sources.query(&sql).await? {
        let at = hours_of(&b)?;
        let n = int64s(&b, 2)?;
        for (row, hour) in at.iter().enumerate() {
            exact.insert(*hour, n[row].unwrap_or(0));
        }
    }
    let mut out = Vec::new();
    for hour in sampled {
        let n = exact.get(&hour).copied().unwrap_or(0);
        out.push(Figure::count(hour, source, Metric::UsersExact, n));
        let estimate = so_far
            .iter()
            .find(|f| f.hour == hour && f.table == source && f.metric == Metric::Users)
            .and_then(|f| f.value);
        if let Some(estimate) = estimate {
            let error = (n > 0).then(|| (estimate - n as f64) / n as f64);
            out.push(Figure {
                denominator: Some(n),
                ..Figure::new(hour, source, Metric::UsersHllError, error)
            });
        }
    }
    Ok(out)
}

/// Copies of `source`'s events the compactor removed from each hour: the ledger's
/// positions (each once) whose copy is no longer in the hour.
async fn duplicates_removed(
    sources: &Sources,
    source: TableId,
    hours: &[Hour],
) -> Result<Vec<Figure>, CompactorError> {
    let mut removed: BTreeMap<Hour, i64> = BTreeMap::new();
    if sources.has(TableId::RemovedDuplicates) {
        let hours_sql = Hour::sql_predicate_any(hours);
        let sql = format!(
            "WITH ledger AS (SELECT DISTINCT {KAFKA_TOPIC} AS t, {KAFKA_PARTITION} AS p, \
                 {KAFKA_OFFSET} AS o, {EVENT_DATE}, {EVENT_HOUR} FROM {ledger} \
                 WHERE {SOURCE_TABLE} = '{source}' AND ({hours_sql})), \
               present AS (SELECT {KAFKA_TOPIC} AS t, {KAFKA_PARTITION} AS p, {KAFKA_OFFSET} AS o \
                 FROM {source} WHERE {hours_sql}) \
             SELECT {EVENT_DATE}, {EVENT_HOUR}, count(*) AS n FROM ledger l \
             WHERE NOT EXISTS (SELECT 1 FROM present k WHERE k.t = l.t AND k.p = l.p AND k.o = l.o) \
             GROUP BY 1, 2",
            ledger = TableId::RemovedDuplicates,
        );
        for b in sources.query(&sql).await? {
            let at = hours_of(&b)?;
            let n = int64s(&b, 2)?;
            for (row, hour) in at.iter().enumerate() {
                removed.insert(*hour, n[row].unwrap_or(0));
            }
        }
    }
    Ok(hours
        .iter()
        .map(|h| {
            let n = removed.get(h).copied().unwrap_or(0);
            Figure::count(*h, source, Metric::DuplicatesRemoved, n)
        })
        .collect())
}

/// Dead letters per hour of their Kafka timestamp (or, without one, of when ingest
/// wrote them), in all and by reason, and their share of the hour's messages (dead
/// letters and `events`, every event table's deduplicated events).
async fn dead_letters(
    sources: &Sources,
    hours: &[Hour],
    events: &BTreeMap<Hour, i64>,
) -> Result<Vec<Figure>, CompactorError> {
    let mut by_reason: BTreeMap<Hour, BTreeMap<String, i64>> = BTreeMap::new();
    if sources.has(TableId::DeadLetters) {
        let first_day = hours.iter().map(|h| h.date).min().unwrap_or(0);
        let in_hours = hours
            .iter()
            .map(|h| format!("(at >= {} AND at < {})", h.start_micros(), h.end_micros()))
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!(
            "SELECT at / {MICROS_PER_HOUR} AS hour_number, reason_code, count(*) AS n \
             FROM (SELECT CAST(coalesce(kafka_timestamp, {INGESTED_AT}) AS BIGINT) AS at, reason_code \
                   FROM {} WHERE {INGEST_DATE} >= DATE '{}') \
             WHERE {in_hours} GROUP BY 1, 2",
            TableId::DeadLetters,
            hourlake_catalog::partition::date_string(first_day.saturating_sub(1)),
        );
        for b in sources.query(&sql).await? {
            let hour_numbers = int64s(&b, 0)?;
            let reasons = strings(&b, 1)?;
            let n = int64s(&b, 2)?;
            for row in 0..b.num_rows() {
                let (Some(number), Some(reason)) = (hour_numbers[row], &reasons[row]) else {
                    continue;
                };
                let hour = Hour::of_micros(number.saturating_mul(MICROS_PER_HOUR));
                *by_reason
                    .entry(hour)
                    .or_default()
                    .entry(reason.clone())
                    .or_default() += n[row].unwrap_or(0);
            }
        }
    }
    let table = TableId::DeadLetters;
    let mut out = Vec::new();
    for hour in hours {
        let reasons = by_reason.remove(hour).unwrap_or_default();
        let all: i64 = reasons.values().sum();
        out.push(Figure::count(*hour, table, Metric::DeadLetters, all));
        for (reason, n) in reasons {
            out.push(Figure::count(*hour, table, Metric::DeadLetters, n).of(reason));
        }
        let messages = all + events.get(hour).copied().unwrap_or(0);
        out.push(Figure::share(
            *hour,
            table,
            Metric::DeadLetterRate,
            all,
            messages,
        ));
    }
    Ok(out)
}

/// Column `i` of `b` cast to `to`.
fn cast(b: &RecordBatch, i: usize, to: &DataType) -> Result<ArrayRef, CompactorError> {
    arrow::compute::cast(b.column(i), to)
        .map_err(|e| CompactorError::DataFusion(DataFusionError::from(e)))
}

/// The `(event_date, event_hour)` of each row of `b` (its first two columns).
pub(crate) fn hours_of(b: &RecordBatch) -> Result<Vec<Hour>, CompactorError> {
    let dates = cast(b, 0, &DataType::Date32)?;
    let hours = cast(b, 1, &DataType::Int32)?;
    let (dates, hours) = (
        dates.as_primitive::<Date32Type>(),
        hours.as_primitive::<Int32Type>(),
    );
    (0..b.num_rows())
        .map(|i| {
            if dates.is_null(i) || hours.is_null(i) {
                return Err(CompactorError::Unexpected {
                    table: TableId::QualityHourly.name(),
                    reason: "a figure's query answered a row without its hour".into(),
                });
            }
            Ok(Hour {
                date: dates.value(i),
                hour: hours.value(i),
            })
        })
        .collect()
}

/// Column `i` of `b` as optional 64-bit floats.
pub(crate) fn doubles(b: &RecordBatch, i: usize) -> Result<Vec<Option<f64>>, CompactorError> {
    let c = cast(b, i, &DataType::Float64)?;
    Ok(c.as_primitive::<Float64Type>().iter().collect())
}

/// Column `i` of `b` as optional 64-bit integers.
pub(crate) fn int64s(b: &RecordBatch, i: usize) -> Result<Vec<Option<i64>>, CompactorError> {
    let c = cast(b, i, &DataType::Int64)?;
    Ok(c.as_primitive::<Int64Type>().iter().collect())
}

/// Column `i` of `b` as optional strings.
pub(crate) fn strings(b: &RecordBatch, i: usize) -> Result<Vec<Option<String>>, CompactorError> {
    let c = cast(b, i, &DataType::Utf8)?;
    Ok(c.as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect())
}
