//! The poll loop's clock: one monotonic reading per message, with the wall-clock time
//! derived from it (re-anchored every second), instead of several clock calls each.

use std::time::{Duration, Instant};

/// How often the wall clock is read again, so NTP adjustments are followed.
const ANCHOR_EVERY: Duration = Duration::from_secs(1);

/// The time as of the last [`Clock::tick`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor_instant: Instant,
    anchor_micros: i64,
    instant: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        let instant = Instant::now();
        Clock {
            anchor_instant: instant,
            anchor_micros: chrono::Utc::now().timestamp_micros(),
            instant,
        }
    }
}

impl Clock {
    /// Reads the monotonic clock (and the wall clock, once a second).
    pub fn tick(&mut self) {
        self.instant = Instant::now();
        if self.instant >= self.anchor_instant + ANCHOR_EVERY {
            *self = Clock::default();
        }
    }

    /// The monotonic time of the last tick.
    pub fn instant(&self) -> Instant {
        self.instant
    }

    /// The wall-clock time of the last tick, microseconds since the epoch (UTC).
    pub fn micros(&self) -> i64 {
        let since = self.instant.saturating_duration_since(self.anchor_instant);
        self.anchor_micros + since.as_micros() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_both_clocks_between_ticks_only() {
        let mut clock = Clock::default();
        let (instant, micros) = (clock.instant(), clock.micros());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.instant(), instant, "no reading without a tick");
        clock.tick();
        assert!(clock.instant() >= instant + Duration::from_millis(5));
        assert!(clock.micros() >= micros + 5_000);
        let wall = chrono::Utc::now().timestamp_micros();
        assert!(
            (wall - clock.micros()).abs() < 1_000_000,
            "close to the wall clock"
        );
    }
}
