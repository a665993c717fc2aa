//! Where a partition starts when the lake holds no offset of it: at the log start, or
//! at the first message Kafka timestamped at or after a point in time (a replay into a
//! fresh lake). A partition the lake holds offsets of always continues from them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};

/// Where ingest starts partitions that no table holds offsets of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StartAt {
    /// At the log start.
    #[default]
    Earliest,
    /// At the first offset whose Kafka timestamp is at or after this time (Kafka's
    /// `ListOffsets` by timestamp); at the end when there is none yet.
    Time(DateTime<Utc>),
}

impl StartAt {
    /// The time as milliseconds since the Unix epoch (Kafka timestamps), if one is set.
    pub fn timestamp_millis(&self) -> Option<i64> {
        match self {
            StartAt::Earliest => None,
            StartAt::Time(t) => Some(t.timestamp_millis()),
        }
    }
}

impl FromStr for StartAt {
    type Err = String;

    /// `earliest`, or an RFC 3339 time such as `2026-11-20T10:00:00Z` or
    /// `2026-11-20T11:00:00.250+01:00`.
    fn from_str(text: &str) -> Result<StartAt, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("earliest") {
            return Ok(StartAt::Earliest);
        }
        DateTime::parse_from_rfc3339(text)
            .map(|t| StartAt::Time(t.with_timezone(&Utc)))
            .map_err(|e| {
                format!(
                    "expected `earliest` or an RFC 3339 time such as 2026-11-20T10:00:00Z, got {text:?} ({e})"
                )
            })
    }
}

impl fmt::Display for StartAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartAt::Earliest => f.write_str("earliest"),
            StartAt::Time(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_earliest_and_rfc3339_times() {
        assert_eq!("earliest".parse(), Ok(StartAt::Earliest));
        assert_eq!(" EARLIEST ".parse(), Ok(StartAt::Earliest));
        let utc: StartAt = "2026-11-20T10:00:00Z".parse().unwrap();
        assert_eq!(utc.timestamp_millis(), Some(1_795_168_800_000));
        assert_eq!(utc.to_string(), "2026-11-20T10:00:00Z");
        // An offset is converted to UTC; fractions of a second are kept to the ms.
        let offset: StartAt = "2026-11-20T11:00:00.250+01:00".parse().unwrap();
        assert_eq!(offset.timestamp_millis(), Some(1_795_168_800_250));
        assert_eq!(offset.to_string(), "2026-11-20T10:00:00.250Z");
        assert_eq!(StartAt::default().timestamp_millis(), None);
        for bad in [
            "",
            "latest",
            "2026-11-20",
            "2026-11-20 10:00:00",
            "2026-11-20T10:00:00",
            "1795168800000",
            "yesterday",
        ] {
            let err = bad.parse::<StartAt>().unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad:?}: {err}");
        }
    }
}
