//! Quality figures and anomaly flags on real lakes: hand-built hours whose every figure
//! is known, and days of steady hours with a planted spike, drop and null burst.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Date32Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use deltalake::protocol::SaveMode;
use hourlake_catalog::partition::date_of;
use hourlake_catalog::{Hour, Lake, TableId};
use hourlake_testkit::lake::{append_rows, query};
use serde_json::{json, Value};

use super::{Direction, Metric, QualityConfig};
use crate::tests::config;
use crate::{Compactor, CompactorConfig, PassReport};

const HOUR: i64 = 3_600_000_000;

/// The start of yesterday (UTC), so every hour built here is closed.
fn yesterday() -> i64 {
    let now = chrono::Utc::now().timestamp_micros();
    (now / (24 * HOUR) - 1) * 24 * HOUR
}

/// One engagement event of `hour` (its `i`-th second), ingested a second later.
fn eng(hour: Hour, id: &str, i: i64, event_type: &str, user: &str, offset: i64) -> Value {
    let at = hour.start_micros() + i * 1_000_000;
    json!({
        "event_id": id,
        "event_type": event_type,
        "event_time": at,
        "user_id": user,
        "device_type": "ios",
        "app_version": "1.0",
        "country": "DE",
        "amount": (event_type == "purchase").then_some(10.0),
        "_kafka_topic": "app-events",
        "_kafka_partition": 0,
        "_kafka_offset": offset,
        "_ingested_at": at + 1_000_000,
        "event_date": hour.date,
        "event_hour": hour.hour,
    })
}

/// One recommendation event of `hour`.
fn rec(hour: Hour, id: &str, i: i64, event_type: &str, user: &str, offset: i64) -> Value {
    let at = hour.start_micros() + i * 1_000_000;
    json!({
        "event_id": id,
        "event_type": event_type,
        "event_time": at,
        "user_id": user,
        "request_id": "req-1",
        "model_version": "m1",
        "surface": "home",
        "items": (event_type == "rec_served").then(|| json!([{"item_id": "i1", "score": 0.5, "rank": 1}])),
        "item_id": (event_type != "rec_served").then_some("i1"),
        "_kafka_topic": "rec-events",
        "_kafka_partition": 0,
        "_kafka_offset": offset,
        "_ingested_at": at + 1_000_000,
        "event_date": hour.date,
        "event_hour": hour.hour,
    })
}

/// A dead letter: offset, reason code, Kafka timestamp, ingested at.
struct Letter(i64, &'static str, Option<i64>, i64);

async fn append_dead_letters(lake: &Lake, letters: &[Letter]) {
    let n = letters.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["app-events"; n])),
        Arc::new(Int32Array::from(vec![1; n])),
        Arc::new(Int64Array::from_iter_values(letters.iter().map(|l| l.0))),
        Arc::new(BinaryArray::from(vec![None::<&[u8]>; n])),
        Arc::new(
            TimestampMicrosecondArray::from(letters.iter().map(|l| l.2).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        Arc::new(BinaryArray::from(vec![&b"{"[..]; n])),
        Arc::new(Int64Array::from(vec![1; n])),
        Arc::new(StringArray::from_iter_values(letters.iter().map(|l| l.1))),
        Arc::new(StringArray::from(vec!["reason"; n])),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(letters.iter().map(|l| l.3))
                .with_timezone("UTC"),
        ),
        Arc::new(Date32Array::from_iter_values(
            letters.iter().map(|l| date_of(l.3)),
        )),
    ];
    let batch = RecordBatch::try_new(TableId::DeadLetters.schema(), columns).unwrap();
    lake.open_or_create(TableId::DeadLetters)
        .await
        .unwrap()
        .write(vec![batch])
        .with_save_mode(SaveMode::Append)
        .await
        .unwrap();
}

/// Every figure of `hour` in `quality_hourly`: (table, metric, dimension) → (value,
/// numerator, denominator).
type Row = (Option<f64>, Option<i64>, Option<i64>);

