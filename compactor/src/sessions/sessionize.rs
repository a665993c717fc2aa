//! Turning deduplicated engagement events into `sessions` rows: DataFusion reads the
//! windows' events sorted by user and time (the sort spills beyond the memory limit),
//! and [`SessionFold`] walks that stream once, closing a session whenever the user
//! changes or the gap to the previous event is longer than the session gap. Memory is
//! one open session and one output batch, whatever the span: a grouped aggregate over
//! millions of sessions with ordered aggregates (first device, screen path) does not
//! spill and held gigabytes.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Int32Builder,
    Int64Builder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use hourlake_catalog::schema::{
    EVENT_ID, EVENT_TIME, SCREEN_PATH_LIMIT, SCREEN_PATH_SEPARATOR, USER_ID,
};
use hourlake_catalog::{partition, EventType, TableId};

use super::windows::{hours_sql, times_sql, Window};
use crate::dedup::not_a_duplicate;
use crate::CompactorError;

/// Sessions per output batch.
const BATCH_ROWS: usize = 8192;

/// What to sessionize and how.
#[derive(Debug, Clone, Copy)]
pub struct Sessionize<'a> {
    /// The spans of event time whose events are sessionized (each far enough from any
    /// event outside it: see [`super::windows`]).
    pub windows: &'a [Window],
    /// Longest gap inside a session, in microseconds.
    pub gap: i64,
    /// Sessions whose last event plus the gap is before this (the start of the first
    /// hour not closed yet) are final.
    pub final_before: i64,
    /// The `engagement_events` version read, recorded in each row.
    pub source_version: u64,
    /// The table of duplicate copies to leave out (see [`crate::dedup`]), if any.
    pub duplicates: Option<&'a str>,
}

impl Sessionize<'_> {
    /// The windows' deduplicated events, sorted by user, time and event id (the order
    /// that makes sessions and their first and last screens).
    pub fn events_sql(&self) -> String {
        let events = TableId::EngagementEvents.name();
        let mut rows = format!(
            "s.{USER_ID} IS NOT NULL AND {} AND {}",
            hours_sql(self.windows),
            times_sql(self.windows, &format!("s.{EVENT_TIME}"))
        );
        if let Some(duplicates) = self.duplicates {
            rows = format!("{rows} AND {}", not_a_duplicate("s", duplicates));
        }
        format!(
            "SELECT s.{USER_ID}, s.{EVENT_ID}, s.event_type, \
               arrow_cast(s.{EVENT_TIME}, 'Int64') AS t, s.session_id, s.screen, \
               s.session_length_ms, s.device_type, s.device_os, s.app_version, s.country \
             FROM {events} s WHERE {rows} ORDER BY s.{USER_ID}, t, s.{EVENT_ID}"
        )
    }

    /// A fold over the rows of [`Self::events_sql`], computed at `computed_at_micros`.
    pub fn fold(&self, computed_at_micros: i64) -> SessionFold {
        SessionFold {
            gap: self.gap,
            final_before: self.final_before,
            source_version: i64::try_from(self.source_version).unwrap_or(i64::MAX),
            computed_at: computed_at_micros,
            open: None,
            out: Rows::default(),
        }
    }
}

/// One session being built.
#[derive(Debug)]
struct OpenSession {
    user: String,
    start: i64,
    end: i64,
    events: i64,
    screen_views: i64,
    first_screen: Option<String>,
    last_screen: Option<String>,
    /// The first [`SCREEN_PATH_LIMIT`] screens joined.
    path: String,
    path_screens: usize,
    device_type: Option<String>,
    device_os: Option<String>,
    app_version: Option<String>,
    country: Option<String>,
    app_starts: i64,
    app_ends: i64,
    app_length_ms: Option<i64>,
    app_id_min: Option<String>,
    app_id_max: Option<String>,
}

/// The sessions of a sorted event stream (see the module doc), as `sessions` rows.
#[derive(Debug)]
pub struct SessionFold {
    gap: i64,
    final_before: i64,
    source_version: i64,
    computed_at: i64,
    open: Option<OpenSession>,
    out: Rows,
}

