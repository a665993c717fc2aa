//! The packed index answers what the endpoint always answered, keeps the newest lists by
//! count and age, and never shows a resent list twice.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, ListBuilder, RecordBatch, StringArray, StringBuilder,
    StructBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use hourlake_catalog::schema::{rec_item_fields, rec_items_element};

use super::*;

/// 2026-01-10T00:00:00Z.
const BASE: i64 = 1_768_003_200_000_000;
const MINUTE: i64 = 60_000_000;
const DAY: i64 = 1_440 * MINUTE;

/// `(item_id, score, rank)` of one served item.
type ItemRow = (&'static str, Option<f64>, Option<i32>);

/// One row of `recommendation_events` (the columns the index reads).
#[derive(Clone)]
struct Row {
    id: &'static str,
    kind: &'static str,
    user: &'static str,
    micros: i64,
    request: Option<&'static str>,
    model: Option<&'static str>,
    surface: Option<&'static str>,
    items: Option<Vec<ItemRow>>,
    item: Option<&'static str>,
}

fn served(id: &'static str, user: &'static str, micros: i64, request: Option<&'static str>) -> Row {
    Row {
        id,
        kind: "rec_served",
        user,
        micros,
        request,
        model: Some("ranker-v7"),
        surface: Some("home"),
        items: Some(vec![("i1", Some(0.9), Some(1)), ("i2", Some(0.5), Some(2))]),
        item: None,
    }
}

fn click(
    id: &'static str,
    user: &'static str,
    micros: i64,
    request: Option<&'static str>,
    item: &'static str,
) -> Row {
    Row {
        id,
        kind: "rec_click",
        user,
        micros,
        request,
        model: None,
        surface: None,
        items: None,
        item: Some(item),
    }
}

fn batch(rows: &[Row]) -> RecordBatch {
    let strings = |f: fn(&Row) -> Option<&'static str>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let mut items = ListBuilder::new(StructBuilder::from_fields(rec_item_fields(), 0))
        .with_field(rec_items_element());
    for row in rows {
        match &row.items {
            None => items.append(false),
            Some(list) => {
                let entries = items.values();
                for (item, score, rank) in list {
                    entries
                        .field_builder::<StringBuilder>(0)
                        .unwrap()
                        .append_value(item);
                    entries
                        .field_builder::<Float64Builder>(1)
                        .unwrap()
                        .append_option(*score);
                    entries
                        .field_builder::<Int32Builder>(2)
                        .unwrap()
                        .append_option(*rank);
                    entries.append(true);
                }
                items.append(true);
            }
        }
    }
    let items = Arc::new(items.finish());
    let times = TimestampMicrosecondArray::from(rows.iter().map(|r| r.micros).collect::<Vec<_>>())
        .with_timezone("UTC");
    let schema = Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("request_id", DataType::Utf8, true),
        Field::new("model_version", DataType::Utf8, true),
        Field::new("surface", DataType::Utf8, true),
        Field::new("items", items.data_type().clone(), true),
        Field::new("item_id", DataType::Utf8, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            strings(|r| Some(r.id)),
            strings(|r| Some(r.kind)),
            Arc::new(times),
            strings(|r| Some(r.user)),
            strings(|r| r.request),
            strings(|r| r.model),
            strings(|r| r.surface),
            items,
            strings(|r| r.item),
        ],
    )
    .unwrap()
}

fn index(lists_per_user: usize, max_age_days: Option<u64>) -> RecommendationIndex {
    RecommendationIndex::new(LookupConfig {
        lists_per_user,
        max_age: max_age_days.map(|d| Duration::from_secs(d * 86_400)),
    })
    .unwrap()
}

fn apply(index: &RecommendationIndex, rows: &[Row]) {
    index.apply(&batch(rows)).unwrap();
}

/// The requests of `user`'s lists as a lookup of up to 100 returns them.
fn requests(index: &RecommendationIndex, user: &str) -> Vec<Option<String>> {
    index
        .lookup(user, 100)
        .into_iter()
        .map(|s| s.request_id)
        .collect()
}

/// The body of `GET /v1/users/{user}/recommendations`, built as the endpoint builds it.
fn body(index: &RecommendationIndex, user: &str, limit: usize) -> String {
    serde_json::json!({
        "user_id": user,
        "recommendations": index.lookup(user, limit),
        "table_version": 7,
    })
    .to_string()
}