async fn figures_of(lake: &Lake, hour: Hour) -> BTreeMap<(String, String, String), Row> {
    let sql = format!(
        "SELECT source_table, metric, dimension, value, numerator, denominator \
         FROM quality_hourly WHERE {}",
        hour.sql_predicate()
    );
    let mut out = BTreeMap::new();
    for b in query(lake, &sql).await {
        let text = |i: usize| arrow::compute::cast(b.column(i), &DataType::Utf8).unwrap();
        let (t, m, d) = (text(0), text(1), text(2));
        let (t, m, d) = (
            t.as_string::<i32>(),
            m.as_string::<i32>(),
            d.as_string::<i32>(),
        );
        let v = b.column(3).as_primitive::<Float64Type>();
        let (n, den) = (
            b.column(4).as_primitive::<Int64Type>(),
            b.column(5).as_primitive::<Int64Type>(),
        );
        for r in 0..b.num_rows() {
            let key = (
                t.value(r).to_string(),
                m.value(r).to_string(),
                d.value(r).to_string(),
            );
            let opt_f = |r| (!v.is_null(r)).then(|| v.value(r));
            let opt = |a: &arrow::array::Int64Array, r| (!a.is_null(r)).then(|| a.value(r));
            let row = (opt_f(r), opt(n, r), opt(den, r));
            assert!(out.insert(key.clone(), row).is_none(), "{key:?} twice");
        }
    }
    out
}

async fn pass(lake: &Lake, config: CompactorConfig) -> (PassReport, Compactor) {
    let compactor = Compactor::new(lake.clone(), config, "test");
    let report = compactor.run_pass().await.unwrap();
    (report, compactor)
}

