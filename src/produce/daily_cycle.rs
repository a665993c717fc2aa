//! The daily cycle of app usage, as a warp between event time and "activity time".
//!
//! Activity at event time `t` is `m(t) = 1 + a·cos(2π (t − peak) / day)` (busiest at
//! 19:00 UTC). The simulation runs on an activity clock `τ = ∫ m dt`: messages are evenly
//! spaced on it and inactivity gaps are drawn on it, so both the message rate and the
//! rate at which users come back follow the cycle, while think times inside a session
//! stay in plain event time. With amplitude 0 the two clocks are the same.

use std::f64::consts::TAU;

const DAY_MICROS: f64 = 86_400e6;
const PEAK_MICROS: i64 = 19 * 3_600_000_000;

/// The warp for one run: offsets are microseconds after the run's start.
#[derive(Debug, Clone)]
pub struct DailyCycle {
    amplitude: f64,
    /// Phase of the cycle at the run's start, radians.
    phase: f64,
}

impl DailyCycle {
    /// A cycle of the given amplitude (0 = flat, below 1) for a run starting at `start_micros`.
    pub fn new(amplitude: f64, start_micros: i64) -> DailyCycle {
        let since_peak = (start_micros - PEAK_MICROS).rem_euclid(DAY_MICROS as i64);
        DailyCycle {
            amplitude,
            phase: TAU * since_peak as f64 / DAY_MICROS,
        }
    }

    /// Relative activity `m` at an event-time offset (mean 1 over a day).
    pub fn activity_at(&self, real: f64) -> f64 {
        1.0 + self.amplitude * (self.phase + TAU * real / DAY_MICROS).cos()
    }

    /// Activity-clock offset of an event-time offset.
    pub fn tau(&self, real: f64) -> f64 {
        if self.amplitude == 0.0 {
            return real;
        }
        let angle = self.phase + TAU * real / DAY_MICROS;
        real + self.amplitude * DAY_MICROS / TAU * (angle.sin() - self.phase.sin())
    }

    /// Event-time offset of an activity-clock offset; `guess` (a nearby answer) speeds it up.
    pub fn real(&self, tau: f64, guess: f64) -> f64 {
        if self.amplitude == 0.0 {
            return tau;
        }
        // Newton on a smooth, strictly increasing function: a few steps reach sub-µs.
        let mut x = guess;
        for _ in 0..8 {
            let step = (self.tau(x) - tau) / self.activity_at(x);
            x -= step;
            if step.abs() < 0.01 {
                break;
            }
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_cycle_is_the_identity_and_a_real_one_inverts() {
        let flat = DailyCycle::new(0.0, 1_795_355_100_000_000);
        assert_eq!(flat.tau(12_345.0), 12_345.0);
        assert_eq!(flat.real(12_345.0, 0.0), 12_345.0);
        let cycle = DailyCycle::new(0.6, 1_795_355_100_000_000);
        for real in [0.0, 1e9, 3.3e10, 9e10, 2e11] {
            let back = cycle.real(cycle.tau(real), real * 0.9);
            assert!((back - real).abs() < 1.0, "{real} -> {back}");
        }
        // over a whole day the two clocks agree again
        assert!((cycle.tau(DAY_MICROS) - DAY_MICROS).abs() < 1.0);
    }

    #[test]
    fn activity_peaks_in_the_evening_and_bottoms_out_in_the_morning() {
        let midnight = 1_795_305_600_000_000; // 2026-11-22T00:00:00Z
        let cycle = DailyCycle::new(0.5, midnight);
        let hour = 3_600e6;
        assert!((cycle.activity_at(19.0 * hour) - 1.5).abs() < 1e-9);
        assert!((cycle.activity_at(7.0 * hour) - 0.5).abs() < 1e-9);
    }
}