#[test]
fn lookups_answer_the_same_json_as_before() {
    let index = index(20, Some(30));
    let r1 = Row {
        items: Some(vec![
            ("i1", Some(0.9), Some(1)),
            ("i2", Some(0.5), Some(2)),
            ("i3", None, None),
        ]),
        ..served("r1", "alice", BASE + MINUTE, Some("req-1"))
    };
    let r2 = Row {
        model: None,
        surface: None,
        items: Some(vec![("i2", Some(0.25), Some(1))]),
        ..served("r2", "alice", BASE + 5 * MINUTE, Some("req-2"))
    };
    let r3 = Row {
        surface: Some("push"),
        items: Some(vec![("i1", None, None)]),
        ..served("r3", "alice", BASE + 3 * MINUTE, None)
    };
    // Out of order, over two batches; a click before the list it is on.
    apply(
        &index,
        &[
            click("c1", "alice", BASE + 2 * MINUTE, Some("req-1"), "i2"),
            r2,
            r1,
        ],
    );
    apply(
        &index,
        &[
            r3,
            // No request: counts for the item in every list.
            click("c2", "alice", BASE + 4 * MINUTE, None, "i1"),
            // Another request's click on i3: not a click on req-1's i3.
            click("c3", "alice", BASE + 4 * MINUTE, Some("req-9"), "i3"),
            // Another user's click on the same item and request.
            click("c4", "bob", BASE + 4 * MINUTE, Some("req-2"), "i2"),
        ],
    );
    let expected = concat!(
        r#"{"recommendations":["#,
        r#"{"items":[{"clicked":false,"item_id":"i2","rank":1,"score":0.25}],"#,
        r#""model_version":null,"request_id":"req-2","served_at":"2026-01-10T00:05:00.000Z","surface":null},"#,
        r#"{"items":[{"clicked":true,"item_id":"i1","rank":null,"score":null}],"#,
        r#""model_version":"ranker-v7","request_id":null,"served_at":"2026-01-10T00:03:00.000Z","surface":"push"},"#,
        r#"{"items":[{"clicked":true,"item_id":"i1","rank":1,"score":0.9},"#,
        r#"{"clicked":true,"item_id":"i2","rank":2,"score":0.5},"#,
        r#"{"clicked":false,"item_id":"i3","rank":null,"score":null}],"#,
        r#""model_version":"ranker-v7","request_id":"req-1","served_at":"2026-01-10T00:01:00.000Z","surface":"home"}"#,
        r#"],"table_version":7,"user_id":"alice"}"#,
    );
    assert_eq!(body(&index, "alice", 10), expected);
    // A limit takes the newest.
    let two = index.lookup("alice", 2);
    assert_eq!(two.len(), 2);
    assert_eq!(two[0].request_id.as_deref(), Some("req-2"));
    assert_eq!(two[1].request_id, None);
    // Bob has clicks only: no lists to show, and no other user's lists.
    assert_eq!(
        body(&index, "bob", 10),
        r#"{"recommendations":[],"table_version":7,"user_id":"bob"}"#
    );
    assert!(index.lookup("nobody", 10).is_empty());
    let size = index.size();
    assert_eq!((size.users, size.lists, size.clicks), (2, 3, 4));
}

#[test]
fn only_the_newest_lists_are_kept_and_resends_never_doubled() {
    let index = index(2, None);
    let at = |m: i64| BASE + m * MINUTE;
    apply(
        &index,
        &[
            served("a", "alice", at(1), Some("req-a")),
            served("b", "alice", at(2), Some("req-b")),
            served("a", "alice", at(1), Some("req-a")), // a resend in the same batch
        ],
    );
    assert_eq!(
        requests(&index, "alice"),
        [Some("req-b".into()), Some("req-a".into())]
    );
    // A newer list pushes out the oldest.
    apply(&index, &[served("c", "alice", at(3), Some("req-c"))]);
    assert_eq!(
        requests(&index, "alice"),
        [Some("req-c".into()), Some("req-b".into())]
    );
    // Resends of a kept list and of the list pushed out change nothing.
    apply(
        &index,
        &[
            served("b", "alice", at(2), Some("req-b")),
            served("a", "alice", at(1), Some("req-a")),
            served("c", "alice", at(3), Some("req-c")),
        ],
    );
    assert_eq!(
        requests(&index, "alice"),
        [Some("req-c".into()), Some("req-b".into())]
    );
    // A list as old as a kept one goes after it (the first one seen stays).
    apply(&index, &[served("b2", "alice", at(2), Some("req-b2"))]);
    assert_eq!(
        requests(&index, "alice"),
        [Some("req-c".into()), Some("req-b".into())]
    );
    assert_eq!(index.size().lists, 2);
}