#[tokio::test]
async fn an_hours_figures_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let h = Hour::of_micros(yesterday() + 10 * HOUR);
    // 40 engagement events of 13 users: 5 session starts, 3 purchases (1.5 + 2.5 + 4),
    // device NULL in 10 and "unknown" in 4, app version NULL in 6, the last 10 ingested
    // after the hour closed.
    let mut rows = Vec::new();
    for i in 0..40i64 {
        let kind = match i {
            0..5 => "session_start",
            5..8 => "purchase",
            _ => "screen_view",
        };
        let mut e = eng(h, &format!("e{i}"), i, kind, &format!("u{}", i % 13), i);
        e["amount"] = match i {
            5 => json!(1.5),
            6 => json!(2.5),
            7 => json!(4.0),
            _ => Value::Null,
        };
        if i % 4 == 0 {
            e["device_type"] = Value::Null;
        } else if i % 10 == 1 {
            e["device_type"] = json!("unknown");
        }
        if i < 6 {
            e["app_version"] = Value::Null;
        }
        if i >= 30 {
            e["_ingested_at"] = json!(h.end_micros() + 60_000_000);
        }
        rows.push(e);
    }
    append_rows(&lake, TableId::EngagementEvents, &rows).await;
    // Two resent copies (one of a late event), ingested later still: removed.
    let mut resent = vec![rows[2].clone(), rows[35].clone()];
    for (n, copy) in resent.iter_mut().enumerate() {
        copy["_kafka_offset"] = json!(100 + n);
        copy["_ingested_at"] = json!(h.end_micros() + 120_000_000);
    }
    append_rows(&lake, TableId::EngagementEvents, &resent).await;
    // 10 recommendation events of 5 users: 2 served, 6 impressions, 2 clicks; surface
    // NULL in 4.
    let recs: Vec<Value> = (0..10i64)
        .map(|i| {
            let kind = match i {
                0..2 => "rec_served",
                2..8 => "rec_impression",
                _ => "rec_click",
            };
            let mut r = rec(h, &format!("r{i}"), i, kind, &format!("v{}", i % 5), i);
            if i % 3 == 0 {
                r["surface"] = Value::Null;
            }
            r
        })
        .collect();
    append_rows(&lake, TableId::RecommendationEvents, &recs).await;
    // Dead letters: 3 bad_json and 1 missing_field by Kafka timestamp, 1 missing_field
    // without one (ingested in the hour); one of the next hour and one ingested in the
    // next hour without a timestamp are not this hour's.
    let inside = h.start_micros() + 60_000_000;
    let next = h.end_micros() + 60_000_000;
    append_dead_letters(
        &lake,
        &[
            Letter(1, "bad_json", Some(inside), inside + 5),
            Letter(2, "bad_json", Some(inside + 1), next),
            Letter(3, "bad_json", Some(inside + 2), inside + 5),
            Letter(4, "missing_field", Some(inside + 3), inside + 5),
            Letter(5, "missing_field", None, inside + 7),
            Letter(6, "bad_json", Some(next), next),
            Letter(7, "missing_field", None, next),
        ],
    )
    .await;

    let cfg = CompactorConfig {
        quality: QualityConfig {
            exact_users_every: 1,
            ..QualityConfig::default()
        },
        ..config()
    };
    let (report, _compactor) = pass(&lake, cfg).await;
    let quality = report.quality.clone().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(quality.hours, vec![h]);
    assert_eq!(quality.anomalies, vec![], "no history, no flags");

    let f = figures_of(&lake, h).await;
    let get = |t: &str, m: &str, d: &str| {
        *f.get(&(t.to_string(), m.to_string(), d.to_string()))
            .unwrap_or_else(|| panic!("no {t} {m} {d} in {f:#?}"))
    };
    let count = |n: i64| (Some(n as f64), Some(n), None);
    let share = |n: i64, d: i64| (Some(n as f64 / d as f64), Some(n), Some(d));
    let (eng, recs) = ("engagement_events", "recommendation_events");
    assert_eq!(get(eng, "events", "ALL"), count(40));
    assert_eq!(get(eng, "app_session_starts", "ALL"), count(5));
    assert_eq!(get(eng, "purchases", "ALL"), count(3));
    assert_eq!(get(eng, "revenue", "ALL"), (Some(8.0), None, None));
    assert_eq!(get(eng, "duplicates_removed", "ALL"), count(2));
    assert_eq!(get(eng, "late_share", "ALL"), share(10, 40));
    assert_eq!(get(eng, "null_share", "device_type"), share(14, 40));
    assert_eq!(get(eng, "null_share", "app_version"), share(6, 40));
    assert_eq!(get(eng, "null_share", "country"), share(0, 40));
    assert_eq!(get(eng, "users_exact", "ALL"), count(13));
    assert_eq!(get(recs, "events", "ALL"), count(10));
    assert_eq!(get(recs, "ctr", "ALL"), share(2, 6));
    assert_eq!(get(recs, "null_share", "surface"), share(4, 10));
    assert_eq!(get(recs, "null_share", "model_version"), share(0, 10));
    assert_eq!(get(recs, "users_exact", "ALL"), count(5));
    assert_eq!(get(recs, "late_share", "ALL"), share(0, 10));
    assert_eq!(get(recs, "duplicates_removed", "ALL"), count(0));
    let dl = "dead_letters";
    assert_eq!(get(dl, "dead_letters", "ALL"), count(5));
    assert_eq!(get(dl, "dead_letters", "bad_json"), count(3));
    assert_eq!(get(dl, "dead_letters", "missing_field"), count(2));
    assert_eq!(get(dl, "dead_letter_rate", "ALL"), share(5, 55));
    // Every session of the hour is final (its gap passed long ago) and rolled up in
    // sessions_hourly by the same pass: 13 users, one session each, 5 holding an app
    // start, none an app end; u0 lasts 39 s, the 12 others 26 s.
    let s = "sessions";
    assert_eq!(get(s, "sessions", "ALL"), count(13));
    assert_eq!(get(s, "starts_per_session", "ALL"), share(5, 13));
    assert_eq!(
        get(s, "app_length_ratio", "ALL"),
        share(0, 39_000 + 12 * 26_000)
    );
    assert_eq!(get(s, "agreement_rate", "ALL"), share(0, 13));
    // event_type is never NULL: no null share of it.
    assert!(!f.contains_key(&(eng.into(), "null_share".into(), "event_type".into())));
    // The sketch's estimate next to the exact count, and its observed error.
    for (table, exact) in [(eng, 13.0), (recs, 5.0)] {
        let (estimate, ..) = get(table, "users", "ALL");
        let estimate = estimate.unwrap();
        let (error, _, of) = get(table, "users_hll_error", "ALL");
        assert_eq!(of, Some(exact as i64));
        assert_eq!(error, Some((estimate - exact) / exact));
        assert!(
            error.unwrap().abs() < 0.05,
            "{table}: {estimate} vs {exact}"
        );
    }
    let hll = scalar_f64(
        &lake,
        &format!(
            "SELECT CAST(hll_estimate(users_sketch) AS DOUBLE) FROM engagement_hourly \
             WHERE event_type = 'ALL' AND device_type = 'ALL' AND app_version = 'ALL' \
             AND country = 'ALL' AND {}",
            h.sql_predicate()
        ),
    )
    .await;
    assert_eq!(get(eng, "users", "ALL").0, Some(hll));
    // Headline figures and null shares are watched (no history yet: nothing expected).
    let watched = scalar_f64(
        &lake,
        "SELECT CAST(count(*) AS DOUBLE) FROM quality_hourly WHERE history_days = 0 \
         AND expected_low IS NULL AND anomaly IS NULL",
    )
    .await;
    // eng: events users app_session_starts purchases revenue + 3 null shares; rec:
    // events users ctr + 2 null shares; dead_letter_rate; sessions, agreement_rate.
    assert_eq!(watched, 16.0);
    // 12 of engagement_events (the 5 above, 3 null shares, late share, exact users and
    // error, duplicates), 9 of recommendation_events, 4 of dead letters, 4 of sessions.
    assert_eq!(f.len(), 29, "{f:#?}");
}