/// One event's fields, borrowed from its batch.
struct Event<'a> {
    user: &'a str,
    kind: Option<&'a str>,
    t: i64,
    session_id: Option<&'a str>,
    screen: Option<&'a str>,
    length_ms: Option<i64>,
    device_type: Option<&'a str>,
    device_os: Option<&'a str>,
    app_version: Option<&'a str>,
    country: Option<&'a str>,
}

impl SessionFold {
    /// Adds `batch` (rows of [`Sessionize::events_sql`], continuing the previous
    /// batches' order) and returns the finished batches of sessions, if any.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>, CompactorError> {
        let text = |name: &str| -> Result<StringArray, CompactorError> {
            let column = batch.column_by_name(name).ok_or_else(|| unexpected(name))?;
            Ok(cast(column, &DataType::Utf8)
                .map_err(arrow_error)?
                .as_string::<i32>()
                .clone())
        };
        let int = |name: &str| -> Result<ArrayRef, CompactorError> {
            let column = batch.column_by_name(name).ok_or_else(|| unexpected(name))?;
            cast(column, &DataType::Int64).map_err(arrow_error)
        };
        let users = text(USER_ID)?;
        let kinds = text("event_type")?;
        let session_ids = text("session_id")?;
        let screens = text("screen")?;
        let device_types = text("device_type")?;
        let device_oses = text("device_os")?;
        let app_versions = text("app_version")?;
        let countries = text("country")?;
        let times = int("t")?;
        let times = times.as_primitive::<Int64Type>();
        let lengths = int("session_length_ms")?;
        let lengths = lengths.as_primitive::<Int64Type>();

        let mut finished = Vec::new();
        for i in 0..batch.num_rows() {
            if users.is_null(i) || times.is_null(i) {
                continue;
            }
            let event = Event {
                user: users.value(i),
                kind: opt(&kinds, i),
                t: times.value(i),
                session_id: opt(&session_ids, i),
                screen: opt(&screens, i),
                length_ms: lengths.is_valid(i).then(|| lengths.value(i)),
                device_type: opt(&device_types, i),
                device_os: opt(&device_oses, i),
                app_version: opt(&app_versions, i),
                country: opt(&countries, i),
            };
            let continues = self
                .open
                .as_ref()
                .is_some_and(|s| s.user == event.user && event.t.saturating_sub(s.end) <= self.gap);
            if !continues {
                if let Some(done) = self.open.take() {
                    self.close(done);
                    if self.out.len() >= BATCH_ROWS {
                        finished.push(self.out.finish()?);
                    }
                }
                self.open = Some(OpenSession::starting(&event));
            }
            if let Some(session) = self.open.as_mut() {
                session.add(&event);
            }
        }
        Ok(finished)
    }

    /// Closes the open session (the stream has ended) and returns the remaining rows.
    pub fn finish(&mut self) -> Result<Vec<RecordBatch>, CompactorError> {
        if let Some(done) = self.open.take() {
            self.close(done);
        }
        if self.out.len() == 0 {
            return Ok(Vec::new());
        }
        Ok(vec![self.out.finish()?])
    }

    fn close(&mut self, s: OpenSession) {
        let is_final = s.end.saturating_add(self.gap) < self.final_before;
        let agrees = s.app_starts == 1
            && s.app_ends == 1
            && s.app_id_min.is_some()
            && s.app_id_min == s.app_id_max;
        let (date, hour) = partition::date_and_hour(s.start);
        let o = &mut self.out;
        o.session_key
            .append_value(format!("{}/{}", s.user, s.start));
        o.user_id.append_value(&s.user);
        o.session_start.append_value(s.start);
        o.session_end.append_value(s.end);
        o.duration_ms.append_value((s.end - s.start) / 1000);
        o.events.append_value(s.events);
        o.screen_views.append_value(s.screen_views);
        o.first_screen.append_option(s.first_screen.as_deref());
        o.last_screen.append_option(s.last_screen.as_deref());
        o.screen_path
            .append_option((!s.path.is_empty()).then_some(s.path.as_str()));
        o.bounce.append_value(s.screen_views <= 1);
        o.device_type.append_option(s.device_type.as_deref());
        o.device_os.append_option(s.device_os.as_deref());
        o.app_version.append_option(s.app_version.as_deref());
        o.country.append_option(s.country.as_deref());
        o.app_session_starts.append_value(s.app_starts);
        o.app_session_ends.append_value(s.app_ends);
        o.app_session_length_ms.append_option(s.app_length_ms);
        o.app_session_agrees.append_value(agrees);
        o.is_final.append_value(is_final);
        o.source_version.append_value(self.source_version);
        o.computed_at.append_value(self.computed_at);
        o.event_date.append_value(date);
        o.event_hour.append_value(hour);
    }
}

