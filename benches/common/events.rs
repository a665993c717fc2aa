//! Generated lake data for the benchmarks: engagement and recommendation events shaped
//! like the generator's (`hourlake produce`), built straight into Arrow batches.
#![allow(dead_code)] // each bench uses part of it

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, Float64Builder, Int32Array, Int32Builder, Int64Array,
    ListBuilder, RecordBatch, StringArray, StringBuilder, StructBuilder, TimestampMicrosecondArray,
};
use hourlake_catalog::{Hour, TableId};

/// A setting from the environment, or its default.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A deterministic pseudo-random number for index `i`.
pub fn mix(i: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

const TYPES: &[&str] = &[
    "screen_view",
    "screen_view",
    "screen_view",
    "click",
    "click",
    "session_start",
    "session_end",
    "search",
    "notification_view",
    "notification_open",
    "purchase",
    "install",
];
const DEVICES: &[&str] = &["ios", "android", "web"];
const VERSIONS: &[&str] = &["3.1.0", "3.2.0", "3.2.1", "4.0.0"];
const COUNTRIES: &[&str] = &["US", "DE", "IN", "BR", "JP", "GB", "FR", "MX"];

/// Engagement rows `from..to`: event i happens at a pseudo-random moment of the `days`
/// days starting at `first_day`, by one of a million users (skewed: low ids are more
/// active). 2 % of the events are sent twice (a producer's resend: same event, another
/// offset `resend_base + i`).
pub fn engagement_batch(
    first_day: i32,
    days: u32,
    from: u64,
    to: u64,
    resend_base: u64,
) -> RecordBatch {
    let indexes: Vec<(u64, u64)> = (from..to)
        .flat_map(|i| {
            let resent = mix(i ^ 0x77).is_multiple_of(50);
            std::iter::once((i, i)).chain(resent.then_some((i, resend_base + i)))
        })
        .collect();
    let n = indexes.len();
    let day_start = Hour {
        date: first_day,
        hour: 0,
    }
    .start_micros();
    let span = u64::from(days.max(1)) * 86_400_000_000;
    let mut ids = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut users = Vec::with_capacity(n);
    let mut sessions = Vec::with_capacity(n);
    let mut devices = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut countries = Vec::with_capacity(n);
    let mut lengths = Vec::with_capacity(n);
    let mut amounts = Vec::with_capacity(n);
    let mut currencies = Vec::with_capacity(n);
    let mut offsets = Vec::with_capacity(n);
    let mut dates = Vec::with_capacity(n);
    let mut hours = Vec::with_capacity(n);
    for &(i, offset) in &indexes {
        let r = mix(i);
        let t = TYPES[(r % TYPES.len() as u64) as usize];
        let micros = day_start + ((r >> 8) % span) as i64;
        let user = (mix(i ^ 0xabc) % 1_000_000) * (mix(i ^ 0xdef) % 1_000_000) / 1_000_000;
        ids.push(format!("{:016x}-{i}", r));
        types.push(t);
        times.push(micros);
        users.push(format!("user-{user}"));
        sessions.push(format!("s-{user}-{}", (r >> 20) % 8));
        devices.push(DEVICES[(r >> 24) as usize % DEVICES.len()]);
        versions.push(VERSIONS[(r >> 28) as usize % VERSIONS.len()]);
        countries.push(COUNTRIES[(r >> 32) as usize % COUNTRIES.len()]);
        lengths.push((t == "session_end").then_some(((r >> 36) % 1_800_000) as i64));
        amounts.push((t == "purchase").then_some(((r >> 40) % 20_000) as f64 / 100.0));
        currencies.push((t == "purchase").then_some("USD"));
        offsets.push(offset as i64);
        let hour = Hour::of_micros(micros);
        dates.push(hour.date);
        hours.push(hour.hour);
    }
    let nulls = || StringArray::from(vec![None::<&str>; n]);
    let ts = |v: Vec<i64>| TimestampMicrosecondArray::from(v).with_timezone("UTC");
    let ingested = ts(offsets
        .iter()
        .map(|o| day_start + 86_400_000_000 + o)
        .collect());
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(StringArray::from(types)),
        Arc::new(ts(times)),
        Arc::new(StringArray::from(users)),
        Arc::new(StringArray::from(sessions)),
        Arc::new(StringArray::from(devices)),
        Arc::new(nulls()),
        Arc::new(StringArray::from(versions)),
        Arc::new(StringArray::from(countries)),
        Arc::new(nulls()),
        Arc::new(nulls()),
        Arc::new(nulls()),
        Arc::new(Int64Array::from(lengths)),
        Arc::new(Float64Array::from(amounts)),
        Arc::new(StringArray::from(currencies)),
        Arc::new(nulls()),
        Arc::new(nulls()),
        Arc::new(StringArray::from(vec!["app-events"; n])),
        Arc::new(Int32Array::from(vec![0; n])),
        Arc::new(Int64Array::from(offsets)),
        Arc::new(ingested),
        Arc::new(Date32Array::from(dates)),
        Arc::new(Int32Array::from(hours)),
    ];
    RecordBatch::try_new(TableId::EngagementEvents.schema(), columns).expect("batch")
}

