//! Arrow schemas of the lake's event tables and dead letters (the wire format is in
//! `docs/events.md`; rollup tables derive theirs from their declaration in
//! [`crate::rollup`]).
//!
//! Timestamps are microsecond UTC (Delta's `timestamp`), partition columns come last,
//! and every event table carries where its row came from in Kafka (`_kafka_*`) and
//! when it was ingested (`_ingested_at`).

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// The user an event belongs to (and the Kafka key of its message).
pub const USER_ID: &str = "user_id";
/// Partition column: the UTC date of `event_time`.
pub const EVENT_DATE: &str = "event_date";
/// Partition column: the UTC hour (0–23) of `event_time`.
pub const EVENT_HOUR: &str = "event_hour";
/// Partition column of `dead_letters`: the UTC date the message was ingested.
pub const INGEST_DATE: &str = "ingest_date";
/// The id of an event: copies of one resent event share it (see [`crate::dedup`]).
pub const EVENT_ID: &str = "event_id";
/// Column: when the event happened (UTC microseconds), the partitioning source.
pub const EVENT_TIME: &str = "event_time";
/// Kafka topic the row was read from.
pub const KAFKA_TOPIC: &str = "_kafka_topic";
/// Kafka partition the row was read from.
pub const KAFKA_PARTITION: &str = "_kafka_partition";
/// Kafka offset of the message the row was read from.
pub const KAFKA_OFFSET: &str = "_kafka_offset";
/// When ingest decoded the row.
pub const INGESTED_AT: &str = "_ingested_at";

/// The timestamp type of every time column: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// An event table's columns: the header every event has, `own` (the family's fields),
/// unknown fields as `properties`, then provenance and the hour partition columns.
fn event_table(own: Vec<Field>) -> SchemaRef {
    let mut fields = vec![
        utf8(EVENT_ID, false),
        utf8("event_type", false),
        Field::new("event_time", timestamp_type(), false),
        utf8("user_id", false),
    ];
    fields.extend(own);
    fields.extend([
        utf8("properties", true),
        utf8(KAFKA_TOPIC, false),
        Field::new(KAFKA_PARTITION, DataType::Int32, false),
        Field::new(KAFKA_OFFSET, DataType::Int64, false),
        Field::new(INGESTED_AT, timestamp_type(), false),
        Field::new(EVENT_DATE, DataType::Date32, false),
        Field::new(EVENT_HOUR, DataType::Int32, false),
    ]);
    Arc::new(Schema::new(fields))
}

static ENGAGEMENT: LazyLock<SchemaRef> = LazyLock::new(|| {
    event_table(vec![
        utf8("session_id", true),
        utf8("device_type", true),
        utf8("device_os", true),
        utf8("app_version", true),
        utf8("country", true),
        utf8("screen", true),
        utf8("item_id", true),
        utf8("query", true),
        Field::new("session_length_ms", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
        utf8("currency", true),
        utf8("notification_id", true),
    ])
});

/// `engagement_events`: one row per accepted app-engagement event.
pub fn engagement_events() -> SchemaRef {
    ENGAGEMENT.clone()
}

/// The struct of one recommended item inside `items`.
pub fn rec_item_fields() -> Fields {
    Fields::from(vec![
        utf8("item_id", false),
        Field::new("score", DataType::Float64, true),
        Field::new("rank", DataType::Int32, true),
    ])
}

/// The list element field of `items` (named `element`, as Delta and Parquet name it).
pub fn rec_items_element() -> Arc<Field> {
    Arc::new(Field::new(
        "element",
        DataType::Struct(rec_item_fields()),
        true,
    ))
}

static RECOMMENDATION: LazyLock<SchemaRef> = LazyLock::new(|| {
    event_table(vec![
        utf8("request_id", true),
        utf8("model_version", true),
        utf8("surface", true),
        Field::new("items", DataType::List(rec_items_element()), true),
        utf8("item_id", true),
        Field::new("rank", DataType::Int32, true),
    ])
});

/// `recommendation_events`: one row per accepted recommendation event.
pub fn recommendation_events() -> SchemaRef {
    RECOMMENDATION.clone()
}

static DEAD_LETTERS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        utf8(KAFKA_TOPIC, false),
        Field::new(KAFKA_PARTITION, DataType::Int32, false),
        Field::new(KAFKA_OFFSET, DataType::Int64, false),
        Field::new("kafka_key", DataType::Binary, true),
        Field::new("kafka_timestamp", timestamp_type(), true),
        Field::new("raw", DataType::Binary, false),
        Field::new("raw_size", DataType::Int64, false),
        utf8("reason_code", false),
        utf8("reason", false),
        Field::new(INGESTED_AT, timestamp_type(), false),
        Field::new(INGEST_DATE, DataType::Date32, false),
    ]))
});

