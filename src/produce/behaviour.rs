//! How simulated users behave: the probabilities and think times of the session walk
//! in `population.rs`, and the recommendation models with their click-through.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// A recommendation model and how often its lists are clicked.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub version: &'static str,
    /// Probability that an impression at rank 1 is clicked; lower ranks decay (see
    /// [`Behaviour::click_probability`]).
    pub top_ctr: f64,
}

/// The models users are bucketed into (an A/B test): v8 is clicked half again as often.
pub const MODELS: &[Model] = &[
    Model {
        version: "ranker-v7",
        top_ctr: 0.08,
    },
    Model {
        version: "ranker-v8",
        top_ctr: 0.12,
    },
];

/// Where a recommendation list is shown.
pub const SURFACES: &[&str] = &["home", "search", "item_page", "push"];
pub const SURFACE_HOME: u8 = 0;
pub const SURFACE_SEARCH: u8 = 1;
pub const SURFACE_ITEM_PAGE: u8 = 2;
pub const SURFACE_PUSH: u8 = 3;

/// Screens of the app.
pub const SCREENS: &[&str] = &[
    "home", "feed", "item", "cart", "profile", "settings", "search",
];
pub const HOME: u8 = 0;
pub const FEED: u8 = 1;
pub const ITEM: u8 = 2;
pub const CART: u8 = 3;
pub const SEARCH: u8 = 6;
/// Where a user goes next when not following an item or a list (screen, weight).
pub const NAVIGATION: &[(u8, u32)] = &[(0, 25), (1, 30), (6, 20), (3, 10), (4, 10), (5, 5)];

pub const QUERIES: &[&str] = &[
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

/// Items per served list.
pub const LIST_LEN: usize = 10;

/// The knobs of user behaviour. Times are microseconds of event time.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Fraction of sessions that end without `session_end` (the app was killed).
    pub killed_fraction: f64,
    /// Fraction of sessions that a push notification precedes (`notification_view`).
    pub push_fraction: f64,
    /// Fraction of notifications opened (`notification_open`, then the session starts).
    pub push_open: f64,
    /// Chance per session that the user leaves for good (a new user takes the place and
    /// installs), so installs keep coming at a steady rate.
    pub churn: f64,
    /// Chance per session that a user on an old release upgrades to the newest.
    pub upgrade: f64,
    /// Median screens per session (lognormal, σ 0.7, 1–40).
    pub screens_median: f64,
    /// Chance that a list is served on home, on an item page, after a search.
    pub list_on_home: f64,
    pub list_on_item_page: f64,
    pub list_after_search: f64,
    /// Chance of a click on an item in the feed.
    pub feed_click: f64,
    /// Decay of click-through with rank: rank r is clicked `top_ctr · r^-rank_decay`.
    pub rank_decay: f64,
    /// Chance that a recommended item the user clicked is bought (on its item page).
    pub purchase_after_rec_click: f64,
    /// Chance that an item page (not reached from a list) leads to the cart.
    pub add_to_cart: f64,
    /// Chance that the item in the cart is bought.
    pub purchase_from_cart: f64,
    /// Multiplies every think time (1 = real life; the population compresses time when
    /// it is too small for the requested event rate).
    pub time_scale: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            killed_fraction: 0.05,
            push_fraction: 0.25,
            push_open: 0.4,
            churn: 0.02,
            upgrade: 0.2,
            screens_median: 6.0,
            list_on_home: 0.7,
            list_on_item_page: 0.5,
            list_after_search: 0.7,
            feed_click: 0.6,
            rank_decay: 0.8,
            purchase_after_rec_click: 0.1,
            add_to_cart: 0.2,
            purchase_from_cart: 0.3,
            time_scale: 1.0,
        }
    }
}

/// A pause before the next event: lognormal around a median, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Think {
    pub median_ms: f64,
    pub sigma: f64,
}

pub const AFTER_INSTALL: Think = Think::new(6_000.0, 0.5);
pub const BEFORE_OPENING_PUSH: Think = Think::new(30_000.0, 1.2);
pub const BEFORE_IGNORING_PUSH: Think = Think::new(240_000.0, 1.0);
pub const AFTER_OPEN: Think = Think::new(800.0, 0.4);
pub const FIRST_SCREEN: Think = Think::new(700.0, 0.4);
pub const ON_SCREEN: Think = Think::new(5_000.0, 0.8);
pub const TYPING: Think = Think::new(4_000.0, 0.5);
pub const LIST_LOADS: Think = Think::new(400.0, 0.4);
pub const SCROLL: Think = Think::new(900.0, 0.6);
pub const BEFORE_CLICK: Think = Think::new(2_000.0, 0.6);
pub const CHECKOUT: Think = Think::new(25_000.0, 0.6);
pub const BEFORE_LEAVING: Think = Think::new(4_000.0, 0.8);

impl Think {
    pub const fn new(median_ms: f64, sigma: f64) -> Think {
        Think { median_ms, sigma }
    }
}

impl Behaviour {
    /// A think time, in microseconds, scaled by [`Behaviour::time_scale`].
    pub fn think(&self, rng: &mut ChaCha8Rng, think: Think) -> f64 {
        let z: f64 = rng.sample(StandardNormal);
        (think.median_ms * 1000.0 * (think.sigma * z).exp() * self.time_scale).max(1.0)
    }

    /// Screens the user will look at in a new session.
    pub fn screens(&self, rng: &mut ChaCha8Rng) -> u8 {
        let z: f64 = rng.sample(StandardNormal);
        (self.screens_median * (0.7 * z).exp())
            .round()
            .clamp(1.0, 40.0) as u8
    }

    /// Probability that an impression of model `model` at `rank` (1-based) is clicked.
    pub fn click_probability(&self, model: u8, rank: u8) -> f64 {
        let top = MODELS[usize::from(model) % MODELS.len()].top_ctr;
        (top * f64::from(rank.max(1)).powf(-self.rank_decay)).min(1.0)
    }
}
