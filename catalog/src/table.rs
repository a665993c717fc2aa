use std::fmt;

use arrow::datatypes::SchemaRef;

use crate::rollup::{self, Rollup};
use crate::schema;

/// A table of the lake. The name is also the folder under the lake root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableId {
    /// Raw app-engagement events, one row per accepted event.
    EngagementEvents,
    /// Raw recommendation events, one row per accepted event.
    RecommendationEvents,
    /// Messages that could not be decoded or validated, with the reason.
    DeadLetters,
    /// Hourly rollup of `engagement_events` (written by the compactor; declared in
    /// [`rollup::ENGAGEMENT_HOURLY`]).
    EngagementHourly,
    /// One row per hour of `engagement_events`: the `ALL` row of `engagement_hourly`
    /// alone, so week- and month-long dashboards read a row per hour instead of every
    /// combination of dimensions (declared in [`rollup::ENGAGEMENT_HOURLY_TOTALS`]).
    EngagementHourlyTotals,
    /// Hourly rollup of `recommendation_events` (written by the compactor; declared in
    /// [`rollup::RECOMMENDATION_HOURLY`]).
    RecommendationHourly,
    /// User sessions derived by the compactor from the deduplicated engagement events
    /// (runs of a user's events without a gap longer than the session gap), partitioned
    /// by the hour of their start; provisional until their gap has passed in closed hours.
    Sessions,
    /// Hourly rollup of final `sessions` (written by the compactor; declared in
    /// [`rollup::SESSIONS_HOURLY`]).
    SessionsHourly,
    /// One row per start hour of final `sessions`: the `ALL` row of `sessions_hourly`
    /// alone (declared in [`rollup::SESSIONS_HOURLY_TOTALS`]).
    SessionsHourlyTotals,
    /// The ledger of resent copies the compactor removed: where each was in Kafka and
    /// which copy was kept, so every offset stays accounted for after deduplication.
    RemovedDuplicates,
    /// The ledger of Kafka offsets whose rows the compactor's retention dropped (runs of
    /// consecutive offsets per partition), so the offset audit still accounts for them.
    ExpiredOffsets,
    /// One row per user erased by `hourlake forget-user`: when, a salted hash of the
    /// user id (never the id), what was removed and recomputed.
    ErasureLog,
    /// How many Kafka messages ingest read per partition and minute (of event time;
    /// of the Kafka timestamp for dead letters): the "ingested" side of the loss table.
    IngestedMinutes,
    /// Per minute and topic, ingested messages against where they are now (rows, dead
    /// letters, removed duplicates) and what is missing: the loss table dashboards chart.
    LossMinutely,
    /// Data-quality figures of every closed hour, with the expected range of the
    /// headline ones and their anomaly flags (written by the compactor when it rolls an
    /// hour up; columns in [`schema::quality_hourly`]).
    QualityHourly,
}

