//! The rollup contract. Each hourly rollup table is declared once, as a [`Rollup`]: its
//! source table, its dimensions and its [`Measure`]s (what each computes from the
//! source's events, and how rows [`Merge`]). Everything else is derived from that
//! declaration: the table's schema ([`Rollup::schema`]), the rows the compactor writes
//! (`hourlake_compactor::rollup`) and the dashboard views that read them
//! (`hourlake_sql::views`).
//!
//! A rollup row holds one hour and one value of each dimension, where [`ALL_MEMBER`]
//! stands for every value (a row for every subset of the dimensions: GROUPING SETS);
//! events that lack a dimension count under [`UNKNOWN_MEMBER`]. Users' dashboards and
//! other engines (Spark) read these tables, so a declared rollup's schema and contents
//! are a public format.
//!
//! Adding a rollup: a [`TableId`] for its table, a `Rollup` constant here listed in
//! [`Rollup::ALL`]; the compactor keeps it current from then on, and a view over it is
//! one declaration in `hourlake_sql::views`.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::schema::{timestamp_type, EVENT_DATE, EVENT_HOUR};
use crate::{EventType, TableId};

/// The member of a rollup dimension that stands for "every value" (the `ALL` rows).
pub const ALL_MEMBER: &str = "ALL";
/// The member of a rollup dimension for events that did not carry the dimension.
pub const UNKNOWN_MEMBER: &str = "unknown";
/// Rollup column: the source table version the row was computed from.
pub const SOURCE_VERSION: &str = "source_version";
/// Rollup column: when the row was computed.
pub const COMPUTED_AT: &str = "computed_at";

/// The source column that holds an event's type.
const EVENT_TYPE: &str = "event_type";

/// An hourly rollup table: one row per hour and combination of dimension values (each
/// also as [`ALL_MEMBER`]), holding the measures of the source events it stands for.
#[derive(Debug, PartialEq, Eq)]
pub struct Rollup {
    /// The rollup table.
    pub table: TableId,
    /// The table it is computed from, partitioned by hour: an event table, or a table
    /// derived from one ([`TableId::DERIVED`]: `sessions`, by the hour sessions start).
    pub source: TableId,
    /// A SQL predicate on source rows that holds for rows that can no longer change;
    /// only those are counted (`None`: every row). `sessions_hourly` counts final
    /// sessions only, and is recomputed when provisional ones become final.
    pub final_rows: Option<&'static str>,
    /// Source columns grouped by, in grouping order (string values).
    pub dimensions: &'static [&'static str],
    /// The rollup's measures, in column order.
    pub measures: &'static [Measure],
}

/// One measure column of a rollup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    /// The column name.
    pub name: &'static str,
    /// What it computes from a row's events.
    pub aggregate: Aggregate,
}

/// What a measure computes from the events of one rollup row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Every event: `count(*)`.
    Events,
    /// The events of one type.
    EventsOf(EventType),
    /// The events in which a column has a value: `count(column)`.
    Present(&'static str),
    /// The sum of a SQL expression over the events (only those of one type, when
    /// given); 0 when nothing is summed.
    Sum {
        /// The SQL expression summed (over source columns).
        value: &'static str,
        /// Only events of this type.
        of: Option<EventType>,
        /// The type of the sum.
        number: Number,
    },
    /// The distinct values of a column, as an HLL sketch (`hll_sketch`).
    Distinct(&'static str),
    /// The distribution of a numeric column, as a KLL sketch of its values as DOUBLE
    /// (`quantile_sketch`).
    Quantiles(&'static str),
}

/// The type of a [`Aggregate::Sum`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Number {
    /// A 64-bit integer sum.
    Int64,
    /// A 64-bit floating-point sum.
    Float64,
}

/// How a measure's values in several rows combine into the value of their union (the
/// rows of several hours, or of several dimension values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Added up (counts and sums).
    Sum,
    /// HLL sketches unioned (`hll_union`).
    HllUnion,
    /// KLL sketches unioned (`quantile_union`).
    QuantileUnion,
}

/// Distinct users (both rollups carry it).
pub const USERS_SKETCH: Measure = Measure::new("users_sketch", Aggregate::Distinct("user_id"));

