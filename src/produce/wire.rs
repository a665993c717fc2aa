//! The JSON wire form of a user's event (see `docs/events.md`).

use chrono::{DateTime, SecondsFormat, Utc};
use hourlake_catalog::EventKind;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::behaviour::{QUERIES, SCREENS, SURFACES};
use super::population::{Act, Funnel, User};
use super::profile::Releases;

#[derive(Serialize)]
struct Device<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    os: &'a str,
    app_version: &'a str,
}

#[derive(Serialize)]
struct RecItem {
    item_id: String,
    score: f64,
    rank: i32,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EventTime {
    Rfc3339(String),
    EpochMillis(i64),
}

/// Every event's fields (absent ones are left out).
#[derive(Serialize, Default)]
struct Wire<'a> {
    event_id: String,
    event_type: &'a str,
    event_time: Option<EventTime>,
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<Device<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    screen: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_length_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    surface: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<Vec<RecItem>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rank: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<serde_json::Value>,
}

/// What to render: the user's pending event, when it happened and when it is stamped.
pub struct Render<'a> {
    pub user: &'a User,
    pub funnel: Option<&'a Funnel>,
    pub model_version: &'a str,
    /// When it happened, µs (session lengths are measured with it).
    pub at_micros: i64,
    /// The `event_time` written (earlier than `at_micros` for a late event).
    pub event_time_micros: i64,
}

/// `item_id` of an item number.
fn item_id(item: u32) -> String {
    format!("i{item:06}")
}

/// A stable price for an item: 4.50 to 90.00, most of them cheap.
fn price(item: u32) -> f64 {
    let h = u64::from(item).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    let u = h as f64 / (1u64 << 53) as f64;
    ((1.5 + 3.0 * u * u).exp() * 100.0).round() / 100.0
}

/// Renders the event; returns its kind and the key (`user_id`) with the JSON payload.
pub fn render(
    r: Render<'_>,
    releases: &mut Releases,
    rng: &mut ChaCha8Rng,
) -> (EventKind, String, Vec<u8>) {
    let u = r.user;
    let act = u.next;
    let event_type = act.event_type();
    let user_id = format!("u{:07}", u.number);
    let time = if rng.random_bool(0.5) {
        let dt = DateTime::<Utc>::from_timestamp_micros(r.event_time_micros).unwrap_or_default();
        EventTime::Rfc3339(dt.to_rfc3339_opts(SecondsFormat::Millis, true))
    } else {
        EventTime::EpochMillis(r.event_time_micros.div_euclid(1000))
    };
    let session_id;
    let request_id;
    let notification_id;
    let mut w = Wire {
        event_id: uuid::Builder::from_random_bytes(rng.random())
            .into_uuid()
            .to_string(),
        event_type: event_type.as_str(),
        event_time: Some(time),
        user_id: &user_id,
        ..Wire::default()
    };
    let p = &u.profile;
    if event_type.kind() == EventKind::Engagement {
        session_id = format!("s-{:012x}", u.session >> 16);
        w.session_id = Some(&session_id);
        w.device = Some(Device {
            kind: p.device_type(),
            os: p.os(),
            app_version: releases.name(p.release),
        });
        w.country = Some(p.country());
    } else {
        w.model_version = Some(r.model_version);
    }
    match act {
        Act::Install => {
            let referrer = if u.number.is_multiple_of(3) {
                "ads"
            } else {
                "organic"
            };
            w.properties = Some(serde_json::json!({ "referrer": referrer }));
        }
        Act::NotificationView | Act::NotificationOpen => {
            notification_id = format!("n-{:012x}", u.session & 0xffff_ffff_ffff);
            w.notification_id = Some(&notification_id);
        }
        Act::SessionStart => {}
        Act::ScreenView => w.screen = Some(SCREENS[usize::from(u.screen)]),
        Act::Click => {
            w.screen = Some(SCREENS[usize::from(u.screen)]);
            w.item_id = Some(item_id(u.item));
        }
        Act::Search => w.query = Some(QUERIES[usize::from(u.query)]),
        Act::Purchase => {
            w.item_id = Some(item_id(u.item));
            w.amount = Some(price(u.item));
            w.currency = Some(p.currency());
        }
        Act::SessionEnd => {
            let length = r.at_micros.div_euclid(1000) - u.session_started.div_euclid(1000);
            w.session_length_ms = Some(length.max(0));
        }
        Act::RecServed | Act::RecImpression | Act::RecClick => {
            if let Some(f) = r.funnel {
                request_id = format!("r-{:012x}", f.request >> 16);
                w.request_id = Some(&request_id);
                w.surface = Some(SURFACES[usize::from(f.surface)]);
                if act == Act::RecServed {
                    w.items = Some(
                        f.items
                            .iter()
                            .zip(1..)
                            .map(|(item, rank)| RecItem {
                                item_id: item_id(*item),
                                score: ((1.0 - f64::from(rank - 1) * 0.07) * 1000.0).round()
                                    / 1000.0,
                                rank,
                            })
                            .collect(),
                    );
                } else {
                    let rank = f.rank.max(1);
                    w.item_id = Some(item_id(f.items[usize::from(rank - 1)]));
                    w.rank = Some(i32::from(rank));
                }
            }
        }
    }
    let payload = serde_json::to_vec(&w).unwrap_or_default();
    (event_type.kind(), user_id, payload)
}
