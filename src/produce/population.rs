//! The simulated population: every user's state, the schedule of who acts next, and the
//! session walk that decides, after each event of a user, what that user does next and
//! after how long.
//!
//! A user's life: installs once, then sessions separated by inactivity gaps (exponential
//! on the activity clock, mean set by the user's activity level). A session may open
//! with a push notification (viewed, maybe opened), then `session_start`, a walk over
//! screens (clicks in the feed, searches, recommendation lists with impressions and
//! rank-dependent clicks, purchases), and `session_end`, unless the app is killed.
//!
//! Every user has one scheduled next event; the earliest is emitted next, at exactly its
//! scheduled time, so each user's think times and session spans are what the walk chose.
//! The event rate (`--rate`/`--sim-rate`, one event per `step` of the activity clock) is
//! met by sizing the mean gap from the population size (a calibration run of the walk
//! measures events and time per session) and by a gentle feedback on new gaps (longer
//! while ahead of the target count, shorter while behind). When the population is too
//! small for the rate even with short gaps, all behaviour times are compressed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hourlake_catalog::EventType;
use rand::distr::Distribution;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{LogNormal, Zipf};

use super::behaviour::{self as b, Behaviour, Think, LIST_LEN, MODELS};
use super::daily_cycle::DailyCycle;
use super::profile::{weighted, Profile, Releases};

/// The kinds of event a user can emit next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Install,
    NotificationView,
    NotificationOpen,
    SessionStart,
    ScreenView,
    Click,
    Search,
    RecServed,
    RecImpression,
    RecClick,
    Purchase,
    SessionEnd,
}

impl Act {
    pub fn event_type(self) -> EventType {
        match self {
            Act::Install => EventType::Install,
            Act::NotificationView => EventType::NotificationView,
            Act::NotificationOpen => EventType::NotificationOpen,
            Act::SessionStart => EventType::SessionStart,
            Act::ScreenView => EventType::ScreenView,
            Act::Click => EventType::Click,
            Act::Search => EventType::Search,
            Act::RecServed => EventType::RecServed,
            Act::RecImpression => EventType::RecImpression,
            Act::RecClick => EventType::RecClick,
            Act::Purchase => EventType::Purchase,
            Act::SessionEnd => EventType::SessionEnd,
        }
    }
}

/// No recommendation list open.
pub const NO_FUNNEL: u32 = u32::MAX;
/// No item in focus.
pub const NO_ITEM: u32 = u32::MAX;

/// One user: who they are and the event they emit next (kept small: ~56 bytes).
#[derive(Debug, Clone)]
pub struct User {
    /// `user_id` is `u` and this number (new users get numbers above `--users`).
    pub number: u64,
    /// Random id of the current (or next) session.
    pub session: u64,
    /// Event time of this session's `session_start`, µs.
    pub session_started: i64,
    /// The item of the pending click or purchase, or the last one looked at.
    pub item: u32,
    /// The open recommendation list (index into the population's lists).
    pub funnel: u32,
    /// Relative activity (mean 1): divides the mean inactivity gap.
    pub activity: f32,
    pub profile: Profile,
    pub next: Act,
    /// Screen of the pending `screen_view` or `click`.
    pub screen: u8,
    pub screens_left: u8,
    /// Query of the pending search.
    pub query: u8,
    /// The session was opened from a notification (its first list is shown as `push`).
    pub from_push: bool,
    /// The item page was reached by clicking a recommendation.
    pub from_rec: bool,
}

/// A served recommendation list and how far the user has looked at it.
#[derive(Debug, Clone)]
pub struct Funnel {
    pub request: u64,
    pub items: [u32; LIST_LEN],
    pub surface: u8,
    /// Ranks the user will scroll past.
    pub shown: u8,
    /// Rank of the pending impression or click (1-based; 0 before the first impression).
    pub rank: u8,
}

/// What follows an event.
enum After {
    /// The user's next event, after this many µs of event time.
    Think(f64),
    /// The session is over; the next one comes after an inactivity gap.
    Gap,
}

/// Shortest mean inactivity gap (activity-clock µs) before behaviour time is compressed.
const GAP_FLOOR_MICROS: f64 = 600e6;

/// How the population was sized against the message rate.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// Events per session cycle (install/notifications included).
    pub events_per_session: f64,
    /// Mean inactivity gap of a user of activity 1, seconds.
    pub mean_gap_s: f64,
    /// Factor on every behaviour time (1 unless the population is too small).
    pub time_scale: f64,
}

