//! Hidden hour partitioning: every event row is placed by its `event_time`,
//! never by arrival time, so a late event lands in its own hour.

const MICROS_PER_HOUR: i64 = 3_600_000_000;
const HOURS_PER_DAY: i64 = 24;

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

/// The first microsecond of an `(event_date, event_hour)` partition.
pub fn hour_start_micros(date: i32, hour: i32) -> i64 {
    (i64::from(date) * HOURS_PER_DAY + i64::from(hour)) * MICROS_PER_HOUR
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
}