/// An engagement event of `user` at `minute` of `hour`, in the app session
/// `app-<user>`: `kind` is its type, or `end:<ms>` for a `session_end` reporting that
/// length.
fn in_app_session(hour: Hour, user: &str, minute: i64, kind: &str, offset: i64) -> Value {
    let length = kind
        .strip_prefix("end:")
        .map(|ms| json!(ms.parse::<i64>().unwrap()));
    let event_type = if length.is_some() {
        "session_end"
    } else {
        kind
    };
    let id = format!("{user}-{minute}");
    let mut e = eng(hour, &id, minute * 60, event_type, user, offset);
    e["session_id"] = json!(format!("app-{user}"));
    e["session_length_ms"] = length.unwrap_or(Value::Null);
    e
}

#[tokio::test]
async fn session_figures_wait_for_sessions_hourly_and_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let h = Hour::of_micros(yesterday() + 10 * HOUR);
    // Three sessions: a's agrees with the app (one start, one end reporting its 2
    // minutes); c's holds two app starts and an end reporting 1.5 of its 2 minutes; d's
    // has no end and lasts 10 minutes, until 10:50.
    let events = [
        ("a", 0, "session_start"),
        ("a", 1, "screen_view"),
        ("a", 2, "end:120000"),
        ("c", 10, "session_start"),
        ("c", 11, "session_start"),
        ("c", 12, "end:90000"),
        ("d", 40, "session_start"),
        ("d", 50, "screen_view"),
    ];
    let rows: Vec<Value> = (0..)
        .zip(events)
        .map(|(offset, (user, minute, kind))| in_app_session(h, user, minute, kind, offset))
        .collect();
    append_rows(&lake, TableId::EngagementEvents, &rows).await;
    // Sessionized as seen at 11:05: d's session could still grow (10:50 + the 30 minute
    // gap is past the hour), so it is provisional and sessions_hourly leaves the hour out.
    let early = crate::sessions::tests::update_at(&lake, h.end_micros() + 5 * 60_000_000).await;
    assert_eq!((early.sessions, early.provisional), (3, 1));
    assert!(early.rolled_up.is_empty());

    // A pass that does not sessionize rolls the hour up: its figures, but no session ones.
    let no_sessions = CompactorConfig {
        sessionize: false,
        ..config()
    };
    let (report, compactor) = pass(&lake, no_sessions).await;
    compactor.release().await.unwrap();
    assert_eq!(report.quality.map(|q| q.hours), Some(vec![h]));
    let before = figures_of(&lake, h).await;
    assert!(!before.is_empty());
    assert!(
        before.keys().all(|(table, ..)| table != "sessions"),
        "{before:#?}"
    );

    // A pass that does, now: every session is final, sessions_hourly rolls the hour up,
    // and that alone brings the hour back to the quality step (its events did not
    // change), now with the session figures.
    let (report, compactor) = pass(&lake, config()).await;
    compactor.release().await.unwrap();
    let engagement = report.table(TableId::EngagementEvents).unwrap();
    assert!(engagement.rolled_up.is_empty(), "{report}");
    let sessions = engagement.sessions.clone().unwrap();
    assert_eq!(sessions.rolled_up, vec![h]);
    assert_eq!(report.quality.map(|q| q.hours), Some(vec![h]));
    let after = figures_of(&lake, h).await;
    let get = |m: &str| after[&("sessions".to_string(), m.to_string(), "ALL".to_string())];
    assert_eq!(get("sessions"), (Some(3.0), Some(3), None));
    assert_eq!(
        get("starts_per_session"),
        (Some(4.0 / 3.0), Some(4), Some(3))
    );
    // Reported 120 000 + 90 000 ms (d's none) of 120 000 + 120 000 + 600 000.
    assert_eq!(
        get("app_length_ratio"),
        (Some(0.25), Some(210_000), Some(840_000))
    );
    assert_eq!(get("agreement_rate"), (Some(1.0 / 3.0), Some(1), Some(3)));
    // The hour's other figures are the same as before.
    assert_eq!(after.len(), before.len() + 4);
    for (key, row) in &before {
        assert_eq!(after.get(key), Some(row), "{key:?}");
    }
}

