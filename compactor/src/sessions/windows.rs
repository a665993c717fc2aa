//! The spans of event time a pass sessionizes again ("windows"), chosen so that the
//! sessions inside them can be recomputed on their own: a window starts from what
//! changed (hours with new events, provisional sessions) and grows until no stored
//! session reaches into it from outside, and windows closer than the gap are merged.

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use hourlake_catalog::schema::{EVENT_DATE, EVENT_HOUR, SESSION_END, SESSION_START};
use hourlake_catalog::{partition, Hour, TableId};

use crate::CompactorError;

/// A closed span of event time, `lo..=hi` in UTC microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    /// The first microsecond.
    pub lo: i64,
    /// The last microsecond (inclusive).
    pub hi: i64,
}

impl Window {
    /// Every microsecond of `hour`.
    pub fn of_hour(hour: Hour) -> Window {
        Window {
            lo: hour.start_micros(),
            hi: hour.end_micros() - 1,
        }
    }

    /// The hours it touches, first and last.
    pub fn hours(&self) -> (Hour, Hour) {
        (Hour::of_micros(self.lo), Hour::of_micros(self.hi))
    }

    /// SQL: `column` (a UTC timestamp) lies in the window.
    pub fn contains_sql(&self, column: &str) -> String {
        format!(
            "({column} >= {} AND {column} <= {})",
            timestamp_sql(self.lo),
            timestamp_sql(self.hi)
        )
    }
}

/// A UTC microsecond timestamp literal.
pub fn timestamp_sql(micros: i64) -> String {
    format!("arrow_cast({micros}, 'Timestamp(Microsecond, Some(\"UTC\"))')")
}

/// Sorts `windows` and merges those that overlap or lie at most `gap` apart (events on
/// both sides of such a space could be one session).
pub fn merge(mut windows: Vec<Window>, gap: i64) -> Vec<Window> {
    windows.sort();
    let mut merged: Vec<Window> = Vec::with_capacity(windows.len());
    for w in windows {
        match merged.last_mut() {
            Some(last) if w.lo.saturating_sub(last.hi) <= gap => last.hi = last.hi.max(w.hi),
            _ => merged.push(w),
        }
    }
    merged
}

/// SQL selecting the hour partitions (`event_date`, `event_hour`) from `first` to
/// `last`, both included.
pub fn hour_range_sql(first: Hour, last: Hour) -> String {
    let date = |d: i32| format!("DATE '{}'", partition::date_string(d));
    if first.date == last.date {
        format!(
            "({EVENT_DATE} = {} AND {EVENT_HOUR} >= {} AND {EVENT_HOUR} <= {})",
            date(first.date),
            first.hour,
            last.hour
        )
    } else {
        format!(
            "(({EVENT_DATE} = {d1} AND {EVENT_HOUR} >= {h1}) \
             OR ({EVENT_DATE} > {d1} AND {EVENT_DATE} < {d2}) \
             OR ({EVENT_DATE} = {d2} AND {EVENT_HOUR} <= {h2}))",
            d1 = date(first.date),
            h1 = first.hour,
            d2 = date(last.date),
            h2 = last.hour
        )
    }
}

/// SQL selecting the hour partitions any of `windows` touches (`false` for none).
pub fn hours_sql(windows: &[Window]) -> String {
    any(windows.iter().map(|w| {
        let (first, last) = w.hours();
        hour_range_sql(first, last)
    }))
}

/// SQL: `column` lies in one of `windows` (`false` for none).
pub fn times_sql(windows: &[Window], column: &str) -> String {
    any(windows.iter().map(|w| w.contains_sql(column)))
}

fn any(parts: impl Iterator<Item = String>) -> String {
    let parts: Vec<String> = parts.collect();
    if parts.is_empty() {
        "false".to_string()
    } else {
        format!("({})", parts.join(" OR "))
    }
}

/// Grows `windows` (merged) until every stored session (the table registered as
/// `sessions` in `ctx`) that ends at most `gap` before a window or starts at most `gap`
/// after it lies inside it: then the sessions of a window's events, computed alone, are
/// the sessions of all events there. Merges windows that come within `gap` of each
/// other on the way.
pub async fn extend_to_stored_sessions(
    ctx: &SessionContext,
    windows: Vec<Window>,
    gap: i64,
) -> Result<Vec<Window>, CompactorError> {
    let mut windows = merge(windows, gap);
    loop {
        if windows.is_empty() {
            return Ok(windows);
        }
        let reach = windows
            .iter()
            .enumerate()
            .map(|(i, w)| {
                format!(
                    "SELECT CAST({i} AS BIGINT) AS w, \
                       min(arrow_cast({SESSION_START}, 'Int64')) AS lo, \
                       max(arrow_cast({SESSION_END}, 'Int64')) AS hi \
                     FROM {sessions} WHERE {SESSION_END} >= {from} AND {SESSION_START} <= {to}",
                    sessions = TableId::Sessions.name(),
                    from = timestamp_sql(w.lo.saturating_sub(gap)),
                    to = timestamp_sql(w.hi.saturating_add(gap)),
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let mut grew = false;
        for batch in ctx.sql(&reach).await?.collect().await? {
            let (w, lo, hi) = (
                batch.column(0).as_primitive::<Int64Type>(),
                batch.column(1).as_primitive::<Int64Type>(),
                batch.column(2).as_primitive::<Int64Type>(),
            );
            for row in 0..batch.num_rows() {
                if lo.is_null(row) || hi.is_null(row) {
                    continue;
                }
                let Some(window) = usize::try_from(w.value(row))
                    .ok()
                    .and_then(|i| windows.get_mut(i))
                else {
                    continue;
                };
                if lo.value(row) < window.lo {
                    window.lo = lo.value(row);
                    grew = true;
                }
                if hi.value(row) > window.hi {
                    window.hi = hi.value(row);
                    grew = true;
                }
            }
        }
        if !grew {
            return Ok(windows);
        }
        windows = merge(windows, gap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_closer_than_the_gap_merge() {
        let w = |lo, hi| Window { lo, hi };
        assert_eq!(
            merge(vec![w(50, 60), w(0, 10), w(20, 30), w(100, 110)], 10),
            vec![w(0, 30), w(50, 60), w(100, 110)],
            "10 apart merge, 20 apart do not"
        );
        assert_eq!(merge(vec![w(0, 100), w(10, 20)], 0), vec![w(0, 100)]);
        assert_eq!(merge(Vec::new(), 10), Vec::new());
    }

    #[test]
    fn hour_ranges_select_exactly_their_hours() {
        let h = |date, hour| Hour { date, hour };
        assert_eq!(
            hour_range_sql(h(20_000, 3), h(20_000, 5)),
            "(event_date = DATE '2024-10-04' AND event_hour >= 3 AND event_hour <= 5)"
        );
        assert_eq!(
            hour_range_sql(h(20_000, 22), h(20_002, 1)),
            "((event_date = DATE '2024-10-04' AND event_hour >= 22) \
             OR (event_date > DATE '2024-10-04' AND event_date < DATE '2024-10-06') \
             OR (event_date = DATE '2024-10-06' AND event_hour <= 1))"
        );
        let hour = h(20_000, 23);
        let window = Window::of_hour(hour);
        assert_eq!(window.hours(), (hour, hour));
        assert_eq!(hours_sql(&[]), "false");
        assert_eq!(times_sql(&[], "t"), "false");
    }
}