static REMOVED_DUPLICATES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        utf8(KAFKA_TOPIC, false),
        Field::new(KAFKA_PARTITION, DataType::Int32, false),
        Field::new(KAFKA_OFFSET, DataType::Int64, false),
        utf8(EVENT_ID, false),
        utf8(SOURCE_TABLE, false),
        utf8(KEPT_TOPIC, false),
        Field::new(KEPT_PARTITION, DataType::Int32, false),
        Field::new(KEPT_OFFSET, DataType::Int64, false),
        Field::new(EVENT_HOUR, DataType::Int32, false),
        Field::new(REMOVED_AT, timestamp_type(), false),
        Field::new(EVENT_DATE, DataType::Date32, false),
    ]))
});

static EXPIRED_OFFSETS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        utf8(KAFKA_TOPIC, false),
        Field::new(KAFKA_PARTITION, DataType::Int32, false),
        Field::new(FIRST_OFFSET, DataType::Int64, false),
        Field::new(LAST_OFFSET, DataType::Int64, false),
        Field::new(DROP_ID, DataType::Int64, false),
        Field::new(DROPPED_AT, timestamp_type(), false),
        utf8(SOURCE_TABLE, false),
    ]))
});

/// `expired_offsets` column: the first offset of a run of consecutive dropped offsets.
pub const FIRST_OFFSET: &str = "first_offset";
/// `expired_offsets` column: the last offset of the run (inclusive).
pub const LAST_OFFSET: &str = "last_offset";
/// `expired_offsets` column: which retention drop of its source table removed the run
/// (1, 2, …; the drop's commit records it as a `txn` version, and only runs of
/// committed drops count).
pub const DROP_ID: &str = "drop_id";
/// `expired_offsets` column: when the compactor recorded the run.
pub const DROPPED_AT: &str = "dropped_at";

/// `expired_offsets`: one row per run of consecutive Kafka offsets (`first_offset` to
/// `last_offset` of `_kafka_topic`/`_kafka_partition`) whose rows a retention drop
/// removed from `source_table` (an event table or `dead_letters`).
pub fn expired_offsets() -> SchemaRef {
    EXPIRED_OFFSETS.clone()
}

/// `removed_duplicates` and `expired_offsets` column: the table the rows were removed
/// from.
pub const SOURCE_TABLE: &str = "source_table";
/// `removed_duplicates` column: the Kafka topic of the copy that was kept.
pub const KEPT_TOPIC: &str = "kept_topic";
/// `removed_duplicates` column: the Kafka partition of the copy that was kept.
pub const KEPT_PARTITION: &str = "kept_partition";
/// `removed_duplicates` column: the Kafka offset of the copy that was kept.
pub const KEPT_OFFSET: &str = "kept_offset";
/// `removed_duplicates` column: when the compactor removed the copy.
pub const REMOVED_AT: &str = "removed_at";

/// `removed_duplicates`: one row per resent copy the compactor removed — its Kafka
/// position (`_kafka_*`), its `event_id`, the table and hour (`event_date`,
/// `event_hour`) it was removed from, and the position of the copy that was kept.
/// A removal that did not commit (a lost lease, a conflict) may leave a row whose
/// copy is still in its table; such a row is not counted as a removal.
pub fn removed_duplicates() -> SchemaRef {
    REMOVED_DUPLICATES.clone()
}

