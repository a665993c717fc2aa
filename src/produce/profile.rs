//! Who a simulated user is: device, OS, country and app release, fixed at install
//! (the release moves forward as the user upgrades).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Device types with their operating systems and share of users.
pub const DEVICES: &[(&str, &[&str], u32)] = &[
    (
        "phone",
        &["android 15", "android 14", "ios 18", "ios 17"],
        70,
    ),
    ("tablet", &["ipados 18", "android 14"], 15),
    ("tv", &["tvos 18", "android tv 12"], 5),
    ("desktop", &["macos 15", "windows 11"], 10),
];

/// Countries with their currency and share of users.
pub const COUNTRIES: &[(&str, &str, u32)] = &[
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

/// A user's fixed traits, packed small (the population may hold a million users).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub device: u8,
    pub os: u8,
    pub country: u8,
    /// Index into the recommendation models (the user's A/B bucket).
    pub model: u8,
    /// App release number (see [`Releases`]).
    pub release: u16,
}

impl Profile {
    /// A new user on the given release, bucketed into one of `models` models.
    pub fn sample(rng: &mut ChaCha8Rng, release: u16, models: usize) -> Profile {
        let device = weighted(rng, DEVICES, |d| d.2);
        Profile {
            device: device as u8,
            os: rng.random_range(0..DEVICES[device].1.len()) as u8,
            country: weighted(rng, COUNTRIES, |c| c.2) as u8,
            model: rng.random_range(0..models.max(1)) as u8,
            release,
        }
    }

    pub fn device_type(&self) -> &'static str {
        DEVICES[usize::from(self.device)].0
    }

    pub fn os(&self) -> &'static str {
        DEVICES[usize::from(self.device)].1[usize::from(self.os)]
    }

    pub fn country(&self) -> &'static str {
        COUNTRIES[usize::from(self.country)].0
    }

    pub fn currency(&self) -> &'static str {
        COUNTRIES[usize::from(self.country)].1
    }
}

/// An index into `choices`, with probability proportional to `weight`.
pub fn weighted<T>(rng: &mut ChaCha8Rng, choices: &[T], weight: impl Fn(&T) -> u32) -> usize {
    let total: u32 = choices.iter().map(&weight).sum();
    let mut pick = rng.random_range(0..total.max(1));
    for (i, c) in choices.iter().enumerate() {
        let w = weight(c);
        if pick < w {
            return i;
        }
        pick -= w;
    }
    choices.len().saturating_sub(1)
}

const DAY_MICROS: i64 = 86_400_000_000;
/// A new app release every two weeks...
const RELEASE_EVERY_DAYS: i64 = 14;
/// ...counted from 2024-01-01 (release 0 is "5.0.0").
const FIRST_RELEASE_DAY: i64 = 19_723;

/// App releases: one every two weeks, named `major.minor.0`; names are made once each.
#[derive(Debug, Default)]
pub struct Releases {
    names: Vec<String>,
}

impl Releases {
    /// The newest release at an event time.
    pub fn latest_at(micros: i64) -> u16 {
        let day = micros.div_euclid(DAY_MICROS);
        ((day - FIRST_RELEASE_DAY).max(0) / RELEASE_EVERY_DAYS).min(i64::from(u16::MAX)) as u16
    }

    /// The version string of a release.
    pub fn name(&mut self, release: u16) -> &str {
        let i = usize::from(release);
        while self.names.len() <= i {
            let n = self.names.len();
            self.names.push(format!("{}.{}.0", 5 + n / 12, n % 12));
        }
        &self.names[i]
    }
}