impl OpenSession {
    /// A session whose first event is `e` (added separately).
    fn starting(e: &Event<'_>) -> OpenSession {
        OpenSession {
            user: e.user.to_string(),
            start: e.t,
            end: e.t,
            events: 0,
            screen_views: 0,
            first_screen: None,
            last_screen: None,
            path: String::new(),
            path_screens: 0,
            device_type: e.device_type.map(str::to_string),
            device_os: e.device_os.map(str::to_string),
            app_version: e.app_version.map(str::to_string),
            country: e.country.map(str::to_string),
            app_starts: 0,
            app_ends: 0,
            app_length_ms: None,
            app_id_min: None,
            app_id_max: None,
        }
    }

    fn add(&mut self, e: &Event<'_>) {
        self.end = self.end.max(e.t);
        self.events += 1;
        let is = |t: EventType| e.kind == Some(t.as_str());
        if is(EventType::ScreenView) {
            self.screen_views += 1;
            if let Some(screen) = e.screen {
                if self.first_screen.is_none() {
                    self.first_screen = Some(screen.to_string());
                }
                self.last_screen = Some(screen.to_string());
                if self.path_screens < SCREEN_PATH_LIMIT {
                    if self.path_screens > 0 {
                        self.path.push_str(SCREEN_PATH_SEPARATOR);
                    }
                    self.path.push_str(screen);
                    self.path_screens += 1;
                }
            }
        }
        let (start, end) = (is(EventType::SessionStart), is(EventType::SessionEnd));
        if start {
            self.app_starts += 1;
        }
        if end {
            self.app_ends += 1;
            if let Some(ms) = e.length_ms {
                self.app_length_ms = Some(self.app_length_ms.unwrap_or(0).saturating_add(ms));
            }
        }
        if start || end {
            if let Some(id) = e.session_id {
                if self.app_id_min.as_deref().is_none_or(|m| id < m) {
                    self.app_id_min = Some(id.to_string());
                }
                if self.app_id_max.as_deref().is_none_or(|m| id > m) {
                    self.app_id_max = Some(id.to_string());
                }
            }
        }
    }
}