/// `sessions` column: the session's key, `<user_id>/<start in UTC microseconds>`: the
/// same whenever the session is recomputed with the same start.
pub const SESSION_KEY: &str = "session_key";
/// `sessions` column: the time of the session's first event.
pub const SESSION_START: &str = "session_start";
/// `sessions` column: the time of the session's last event.
pub const SESSION_END: &str = "session_end";
/// `sessions` column: whether the session can no longer change (see [`sessions`]).
pub const IS_FINAL: &str = "is_final";
/// How many screens `sessions.screen_path` lists at most.
pub const SCREEN_PATH_LIMIT: usize = 10;
/// What separates two screens in `sessions.screen_path`.
pub const SCREEN_PATH_SEPARATOR: &str = " > ";

static SESSIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let int = |name: &str| Field::new(name, DataType::Int64, false);
    let flag = |name: &str| Field::new(name, DataType::Boolean, false);
    Arc::new(Schema::new(vec![
        utf8(SESSION_KEY, false),
        utf8(USER_ID, false),
        Field::new(SESSION_START, timestamp_type(), false),
        Field::new(SESSION_END, timestamp_type(), false),
        int("duration_ms"),
        int("events"),
        int("screen_views"),
        utf8("first_screen", true),
        utf8("last_screen", true),
        utf8("screen_path", true),
        flag("bounce"),
        utf8("device_type", true),
        utf8("device_os", true),
        utf8("app_version", true),
        utf8("country", true),
        int("app_session_starts"),
        int("app_session_ends"),
        Field::new("app_session_length_ms", DataType::Int64, true),
        flag("app_session_agrees"),
        flag(IS_FINAL),
        int(crate::rollup::SOURCE_VERSION),
        Field::new(crate::rollup::COMPUTED_AT, timestamp_type(), false),
        Field::new(EVENT_DATE, DataType::Date32, false),
        Field::new(EVENT_HOUR, DataType::Int32, false),
    ]))
});

/// `sessions`: one row per session — a run of one user's deduplicated engagement events
/// with no gap longer than the compactor's session gap — partitioned by the hour of its
/// start (`event_date`, `event_hour`). `duration_ms` is last minus first event time;
/// `screen_views` counts `screen_view` events, whose screens in order make the path
/// (`first_screen`, `last_screen`, `screen_path`: the first [`SCREEN_PATH_LIMIT`] joined
/// by [`SCREEN_PATH_SEPARATOR`]); `bounce`: at most one screen view. Device, OS, app
/// version and country are the first event's. The app's own view: its `session_start`
/// and `session_end` events inside the session, the `session_length_ms` those ends
/// report, and `app_session_agrees` (exactly one start and one end, with one
/// `session_id`). [`IS_FINAL`] is false while the session could still grow (its gap has
/// not passed in closed hours yet); such rows are rewritten by later passes.
/// `source_version`: the `engagement_events` version the row was computed from.
pub fn sessions() -> SchemaRef {
    SESSIONS.clone()
}

static ERASURE_LOG: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        utf8("request_id", false),
        Field::new("requested_at", timestamp_type(), false),
        Field::new("erased_at", timestamp_type(), false),
        utf8("user_hash", false),
        utf8("tables", false),
        Field::new("rows_removed", DataType::Int64, false),
        Field::new("hours_recomputed", DataType::Int64, false),
        Field::new("files_purged", DataType::Int64, false),
    ]))
});

/// `erasure_log`: one row per user of each `hourlake forget-user` request — the request,
/// when it was asked and carried out, `user_hash` (hex SHA-256 of a per-lake salt and
/// the user id: never the id), the tables touched (comma-separated), the user's rows
/// removed, and the request's hours recomputed and files purged.
pub fn erasure_log() -> SchemaRef {
    ERASURE_LOG.clone()
}

static INGESTED_MINUTES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        utf8(KAFKA_TOPIC, false),
        Field::new(KAFKA_PARTITION, DataType::Int32, false),
        Field::new(MINUTE, timestamp_type(), false),
        Field::new(MESSAGES, DataType::Int64, false),
        Field::new(FIRST_OFFSET, DataType::Int64, false),
        Field::new(LAST_OFFSET, DataType::Int64, false),
        Field::new(INGESTED_AT, timestamp_type(), false),
        Field::new(EVENT_DATE, DataType::Date32, false),
        Field::new(EVENT_HOUR, DataType::Int32, false),
    ]))
});

