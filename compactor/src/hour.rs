//! One `(event_date, event_hour)` partition of an event table.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, NaiveDate};
use hourlake_catalog::partition::hour_start_micros;
use hourlake_catalog::schema::{EVENT_DATE, EVENT_HOUR};

/// An hour partition: days since 1970-01-01 and the hour 0–23 (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hour {
    /// `event_date` as days since the epoch (Arrow `Date32`).
    pub date: i32,
    /// `event_hour`, 0–23.
    pub hour: i32,
}

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => panic!("the epoch is a date"),
};

impl Hour {
    /// The hour holding a microsecond UTC timestamp.
    pub fn of_micros(micros: i64) -> Hour {
        let (date, hour) = hourlake_catalog::partition::date_and_hour(micros);
        Hour { date, hour }
    }

    /// Reads the hour from a Delta file's partition values.
    pub fn from_partition_values(values: &HashMap<String, Option<String>>) -> Option<Hour> {
        let date = values.get(EVENT_DATE)?.as_deref()?;
        let hour = values.get(EVENT_HOUR)?.as_deref()?.parse().ok()?;
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        let date = i32::try_from(date.signed_duration_since(EPOCH).num_days()).ok()?;
        Some(Hour { date, hour })
    }

    /// The date as `YYYY-MM-DD`.
    pub fn date_string(&self) -> String {
        (EPOCH + chrono::Duration::days(i64::from(self.date)))
            .format("%Y-%m-%d")
            .to_string()
    }

    /// The first microsecond of the hour.
    pub fn start_micros(&self) -> i64 {
        hour_start_micros(self.date, self.hour)
    }

    /// The first microsecond after the hour.
    pub fn end_micros(&self) -> i64 {
        self.start_micros() + 3_600_000_000
    }

    /// A SQL predicate selecting this hour's partition.
    pub fn sql_predicate(&self) -> String {
        format!(
            "({EVENT_DATE} = DATE '{}' AND {EVENT_HOUR} = {})",
            self.date_string(),
            self.hour
        )
    }
}

impl fmt::Display for Hour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DateTime::from_timestamp_micros(self.start_micros()) {
            Some(t) => write!(f, "{}", t.format("%Y-%m-%dT%H")),
            None => write!(f, "{}/{}", self.date, self.hour),
        }
    }
}

/// A SQL predicate selecting any of `hours` (false when empty).
pub fn sql_predicate_any(hours: &[Hour]) -> String {
    if hours.is_empty() {
        return "false".to_string();
    }
    hours
        .iter()
        .map(Hour::sql_predicate)
        .collect::<Vec<_>>()
        .join(" OR ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_round_trip() {
        let h = Hour::of_micros(1_795_355_100_000_000); // 2026-11-22T13:45Z
        assert_eq!(h.to_string(), "2026-11-22T13");
        let values = HashMap::from([
            (EVENT_DATE.to_string(), Some(h.date_string())),
            (EVENT_HOUR.to_string(), Some("13".to_string())),
        ]);
        assert_eq!(Hour::from_partition_values(&values), Some(h));
        assert!(h.start_micros() <= 1_795_355_100_000_000);
        assert!(h.end_micros() > 1_795_355_100_000_000);
        assert_eq!(
            h.sql_predicate(),
            "(event_date = DATE '2026-11-22' AND event_hour = 13)"
        );
    }
}