/// Row `i` of `a`, unless null.
fn opt(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

fn arrow_error(e: arrow::error::ArrowError) -> CompactorError {
    datafusion::error::DataFusionError::from(e).into()
}

fn unexpected(column: &str) -> CompactorError {
    CompactorError::Unexpected {
        table: TableId::Sessions.name(),
        reason: format!("sessionized events lack {column}"),
    }
}

/// Builders of the `sessions` columns.
#[derive(Debug, Default)]
struct Rows {
    session_key: StringBuilder,
    user_id: StringBuilder,
    session_start: TimestampMicrosecondBuilder,
    session_end: TimestampMicrosecondBuilder,
    duration_ms: Int64Builder,
    events: Int64Builder,
    screen_views: Int64Builder,
    first_screen: StringBuilder,
    last_screen: StringBuilder,
    screen_path: StringBuilder,
    bounce: BooleanBuilder,
    device_type: StringBuilder,
    device_os: StringBuilder,
    app_version: StringBuilder,
    country: StringBuilder,
    app_session_starts: Int64Builder,
    app_session_ends: Int64Builder,
    app_session_length_ms: Int64Builder,
    app_session_agrees: BooleanBuilder,
    is_final: BooleanBuilder,
    source_version: Int64Builder,
    computed_at: TimestampMicrosecondBuilder,
    event_date: Date32Builder,
    event_hour: Int32Builder,
}

impl Rows {
    fn len(&self) -> usize {
        self.session_key.len()
    }

    /// The rows so far as a batch of the `sessions` schema; the builders start over.
    fn finish(&mut self) -> Result<RecordBatch, CompactorError> {
        let utc = |b: &mut TimestampMicrosecondBuilder| -> ArrayRef {
            Arc::new(b.finish().with_timezone("UTC"))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.session_key.finish()),
            Arc::new(self.user_id.finish()),
            utc(&mut self.session_start),
            utc(&mut self.session_end),
            Arc::new(self.duration_ms.finish()),
            Arc::new(self.events.finish()),
            Arc::new(self.screen_views.finish()),
            Arc::new(self.first_screen.finish()),
            Arc::new(self.last_screen.finish()),
            Arc::new(self.screen_path.finish()),
            Arc::new(self.bounce.finish()),
            Arc::new(self.device_type.finish()),
            Arc::new(self.device_os.finish()),
            Arc::new(self.app_version.finish()),
            Arc::new(self.country.finish()),
            Arc::new(self.app_session_starts.finish()),
            Arc::new(self.app_session_ends.finish()),
            Arc::new(self.app_session_length_ms.finish()),
            Arc::new(self.app_session_agrees.finish()),
            Arc::new(self.is_final.finish()),
            Arc::new(self.source_version.finish()),
            utc(&mut self.computed_at),
            Arc::new(self.event_date.finish()),
            Arc::new(self.event_hour.finish()),
        ];
        RecordBatch::try_new(TableId::Sessions.schema(), columns).map_err(arrow_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};

    const MIN: i64 = 60_000_000;

    /// Events as [`Sessionize::events_sql`] yields them (strings as views, like
    /// DataFusion's): `(user, type, t, session_id, screen, length_ms, device)`.
    type Row<'a> = (
        &'a str,
        &'a str,
        i64,
        Option<&'a str>,
        Option<&'a str>,
        Option<i64>,
        Option<&'a str>,
    );

    fn events(rows: &[Row<'_>]) -> RecordBatch {
        use arrow::array::{Int64Array, StringViewArray};
        let view = |f: &dyn Fn(&Row<'_>) -> Option<String>| -> ArrayRef {
            Arc::new(StringViewArray::from(
                rows.iter().map(f).collect::<Vec<Option<String>>>(),
            ))
        };
        let columns: Vec<(&str, ArrayRef)> = vec![
            (USER_ID, view(&|r| Some(r.0.to_string()))),
            (EVENT_ID, view(&|r| Some(format!("{}-{}", r.0, r.2)))),
            ("event_type", view(&|r| Some(r.1.to_string()))),
            (
                "t",
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ),
            ("session_id", view(&|r| r.3.map(str::to_string))),
            ("screen", view(&|r| r.4.map(str::to_string))),
            (
                "session_length_ms",
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.5).collect::<Vec<_>>(),
                )),
            ),
            ("device_type", view(&|r| r.6.map(str::to_string))),
            ("device_os", view(&|_| None)),
            ("app_version", view(&|_| Some("2.0".to_string()))),
            ("country", view(&|_| Some("DE".to_string()))),
        ];
        let schema = Schema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|c| c.1).collect()).unwrap()
    }

    fn fold() -> SessionFold {
        Sessionize {
            windows: &[],
            gap: 30 * MIN,
            final_before: 80 * MIN,
            source_version: 7,
            duplicates: None,
        }
        .fold(42)
    }

    /// Runs a fold over `rows` split into batches of `chunk` rows.
    fn run(rows: &[Row<'_>], chunk: usize) -> Vec<RecordBatch> {
        let mut f = fold();
        let mut out = Vec::new();
        for part in rows.chunks(chunk) {
            out.extend(f.push(&events(part)).unwrap());
        }
        out.extend(f.finish().unwrap());
        out
    }

    fn column<'a>(b: &'a RecordBatch, name: &str) -> &'a ArrayRef {
        b.column_by_name(name).unwrap()
    }

    #[test]
    fn sessions_do_not_depend_on_where_the_input_batches_end() {
        let screens = [
            "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12",
        ];
        let mut rows: Vec<Row<'_>> = vec![
            ("a", "session_start", 0, Some("x"), None, None, Some("ios")),
            ("a", "screen_view", MIN, None, None, None, Some("android")),
        ];
        for (i, s) in screens.iter().enumerate() {
            rows.push((
                "a",
                "screen_view",
                2 * MIN + i as i64,
                None,
                Some(s),
                None,
                None,
            ));
        }
        rows.push(("a", "session_end", 30 * MIN, Some("x"), None, Some(5), None));
        rows.push(("a", "session_end", 31 * MIN, Some("y"), None, None, None));
        // 30 minutes and 1 µs later: a second session, a bounce without app events.
        rows.push(("a", "click", 61 * MIN + 1, None, None, None, None));
        // Another user at the same time: a new session even with no gap.
        rows.push((
            "b",
            "session_start",
            61 * MIN + 1,
            Some("z"),
            None,
            None,
            None,
        ));
        rows.push((
            "b",
            "session_end",
            72 * MIN,
            Some("z"),
            None,
            Some(60_000),
            None,
        ));

        let whole = run(&rows, rows.len());
        assert_eq!(whole.len(), 1);
        for chunk in [1, 2, 5] {
            let split = run(&rows, chunk);
            let split = arrow::compute::concat_batches(&split[0].schema(), &split).unwrap();
            for name in ["session_key", "events", "screen_path", "app_session_agrees"] {
                assert_eq!(
                    column(&split, name),
                    column(&whole[0], name),
                    "{name}, {chunk}"
                );
            }
        }
        let b = &whole[0];
        let text = |name: &str, i: usize| {
            let c = column(b, name).as_string::<i32>();
            c.is_valid(i).then(|| c.value(i).to_string())
        };
        let int = |name: &str, i: usize| {
            let c = column(b, name).as_primitive::<Int64Type>();
            c.is_valid(i).then(|| c.value(i))
        };
        let flag = |name: &str, i: usize| column(b, name).as_boolean().value(i);
        assert_eq!(b.num_rows(), 3);
        assert_eq!(text("session_key", 0).unwrap(), "a/0");
        assert_eq!(int("events", 0), Some(16));
        assert_eq!(
            int("screen_views", 0),
            Some(13),
            "a screen view without a screen counts"
        );
        assert_eq!(text("first_screen", 0).as_deref(), Some("s1"));
        assert_eq!(
            text("last_screen", 0).as_deref(),
            Some("s12"),
            "past the path limit"
        );
        assert_eq!(
            text("screen_path", 0).as_deref(),
            Some("s1 > s2 > s3 > s4 > s5 > s6 > s7 > s8 > s9 > s10"),
        );
        assert_eq!(
            text("device_type", 0).as_deref(),
            Some("ios"),
            "the first event's"
        );
        assert_eq!(text("device_os", 0), None);
        assert_eq!(
            (int("app_session_starts", 0), int("app_session_ends", 0)),
            (Some(1), Some(2))
        );
        assert_eq!(
            int("app_session_length_ms", 0),
            Some(5),
            "nulls are left out"
        );
        assert!(!flag("app_session_agrees", 0), "two ends");
        assert!(!flag("bounce", 0));
        assert_eq!(int("duration_ms", 0), Some(31 * 60_000));
        assert!(flag("is_final", 0), "31 + 30 < 80 minutes");

        assert_eq!(
            text("session_key", 1).unwrap(),
            format!("a/{}", 61 * MIN + 1)
        );
        assert_eq!(text("screen_path", 1), None);
        assert_eq!(int("app_session_length_ms", 1), None);
        assert!(flag("bounce", 1));
        assert!(!flag("is_final", 1), "61 + 30 ≥ 80 minutes");

        assert_eq!(text("user_id", 2).as_deref(), Some("b"));
        assert!(flag("app_session_agrees", 2));
        assert_eq!(int("app_session_length_ms", 2), Some(60_000));
        let versions = column(b, "source_version").as_primitive::<Int64Type>();
        assert!(versions.iter().all(|v| v == Some(7)));
    }

    #[test]
    fn many_sessions_come_out_in_bounded_batches() {
        let users: Vec<String> = (0..BATCH_ROWS * 2 + 5)
            .map(|i| format!("u{i:06}"))
            .collect();
        let rows: Vec<Row<'_>> = users
            .iter()
            .map(|u| (u.as_str(), "click", 0, None, None, None, None))
            .collect();
        let out = run(&rows, 1000);
        let sizes: Vec<usize> = out.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, vec![BATCH_ROWS, BATCH_ROWS, 5]);
    }
}