/// `ingested_minutes` and `loss_minutely` column: the start of a minute of event time
/// (see [`accounting_time_micros`] for messages without one).
pub const MINUTE: &str = "minute";
/// `ingested_minutes` column: how many messages of the partition ingest read in one
/// flush whose minute is `minute`.
pub const MESSAGES: &str = "messages";

/// `ingested_minutes`: what ingest read, counted per flush, topic-partition and minute
/// (`first_offset`/`last_offset`: the lowest and highest offset counted; `_ingested_at`:
/// when the last of them was read), partitioned by the minute's date and hour. Ingest
/// commits it with `txn` offsets like the tables it fills, so each offset is counted
/// exactly once.
pub fn ingested_minutes() -> SchemaRef {
    INGESTED_MINUTES.clone()
}

/// When a message counts in the loss accounting: its event time when it was accepted;
/// for a dead letter (which may have no readable event time) its Kafka timestamp when
/// that is within a year before, or a day after, it was read, else when it was read
/// (`ingested_at_micros`). The Kafka timestamp keeps a re-read message in the same
/// minute; the bounds keep absurd producer timestamps out of the partitioning.
/// [`DEAD_LETTER_TIME_SQL`] is the same rule over `dead_letters`.
pub fn accounting_time_micros(kafka_timestamp_micros: Option<i64>, ingested_at_micros: i64) -> i64 {
    match kafka_timestamp_micros {
        Some(t)
            if t >= ingested_at_micros.saturating_sub(DEAD_LETTER_TIME_BEFORE_MICROS)
                && t <= ingested_at_micros.saturating_add(DEAD_LETTER_TIME_AFTER_MICROS) =>
        {
            t
        }
        _ => ingested_at_micros,
    }
}

const DEAD_LETTER_TIME_BEFORE_MICROS: i64 = 366 * 24 * 3_600_000_000;
const DEAD_LETTER_TIME_AFTER_MICROS: i64 = 24 * 3_600_000_000;

/// [`accounting_time_micros`] as SQL over a `dead_letters` row.
pub const DEAD_LETTER_TIME_SQL: &str = "CASE WHEN kafka_timestamp >= _ingested_at - INTERVAL '366 days' \
     AND kafka_timestamp <= _ingested_at + INTERVAL '1 day' THEN kafka_timestamp ELSE _ingested_at END";

/// The start of the minute of a microsecond timestamp (saturating at the far past).
pub fn minute_of(micros: i64) -> i64 {
    micros.saturating_sub(micros.rem_euclid(60_000_000))
}

static LOSS_MINUTELY: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(MINUTE, timestamp_type(), false),
        utf8(KAFKA_TOPIC, false),
        Field::new("ingested", DataType::Int64, false),
        Field::new("in_tables", DataType::Int64, false),
        Field::new("dead_letters", DataType::Int64, false),
        Field::new("removed_duplicates", DataType::Int64, false),
        Field::new("missing", DataType::Int64, false),
        Field::new("surplus", DataType::Int64, false),
        Field::new("counted_through", timestamp_type(), false),
        Field::new("computed_at", timestamp_type(), false),
        Field::new(EVENT_DATE, DataType::Date32, false),
        Field::new(EVENT_HOUR, DataType::Int32, false),
    ]))
});

/// `loss_minutely`: per minute (see [`accounting_time_micros`]) and topic, the messages
/// ingest read (`ingested`, from `ingested_minutes`) against where they are: rows of
/// the event tables, dead letters, and resent copies the compactor removed. `missing`
/// is what the three do not account for, `surplus` what they hold beyond it (doubled
/// rows). `counted_through`: the newest `ingested_minutes` read time the hour's rows
/// reflect. The compactor writes an hour's rows once its counts settled, and again
/// whenever they change.
pub fn loss_minutely() -> SchemaRef {
    LOSS_MINUTELY.clone()
}

