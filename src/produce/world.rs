//! A small simulated world of users, sessions and recommendation funnels that
//! produces realistic, reproducible event streams (see `docs/events.md`).
//!
//! Users and items are Zipf-distributed; each session is planned up front
//! (install on first sight, start, screen views with clicks and searches, a
//! recommendation served → impression → click funnel, maybe a purchase, end) and
//! many sessions are interleaved, so event times advance realistically.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, SecondsFormat, Utc};
use hourlake_catalog::{EventKind, EventType};
use rand::distr::Distribution;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{LogNormal, Zipf};
use serde::Serialize;

use super::malformed::{self, MalformedKind};

/// Knobs of the simulation.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    pub users: u64,
    pub items: u64,
    pub seed: u64,
    /// Event time of the first event, microseconds since the epoch.
    pub start_micros: i64,
    /// Simulated time between two consecutive events, microseconds.
    pub step_micros: f64,
    pub late_fraction: f64,
    pub duplicate_fraction: f64,
    pub bad_fraction: f64,
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub kind: EventKind,
    pub key: String,
    pub payload: Vec<u8>,
    pub what: What,
}

/// What a message is, for the final report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Event { event_type: EventType, late: bool },
    Duplicate { event_type: EventType },
    Malformed(MalformedKind),
}

const MODEL_VERSIONS: &[(&str, f64)] = &[("ranker-v7", 0.05), ("ranker-v8", 0.08)];
const SURFACES: &[(&str, u32)] = &[("home", 50), ("search", 20), ("item_page", 25), ("push", 5)];
const DEVICES: &[(&str, &[&str], u32)] = &[
    (
        "phone",
        &["android 15", "android 14", "ios 18", "ios 17"],
        70,
    ),
    ("tablet", &["ipados 18", "android 14"], 15),
    ("tv", &["tvos 18", "android tv 12"], 5),
    ("desktop", &["macos 15", "windows 11"], 10),
];
const APP_VERSIONS: &[(&str, u32)] = &[("5.3.0", 50), ("5.2.1", 30), ("5.1.0", 15), ("4.9.2", 5)];
const COUNTRIES: &[(&str, &str, u32)] = &[
    ("US", "USD", 30),
    ("IN", "INR", 15),
    ("BR", "BRL", 10),
    ("DE", "EUR", 8),
    ("GB", "GBP", 7),
    ("FR", "EUR", 6),
    ("JP", "JPY", 6),
    ("ID", "IDR", 6),
    ("MX", "MXN", 6),
    ("NG", "NGN", 6),
];
const SCREENS: &[&str] = &[
    "home", "feed", "item", "cart", "profile", "settings", "search",
];
const QUERIES: &[&str] = &[
    "running shoes",
    "headphones",
    "coffee",
    "yoga mat",
    "phone case",
    "backpack",
    "desk lamp",
    "water bottle",
    "sunglasses",
    "keyboard",
];

#[derive(Debug, Clone)]
struct Profile {
    device: usize,
    os: usize,
    app_version: usize,
    country: usize,
    model: usize,
}

