//! Hidden hour partitioning: every event row is placed by its `event_time`,
//! never by arrival time, so a late event lands in its own hour. [`Hour`] is one such
//! partition, as the compactor, the rollups and the views name it.

use std::collections::HashMap;
use std::fmt;

use arrow::compute::kernels::cast_utils::Parser;
use arrow::datatypes::Date32Type;
use arrow::temporal_conversions::{date32_to_datetime, timestamp_us_to_datetime};

use crate::schema::{EVENT_DATE, EVENT_HOUR};

const MICROS_PER_HOUR: i64 = 3_600_000_000;
const HOURS_PER_DAY: i64 = 24;
/// How `event_date` is written in Delta partition values and SQL date literals.
const DATE_FORMAT: &str = "%Y-%m-%d";

/// The `(event_date, event_hour)` of a microsecond UTC timestamp:
/// days since 1970-01-01 (Arrow `Date32`) and the hour 0–23.
pub fn date_and_hour(micros: i64) -> (i32, i32) {
    let hours = micros.div_euclid(MICROS_PER_HOUR);
    let date = hours.div_euclid(HOURS_PER_DAY);
    let hour = hours.rem_euclid(HOURS_PER_DAY);
    (date as i32, hour as i32)
}

/// The UTC date (days since the epoch) of a microsecond timestamp.
pub fn date_of(micros: i64) -> i32 {
    date_and_hour(micros).0
}

/// A date partition value (`YYYY-MM-DD`, as Delta writes `event_date` and
/// `ingest_date`) as days since the epoch.
pub fn parse_date(text: &str) -> Option<i32> {
    Date32Type::parse_formatted(text, DATE_FORMAT)
}

/// A date (days since the epoch) as `YYYY-MM-DD`: the partition value Delta writes and
/// the text of a SQL `DATE '…'` literal.
pub fn date_string(date: i32) -> String {
    match date32_to_datetime(date) {
        Some(d) => d.format(DATE_FORMAT).to_string(),
        // Beyond any representable date: no valid literal, and no panic either.
        None => date.to_string(),
    }
}

/// The first microsecond of an `(event_date, event_hour)` partition.
pub fn hour_start_micros(date: i32, hour: i32) -> i64 {
    (i64::from(date) * HOURS_PER_DAY + i64::from(hour)) * MICROS_PER_HOUR
}

/// An hour partition: days since 1970-01-01 and the hour 0–23 (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hour {
    /// `event_date` as days since the epoch (Arrow `Date32`).
    pub date: i32,
    /// `event_hour`, 0–23.
    pub hour: i32,
}

impl Hour {
    /// The hour holding a microsecond UTC timestamp.
    pub fn of_micros(micros: i64) -> Hour {
        let (date, hour) = date_and_hour(micros);
        Hour { date, hour }
    }

    /// Reads the hour from a Delta file's partition values (`None` when they do not
    /// name one).
    pub fn from_partition_values(values: &HashMap<String, Option<String>>) -> Option<Hour> {
        let date = values.get(EVENT_DATE)?.as_deref()?;
        let hour = values.get(EVENT_HOUR)?.as_deref()?.parse().ok()?;
        Some(Hour {
            date: parse_date(date)?,
            hour,
        })
    }

    /// The hour's folder inside its table: `event_date=YYYY-MM-DD/event_hour=H`.
    pub fn path_prefix(&self) -> String {
        format!("{}/{EVENT_HOUR}={}", self.date_prefix(), self.hour)
    }

    /// The folder of the hour's day inside a table partitioned by date:
    /// `event_date=YYYY-MM-DD`.
    pub fn date_prefix(&self) -> String {
        format!("{EVENT_DATE}={}", self.date_string())
    }

    /// The date as `YYYY-MM-DD` (as Delta writes the partition value).
    pub fn date_string(&self) -> String {
        date_string(self.date)
    }

    /// The first microsecond of the hour.
    pub fn start_micros(&self) -> i64 {
        hour_start_micros(self.date, self.hour)
    }

    /// The first microsecond after the hour.
    pub fn end_micros(&self) -> i64 {
        self.start_micros() + MICROS_PER_HOUR
    }

    /// A SQL predicate selecting this hour's partition (DataFusion and Delta's
    /// `replaceWhere` both read it).
    pub fn sql_predicate(&self) -> String {
        format!(
            "({EVENT_DATE} = DATE '{}' AND {EVENT_HOUR} = {})",
            self.date_string(),
            self.hour
        )
    }

    /// A SQL predicate selecting any of `hours` (`false` when there are none).
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
}

impl fmt::Display for Hour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match timestamp_us_to_datetime(self.start_micros()) {
            Some(t) => write!(f, "{}", t.format("%Y-%m-%dT%H")),
            None => write!(f, "{}/{}", self.date, self.hour),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_into_date_and_hour() {
        // 2026-11-22T13:45:00Z
        let t = 1_795_355_100_000_000;
        let (d, h) = date_and_hour(t);
        assert_eq!(h, 13);
        assert_eq!(d, 20_779);
        assert!(hour_start_micros(d, h) <= t && t < hour_start_micros(d, h + 1));
        // before the epoch still lands in a valid hour
        assert_eq!(date_and_hour(-1), (-1, 23));
    }

    #[test]
    fn hours_round_trip_through_partition_values_and_sql() {
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
        let before_epoch = Hour::of_micros(-1);
        assert_eq!(before_epoch.date_string(), "1969-12-31");
        assert_eq!(before_epoch.to_string(), "1969-12-31T23");
        assert_eq!(
            Hour::sql_predicate_any(&[h, before_epoch]),
            "(event_date = DATE '2026-11-22' AND event_hour = 13) OR \
             (event_date = DATE '1969-12-31' AND event_hour = 23)"
        );
        assert_eq!(Hour::sql_predicate_any(&[]), "false");
        // Values that name no hour.
        let no_hour = HashMap::from([(EVENT_DATE.to_string(), Some(h.date_string()))]);
        assert_eq!(Hour::from_partition_values(&no_hour), None);
        let bad_date = HashMap::from([
            (EVENT_DATE.to_string(), Some("22/11/2026".to_string())),
            (EVENT_HOUR.to_string(), Some("13".to_string())),
        ]);
        assert_eq!(Hour::from_partition_values(&bad_date), None);
    }
}