/// `quality_hourly` column: what the row measures (`events`, `null_share`, …; the list
/// is in `hourlake_compactor::quality`).
pub const METRIC: &str = "metric";
/// `quality_hourly` column: which part of the table the figure is about: `ALL` (the
/// whole hour), a dimension column (`null_share`) or a reason code (`dead_letters`).
pub const DIMENSION: &str = "dimension";
/// `quality_hourly` column: the figure (a count, a share, an estimate, an amount; NULL
/// when a share has nothing to divide by).
pub const VALUE: &str = "value";
/// `quality_hourly` column: the count behind `value` (the rows counted, or a share's
/// numerator), when it is one.
pub const NUMERATOR: &str = "numerator";
/// `quality_hourly` column: what a share is a share of.
pub const DENOMINATOR: &str = "denominator";
/// `quality_hourly` column: lowest value expected from the same hour of previous days.
pub const EXPECTED_LOW: &str = "expected_low";
/// `quality_hourly` column: highest value expected from the same hour of previous days.
pub const EXPECTED_HIGH: &str = "expected_high";
/// `quality_hourly` column: the median of the same hour of previous days.
pub const EXPECTED_MEDIAN: &str = "expected_median";
/// `quality_hourly` column: how many previous days the expectation was built on.
pub const HISTORY_DAYS: &str = "history_days";
/// `quality_hourly` column: `high` or `low` when `value` is outside the expected
/// range (an anomaly flag), else NULL.
pub const ANOMALY: &str = "anomaly";
static QUALITY_HOURLY: LazyLock<SchemaRef> = LazyLock::new(|| {
    let float = |name: &str| Field::new(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new(EVENT_HOUR, DataType::Int32, false),
        utf8(SOURCE_TABLE, false),
        utf8(METRIC, false),
        utf8(DIMENSION, false),
        float(VALUE),
        Field::new(NUMERATOR, DataType::Int64, true),
        Field::new(DENOMINATOR, DataType::Int64, true),
        float(EXPECTED_LOW),
        float(EXPECTED_HIGH),
        float(EXPECTED_MEDIAN),
        Field::new(HISTORY_DAYS, DataType::Int32, true),
        utf8(ANOMALY, true),
        Field::new(crate::rollup::COMPUTED_AT, timestamp_type(), false),
        Field::new(EVENT_DATE, DataType::Date32, false),
    ]))
});

/// `quality_hourly`: one row per closed hour, source table (`source_table`), `metric`
/// and `dimension` — the hour's data-quality figures (rows, dead letters by reason,
/// duplicates removed, late and null shares, distinct users by sketch and exactly),
/// and for the headline figures what the same hour of previous days led to expect and
/// whether the figure is an anomaly. Partitioned by `event_date`.
pub fn quality_hourly() -> SchemaRef {
    QUALITY_HOURLY.clone()
}

/// `dead_letters`: every message ingest could not accept, with its raw bytes
/// (cut to a limit for oversized messages; `raw_size` keeps the original size).
pub fn dead_letters() -> SchemaRef {
    DEAD_LETTERS.clone()
}

#[cfg(test)]
mod tests {
    use crate::TableId;

    #[test]
    fn a_dead_letter_counts_at_its_kafka_timestamp_only_when_it_is_plausible() {
        use super::{accounting_time_micros, minute_of};
        let read = 1_795_355_100_000_000;
        let day = 86_400_000_000;
        assert_eq!(accounting_time_micros(Some(read - 5), read), read - 5);
        assert_eq!(
            accounting_time_micros(Some(read - 366 * day), read),
            read - 366 * day
        );
        assert_eq!(accounting_time_micros(Some(read - 367 * day), read), read);
        assert_eq!(accounting_time_micros(Some(read + day + 1), read), read);
        assert_eq!(accounting_time_micros(None, read), read);
        // Absurd producer timestamps and read times never overflow.
        for t in [i64::MIN, i64::MAX] {
            assert_eq!(accounting_time_micros(Some(t), read), read);
            assert_eq!(accounting_time_micros(Some(t), t), t);
            assert!(minute_of(t) <= t && t - minute_of(t) < 60_000_000);
        }
    }

    #[test]
    fn partition_columns_exist_and_come_last() {
        for t in TableId::ALL {
            let schema = t.schema();
            let n = schema.fields().len();
            let parts = t.partition_columns();
            for (i, p) in parts.iter().enumerate() {
                let idx = schema.index_of(p).expect("partition column in schema");
                assert_eq!(idx, n - parts.len() + i, "{t}.{p}");
            }
        }
    }
}
