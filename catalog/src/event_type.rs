use std::fmt;
use std::str::FromStr;

use crate::TableId;

/// Which family an event belongs to; each family has its own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// App engagement: installs, sessions, screens, clicks, searches, purchases, notifications.
    Engagement,
    /// Recommendation funnel: served, impression, click.
    Recommendation,
}

impl EventKind {
    /// The table events of this kind land in.
    pub fn table(self) -> TableId {
        match self {
            EventKind::Engagement => TableId::EngagementEvents,
            EventKind::Recommendation => TableId::RecommendationEvents,
        }
    }
}

macro_rules! event_types {
    ($($variant:ident => $name:literal, $kind:ident;)*) => {
        /// Every `event_type` value hourlake accepts (see `docs/events.md`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType { $($variant),* }

        impl EventType {
            /// All event types, in wire-name order of the docs.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            /// The wire name, e.g. `session_start`.
            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name),* }
            }

            /// The family (and so the table) of this type.
            pub fn kind(self) -> EventKind {
                match self { $(EventType::$variant => EventKind::$kind),* }
            }
        }

        impl FromStr for EventType {
            type Err = UnknownEventType;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(EventType::$variant),)*
                    other => Err(UnknownEventType(other.to_string())),
                }
            }
        }
    };
}

event_types! {
    Install => "install", Engagement;
    SessionStart => "session_start", Engagement;
    SessionEnd => "session_end", Engagement;
    ScreenView => "screen_view", Engagement;
    Click => "click", Engagement;
    Search => "search", Engagement;
    Purchase => "purchase", Engagement;
    NotificationView => "notification_view", Engagement;
    NotificationOpen => "notification_open", Engagement;
    RecServed => "rec_served", Recommendation;
    RecImpression => "rec_impression", Recommendation;
    RecClick => "rec_click", Recommendation;
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `event_type` string that is not one of [`EventType::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEventType(pub String);

impl fmt::Display for UnknownEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown event_type {:?}", self.0)
    }
}

impl std::error::Error for UnknownEventType {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_kinds_split_by_prefix() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(*t));
            let is_rec = t.as_str().starts_with("rec_");
            assert_eq!(t.kind() == EventKind::Recommendation, is_rec, "{t}");
        }
        assert_eq!(EventType::ALL.len(), 12);
        assert!("Install".parse::<EventType>().is_err());
    }
}
