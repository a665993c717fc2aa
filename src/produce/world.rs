//! The simulated world: a population of app users (see `population.rs`) whose events
//! become messages, plus the transport's imperfections on top: late events, resends
//! and malformed messages. The same config yields the same messages, byte for byte.

use std::collections::VecDeque;

use hourlake_catalog::{EventKind, EventType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::behaviour::{Behaviour, MODELS};
use super::daily_cycle::DailyCycle;
use super::malformed::{self, MalformedKind};
use super::population::{Population, Sizing};
use super::profile::Releases;
use super::wire::{self, Render};

/// Knobs of the simulation.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    /// Population size: users with the app installed at any moment.
    pub users: u64,
    pub items: u64,
    pub seed: u64,
    /// Event time of the first event, microseconds since the epoch.
    pub start_micros: i64,
    /// Simulated time between two consecutive messages, microseconds (the mean over a
    /// day when `diurnal` > 0).
    pub step_micros: f64,
    /// Amplitude of the daily cycle of activity (0 = flat; 0.5 = the busiest hour has
    /// three times the events of the quietest).
    pub diurnal: f64,
    /// Fraction of sessions that end without `session_end` (the app was killed).
    pub killed_fraction: f64,
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

/// Highest accepted `diurnal` amplitude (the quietest hour keeps some activity).
pub const MAX_DIURNAL: f64 = 0.95;

/// The simulated world; call [`World::next_message`] for each message to send.
pub struct World {
    cfg: WorldConfig,
    rng: ChaCha8Rng,
    population: Population,
    releases: Releases,
    resends: VecDeque<(u64, Outgoing)>,
    emitted: u64,
    /// Event time of the latest event, µs since the epoch.
    now_micros: i64,
}

impl World {
    /// A world seeded from `cfg.seed`: the same config yields the same messages.
    pub fn new(cfg: WorldConfig) -> anyhow::Result<World> {
        for (name, f) in [
            ("late-fraction", cfg.late_fraction),
            ("duplicate-fraction", cfg.duplicate_fraction),
            ("bad-fraction", cfg.bad_fraction),
            ("killed-fraction", cfg.killed_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                anyhow::bail!("{name} must be between 0 and 1, got {f}");
            }
        }
        if !(0.0..=MAX_DIURNAL).contains(&cfg.diurnal) {
            anyhow::bail!(
                "diurnal must be between 0 and {MAX_DIURNAL}, got {}",
                cfg.diurnal
            );
        }
        if !(cfg.step_micros.is_finite() && cfg.step_micros > 0.0) {
            anyhow::bail!("the time between events must be positive");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let cycle = DailyCycle::new(cfg.diurnal, cfg.start_micros);
        let behaviour = Behaviour {
            killed_fraction: cfg.killed_fraction,
            ..Behaviour::default()
        };
        // resends are messages too: the population makes the rest
        let resends = cfg.duplicate_fraction * (1.0 - cfg.bad_fraction);
        let population = Population::new(
            cfg.users,
            cfg.items,
            cfg.step_micros * (1.0 + resends),
            cfg.start_micros,
            cycle,
            behaviour,
            &mut rng,
        )?;
        Ok(World {
            now_micros: cfg.start_micros,
            cfg,
            rng,
            population,
            releases: Releases::default(),
            resends: VecDeque::new(),
            emitted: 0,
        })
    }

    /// How the population was sized against the event rate.
    pub fn sizing(&self) -> Sizing {
        self.population.sizing
    }

    /// When the latest message happened (before any late shift), µs after the start:
    /// `--rate` sends each message at this much wall time after starting.
    pub fn elapsed_micros(&self) -> i64 {
        self.now_micros - self.cfg.start_micros
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
            return malformed::corrupt(good, kind, self.now_micros);
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

    /// The event of the user who is due, then that user moves on.
    fn next_event(&mut self) -> Outgoing {
        let (i, at) = self.population.due();
        self.now_micros = at;
        let late = self.cfg.late_fraction > 0.0 && self.rng.random_bool(self.cfg.late_fraction);
        let event_time = if late {
            at - self.rng.random_range(3_600_000_000i64..48 * 3_600_000_000)
        } else {
            at
        };
        let user = &self.population.users[i];
        let event_type = user.next.event_type();
        let (kind, key, payload) = wire::render(
            Render {
                user,
                funnel: self.population.funnel(i),
                model_version: MODELS[usize::from(user.profile.model) % MODELS.len()].version,
                at_micros: at,
                event_time_micros: event_time,
            },
            &mut self.releases,
            &mut self.rng,
        );
        self.population.advance(i, &mut self.rng, at);
        Outgoing {
            kind,
            key,
            payload,
            what: What::Event { event_type, late },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn config(seed: u64) -> WorldConfig {
        WorldConfig {
            users: 1000,
            items: 500,
            seed,
            start_micros: 1_795_355_100_000_000,
            step_micros: 500.0,
            diurnal: 0.0,
            killed_fraction: 0.05,
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

#[cfg(test)]
mod simulation_tests {
    //! Properties of long generated runs: users, sessions and recommendation funnels
    //! hold together, and the rates come out as configured.

    use std::collections::{HashMap, HashSet};
    use std::sync::LazyLock;

    use serde_json::Value;

    use super::*;

    /// One parsed event.
    struct Ev {
        t: String,
        ms: i64,
        v: Value,
    }

    impl Ev {
        fn s(&self, field: &str) -> &str {
            self.v[field].as_str().unwrap_or_default()
        }
    }

    fn millis(v: &Value) -> i64 {
        match &v["event_time"] {
            Value::Number(n) => n.as_i64().unwrap(),
            Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis(),
            other => panic!("event_time {other}"),
        }
    }

    struct Run {
        cfg: WorldConfig,
        events: Vec<Ev>,
        sizing: Sizing,
    }

    impl Run {
        fn new(cfg: WorldConfig, n: usize) -> Run {
            let mut w = World::new(cfg.clone()).unwrap();
            let events = (0..n)
                .map(|_| {
                    let m = w.next_message();
                    let v: Value = serde_json::from_slice(&m.payload).unwrap();
                    Ev {
                        t: v["event_type"].as_str().unwrap().to_string(),
                        ms: millis(&v),
                        v,
                    }
                })
                .collect();
            Run {
                cfg,
                events,
                sizing: w.sizing(),
            }
        }

        fn count(&self, t: &str) -> usize {
            self.events.iter().filter(|e| e.t == t).count()
        }

        /// Each user's events, in order.
        fn by_user(&self) -> HashMap<&str, Vec<&Ev>> {
            let mut users: HashMap<&str, Vec<&Ev>> = HashMap::new();
            for e in &self.events {
                users.entry(e.s("user_id")).or_default().push(e);
            }
            users
        }

        fn start_ms(&self) -> i64 {
            self.cfg.start_micros / 1000
        }
    }

    fn config(users: u64, step_micros: f64) -> WorldConfig {
        WorldConfig {
            users,
            items: 5000,
            seed: 3,
            start_micros: 1_795_355_100_000_000,
            step_micros,
            diurnal: 0.0,
            killed_fraction: 0.1,
            late_fraction: 0.0,
            duplicate_fraction: 0.0,
            bad_fraction: 0.0,
        }
    }

    /// 2 000 users at 20 events/s: about 2.8 hours, sessions every ~40 minutes.
    static REALISTIC: LazyLock<Run> = LazyLock::new(|| Run::new(config(2000, 50_000.0), 200_000));
    /// 40 users at 2 000 events/s: far too few, so behaviour time is compressed.
    static CROWDED: LazyLock<Run> = LazyLock::new(|| Run::new(config(40, 500.0), 30_000));
    /// A daily cycle of amplitude 0.5 over more than a day.
    static CYCLING: LazyLock<Run> = LazyLock::new(|| {
        let cfg = WorldConfig {
            diurnal: 0.5,
            ..config(2000, 900_000.0)
        };
        Run::new(cfg, 100_000)
    });

    /// Every session's events carry its id; `session_length_ms` is the span from its
    /// `session_start`; returns (sessions checked, sessions that began before the run).
    fn check_sessions(run: &Run) -> (usize, usize) {
        let (mut checked, mut before_run) = (0, 0);
        for (user, events) in run.by_user() {
            let mut open: Option<(&str, i64)> = None;
            for e in events {
                let session = e.s("session_id");
                match e.t.as_str() {
                    "session_start" => open = Some((session, e.ms)),
                    "session_end" => {
                        let length = e.v["session_length_ms"].as_i64().unwrap();
                        match open.take() {
                            Some((id, started)) => {
                                assert_eq!(id, session, "{user}: ends another session");
                                assert_eq!(length, e.ms - started, "{user} {session}");
                                checked += 1;
                            }
                            None => {
                                // still open when the run began: it began before it
                                assert!(e.ms - length <= run.start_ms(), "{user} {session}");
                                assert!(e.ms - run.start_ms() < 3_600_000, "{user} {session}");
                                before_run += 1;
                            }
                        }
                    }
                    "screen_view" | "click" | "search" | "purchase" => {
                        if let Some((id, _)) = open {
                            assert_eq!(id, session, "{user}: {} outside its session", e.t);
                        }
                    }
                    _ => {}
                }
            }
        }
        (checked, before_run)
    }

    /// Impressions and clicks refer to an item of a list served to the same user in the
    /// same request, an impression before its click; returns (impressions, clicks).
    fn check_funnels(run: &Run) -> (usize, usize) {
        struct Served<'a> {
            user: &'a str,
            model: &'a str,
            items: Vec<&'a str>,
            seen: HashSet<&'a str>,
        }
        let mut lists: HashMap<&str, Served> = HashMap::new();
        let (mut impressions, mut clicks) = (0, 0);
        for e in &run.events {
            let request = e.s("request_id");
            match e.t.as_str() {
                "rec_served" => {
                    let items: Vec<&str> = e.v["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .enumerate()
                        .map(|(i, item)| {
                            assert_eq!(item["rank"], i + 1);
                            item["item_id"].as_str().unwrap()
                        })
                        .collect();
                    assert_eq!(items.len(), 10);
                    let distinct: HashSet<&&str> = items.iter().collect();
                    assert_eq!(distinct.len(), 10, "{request}: repeated items");
                    let fresh = Served {
                        user: e.s("user_id"),
                        model: e.s("model_version"),
                        items,
                        seen: HashSet::new(),
                    };
                    assert!(
                        lists.insert(request, fresh).is_none(),
                        "{request} served twice"
                    );
                }
                "rec_impression" | "rec_click" => {
                    let Some(list) = lists.get_mut(request) else {
                        // a list served before the run began, looked at in its first minutes
                        assert!(e.ms - run.start_ms() < 600_000, "{request} never served");
                        continue;
                    };
                    let (item, rank) = (e.s("item_id"), e.v["rank"].as_u64().unwrap());
                    assert_eq!(list.user, e.s("user_id"), "{request}: another user");
                    assert_eq!(list.model, e.s("model_version"), "{request}");
                    assert_eq!(list.items[rank as usize - 1], item, "{request}: rank");
                    if e.t == "rec_impression" {
                        list.seen.insert(item);
                        impressions += 1;
                    } else {
                        assert!(
                            list.seen.contains(item),
                            "{request}: click before impression"
                        );
                        clicks += 1;
                    }
                }
                _ => {}
            }
        }
        (impressions, clicks)
    }

    #[test]
    fn sessions_end_as_often_as_they_start_minus_the_killed_ones() {
        let run = &*REALISTIC;
        let (starts, ends) = (run.count("session_start"), run.count("session_end"));
        let ratio = ends as f64 / starts as f64;
        // 1 − killed fraction (0.1), ± 0.03
        assert!((ratio - 0.9).abs() < 0.03, "{ends} ends / {starts} starts");
        assert!(starts > 5000, "{starts}");
    }

    #[test]
    fn every_session_length_is_the_span_of_its_session() {
        for run in [&*REALISTIC, &*CROWDED, &*CYCLING] {
            let (checked, before_run) = check_sessions(run);
            assert!(checked > 500, "only {checked} sessions checked");
            assert!(before_run > 0, "no user was mid-session at the start");
        }
    }

    #[test]
    fn recommendation_clicks_follow_impressions_of_the_served_list() {
        for run in [&*REALISTIC, &*CROWDED] {
            let (impressions, clicks) = check_funnels(run);
            assert!(impressions > 5000 && clicks > 200, "{impressions} {clicks}");
        }
    }

    #[test]
    fn click_through_depends_on_the_model_and_the_rank_as_configured() {
        let run = &*REALISTIC;
        let behaviour = Behaviour::default();
        let mut shown: HashMap<(&str, u64), (f64, f64)> = HashMap::new(); // (impressions, clicks)
        for e in &run.events {
            let key = (e.s("model_version"), e.v["rank"].as_u64().unwrap_or(0));
            match e.t.as_str() {
                "rec_impression" => shown.entry(key).or_default().0 += 1.0,
                "rec_click" => shown.entry(key).or_default().1 += 1.0,
                _ => {}
            }
        }
        let mut ctr = HashMap::new();
        for (m, model) in MODELS.iter().enumerate() {
            let (mut impressions, mut clicks, mut expected) = (0.0, 0.0, 0.0);
            for rank in 1..=6u8 {
                let (i, c) = shown
                    .get(&(model.version, u64::from(rank)))
                    .copied()
                    .unwrap_or_default();
                impressions += i;
                clicks += c;
                expected += i * behaviour.click_probability(m as u8, rank);
            }
            assert!(
                (clicks / expected - 1.0).abs() < 0.1,
                "{}: {clicks} clicks, {expected:.0} expected",
                model.version
            );
            ctr.insert(model.version, clicks / impressions);
        }
        // v8's lists are clicked 1.5 times as often
        let lift = ctr["ranker-v8"] / ctr["ranker-v7"];
        assert!((1.3..1.7).contains(&lift), "{ctr:?}");
        // rank 1 is clicked 3^0.8 ≈ 2.4 times as often as rank 3
        let at = |rank| {
            let (i, c) = MODELS
                .iter()
                .map(|m| shown[&(m.version, rank)])
                .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
            c / i
        };
        assert!(at(1) > 1.8 * at(3), "rank 1 {} vs rank 3 {}", at(1), at(3));
    }

    #[test]
    fn purchases_follow_list_clicks_and_carts_at_the_configured_rates() {
        let run = &*REALISTIC;
        let behaviour = Behaviour::default();
        let (mut rec_clicks, mut rec_buys, mut carts, mut cart_buys) = (0.0, 0.0, 0.0, 0.0);
        for events in run.by_user().values() {
            for (i, e) in events.iter().enumerate() {
                let next = |k: usize| events.get(i + k);
                if e.t == "rec_click" {
                    let Some(page) = next(1) else { continue };
                    assert_eq!((page.t.as_str(), page.s("screen")), ("screen_view", "item"));
                    let Some(then) = next(2) else { continue };
                    rec_clicks += 1.0;
                    if then.t == "purchase" {
                        assert_eq!(then.s("item_id"), e.s("item_id"), "buys the clicked item");
                        rec_buys += 1.0;
                    }
                } else if e.t == "screen_view" && e.s("screen") == "cart" {
                    let Some(then) = next(1) else { continue };
                    carts += 1.0;
                    cart_buys += f64::from(u8::from(then.t == "purchase"));
                }
                if e.t == "purchase" {
                    let amount = e.v["amount"].as_f64().unwrap();
                    assert!((4.0..=91.0).contains(&amount), "{amount}");
                }
            }
        }
        let rec_rate = rec_buys / rec_clicks;
        assert!(
            (rec_rate - behaviour.purchase_after_rec_click).abs() < 0.02,
            "{rec_buys} purchases after {rec_clicks} list clicks"
        );
        let cart_rate = cart_buys / carts;
        assert!(
            (cart_rate - behaviour.purchase_from_cart).abs() < 0.04,
            "{cart_buys} purchases after {carts} cart views"
        );
        let per_session = run.count("purchase") as f64 / run.count("session_start") as f64;
        assert!(
            (0.05..0.3).contains(&per_session),
            "{per_session} purchases a session"
        );
    }

    #[test]
    fn users_install_once_and_keep_their_device_country_and_app_version_order() {
        let version = |e: &Ev| -> Vec<u32> {
            e.v["device"]["app_version"]
                .as_str()
                .unwrap()
                .split('.')
                .map(|p| p.parse().unwrap())
                .collect()
        };
        for run in [&*REALISTIC, &*CROWDED] {
            let mut installs = 0;
            for (user, events) in run.by_user() {
                let app: Vec<&&Ev> = events.iter().filter(|e| !e.t.starts_with("rec_")).collect();
                let n = app.iter().filter(|e| e.t == "install").count();
                assert!(n <= 1, "{user} installed {n} times");
                if n == 1 {
                    assert_eq!(app[0].t, "install", "{user}: events before the install");
                    installs += 1;
                }
                for pair in app.windows(2) {
                    let (a, b) = (pair[0], pair[1]);
                    assert_eq!(a.v["device"]["type"], b.v["device"]["type"], "{user}");
                    assert_eq!(a.v["device"]["os"], b.v["device"]["os"], "{user}");
                    assert_eq!(a.v["country"], b.v["country"], "{user}");
                    assert!(version(a) <= version(b), "{user} downgraded");
                }
            }
            // a new user for each one who leaves (2 % of sessions)
            let expected = Behaviour::default().churn * run.count("session_start") as f64;
            let installs = f64::from(installs);
            assert!(
                installs > 0.5 * expected && installs < 2.0 * expected,
                "{installs} new users, {expected} expected"
            );
        }
    }

    #[test]
    fn sessions_are_paced_like_people_and_separated_by_inactivity() {
        let run = &*REALISTIC;
        assert_eq!(run.sizing.time_scale, 1.0, "{:?}", run.sizing);
        let (mut within, mut between, mut lengths) = (Vec::new(), Vec::new(), Vec::new());
        for events in run.by_user().values() {
            let mut ended: Option<i64> = None;
            for pair in events.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                if a.t == "session_end" {
                    ended = Some(a.ms);
                    lengths.push(a.v["session_length_ms"].as_i64().unwrap());
                } else if b.s("session_id") == a.s("session_id") && a.t != "install" {
                    within.push(b.ms - a.ms);
                }
                if let (Some(end), "session_start" | "notification_view" | "install") =
                    (ended, b.t.as_str())
                {
                    between.push(b.ms - end);
                    ended = None;
                }
            }
        }
        let median = |v: &mut Vec<i64>| {
            v.sort_unstable();
            v[v.len() / 2]
        };
        let think = median(&mut within);
        assert!(
            (500..10_000).contains(&think),
            "median think time {think} ms"
        );
        let session = median(&mut lengths);
        assert!(
            (30_000..600_000).contains(&session),
            "median session {session} ms"
        );
        let gap = median(&mut between);
        assert!(gap > 5 * 60_000, "median gap between sessions {gap} ms");
    }

    #[test]
    fn the_population_keeps_the_requested_event_rate() {
        for run in [&*REALISTIC, &*CROWDED, &*CYCLING] {
            let cycle = DailyCycle::new(run.cfg.diurnal, run.cfg.start_micros);
            let span = (run.events.last().unwrap().ms - run.start_ms()) as f64 * 1000.0;
            let target = run.events.len() as f64 * run.cfg.step_micros;
            let ratio = cycle.tau(span) / target;
            assert!((ratio - 1.0).abs() < 0.05, "{ratio}: {:?}", run.sizing);
        }
    }

    #[test]
    fn a_population_too_small_for_the_rate_runs_faster_but_stays_consistent() {
        // 40 users cannot make 2 000 events a second at human pace
        assert!(CROWDED.sizing.time_scale < 0.01, "{:?}", CROWDED.sizing);
        assert_eq!(REALISTIC.sizing.time_scale, 1.0, "{:?}", REALISTIC.sizing);
    }

    #[test]
    fn the_run_is_in_its_steady_state_from_the_first_second() {
        let run = &*REALISTIC;
        let fifth = run.events.len() / 5;
        let counts = |part: &[Ev], t: &str| part.iter().filter(|e| e.t == t).count() as f64;
        let (first, last) = (&run.events[..fifth], &run.events[4 * fifth..]);
        for t in [
            "session_start",
            "session_end",
            "rec_served",
            "purchase",
            "screen_view",
        ] {
            let (a, b) = (counts(first, t), counts(last, t));
            assert!(
                (a / b - 1.0).abs() < 0.15,
                "{t}: {a} in the first fifth, {b} in the last"
            );
        }
        // the first second already has users in sessions and between them
        let second: HashSet<&str> = run
            .events
            .iter()
            .take_while(|e| e.ms < run.start_ms() + 60_000)
            .map(|e| e.t.as_str())
            .collect();
        for t in [
            "session_start",
            "session_end",
            "screen_view",
            "rec_impression",
        ] {
            assert!(second.contains(t), "no {t} in the first minute: {second:?}");
        }
    }

    #[test]
    fn the_daily_cycle_shapes_the_event_rate_and_the_sessions() {
        let run = &*CYCLING;
        let day = run.start_ms() + 86_400_000;
        assert!(run.events.last().unwrap().ms > day, "the run covers a day");
        let (mut events, mut starts) = ([0.0; 24], [0.0; 24]);
        for e in run.events.iter().take_while(|e| e.ms < day) {
            let hour = ((e.ms / 3_600_000) % 24) as usize;
            events[hour] += 1.0;
            if e.t == "session_start" {
                starts[hour] += 1.0;
            }
        }
        // activity 1 + 0.5·cos(…), busiest at 19:00 UTC: the six hours around it have
        // 1.45 / 0.55 ≈ 2.6 times the events of the six around 07:00
        let busy_vs_quiet = |per_hour: &[f64; 24]| {
            per_hour[16..22].iter().sum::<f64>() / per_hour[4..10].iter().sum::<f64>()
        };
        let ratio = busy_vs_quiet(&events);
        assert!((2.2..3.1).contains(&ratio), "{ratio}: {events:?}");
        let ratio = busy_vs_quiet(&starts);
        assert!((2.0..3.3).contains(&ratio), "{ratio}: {starts:?}");
    }
}