/// The measures of `engagement_hourly` and `engagement_hourly_totals`.
const ENGAGEMENT_MEASURES: &[Measure] = &[
    Measure::new("events", Aggregate::Events),
    USERS_SKETCH,
    Measure::new("installs", Aggregate::EventsOf(EventType::Install)),
    Measure::new("sessions", Aggregate::EventsOf(EventType::SessionStart)),
    Measure::new(
        "session_length_count",
        Aggregate::Present("session_length_ms"),
    ),
    Measure::new(
        "session_length_ms_sum",
        Aggregate::Sum {
            value: "session_length_ms",
            of: None,
            number: Number::Int64,
        },
    ),
    Measure::new(
        "session_length_sketch",
        Aggregate::Quantiles("session_length_ms"),
    ),
    Measure::new("screen_views", Aggregate::EventsOf(EventType::ScreenView)),
    Measure::new("clicks", Aggregate::EventsOf(EventType::Click)),
    Measure::new("searches", Aggregate::EventsOf(EventType::Search)),
    Measure::new(
        "notification_views",
        Aggregate::EventsOf(EventType::NotificationView),
    ),
    Measure::new(
        "notification_opens",
        Aggregate::EventsOf(EventType::NotificationOpen),
    ),
    Measure::new("purchases", Aggregate::EventsOf(EventType::Purchase)),
    Measure::new(
        "revenue",
        Aggregate::Sum {
            value: "amount",
            of: Some(EventType::Purchase),
            number: Number::Float64,
        },
    ),
];

/// `engagement_hourly`: app engagement by event type, device, app version and country.
pub const ENGAGEMENT_HOURLY: Rollup = Rollup {
    table: TableId::EngagementHourly,
    source: TableId::EngagementEvents,
    final_rows: None,
    dimensions: &["event_type", "device_type", "app_version", "country"],
    measures: ENGAGEMENT_MEASURES,
};

/// `engagement_hourly_totals`: the same measures per hour over everything (the `ALL`
/// row of `engagement_hourly`), which the dashboard views read.
pub const ENGAGEMENT_HOURLY_TOTALS: Rollup = Rollup {
    table: TableId::EngagementHourlyTotals,
    source: TableId::EngagementEvents,
    final_rows: None,
    dimensions: &[],
    measures: ENGAGEMENT_MEASURES,
};

/// `recommendation_hourly`: the recommendation funnel by model version and surface.
pub const RECOMMENDATION_HOURLY: Rollup = Rollup {
    table: TableId::RecommendationHourly,
    source: TableId::RecommendationEvents,
    final_rows: None,
    dimensions: &["model_version", "surface"],
    measures: &[
        Measure::new("events", Aggregate::Events),
        Measure::new("served", Aggregate::EventsOf(EventType::RecServed)),
        Measure::new(
            "items_served",
            Aggregate::Sum {
                value: "CAST(array_length(items) AS BIGINT)",
                of: Some(EventType::RecServed),
                number: Number::Int64,
            },
        ),
        Measure::new("impressions", Aggregate::EventsOf(EventType::RecImpression)),
        Measure::new("clicks", Aggregate::EventsOf(EventType::RecClick)),
        USERS_SKETCH,
    ],
};

/// A sum of the source rows where a boolean column is true.
const fn count_where(name: &'static str, value: &'static str) -> Measure {
    Measure::new(
        name,
        Aggregate::Sum {
            value,
            of: None,
            number: Number::Int64,
        },
    )
}

/// `sessions_hourly`: final sessions by the hour they started, device, OS, app version
/// and country. Rates merge from their parts: bounce rate = `bounces / sessions`,
/// screens per session = `screen_views / sessions`, mean length =
/// `duration_ms_sum / sessions`; `duration_sketch` gives p50/p95.
pub const SESSIONS_HOURLY: Rollup = Rollup {
    table: TableId::SessionsHourly,
    source: TableId::Sessions,
    final_rows: Some("is_final"),
    dimensions: &["device_type", "device_os", "app_version", "country"],
    measures: SESSIONS_MEASURES,
};

/// `sessions_hourly_totals`: the same measures per start hour over every final session
/// (the `ALL` row of `sessions_hourly`), which the session-length view reads.
pub const SESSIONS_HOURLY_TOTALS: Rollup = Rollup {
    table: TableId::SessionsHourlyTotals,
    source: TableId::Sessions,
    final_rows: Some("is_final"),
    dimensions: &[],
    measures: SESSIONS_MEASURES,
};