async fn scalar_f64(lake: &Lake, sql: &str) -> f64 {
    let batches = query(lake, sql).await;
    let b = batches.iter().find(|b| b.num_rows() > 0).unwrap();
    b.column(0).as_primitive::<Float64Type>().value(0)
}

/// What a planted hour differs in.
#[derive(Clone, Copy, PartialEq)]
enum Plant {
    Steady,
    /// Three times the events (extra screen views of the same users).
    Spike,
    /// The same events from a tenth of the users (so a tenth of the sessions).
    FewUsers,
    /// Country missing on 60 % of the events.
    NullBurst,
}

/// One hour of a steady lake: `200 + 10 × (day % 3)` engagement events of 100 users
/// (every ninth a session start, every ninth a purchase of 10.0, device NULL on every
/// fifth; each user's events within minutes, so one session each), 100 recommendation
/// events (80 impressions, 8 clicks) and 4 dead letters.
async fn fill_hour(lake: &Lake, hour: Hour, day: i64, plant: Plant, offset: &mut i64) {
    const TYPES: [&str; 9] = [
        "session_start",
        "screen_view",
        "click",
        "screen_view",
        "search",
        "screen_view",
        "purchase",
        "screen_view",
        "click",
    ];
    let n = 200 + 10 * (day % 3);
    let users = if plant == Plant::FewUsers { 10 } else { 100 };
    let mut rows = Vec::new();
    let add = |rows: &mut Vec<Value>, i: i64, kind: &str, offset: &mut i64| {
        *offset += 1;
        let id = format!("e-{hour}-{i}");
        let mut e = eng(
            hour,
            &id,
            i % 3600,
            kind,
            &format!("u{}", i % users),
            *offset,
        );
        if i % 5 == 0 {
            e["device_type"] = Value::Null;
        }
        if plant == Plant::NullBurst && i % 5 < 3 {
            e["country"] = Value::Null;
        }
        rows.push(e);
    };
    for i in 0..n {
        add(&mut rows, i, TYPES[(i % 9) as usize], offset);
    }
    if plant == Plant::Spike {
        for i in n..3 * n {
            add(&mut rows, i, "screen_view", offset);
        }
    }
    append_rows(lake, TableId::EngagementEvents, &rows).await;
    let recs: Vec<Value> = (0..100i64)
        .map(|i| {
            *offset += 1;
            let kind = match i {
                0..80 => "rec_impression",
                80..88 => "rec_click",
                _ => "rec_served",
            };
            rec(
                hour,
                &format!("r-{hour}-{i}"),
                i,
                kind,
                &format!("v{}", i % 50),
                *offset,
            )
        })
        .collect();
    append_rows(lake, TableId::RecommendationEvents, &recs).await;
    let at = hour.start_micros() + 1_000_000;
    let letters: Vec<Letter> = (0..4)
        .map(|i| {
            *offset += 1;
            Letter(*offset, "bad_json", Some(at + i), at + 5_000_000)
        })
        .collect();
    append_dead_letters(lake, &letters).await;
}