#[derive(Debug, Clone)]
enum Step {
    Install,
    NotificationView(String),
    NotificationOpen(String),
    SessionStart,
    ScreenView(&'static str),
    Click(&'static str, u64),
    Search(&'static str),
    RecServed {
        request: String,
        surface: &'static str,
        items: Vec<u64>,
    },
    RecImpression {
        request: String,
        surface: &'static str,
        item: u64,
        rank: i32,
    },
    RecClick {
        request: String,
        surface: &'static str,
        item: u64,
        rank: i32,
    },
    Purchase {
        item: u64,
        amount: f64,
    },
    SessionEnd,
}

#[derive(Debug)]
struct Session {
    user: u64,
    session_id: String,
    started_micros: Option<i64>,
    steps: VecDeque<Step>,
}

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

/// The JSON wire form of every event (absent fields are left out).
#[derive(Serialize, Default)]
struct Wire<'a> {
    event_id: String,
    event_type: &'a str,
    event_time: Option<EventTime>,
    user_id: String,
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

/// The simulated world; call [`World::next_message`] for each message to send.
pub struct World {
    cfg: WorldConfig,
    rng: ChaCha8Rng,
    user_dist: Zipf<f64>,
    item_dist: Zipf<f64>,
    session_length: LogNormal<f64>,
    profiles: HashMap<u64, Profile>,
    installed: HashSet<u64>,
    sessions: Vec<Session>,
    pool_size: usize,
    resends: VecDeque<(u64, Outgoing)>,
    emitted: u64,
    serial: u64,
}

/// Sessions last ~3 minutes and hold ~12 events, so this many interleave.
fn pool_size_for(step_micros: f64) -> usize {
    let session_micros = 180e6;
    let events_per_session = 12.0;
    ((session_micros / (step_micros.max(1.0) * events_per_session)) as usize).clamp(1, 50_000)
}

fn weighted<T>(rng: &mut ChaCha8Rng, choices: &[T], weight: impl Fn(&T) -> u32) -> usize {
    let total: u32 = choices.iter().map(&weight).sum();
    let mut pick = rng.random_range(0..total.max(1));
    for (i, c) in choices.iter().enumerate() {
        let w = weight(c);
        if pick < w {
            return i;
        }
        pick -= w;
    }
    choices.len() - 1
}

impl World {
    /// A world seeded from `cfg.seed`: the same config yields the same messages.
    pub fn new(cfg: WorldConfig) -> anyhow::Result<World> {
        let users = cfg.users.max(1) as f64;
        let items = cfg.items.max(1) as f64;
        let user_dist = Zipf::new(users, 1.1).map_err(|e| anyhow::anyhow!("users: {e}"))?;
        let item_dist = Zipf::new(items, 1.2).map_err(|e| anyhow::anyhow!("items: {e}"))?;
        let session_length =
            LogNormal::new(0.0, 0.8).map_err(|e| anyhow::anyhow!("lognormal: {e}"))?;
        for (name, f) in [
            ("late-fraction", cfg.late_fraction),
            ("duplicate-fraction", cfg.duplicate_fraction),
            ("bad-fraction", cfg.bad_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                anyhow::bail!("{name} must be between 0 and 1, got {f}");
            }
        }
        Ok(World {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            pool_size: pool_size_for(cfg.step_micros),
            cfg,
            user_dist,
            item_dist,
            session_length,
            profiles: HashMap::new(),
            installed: HashSet::new(),
            sessions: Vec::new(),
            resends: VecDeque::new(),
            emitted: 0,
            serial: 0,
        })
    }

    fn now_micros(&self) -> i64 {
        self.cfg.start_micros + (self.emitted as f64 * self.cfg.step_micros) as i64
    }

    fn uuid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }

    fn short_id(&mut self, prefix: &str) -> String {
        self.serial += 1;
        format!(
            "{prefix}-{:x}-{:04x}",
            self.serial,
            self.rng.random::<u16>()
        )
    }

    fn pick_item(&mut self) -> u64 {
        self.item_dist.sample(&mut self.rng) as u64
    }

    fn profile(&mut self, user: u64) -> Profile {
        if let Some(p) = self.profiles.get(&user) {
            return p.clone();
        }
        let device = weighted(&mut self.rng, DEVICES, |d| d.2);
        let os = self.rng.random_range(0..DEVICES[device].1.len());
        let app_version = weighted(&mut self.rng, APP_VERSIONS, |a| a.1);
        let country = weighted(&mut self.rng, COUNTRIES, |c| c.2);
        let model = self.rng.random_range(0..MODEL_VERSIONS.len());
        let p = Profile {
            device,
            os,
            app_version,
            country,
            model,
        };
        self.profiles.insert(user, p.clone());
        p
    }

    /// Plans a whole session for a Zipf-chosen user.
    fn plan_session(&mut self) -> Session {
        let user = self.user_dist.sample(&mut self.rng) as u64;
        let profile = self.profile(user);
        let mut steps = VecDeque::new();
        if self.installed.insert(user) {
            steps.push_back(Step::Install);
        }
        if self.rng.random_bool(0.15) {
            let notification = self.short_id("n");
            steps.push_back(Step::NotificationView(notification.clone()));
            if self.rng.random_bool(0.3) {
                steps.push_back(Step::NotificationOpen(notification));
            }
        }
        steps.push_back(Step::SessionStart);
        // Session length is lognormal; more screens in longer sessions.
        let screens = (self.session_length.sample(&mut self.rng) * 4.0).ceil() as usize;
        for _ in 0..screens.clamp(1, 40) {
            let screen = SCREENS[self.rng.random_range(0..SCREENS.len())];
            steps.push_back(Step::ScreenView(screen));
            if self.rng.random_bool(0.3) {
                let item = self.pick_item();
                steps.push_back(Step::Click(screen, item));
            }
            if self.rng.random_bool(0.1) {
                steps.push_back(Step::Search(
                    QUERIES[self.rng.random_range(0..QUERIES.len())],
                ));
            }
        }
        if self.rng.random_bool(0.6) {
            let request = self.short_id("r");
            let surface = SURFACES[weighted(&mut self.rng, SURFACES, |s| s.1)].0;
            let mut items: Vec<u64> = Vec::with_capacity(10);
            while items.len() < 10 {
                let item = self.pick_item();
                if !items.contains(&item) || items.len() as u64 >= self.cfg.items {
                    items.push(item);
                }
            }
            steps.push_back(Step::RecServed {
                request: request.clone(),
                surface,
                items: items.clone(),
            });
            let shown = self.rng.random_range(3..=6);
            let ctr = MODEL_VERSIONS[profile.model].1;
            for (i, item) in items.iter().take(shown).enumerate() {
                let rank = i as i32 + 1;
                steps.push_back(Step::RecImpression {
                    request: request.clone(),
                    surface,
                    item: *item,
                    rank,
                });
                // Higher-ranked items are clicked more often.
                if self.rng.random_bool((ctr * 3.0 / f64::from(rank)).min(1.0)) {
                    steps.push_back(Step::RecClick {
                        request: request.clone(),
                        surface,
                        item: *item,
                        rank,
                    });
                }
            }
        }
        if self.rng.random_bool(0.04) {
            let item = self.pick_item();
            let amount = (self.session_length.sample(&mut self.rng) * 20.0 * 100.0).round() / 100.0;
            steps.push_back(Step::Purchase { item, amount });
        }
        steps.push_back(Step::SessionEnd);
        let session_id = self.short_id("s");
        Session {
            user,
            session_id,
            started_micros: None,
            steps,
        }
    }

    /// The next message to send, forever.
    pub fn next_message(&mut self) -> Outgoing {
        let out = self.next_inner();
        self.emitted += 1;
        out
    }

    fn next_inner(&mut self) -> Outgoing {
        if let Some((due, _)) = self.resends.front() {
            if *due <= self.emitted {
                if let Some((_, mut dup)) = self.resends.pop_front() {
                    if let What::Event { event_type, .. } = dup.what {
                        dup.what = What::Duplicate { event_type };
                    }
                    return dup;
                }
            }
        }
        if self.cfg.bad_fraction > 0.0 && self.rng.random_bool(self.cfg.bad_fraction) {
            let good = self.next_event();
            let kind = malformed::pick(&mut self.rng);
            return malformed::corrupt(good, kind, self.now_micros());
        }
        let event = self.next_event();
        if self.cfg.duplicate_fraction > 0.0 && self.rng.random_bool(self.cfg.duplicate_fraction) {
            let delay = self.rng.random_range(1..2_000);
            let at = self
                .resends
                .partition_point(|(due, _)| *due <= self.emitted + delay);
            self.resends
                .insert(at, (self.emitted + delay, event.clone()));
        }
        event
    }

    fn next_event(&mut self) -> Outgoing {
        while self.sessions.len() < self.pool_size {
            let s = self.plan_session();
            self.sessions.push(s);
        }
        let idx = self.rng.random_range(0..self.sessions.len());
        let now = self.now_micros();
        let step = match self.sessions[idx].steps.pop_front() {
            Some(step) => step,
            None => Step::SessionEnd,
        };
        let session = &mut self.sessions[idx];
        if matches!(step, Step::SessionStart) {
            session.started_micros = Some(now);
        }
        let user = session.user;
        let session_id = session.session_id.clone();
        let started = session.started_micros;
        if self.sessions[idx].steps.is_empty() {
            self.sessions.swap_remove(idx);
        }
        let late = self.cfg.late_fraction > 0.0 && self.rng.random_bool(self.cfg.late_fraction);
        let event_time = if late {
            now - self.rng.random_range(3_600_000_000i64..48 * 3_600_000_000)
        } else {
            now
        };
        self.render(user, &session_id, started, step, event_time, late)
    }

    #[allow(clippy::too_many_arguments)]
    fn render(
        &mut self,
        user: u64,
        session_id: &str,
        started: Option<i64>,
        step: Step,
        event_time: i64,
        late: bool,
    ) -> Outgoing {
        let p = self.profile(user);
        let (device_type, oses, _) = DEVICES[p.device];
        let (country, currency, _) = COUNTRIES[p.country];
        let model = MODEL_VERSIONS[p.model].0;
        let time = if self.rng.random_bool(0.5) {
            let dt = DateTime::<Utc>::from_timestamp_micros(event_time).unwrap_or_default();
            EventTime::Rfc3339(dt.to_rfc3339_opts(SecondsFormat::Millis, true))
        } else {
            EventTime::EpochMillis(event_time.div_euclid(1000))
        };
        let mut w = Wire {
            event_id: self.uuid(),
            event_time: Some(time),
            user_id: format!("u{user:07}"),
            ..Wire::default()
        };
        let event_type = match &step {
            Step::Install => EventType::Install,
            Step::NotificationView(_) => EventType::NotificationView,
            Step::NotificationOpen(_) => EventType::NotificationOpen,
            Step::SessionStart => EventType::SessionStart,
            Step::ScreenView(_) => EventType::ScreenView,
            Step::Click(..) => EventType::Click,
            Step::Search(_) => EventType::Search,
            Step::RecServed { .. } => EventType::RecServed,
            Step::RecImpression { .. } => EventType::RecImpression,
            Step::RecClick { .. } => EventType::RecClick,
            Step::Purchase { .. } => EventType::Purchase,
            Step::SessionEnd => EventType::SessionEnd,
        };
        w.event_type = event_type.as_str();
        if event_type.kind() == EventKind::Engagement {
            w.session_id = Some(session_id);
            w.device = Some(Device {
                kind: device_type,
                os: oses[p.os],
                app_version: APP_VERSIONS[p.app_version].0,
            });
            w.country = Some(country);
        } else {
            w.model_version = Some(model);
        }
        match &step {
            Step::Install => {
                w.properties = Some(
                    serde_json::json!({"referrer": if user.is_multiple_of(3) { "ads" } else { "organic" }}),
                );
            }
            Step::NotificationView(n) | Step::NotificationOpen(n) => w.notification_id = Some(n),
            Step::SessionStart => {}
            Step::ScreenView(s) => w.screen = Some(s),
            Step::Click(s, item) => {
                w.screen = Some(s);
                w.item_id = Some(format!("i{item:06}"));
            }
            Step::Search(q) => w.query = Some(q),
            Step::RecServed {
                request,
                surface,
                items,
            } => {
                w.request_id = Some(request);
                w.surface = Some(surface);
                w.items = Some(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| RecItem {
                            item_id: format!("i{item:06}"),
                            score: ((1.0 - i as f64 * 0.07) * 1000.0).round() / 1000.0,
                            rank: i as i32 + 1,
                        })
                        .collect(),
                );
            }
            Step::RecImpression {
                request,
                surface,
                item,
                rank,
            }
            | Step::RecClick {
                request,
                surface,
                item,
                rank,
            } => {
                w.request_id = Some(request);
                w.surface = Some(surface);
                w.item_id = Some(format!("i{item:06}"));
                w.rank = Some(*rank);
            }
            Step::Purchase { item, amount } => {
                w.item_id = Some(format!("i{item:06}"));
                w.amount = Some(*amount);
                w.currency = Some(currency);
            }
            Step::SessionEnd => {
                let start = started.unwrap_or(event_time);
                w.session_length_ms = Some(((event_time - start) / 1000).max(0));
            }
        }
        let payload = serde_json::to_vec(&w).unwrap_or_default();
        Outgoing {
            kind: event_type.kind(),
            key: w.user_id.clone(),
            payload,
            what: What::Event { event_type, late },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64) -> WorldConfig {
        WorldConfig {
            users: 1000,
            items: 500,
            seed,
            start_micros: 1_795_355_100_000_000,
            step_micros: 500.0,
            late_fraction: 0.05,
            duplicate_fraction: 0.02,
            bad_fraction: 0.02,
        }
    }

    #[test]
    fn same_seed_same_stream_and_different_seed_differs() {
        let take = |seed| {
            let mut w = World::new(config(seed)).unwrap();
            (0..5_000)
                .map(|_| w.next_message().payload)
                .collect::<Vec<_>>()
        };
        assert_eq!(take(7), take(7));
        assert_ne!(take(7), take(8));
    }

    #[test]
    fn every_event_type_appears_and_valid_events_parse() {
        let mut w = World::new(config(1)).unwrap();
        let mut seen = HashSet::new();
        let (mut late, mut dups, mut bad) = (0, 0, 0);
        for _ in 0..50_000 {
            let m = w.next_message();
            match m.what {
                What::Event {
                    event_type,
                    late: l,
                } => {
                    seen.insert(event_type);
                    late += usize::from(l);
                    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                    assert_eq!(v["event_type"], event_type.as_str());
                    assert_eq!(v["user_id"].as_str().unwrap(), m.key);
                    assert_eq!(m.kind, event_type.kind());
                }
                What::Duplicate { .. } => dups += 1,
                What::Malformed(_) => bad += 1,
            }
        }
        assert_eq!(seen.len(), EventType::ALL.len(), "{seen:?}");
        for (n, expected) in [
            (late, 0.05 * 48_000.0),
            (dups, 0.02 * 49_000.0),
            (bad, 0.02 * 50_000.0),
        ] {
            let n = n as f64;
            assert!(
                n > expected * 0.7 && n < expected * 1.3,
                "{n} vs {expected}"
            );
        }
    }
}