/// The measures of `sessions_hourly` and `sessions_hourly_totals`.
const SESSIONS_MEASURES: &[Measure] = &[
    Measure::new("sessions", Aggregate::Events),
    USERS_SKETCH,
    count_where("duration_ms_sum", "duration_ms"),
    Measure::new("duration_sketch", Aggregate::Quantiles("duration_ms")),
    count_where("bounces", "CASE WHEN bounce THEN 1 ELSE 0 END"),
    count_where("screen_views", "screen_views"),
    count_where("events", "events"),
    count_where("app_session_starts", "app_session_starts"),
    count_where("app_session_length_ms_sum", "app_session_length_ms"),
    count_where(
        "app_agreeing_sessions",
        "CASE WHEN app_session_agrees THEN 1 ELSE 0 END",
    ),
];

impl Rollup {
    /// Every rollup the compactor maintains.
    pub const ALL: &'static [&'static Rollup] = &[
        &ENGAGEMENT_HOURLY,
        &ENGAGEMENT_HOURLY_TOTALS,
        &RECOMMENDATION_HOURLY,
        &SESSIONS_HOURLY,
        &SESSIONS_HOURLY_TOTALS,
    ];

    /// The Delta partition columns of every rollup table.
    pub const PARTITION_COLUMNS: &'static [&'static str] = &[EVENT_DATE];

    /// The rollup stored in `table`, if it is a rollup table.
    pub fn of_table(table: TableId) -> Option<&'static Rollup> {
        Rollup::ALL.iter().copied().find(|r| r.table == table)
    }

    /// The rollups computed from `source`.
    pub fn of_source(source: TableId) -> impl Iterator<Item = &'static Rollup> {
        Rollup::ALL
            .iter()
            .copied()
            .filter(move |r| r.source == source)
    }

    /// The table's Arrow schema: the hour, the dimensions (never null), the measures,
    /// [`SOURCE_VERSION`], [`COMPUTED_AT`], and the partition column `event_date` last.
    pub fn schema(&self) -> SchemaRef {
        static DECLARED: LazyLock<Vec<(&'static Rollup, SchemaRef)>> =
            LazyLock::new(|| Rollup::ALL.iter().map(|r| (*r, r.build_schema())).collect());
        match DECLARED.iter().find(|(r, _)| *r == self) {
            Some((_, schema)) => schema.clone(),
            None => self.build_schema(),
        }
    }

    fn build_schema(&self) -> SchemaRef {
        let mut fields = vec![Field::new(EVENT_HOUR, DataType::Int32, false)];
        fields.extend(
            self.dimensions
                .iter()
                .map(|d| Field::new(*d, DataType::Utf8, false)),
        );
        fields.extend(self.measures.iter().map(Measure::field));
        fields.push(Field::new(SOURCE_VERSION, DataType::Int64, false));
        fields.push(Field::new(COMPUTED_AT, timestamp_type(), false));
        fields.push(Field::new(EVENT_DATE, DataType::Date32, false));
        Arc::new(Schema::new(fields))
    }

    /// The SQL select list computing every measure from grouped source rows
    /// (`count(*) AS events, …`).
    pub fn measures_sql(&self) -> String {
        self.measures
            .iter()
            .map(Measure::sql)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// SQL for a dimension's value in a source row: its value, or [`UNKNOWN_MEMBER`] when
/// the event lacks it (so that NULL, after grouping, can only mean [`ALL_MEMBER`]).
pub fn dimension_value_sql(dimension: &str) -> String {
    format!("coalesce({dimension}, '{UNKNOWN_MEMBER}')")
}

impl Measure {
    /// A measure named `name` computing `aggregate`.
    pub const fn new(name: &'static str, aggregate: Aggregate) -> Measure {
        Measure { name, aggregate }
    }

    /// The column of the rollup table holding it.
    pub fn field(&self) -> Field {
        let (data_type, nullable) = match self.aggregate {
            Aggregate::Events | Aggregate::EventsOf(_) | Aggregate::Present(_) => {
                (DataType::Int64, false)
            }
            Aggregate::Sum { number, .. } => (number.data_type(), false),
            Aggregate::Distinct(_) | Aggregate::Quantiles(_) => (DataType::Binary, true),
        };
        Field::new(self.name, data_type, nullable)
    }

    /// SQL computing it from grouped source rows, named: `<aggregate> AS <name>`.
    pub fn sql(&self) -> String {
        format!("{} AS {}", self.aggregate.sql(), self.name)
    }

    /// SQL merging the values of its column across grouped rollup rows (unnamed).
    pub fn merge_sql(&self) -> String {
        self.aggregate.merge().sql(self.name)
    }
}

impl Aggregate {
    /// SQL computing it from grouped source rows.
    pub fn sql(&self) -> String {
        let of_type = |t: EventType| format!("{EVENT_TYPE} = '{}'", t.as_str());
        match *self {
            Aggregate::Events => "count(*)".to_string(),
            Aggregate::EventsOf(t) => format!("sum(CASE WHEN {} THEN 1 ELSE 0 END)", of_type(t)),
            Aggregate::Present(column) => format!("count({column})"),
            Aggregate::Sum {
                value,
                of: None,
                number,
            } => format!("coalesce(sum({value}), {})", number.zero()),
            Aggregate::Sum {
                value,
                of: Some(t),
                number,
            } => format!(
                "coalesce(sum(CASE WHEN {} THEN {value} END), {})",
                of_type(t),
                number.zero()
            ),
            Aggregate::Distinct(column) => format!("hll_sketch({column})"),
            Aggregate::Quantiles(column) => {
                format!("quantile_sketch(CAST({column} AS DOUBLE))")
            }
        }
    }

    /// How its values in several rows combine.
    pub fn merge(&self) -> Merge {
        match self {
            Aggregate::Events
            | Aggregate::EventsOf(_)
            | Aggregate::Present(_)
            | Aggregate::Sum { .. } => Merge::Sum,
            Aggregate::Distinct(_) => Merge::HllUnion,
            Aggregate::Quantiles(_) => Merge::QuantileUnion,
        }
    }
}

impl Merge {
    /// SQL merging `column` across grouped rows.
    pub fn sql(self, column: &str) -> String {
        match self {
            Merge::Sum => format!("sum({column})"),
            Merge::HllUnion => format!("hll_union({column})"),
            Merge::QuantileUnion => format!("quantile_union({column})"),
        }
    }
}

impl Number {
    fn data_type(self) -> DataType {
        match self {
            Number::Int64 => DataType::Int64,
            Number::Float64 => DataType::Float64,
        }
    }

    fn zero(self) -> &'static str {
        match self {
            Number::Int64 => "0",
            Number::Float64 => "0.0",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rollup tables' schemas as they were first written (and as Spark and users'
    /// dashboards read them): the declarations must keep deriving exactly these.
    #[test]
    fn declared_rollups_derive_the_published_schemas() {
        let int = |n| (n, DataType::Int64, false);
        let sketch = |n| (n, DataType::Binary, true);
        let text = |n| (n, DataType::Utf8, false);
        let hour = ("event_hour", DataType::Int32, false);
        let tail = [
            ("source_version", DataType::Int64, false),
            ("computed_at", timestamp_type(), false),
            ("event_date", DataType::Date32, false),
        ];
        let mut engagement = vec![
            hour.clone(),
            text("event_type"),
            text("device_type"),
            text("app_version"),
            text("country"),
            int("events"),
            sketch("users_sketch"),
            int("installs"),
            int("sessions"),
            int("session_length_count"),
            int("session_length_ms_sum"),
            sketch("session_length_sketch"),
            int("screen_views"),
            int("clicks"),
            int("searches"),
            int("notification_views"),
            int("notification_opens"),
            int("purchases"),
            ("revenue", DataType::Float64, false),
        ];
        engagement.extend(tail.clone());
        let mut recommendation = vec![
            hour.clone(),
            text("model_version"),
            text("surface"),
            int("events"),
            int("served"),
            int("items_served"),
            int("impressions"),
            int("clicks"),
            sketch("users_sketch"),
        ];
        recommendation.extend(tail.clone());
        let mut sessions = vec![
            hour,
            text("device_type"),
            text("device_os"),
            text("app_version"),
            text("country"),
            int("sessions"),
            sketch("users_sketch"),
            int("duration_ms_sum"),
            sketch("duration_sketch"),
            int("bounces"),
            int("screen_views"),
            int("events"),
            int("app_session_starts"),
            int("app_session_length_ms_sum"),
            int("app_agreeing_sessions"),
        ];
        sessions.extend(tail);
        for (rollup, expected) in [
            (&ENGAGEMENT_HOURLY, engagement),
            (&RECOMMENDATION_HOURLY, recommendation),
            (&SESSIONS_HOURLY, sessions),
        ] {
            let fields: Vec<Field> = expected
                .into_iter()
                .map(|(n, t, null)| Field::new(n, t, null))
                .collect();
            assert_eq!(rollup.schema(), Arc::new(Schema::new(fields)));
            assert_eq!(rollup.table.schema(), rollup.schema());
            assert_eq!(rollup.table.partition_columns(), Rollup::PARTITION_COLUMNS);
        }
    }

    #[test]
    fn every_rollup_is_found_by_table_and_source() {
        for r in Rollup::ALL {
            assert_eq!(Rollup::of_table(r.table), Some(*r));
            assert!(Rollup::of_source(r.source).any(|s| s == *r));
            assert!(
                TableId::EVENTS.contains(&r.source) || TableId::DERIVED.contains(&r.source),
                "{}",
                r.table
            );
            // Rows that may change are left out only where the source has such rows.
            assert_eq!(
                r.final_rows.is_some(),
                TableId::DERIVED.contains(&r.source),
                "{}",
                r.table
            );
            assert!(
                r.measures.iter().all(|m| !r.dimensions.contains(&m.name)),
                "{}: a measure named like a dimension",
                r.table
            );
        }
        for t in TableId::ALL {
            let kinds = [
                Rollup::of_table(*t).is_some(),
                TableId::INGESTED.contains(t),
                TableId::LEDGERS.contains(t),
                TableId::ACCOUNTING.contains(t),
                TableId::QUALITY.contains(t),
                TableId::DERIVED.contains(t),
            ];
            let n = kinds.iter().filter(|k| **k).count();
            assert_eq!(
                n, 1,
                "{t}: exactly one of rollup, ingested, ledger, accounting, quality, derived"
            );
        }
        assert_eq!(Rollup::of_source(TableId::DeadLetters).count(), 0);
    }

    /// The SQL the compactor has always computed these rollups with (`items_served`
    /// sums only where `rec_served`, so its old `ELSE 0` and inner `coalesce` change
    /// nothing).
    #[test]
    fn measures_compute_the_published_sql() {
        assert_eq!(
            ENGAGEMENT_HOURLY.measures_sql(),
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
             coalesce(sum(CASE WHEN event_type = 'purchase' THEN amount END), 0.0) AS revenue"
        );
        assert_eq!(
            RECOMMENDATION_HOURLY.measures_sql(),
            "count(*) AS events, \
             sum(CASE WHEN event_type = 'rec_served' THEN 1 ELSE 0 END) AS served, \
             coalesce(sum(CASE WHEN event_type = 'rec_served' THEN CAST(array_length(items) AS BIGINT) END), 0) AS items_served, \
             sum(CASE WHEN event_type = 'rec_impression' THEN 1 ELSE 0 END) AS impressions, \
             sum(CASE WHEN event_type = 'rec_click' THEN 1 ELSE 0 END) AS clicks, \
             hll_sketch(user_id) AS users_sketch"
        );
        assert_eq!(
            dimension_value_sql("surface"),
            "coalesce(surface, 'unknown')"
        );
    }

    #[test]
    fn counts_and_sums_add_up_and_sketches_union() {
        let merges: Vec<String> = ENGAGEMENT_HOURLY
            .measures
            .iter()
            .filter(|m| m.aggregate.merge() != Merge::Sum)
            .map(Measure::merge_sql)
            .collect();
        assert_eq!(
            merges,
            [
                "hll_union(users_sketch)",
                "quantile_union(session_length_sketch)"
            ]
        );
        assert_eq!(USERS_SKETCH.merge_sql(), "hll_union(users_sketch)");
        assert_eq!(
            Measure::new("revenue", ENGAGEMENT_HOURLY.measures[13].aggregate).merge_sql(),
            "sum(revenue)"
        );
    }
}