#[tokio::test]
async fn a_planted_spike_drop_and_null_burst_are_exactly_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    // Hours 10, 11 and 12 of 8 days; on the last day 10 spikes, 11 loses its users (and
    // with them its sessions, while the app's session starts stay) and 12 its countries.
    let first = yesterday() - 7 * 24 * HOUR;
    let mut offset = 0;
    let at = |day: i64, h: i64| Hour::of_micros(first + day * 24 * HOUR + h * HOUR);
    for day in 0..8 {
        for h in [10, 11, 12] {
            let plant = match (day, h) {
                (7, 10) => Plant::Spike,
                (7, 11) => Plant::FewUsers,
                (7, 12) => Plant::NullBurst,
                _ => Plant::Steady,
            };
            fill_hour(&lake, at(day, h), day, plant, &mut offset).await;
        }
    }
    let (report, compactor) = pass(&lake, config()).await;
    let quality = report.quality.clone().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(quality.hours.len(), 24);
    let flags: Vec<(Hour, TableId, Metric, String, Direction)> = quality
        .anomalies
        .iter()
        .map(|a| (a.hour, a.table, a.metric, a.dimension.clone(), a.direction))
        .collect();
    let engagement = TableId::EngagementEvents;
    let expected = vec![
        (
            at(7, 10),
            engagement,
            Metric::Events,
            "ALL".to_string(),
            Direction::High,
        ),
        (
            at(7, 11),
            engagement,
            Metric::Users,
            "ALL".to_string(),
            Direction::Low,
        ),
        (
            at(7, 11),
            TableId::Sessions,
            Metric::Sessions,
            "ALL".to_string(),
            Direction::Low,
        ),
        (
            at(7, 12),
            engagement,
            Metric::NullShare,
            "country".to_string(),
            Direction::High,
        ),
    ];
    assert_eq!(flags, expected, "{report}");

    // The view says the same, with what was expected.
    let view = query(
        &lake,
        "SELECT event_hour, source_table, metric, dimension, observed, expected_low, \
           expected_high, expected_median, history_days, direction \
         FROM quality_anomalies ORDER BY event_hour, source_table",
    )
    .await;
    let b = arrow::compute::concat_batches(&view[0].schema(), &view).unwrap();
    assert_eq!(b.num_rows(), 4);
    let f = |i: usize| {
        arrow::compute::cast(b.column(i), &DataType::Float64)
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone()
    };
    let (observed, low, high, median, days) = (f(4), f(5), f(6), f(7), f(8));
    // Spike: 630 events (day 7: 210 × 3) against days 0–6 (200 210 220 200 210 220 200).
    assert_eq!(observed.value(0), 630.0);
    assert_eq!(median.value(0), 210.0);
    assert!(high.value(0) < 630.0 && low.value(0) < 210.0);
    // Few users: about 10 against 100 (HLL estimates).
    assert!(observed.value(1) < 12.0 && low.value(1) > 12.0, "{b:?}");
    // Few users, few sessions: 10 final sessions against 100 every day before.
    assert_eq!((observed.value(2), median.value(2)), (10.0, 100.0));
    assert!(low.value(2) > 10.0, "{b:?}");
    // Null burst: 60 % against 0.
    assert_eq!((observed.value(3), median.value(3)), (0.6, 0.0));
    // A flat 0 expects 0 to 4 × the share floor (0.005).
    assert_eq!((low.value(3), high.value(3)), (0.0, 0.02));
    assert_eq!(days.value(3), 7.0);

    // /metrics: each flag counts once among the last 24 hours computed; the other
    // watched figures are there at 0.
    let gauge = |table: &str, metric: &str, dimension: &str| {
        compactor
            .metrics()
            .quality_anomalies
            .get_or_create(&vec![
                ("table", table.to_string()),
                ("metric", metric.to_string()),
                ("dimension", dimension.to_string()),
            ])
            .get()
    };
    assert_eq!(gauge("engagement_events", "events", "ALL"), 1);
    assert_eq!(gauge("engagement_events", "users", "ALL"), 1);
    assert_eq!(gauge("engagement_events", "null_share", "country"), 1);
    assert_eq!(gauge("sessions", "sessions", "ALL"), 1);
    assert_eq!(gauge("engagement_events", "app_session_starts", "ALL"), 0);
    assert_eq!(gauge("sessions", "agreement_rate", "ALL"), 0);
    assert_eq!(gauge("dead_letters", "dead_letter_rate", "ALL"), 0);
    let mut text = String::new();
    let mut registry = prometheus_client::registry::Registry::default();
    compactor.metrics().register(&mut registry);
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains(
        "hourlake_quality_anomalies{table=\"engagement_events\",metric=\"events\",dimension=\"ALL\"} 1"
    ), "{text}");

    // A late event reopens the spike hour: it is recomputed, judged against the history
    // stored in quality_hourly, its rows replaced (not added). Its session window reaches
    // the sessions starting at 11:00 (within the gap of the hour), so the sessions of
    // hour 11 are rewritten too and sessions_hourly recomputes it: hour 11 follows, with
    // the same flags. Hour 12 (an hour past the gap) is left alone.
    let rows_before = figures_of(&lake, at(7, 10)).await.len();
    let mut late = eng(at(7, 10), "late-1", 5, "screen_view", "u1", 1_000_000);
    late["_ingested_at"] = json!(chrono::Utc::now().timestamp_micros());
    append_rows(&lake, TableId::EngagementEvents, &[late]).await;
    let again = compactor.run_pass().await.unwrap();
    let quality = again.quality.clone().unwrap_or_else(|| panic!("{again}"));
    assert_eq!(quality.hours, vec![at(7, 10), at(7, 11)], "{again}");
    let sessions = again.table(engagement).and_then(|t| t.sessions.clone());
    assert_eq!(sessions.unwrap().rolled_up, vec![at(7, 10), at(7, 11)]);
    let flags: Vec<(Hour, Metric)> = quality
        .anomalies
        .iter()
        .map(|a| (a.hour, a.metric))
        .collect();
    assert_eq!(
        flags,
        [
            (at(7, 10), Metric::Events),
            (at(7, 11), Metric::Users),
            (at(7, 11), Metric::Sessions)
        ],
        "{again}"
    );
    let figures = figures_of(&lake, at(7, 10)).await;
    assert_eq!(figures.len(), rows_before);
    let key = ("engagement_events".into(), "events".into(), "ALL".into());
    assert_eq!(figures[&key].1, Some(631));
    // Nothing changed: nothing recomputed.
    let idle = compactor.run_pass().await.unwrap();
    assert!(idle.quality.is_none(), "{idle}");
    compactor.release().await.unwrap();
}