const MODELS: &[&str] = &["ranker-v7", "ranker-v8"];
const SURFACES: &[&str] = &["home", "search", "item_page", "push"];
const REC_TYPES: &[&str] = &[
    "rec_served",
    "rec_impression",
    "rec_impression",
    "rec_impression",
    "rec_click",
];

/// Recommendation rows `from..to` over the same span and users as [`engagement_batch`].
pub fn recommendation_batch(first_day: i32, days: u32, from: u64, to: u64) -> RecordBatch {
    let n = (to - from) as usize;
    let day_start = Hour {
        date: first_day,
        hour: 0,
    }
    .start_micros();
    let span = u64::from(days.max(1)) * 86_400_000_000;
    let (mut ids, mut types, mut times, mut users) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut requests, mut models, mut surfaces, mut item_ids) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ranks, mut offsets, mut dates, mut hours) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut items = ListBuilder::new(StructBuilder::from_fields(
        hourlake_catalog::schema::rec_item_fields(),
        0,
    ))
    .with_field(hourlake_catalog::schema::rec_items_element());
    for i in from..to {
        let r = mix(i ^ 0x5eed);
        let t = REC_TYPES[(r % REC_TYPES.len() as u64) as usize];
        let micros = day_start + ((r >> 8) % span) as i64;
        let user = (mix(i ^ 0x123) % 1_000_000) * (mix(i ^ 0x456) % 1_000_000) / 1_000_000;
        ids.push(format!("rec-{i}"));
        types.push(t);
        times.push(micros);
        users.push(format!("user-{user}"));
        requests.push(format!("req-{}", i / 4));
        models.push(MODELS[(r >> 20) as usize % MODELS.len()]);
        surfaces.push(SURFACES[(r >> 24) as usize % SURFACES.len()]);
        if t == "rec_served" {
            let list = items.values();
            for k in 0..5 {
                list.field_builder::<StringBuilder>(0)
                    .expect("item_id")
                    .append_value(format!("item-{}", mix(r + k) % 20_000));
                list.field_builder::<Float64Builder>(1)
                    .expect("score")
                    .append_value(1.0 / (k as f64 + 1.0));
                list.field_builder::<Int32Builder>(2)
                    .expect("rank")
                    .append_value(k as i32 + 1);
                list.append(true);
            }
            items.append(true);
            item_ids.push(None);
            ranks.push(None);
        } else {
            items.append(false);
            item_ids.push(Some(format!("item-{}", mix(r) % 20_000)));
            ranks.push(Some((r % 5) as i32 + 1));
        }
        offsets.push(i as i64);
        let hour = Hour::of_micros(micros);
        dates.push(hour.date);
        hours.push(hour.hour);
    }
    let ts = |v: Vec<i64>| TimestampMicrosecondArray::from(v).with_timezone("UTC");
    let ingested = ts(offsets
        .iter()
        .map(|o| day_start + span as i64 + o)
        .collect());
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(StringArray::from(types)),
        Arc::new(ts(times)),
        Arc::new(StringArray::from(users)),
        Arc::new(StringArray::from(requests)),
        Arc::new(StringArray::from(models)),
        Arc::new(StringArray::from(surfaces)),
        Arc::new(items.finish()),
        Arc::new(StringArray::from(item_ids)),
        Arc::new(Int32Array::from(ranks)),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
        Arc::new(StringArray::from(vec!["rec-events"; n])),
        Arc::new(Int32Array::from(vec![0; n])),
        Arc::new(Int64Array::from(offsets)),
        Arc::new(ingested),
        Arc::new(Date32Array::from(dates)),
        Arc::new(Int32Array::from(hours)),
    ];
    RecordBatch::try_new(TableId::RecommendationEvents.schema(), columns).expect("rec batch")
}