#[test]
fn lists_and_clicks_older_than_the_max_age_go() {
    let index = index(20, Some(1));
    apply(
        &index,
        &[
            served("a0", "alice", BASE, Some("req-a0")),
            served("b0", "bob", BASE, Some("req-b0")),
            click("k0", "carol", BASE, None, "i1"),
        ],
    );
    assert_eq!(index.size().users, 3);
    // Two days later: alice's old list goes as she is touched, the others at the sweep.
    apply(
        &index,
        &[served("a2", "alice", BASE + 2 * DAY, Some("req-a2"))],
    );
    assert_eq!(requests(&index, "alice"), [Some("req-a2".into())]);
    assert_eq!(
        requests(&index, "bob"),
        [Some("req-b0".into())],
        "not swept yet"
    );
    index.sweep_if_due();
    assert!(index.lookup("bob", 10).is_empty());
    let size = index.size();
    assert_eq!(
        (size.users, size.lists, size.clicks),
        (1, 1, 0),
        "bob and carol are gone"
    );
    // A resend of the aged-out list, and an old click, are ignored; a list within the
    // day is kept.
    apply(
        &index,
        &[
            served("a0", "alice", BASE, Some("req-a0")),
            served("b0", "bob", BASE, Some("req-b0")),
            click("k1", "alice", BASE, None, "i1"),
            served(
                "a1",
                "alice",
                BASE + 2 * DAY - 12 * 60 * MINUTE,
                Some("req-a1"),
            ),
        ],
    );
    assert_eq!(
        requests(&index, "alice"),
        [Some("req-a2".into()), Some("req-a1".into())]
    );
    assert!(index.lookup("alice", 10)[1]
        .items
        .iter()
        .all(|i| !i.clicked));
    assert!(index.lookup("bob", 10).is_empty());
}

#[test]
fn without_a_max_age_old_lists_stay() {
    let index = index(20, None);
    apply(
        &index,
        &[
            served("a0", "alice", BASE - 400 * DAY, Some("req-a0")),
            served("b0", "bob", BASE - 400 * DAY, None),
            served("a1", "alice", BASE, Some("req-a1")),
        ],
    );
    index.sweep();
    assert_eq!(requests(&index, "alice").len(), 2);
    assert_eq!(requests(&index, "bob"), [None]);
}

#[test]
fn the_age_is_measured_from_the_newest_event_not_only_the_clock() {
    // A lake of last year's events: nothing is older than a day behind its newest event,
    // so nothing goes, although all of it is older than a day behind now.
    let index = index(20, Some(1));
    let old = BASE - 365 * DAY;
    apply(
        &index,
        &[
            served("a", "alice", old, Some("req-a")),
            served("b", "bob", old + MINUTE, Some("req-b")),
        ],
    );
    index.sweep();
    assert_eq!(index.size().lists, 2);
    // One event stamped far ahead of now does not age out recent ones.
    let index = index_with_age_days(1);
    let now = now_micros();
    apply(
        &index,
        &[
            served("a", "alice", now - 60 * MINUTE, Some("req-a")),
            served("z", "zed", now + 365 * DAY, Some("req-z")),
        ],
    );
    index.sweep();
    assert_eq!(index.size().lists, 2);
    // While an hour more than the day behind now goes.
    apply(
        &index,
        &[served("b", "bob", now - DAY - 60 * MINUTE, Some("req-b"))],
    );
    index.sweep();
    assert_eq!(index.size().lists, 2);
    assert!(index.lookup("bob", 10).is_empty());
}

fn index_with_age_days(days: u64) -> RecommendationIndex {
    index(20, Some(days))
}

#[test]
fn users_with_the_same_items_share_their_strings() {
    let index = index(20, None);
    apply(
        &index,
        &[
            served("a", "alice", BASE, Some("req-a")),
            served("b", "bob", BASE, Some("req-b")),
            click("c", "bob", BASE, Some("req-b"), "i2"),
        ],
    );
    // i1, i2, ranker-v7, home: each once, whoever holds them.
    assert_eq!(index.size().strings, 4);
    assert_eq!(index.size().users, 2);
    assert!(index.lookup("bob", 1)[0].items[1].clicked);
    assert!(!index.lookup("alice", 1)[0].items[1].clicked);
}

#[test]
fn the_settings_reach_the_index() {
    assert!(RecommendationIndex::new(LookupConfig {
        lists_per_user: 0,
        max_age: None
    })
    .is_err());
    assert!(RecommendationIndex::new(LookupConfig {
        lists_per_user: 1,
        max_age: Some(Duration::ZERO)
    })
    .is_err());
    let default = RecommendationIndex::new(LookupConfig::default()).unwrap();
    assert_eq!(default.lists_per_user(), 20);
    let one = index(1, None);
    assert_eq!(one.lists_per_user(), 1);
    apply(
        &one,
        &[
            served("a", "alice", BASE, Some("req-a")),
            served("b", "alice", BASE + MINUTE, Some("req-b")),
        ],
    );
    assert_eq!(requests(&one, "alice"), [Some("req-b".into())]);
}

#[test]
fn the_size_gauges_follow_each_apply() {
    let index = index(20, None);
    let mut registry = Registry::default();
    index.register_metrics(&mut registry);
    apply(
        &index,
        &[
            served("a", "alice", BASE, Some("req-a")),
            click("c", "bob", BASE, None, "i9"),
        ],
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "hourlake_query_lookup_index_users 2",
        "hourlake_query_lookup_index_lists 1",
        "hourlake_query_lookup_index_clicks 1",
        "hourlake_query_lookup_index_strings 5",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}:\n{text}");
    }
    let bytes = index.size().bytes;
    assert!(bytes > 0);
    assert!(
        text.lines()
            .any(|l| l == format!("hourlake_query_lookup_index_bytes {bytes}")),
        "{text}"
    );
}