/// Every user, the schedule of their next events, and the open recommendation lists.
pub struct Population {
    pub users: Vec<User>,
    funnels: Vec<Funnel>,
    free_funnels: Vec<u32>,
    /// (event-time offset from the start in µs, user) of every user's next event.
    queue: BinaryHeap<Reverse<(i64, u32)>>,
    cycle: DailyCycle,
    start_micros: i64,
    step_micros: f64,
    /// Events emitted so far (compared with the target count by the gap feedback).
    emitted: u64,
    /// Deviation from the target count, in events, that stretches new gaps e-fold.
    feedback_events: f64,
    pub behaviour: Behaviour,
    item_dist: Zipf<f64>,
    items: u64,
    activity_dist: LogNormal<f64>,
    /// Mean gap of a user of activity 1, activity-clock µs.
    mean_gap: f64,
    next_number: u64,
    /// Event time of the event being walked from, µs.
    now: i64,
    pub sizing: Sizing,
}

impl Population {
    /// `users` users in their steady state at the start: some mid-session, the others
    /// between sessions, sized so that they emit one event every `step_micros`.
    pub fn new(
        users: u64,
        items: u64,
        step_micros: f64,
        start_micros: i64,
        cycle: DailyCycle,
        behaviour: Behaviour,
        rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<Population> {
        let users = users.clamp(1, u64::from(u32::MAX - 1));
        let mut p = Population::empty(items, behaviour)?;
        p.cycle = cycle;
        p.start_micros = start_micros;
        p.step_micros = step_micros;
        let cal = Population::calibrate(items, &p.behaviour, rng.random())?;
        let latest = Releases::latest_at(start_micros);
        for number in 1..=users {
            let activity = p.activity_dist.sample(rng) as f32;
            // half the users run the newest release, the others lag a few behind
            let lag = [0, 0, 0, 0, 0, 1, 1, 1, 2, 3][rng.random_range(0..10)];
            let profile = Profile::sample(rng, latest.saturating_sub(lag), MODELS.len());
            p.users.push(User::new(number, activity, profile));
        }
        p.next_number = users + 1;
        p.size(&cal, step_micros);
        p.behaviour.time_scale = p.sizing.time_scale;
        // Steady state at the start: every user lives the last few session lengths
        // before it (from a memoryless gap), so some are mid-session, some waiting to
        // open a notification, most between sessions.
        let warmup = 3.0 * cal.active_micros * p.sizing.time_scale;
        let mut queue = Vec::with_capacity(p.users.len());
        for i in 0..p.users.len() {
            if rng.random_bool(p.behaviour.churn) {
                p.replace_user(i, rng, latest);
            }
            p.plan_next_session(i, rng);
            let mut t = p.after_gap(i, rng, -warmup);
            while t < 0.0 {
                t = match p.walk(i, rng, start_micros + t as i64) {
                    After::Think(d) => t + d,
                    After::Gap => p.after_gap(i, rng, t),
                };
            }
            queue.push(Reverse((t.round() as i64, i as u32)));
        }
        p.queue = BinaryHeap::from(queue);
        Ok(p)
    }

    fn empty(items: u64, behaviour: Behaviour) -> anyhow::Result<Population> {
        let items = items.clamp(1, u64::from(u32::MAX - 1));
        Ok(Population {
            users: Vec::new(),
            funnels: Vec::new(),
            free_funnels: Vec::new(),
            queue: BinaryHeap::new(),
            cycle: DailyCycle::new(0.0, 0),
            start_micros: 0,
            step_micros: 1.0,
            emitted: 0,
            feedback_events: 1.0,
            behaviour,
            item_dist: Zipf::new(items as f64, 1.2).map_err(|e| anyhow::anyhow!("items: {e}"))?,
            items,
            // mean 1: exp(μ + σ²/2) = 1
            activity_dist: LogNormal::new(-0.5, 1.0)
                .map_err(|e| anyhow::anyhow!("activity: {e}"))?,
            mean_gap: GAP_FLOOR_MICROS,
            next_number: 1,
            now: 0,
            sizing: Sizing {
                events_per_session: 0.0,
                mean_gap_s: 0.0,
                time_scale: 1.0,
            },
        })
    }

    /// Runs the session walk of one user for many sessions: events and active (non-gap)
    /// time per session.
    fn calibrate(items: u64, behaviour: &Behaviour, seed: u64) -> anyhow::Result<Calibration> {
        const SESSIONS: u32 = 4_000;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut p = Population::empty(items, behaviour.clone())?;
        p.users
            .push(User::new(1, 1.0, Profile::sample(&mut rng, 0, 1)));
        p.plan_next_session(0, &mut rng);
        let (mut events, mut active) = (0u64, 0.0);
        let mut now = 0;
        for _ in 0..SESSIONS {
            loop {
                events += 1;
                match p.walk(0, &mut rng, now) {
                    After::Think(d) => {
                        active += d;
                        now += d as i64;
                    }
                    After::Gap => break,
                }
            }
        }
        let n = f64::from(SESSIONS);
        Ok(Calibration {
            events: events as f64 / n,
            active_micros: active / n,
        })
    }

    /// Solves the mean gap (and, if need be, a time compression) so that the population
    /// emits one event per `step_micros` of activity time.
    fn size(&mut self, cal: &Calibration, step_micros: f64) {
        let target = 1.0 / step_micros.max(1e-3);
        let stride = (self.users.len() / 20_000).max(1);
        let weight = self.users.len() as f64 / self.users.iter().step_by(stride).count() as f64;
        let rate = |gap: f64| -> f64 {
            weight
                * self
                    .users
                    .iter()
                    .step_by(stride)
                    .map(|u| cal.events / (cal.active_micros + gap / f64::from(u.activity)))
                    .sum::<f64>()
        };
        let (gap, scale) = if rate(GAP_FLOOR_MICROS) <= target {
            (GAP_FLOOR_MICROS, rate(GAP_FLOOR_MICROS) / target)
        } else {
            let total_activity: f64 = self.users.iter().map(|u| f64::from(u.activity)).sum();
            let (mut lo, mut hi) = (GAP_FLOOR_MICROS, cal.events * total_activity / target);
            for _ in 0..100 {
                let mid = 0.5 * (lo + hi);
                if rate(mid) > target {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            (0.5 * (lo + hi), 1.0)
        };
        self.mean_gap = gap * scale;
        // Gaps respond within about a gap; two gaps' worth of events keeps it calm.
        self.feedback_events = (2.0 * self.mean_gap / step_micros).max(100.0);
        self.sizing = Sizing {
            events_per_session: cal.events,
            mean_gap_s: self.mean_gap / 1e6,
            time_scale: scale,
        };
    }

    /// The user whose next event is due first, and its event time (µs since the epoch);
    /// the user must then be passed to [`Self::advance`].
    pub fn due(&mut self) -> (usize, i64) {
        self.emitted += 1;
        match self.queue.pop() {
            Some(Reverse((offset, i))) => (i as usize, self.start_micros + offset),
            None => unreachable!("every user is always scheduled once"),
        }
    }

    /// After user `i` emitted its pending event at `at` (µs since the epoch): decides
    /// and schedules the next.
    pub fn advance(&mut self, i: usize, rng: &mut ChaCha8Rng, at: i64) {
        let now = (at - self.start_micros) as f64;
        let due = match self.walk(i, rng, at) {
            After::Think(d) => now + d,
            After::Gap => self.after_gap(i, rng, now),
        };
        // never before `now`: rounding must not reorder a user's events
        let due = (due.round() as i64).max(at - self.start_micros);
        self.queue.push(Reverse((due, i as u32)));
    }

    /// Event-time offset of the end of an inactivity gap of user `i` starting at `now`:
    /// exponential on the activity clock, stretched while the run is ahead of the target
    /// count and shrunk while behind.
    fn after_gap(&self, i: usize, rng: &mut ChaCha8Rng, now: f64) -> f64 {
        let u: f64 = rng.random();
        let tau = self.cycle.tau(now);
        let ahead = self.emitted as f64 - tau.max(0.0) / self.step_micros;
        let feedback = (ahead / self.feedback_events).clamp(-1.5, 1.5).exp();
        let gap = -(1.0 - u).ln() * self.mean_gap / f64::from(self.users[i].activity) * feedback;
        self.cycle.real(tau + gap, now + gap)
    }

    /// The open list of user `i`, if any.
    pub fn funnel(&self, i: usize) -> Option<&Funnel> {
        self.funnels.get(self.users[i].funnel as usize)
    }

    fn pick_item(&mut self, rng: &mut ChaCha8Rng) -> u32 {
        (self.item_dist.sample(rng) as u64).min(self.items) as u32
    }

    /// The session walk: user `i` just emitted its pending event at `now` (µs).
    fn walk(&mut self, i: usize, rng: &mut ChaCha8Rng, now: i64) -> After {
        self.now = now;
        let bh = &self.behaviour;
        let think = |rng: &mut ChaCha8Rng, t: Think| After::Think(bh.think(rng, t));
        let u = &mut self.users[i];
        match u.next {
            Act::Install => {
                u.next = Act::SessionStart;
                think(rng, b::AFTER_INSTALL)
            }
            Act::NotificationView => {
                if rng.random_bool(bh.push_open) {
                    u.next = Act::NotificationOpen;
                    think(rng, b::BEFORE_OPENING_PUSH)
                } else {
                    u.next = Act::SessionStart;
                    think(rng, b::BEFORE_IGNORING_PUSH)
                }
            }
            Act::NotificationOpen => {
                u.from_push = true;
                u.next = Act::SessionStart;
                think(rng, b::AFTER_OPEN)
            }
            Act::SessionStart => {
                u.session_started = now;
                u.screens_left = bh.screens(rng);
                u.screen = b::HOME;
                u.next = Act::ScreenView;
                think(rng, b::FIRST_SCREEN)
            }
            Act::ScreenView => {
                u.screens_left = u.screens_left.saturating_sub(1);
                self.on_screen(i, rng)
            }
            Act::Click => {
                u.screen = b::ITEM;
                u.from_rec = false;
                u.next = Act::ScreenView;
                think(rng, b::LIST_LOADS)
            }
            Act::Search => {
                if rng.random_bool(bh.list_after_search) {
                    self.serve(i, rng, b::SURFACE_SEARCH)
                } else {
                    let item = self.pick_item(rng);
                    let u = &mut self.users[i];
                    u.item = item;
                    u.screen = b::SEARCH;
                    u.next = Act::Click;
                    After::Think(self.behaviour.think(rng, b::BEFORE_CLICK))
                }
            }
            Act::RecServed => {
                let f = u.funnel as usize;
                u.next = Act::RecImpression;
                self.funnels[f].rank = 1;
                think(rng, b::LIST_LOADS)
            }
            Act::RecImpression => {
                let f = &mut self.funnels[u.funnel as usize];
                if rng.random_bool(bh.click_probability(u.profile.model, f.rank)) {
                    u.next = Act::RecClick;
                    think(rng, b::BEFORE_CLICK)
                } else if f.rank < f.shown {
                    f.rank += 1;
                    think(rng, b::SCROLL)
                } else {
                    self.close_funnel(i);
                    self.navigate(i, rng)
                }
            }
            Act::RecClick => {
                let f = &self.funnels[u.funnel as usize];
                u.item = f.items[usize::from(f.rank.max(1) - 1)];
                u.screen = b::ITEM;
                u.from_rec = true;
                u.next = Act::ScreenView;
                self.close_funnel(i);
                After::Think(self.behaviour.think(rng, b::LIST_LOADS))
            }
            Act::Purchase => self.navigate(i, rng),
            Act::SessionEnd => self.close_session(i, rng),
        }
    }

    /// What the user does on the screen they just viewed.
    fn on_screen(&mut self, i: usize, rng: &mut ChaCha8Rng) -> After {
        let bh = &self.behaviour;
        let u = &mut self.users[i];
        match u.screen {
            b::HOME if rng.random_bool(bh.list_on_home) => {
                let surface = if u.from_push {
                    b::SURFACE_PUSH
                } else {
                    b::SURFACE_HOME
                };
                u.from_push = false;
                self.serve(i, rng, surface)
            }
            b::FEED if rng.random_bool(bh.feed_click) => {
                let item = self.pick_item(rng);
                let u = &mut self.users[i];
                u.item = item;
                u.next = Act::Click;
                After::Think(self.behaviour.think(rng, b::ON_SCREEN))
            }
            b::SEARCH => {
                u.query = rng.random_range(0..b::QUERIES.len()) as u8;
                u.next = Act::Search;
                After::Think(bh.think(rng, b::TYPING))
            }
            b::ITEM if u.from_rec => {
                u.from_rec = false;
                if rng.random_bool(bh.purchase_after_rec_click) {
                    u.next = Act::Purchase;
                    After::Think(bh.think(rng, b::CHECKOUT))
                } else {
                    self.navigate(i, rng)
                }
            }
            b::ITEM if rng.random_bool(bh.list_on_item_page) => {
                self.serve(i, rng, b::SURFACE_ITEM_PAGE)
            }
            b::ITEM if rng.random_bool(bh.add_to_cart) => {
                u.screen = b::CART;
                u.next = Act::ScreenView;
                After::Think(bh.think(rng, b::ON_SCREEN))
            }
            b::CART if rng.random_bool(bh.purchase_from_cart) => {
                if u.item == NO_ITEM {
                    let item = self.pick_item(rng);
                    self.users[i].item = item;
                }
                self.users[i].next = Act::Purchase;
                After::Think(self.behaviour.think(rng, b::CHECKOUT))
            }
            _ => self.navigate(i, rng),
        }
    }

    /// Moves on to another screen, or ends the session when the user has seen enough.
    fn navigate(&mut self, i: usize, rng: &mut ChaCha8Rng) -> After {
        let bh = &self.behaviour;
        let u = &mut self.users[i];
        if u.screens_left > 0 {
            u.screen = navigation_pick(rng);
            u.next = Act::ScreenView;
            After::Think(bh.think(rng, b::ON_SCREEN))
        } else if rng.random_bool(bh.killed_fraction) {
            self.close_session(i, rng)
        } else {
            u.next = Act::SessionEnd;
            After::Think(bh.think(rng, b::BEFORE_LEAVING))
        }
    }

    /// Serves a list on `surface`: ten distinct Zipf-popular items (fewer distinct ones
    /// only when the catalogue is that small).
    fn serve(&mut self, i: usize, rng: &mut ChaCha8Rng, surface: u8) -> After {
        let mut items = [0u32; LIST_LEN];
        let mut n = 0;
        while n < LIST_LEN {
            let item = self.pick_item(rng);
            if !items[..n].contains(&item) || n as u64 >= self.items {
                items[n] = item;
                n += 1;
            }
        }
        let funnel = Funnel {
            request: rng.random(),
            items,
            surface,
            shown: rng.random_range(3..=6),
            rank: 0,
        };
        let slot = match self.free_funnels.pop() {
            Some(slot) => {
                self.funnels[slot as usize] = funnel;
                slot
            }
            None => {
                self.funnels.push(funnel);
                (self.funnels.len() - 1) as u32
            }
        };
        let u = &mut self.users[i];
        u.funnel = slot;
        u.next = Act::RecServed;
        After::Think(self.behaviour.think(rng, b::LIST_LOADS))
    }

    fn close_funnel(&mut self, i: usize) {
        let u = &mut self.users[i];
        if u.funnel != NO_FUNNEL {
            self.free_funnels.push(u.funnel);
            u.funnel = NO_FUNNEL;
        }
    }

    /// The session is over (ended, or killed now): the user may upgrade the app or
    /// leave for good (a new user takes the place), and plans the next session.
    fn close_session(&mut self, i: usize, rng: &mut ChaCha8Rng) -> After {
        self.close_funnel(i);
        let latest = Releases::latest_at(self.now);
        if rng.random_bool(self.behaviour.churn) {
            self.replace_user(i, rng, latest);
        } else {
            let p = &mut self.users[i].profile;
            if p.release < latest && rng.random_bool(self.behaviour.upgrade) {
                p.release = latest;
            }
        }
        self.plan_next_session(i, rng);
        After::Gap
    }

    /// A new user (who has yet to install) takes the place of user `i`.
    fn replace_user(&mut self, i: usize, rng: &mut ChaCha8Rng, release: u16) {
        let activity = self.activity_dist.sample(rng) as f32;
        let profile = Profile::sample(rng, release, MODELS.len());
        self.users[i] = User::new(self.next_number, activity, profile);
        self.users[i].next = Act::Install;
        self.next_number += 1;
    }

    /// Sets up the start of the user's next session (install, a notification, or the
    /// session itself).
    fn plan_next_session(&mut self, i: usize, rng: &mut ChaCha8Rng) {
        let push = rng.random_bool(self.behaviour.push_fraction);
        let u = &mut self.users[i];
        u.session = rng.random();
        u.item = NO_ITEM;
        u.from_push = false;
        u.from_rec = false;
        if u.next != Act::Install {
            u.next = if push {
                Act::NotificationView
            } else {
                Act::SessionStart
            };
        }
    }
}

/// A screen to go to next, by the navigation weights.
fn navigation_pick(rng: &mut ChaCha8Rng) -> u8 {
    b::NAVIGATION[weighted(rng, b::NAVIGATION, |n| n.1)].0
}

/// What one session cycle of the walk averages (time scale 1).
struct Calibration {
    /// Events per cycle (install or notifications, session).
    events: f64,
    /// Time a cycle spends outside the inactivity gap, µs.
    active_micros: f64,
}

impl User {
    fn new(number: u64, activity: f32, profile: Profile) -> User {
        User {
            number,
            session: 0,
            session_started: 0,
            item: NO_ITEM,
            funnel: NO_FUNNEL,
            activity,
            profile,
            next: Act::SessionStart,
            screen: b::HOME,
            screens_left: 0,
            query: 0,
            from_push: false,
            from_rec: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_takes_48_bytes() {
        // a million users fit in 48 MB
        assert!(
            std::mem::size_of::<User>() <= 48,
            "{}",
            std::mem::size_of::<User>()
        );
    }
}
