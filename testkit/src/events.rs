//! Generated lake data: engagement and recommendation events shaped like the
//! generator's (`hourlake produce`), built straight into Arrow batches of the tables'
//! schemas — deterministic, so runs compare.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, Float64Builder, Int32Array, Int32Builder, Int64Array,
    ListBuilder, RecordBatch, StringArray, StringBuilder, StructBuilder, TimestampMicrosecondArray,
};
use hourlake_catalog::partition::{date_and_hour, hour_start_micros};
use hourlake_catalog::{schema, TableId};

/// A deterministic pseudo-random number for index `i` of the stream `seed`.
pub fn mix(seed: u64, i: u64) -> u64 {
    let mut x = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
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

const DAY_MICROS: u64 = 86_400_000_000;

/// The days events happen in: `days` days from the start of `first_day`.
struct Days {
    start: i64,
    span: u64,
}

impl Days {
    fn new(first_day: i32, days: u32) -> Days {
        Days {
            start: hour_start_micros(first_day, 0),
            span: u64::from(days.max(1)) * DAY_MICROS,
        }
    }

    /// A moment of the days picked by the random number `r`.
    fn moment(&self, r: u64) -> i64 {
        self.start + ((r >> 8) % self.span) as i64
    }
}

/// One of a million users, skewed: low ids are more active.
fn skewed_user(i: u64, a: u64, b: u64) -> u64 {
    (mix(0, i ^ a) % 1_000_000) * (mix(0, i ^ b) % 1_000_000) / 1_000_000
}

fn utc(micros: Vec<i64>) -> TimestampMicrosecondArray {
    TimestampMicrosecondArray::from(micros).with_timezone("UTC")
}

/// The columns every event table shares: the event's identity at the front; where the
/// message was in Kafka, when it was ingested, and its hour partition at the back.
struct Common {
    ids: Vec<String>,
    types: Vec<&'static str>,
    times: Vec<i64>,
    users: Vec<String>,
    topic: &'static str,
    offsets: Vec<i64>,
    ingested: Vec<i64>,
    dates: Vec<i32>,
    hours: Vec<i32>,
}

impl Common {
    fn new(topic: &'static str) -> Common {
        Common {
            ids: Vec::new(),
            types: Vec::new(),
            times: Vec::new(),
            users: Vec::new(),
            topic,
            offsets: Vec::new(),
            ingested: Vec::new(),
            dates: Vec::new(),
            hours: Vec::new(),
        }
    }

    /// One event `id` of `event_type` at `micros` by user `user`, read at `offset` and
    /// ingested at `ingested_micros`.
    fn push(
        &mut self,
        (id, event_type, micros, user): (String, &'static str, i64, u64),
        offset: i64,
        ingested_micros: i64,
    ) {
        let (date, hour) = date_and_hour(micros);
        self.ids.push(id);
        self.types.push(event_type);
        self.times.push(micros);
        self.users.push(format!("user-{user}"));
        self.offsets.push(offset);
        self.ingested.push(ingested_micros);
        self.dates.push(date);
        self.hours.push(hour);
    }

    /// A batch of `table`: the shared columns around the table's own (`middle`), with
    /// `properties` all null.
    fn batch(self, table: TableId, middle: Vec<ArrayRef>) -> RecordBatch {
        let n = self.offsets.len();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.ids)),
            Arc::new(StringArray::from(self.types)),
            Arc::new(utc(self.times)),
            Arc::new(StringArray::from(self.users)),
        ];
        columns.extend(middle);
        columns.extend([
            Arc::new(StringArray::from(vec![None::<&str>; n])) as ArrayRef,
            Arc::new(StringArray::from(vec![self.topic; n])),
            Arc::new(Int32Array::from(vec![0; n])),
            Arc::new(Int64Array::from(self.offsets)),
            Arc::new(utc(self.ingested)),
            Arc::new(Date32Array::from(self.dates)),
            Arc::new(Int32Array::from(self.hours)),
        ]);
        RecordBatch::try_new(table.schema(), columns)
            .unwrap_or_else(|e| panic!("a batch of {table}: {e}"))
    }
}

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
            let resent = mix(0, i ^ 0x77).is_multiple_of(50);
            std::iter::once((i, i)).chain(resent.then_some((i, resend_base + i)))
        })
        .collect();
    let n = indexes.len();
    let when = Days::new(first_day, days);
    let mut common = Common::new("app-events");
    let mut sessions = Vec::with_capacity(n);
    let mut devices = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut countries = Vec::with_capacity(n);
    let mut lengths = Vec::with_capacity(n);
    let mut amounts = Vec::with_capacity(n);
    let mut currencies = Vec::with_capacity(n);
    for &(i, offset) in &indexes {
        let r = mix(0, i);
        let t = TYPES[(r % TYPES.len() as u64) as usize];
        let micros = when.moment(r);
        let user = skewed_user(i, 0xabc, 0xdef);
        sessions.push(format!("s-{user}-{}", (r >> 20) % 8));
        devices.push(DEVICES[(r >> 24) as usize % DEVICES.len()]);
        versions.push(VERSIONS[(r >> 28) as usize % VERSIONS.len()]);
        countries.push(COUNTRIES[(r >> 32) as usize % COUNTRIES.len()]);
        lengths.push((t == "session_end").then_some(((r >> 36) % 1_800_000) as i64));
        amounts.push((t == "purchase").then_some(((r >> 40) % 20_000) as f64 / 100.0));
        currencies.push((t == "purchase").then_some("USD"));
        // Ingested a day after the first day, in offset order.
        let ingested = when.start + (DAY_MICROS + offset) as i64;
        let event = (format!("{r:016x}-{i}"), t, micros, user);
        common.push(event, offset as i64, ingested);
    }
    let nulls = || Arc::new(StringArray::from(vec![None::<&str>; n])) as ArrayRef;
    let middle: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(sessions)),
        Arc::new(StringArray::from(devices)),
        nulls(),
        Arc::new(StringArray::from(versions)),
        Arc::new(StringArray::from(countries)),
        nulls(),
        nulls(),
        nulls(),
        Arc::new(Int64Array::from(lengths)),
        Arc::new(Float64Array::from(amounts)),
        Arc::new(StringArray::from(currencies)),
        nulls(),
    ];
    common.batch(TableId::EngagementEvents, middle)
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
    let when = Days::new(first_day, days);
    let mut common = Common::new("rec-events");
    let (mut requests, mut models, mut surfaces) = (Vec::new(), Vec::new(), Vec::new());
    let (mut item_ids, mut ranks) = (Vec::new(), Vec::new());
    let mut items = ListBuilder::new(StructBuilder::from_fields(schema::rec_item_fields(), 0))
        .with_field(schema::rec_items_element());
    for i in from..to {
        let r = mix(0, i ^ 0x5eed);
        let t = REC_TYPES[(r % REC_TYPES.len() as u64) as usize];
        let micros = when.moment(r);
        requests.push(format!("req-{}", i / 4));
        models.push(MODELS[(r >> 20) as usize % MODELS.len()]);
        surfaces.push(SURFACES[(r >> 24) as usize % SURFACES.len()]);
        if t == "rec_served" {
            let list = items.values();
            for k in 0..5 {
                list.field_builder::<StringBuilder>(0)
                    .expect("item_id")
                    .append_value(format!("item-{}", mix(0, r + k) % 20_000));
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
            item_ids.push(Some(format!("item-{}", mix(0, r) % 20_000)));
            ranks.push(Some((r % 5) as i32 + 1));
        }
        // Ingested after the last day, in offset order.
        let ingested = when.start + (when.span + i) as i64;
        let event = (format!("rec-{i}"), t, micros, skewed_user(i, 0x123, 0x456));
        common.push(event, i as i64, ingested);
    }
    let middle: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(requests)),
        Arc::new(StringArray::from(models)),
        Arc::new(StringArray::from(surfaces)),
        Arc::new(items.finish()),
        Arc::new(StringArray::from(item_ids)),
        Arc::new(Int32Array::from(ranks)),
    ];
    common.batch(TableId::RecommendationEvents, middle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fit_their_tables_and_repeat_themselves() {
        let day = 20_400;
        let a = engagement_batch(day, 2, 0, 500, 1_000_000);
        assert!(a.num_rows() > 500, "some events are resent");
        assert_eq!(a, engagement_batch(day, 2, 0, 500, 1_000_000));
        let dates = a.column_by_name("event_date").expect("event_date");
        let dates = dates.as_any().downcast_ref::<Date32Array>().expect("dates");
        assert!(dates.values().iter().all(|d| (day..day + 2).contains(d)));
        let r = recommendation_batch(day, 1, 0, 200);
        assert_eq!(r.num_rows(), 200);
        assert_eq!(r.schema(), TableId::RecommendationEvents.schema());
    }
}