impl TableId {
    /// Every table ingest writes to.
    pub const INGESTED: &'static [TableId] = &[
        TableId::EngagementEvents,
        TableId::RecommendationEvents,
        TableId::DeadLetters,
    ];

    /// Every table ingest commits to, with the offsets it holds: the ingested tables
    /// and the per-minute counts of what was read.
    pub const INGEST_WRITES: &'static [TableId] = &[
        TableId::EngagementEvents,
        TableId::RecommendationEvents,
        TableId::DeadLetters,
        TableId::IngestedMinutes,
    ];

    /// The loss accounting per minute: what ingest read, and the compactor's verdict.
    pub const ACCOUNTING: &'static [TableId] = &[TableId::IngestedMinutes, TableId::LossMinutely];

    /// The compactor's ledgers (neither ingested nor rollups).
    pub const LEDGERS: &'static [TableId] = &[
        TableId::RemovedDuplicates,
        TableId::ExpiredOffsets,
        TableId::ErasureLog,
    ];

    /// Tables the compactor derives to describe the data (neither ingested, rollups nor
    /// ledgers): they exist once it has closed an hour.
    pub const QUALITY: &'static [TableId] = &[TableId::QualityHourly];
    /// The tables the compactor derives from events that are not rollups (the sessions).
    pub const DERIVED: &'static [TableId] = &[TableId::Sessions];

    /// Every table of the lake (the ledgers after the tables whose offsets they account
    /// for: a reader loading the tables in this order sees a ledger written before a
    /// commit of theirs whenever it sees that commit).
    pub const ALL: &'static [TableId] = &[
        TableId::EngagementEvents,
        TableId::RecommendationEvents,
        TableId::DeadLetters,
        TableId::EngagementHourly,
        TableId::EngagementHourlyTotals,
        TableId::RecommendationHourly,
        TableId::QualityHourly,
        TableId::Sessions,
        TableId::SessionsHourly,
        TableId::SessionsHourlyTotals,
        TableId::RemovedDuplicates,
        TableId::ExpiredOffsets,
        TableId::ErasureLog,
        TableId::IngestedMinutes,
        TableId::LossMinutely,
    ];

    /// The event tables partitioned by event hour (what the compactor compacts).
    pub const EVENTS: &'static [TableId] =
        &[TableId::EngagementEvents, TableId::RecommendationEvents];

    /// The SQL name and folder name of the table.
    pub fn name(self) -> &'static str {
        match self {
            TableId::EngagementEvents => "engagement_events",
            TableId::RecommendationEvents => "recommendation_events",
            TableId::DeadLetters => "dead_letters",
            TableId::EngagementHourly => "engagement_hourly",
            TableId::EngagementHourlyTotals => "engagement_hourly_totals",
            TableId::RecommendationHourly => "recommendation_hourly",
            TableId::Sessions => "sessions",
            TableId::SessionsHourly => "sessions_hourly",
            TableId::SessionsHourlyTotals => "sessions_hourly_totals",
            TableId::RemovedDuplicates => "removed_duplicates",
            TableId::ExpiredOffsets => "expired_offsets",
            TableId::ErasureLog => "erasure_log",
            TableId::IngestedMinutes => "ingested_minutes",
            TableId::LossMinutely => "loss_minutely",
            TableId::QualityHourly => "quality_hourly",
        }
    }

    /// Names this table in a Delta error: `.map_err(id.delta_error())?`.
    pub fn delta_error(self) -> impl Fn(deltalake::DeltaTableError) -> crate::DeltaError {
        move |source| crate::DeltaError::new(self.name(), source)
    }

    /// Looks a table up by its SQL name.
    pub fn from_name(name: &str) -> Option<TableId> {
        TableId::ALL.iter().copied().find(|t| t.name() == name)
    }

    /// The Arrow schema of the table, partition columns last.
    pub fn schema(self) -> SchemaRef {
        match self {
            TableId::EngagementEvents => schema::engagement_events(),
            TableId::RecommendationEvents => schema::recommendation_events(),
            TableId::DeadLetters => schema::dead_letters(),
            TableId::EngagementHourly => rollup::ENGAGEMENT_HOURLY.schema(),
            TableId::EngagementHourlyTotals => rollup::ENGAGEMENT_HOURLY_TOTALS.schema(),
            TableId::RecommendationHourly => rollup::RECOMMENDATION_HOURLY.schema(),
            TableId::Sessions => schema::sessions(),
            TableId::SessionsHourly => rollup::SESSIONS_HOURLY.schema(),
            TableId::SessionsHourlyTotals => rollup::SESSIONS_HOURLY_TOTALS.schema(),
            TableId::RemovedDuplicates => schema::removed_duplicates(),
            TableId::ExpiredOffsets => schema::expired_offsets(),
            TableId::ErasureLog => schema::erasure_log(),
            TableId::IngestedMinutes => schema::ingested_minutes(),
            TableId::LossMinutely => schema::loss_minutely(),
            TableId::QualityHourly => schema::quality_hourly(),
        }
    }

    /// The Delta partition columns, outermost first.
    pub fn partition_columns(self) -> &'static [&'static str] {
        match self {
            TableId::EngagementEvents | TableId::RecommendationEvents | TableId::Sessions => {
                &[schema::EVENT_DATE, schema::EVENT_HOUR]
            }
            TableId::DeadLetters => &[schema::INGEST_DATE],
            TableId::EngagementHourly
            | TableId::EngagementHourlyTotals
            | TableId::RecommendationHourly
            | TableId::SessionsHourly
            | TableId::SessionsHourlyTotals => Rollup::PARTITION_COLUMNS,
            TableId::RemovedDuplicates => &[schema::EVENT_DATE],
            TableId::ExpiredOffsets => &[schema::SOURCE_TABLE],
            TableId::ErasureLog => &[],
            TableId::IngestedMinutes | TableId::LossMinutely => {
                &[schema::EVENT_DATE, schema::EVENT_HOUR]
            }
            TableId::QualityHourly => &[schema::EVENT_DATE],
        }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
