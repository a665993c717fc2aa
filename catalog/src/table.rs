use std::fmt;

use arrow::datatypes::SchemaRef;

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
}

impl TableId {
    /// Every table ingest writes to.
    pub const INGESTED: &'static [TableId] = &[
        TableId::EngagementEvents,
        TableId::RecommendationEvents,
        TableId::DeadLetters,
    ];

    /// The SQL name and folder name of the table.
    pub fn name(self) -> &'static str {
        match self {
            TableId::EngagementEvents => "engagement_events",
            TableId::RecommendationEvents => "recommendation_events",
            TableId::DeadLetters => "dead_letters",
        }
    }

    /// Looks a table up by its SQL name.
    pub fn from_name(name: &str) -> Option<TableId> {
        TableId::INGESTED.iter().copied().find(|t| t.name() == name)
    }

    /// The Arrow schema of the table, partition columns last.
    pub fn schema(self) -> SchemaRef {
        match self {
            TableId::EngagementEvents => schema::engagement_events(),
            TableId::RecommendationEvents => schema::recommendation_events(),
            TableId::DeadLetters => schema::dead_letters(),
        }
    }

    /// The Delta partition columns, outermost first.
    pub fn partition_columns(self) -> &'static [&'static str] {
        match self {
            TableId::EngagementEvents | TableId::RecommendationEvents => {
                &[schema::EVENT_DATE, schema::EVENT_HOUR]
            }
            TableId::DeadLetters => &[schema::INGEST_DATE],
        }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
